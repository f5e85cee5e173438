"""Search and dupes over a large cached library, on this machine (issue: search).

    python benchmarks/search.py [--photos 100000] [--copies 0.02] [--runs 5] [--folder DIR]

Builds a library of small JPEGs (256x192 pictures of coloured shapes; a share of them copied
as resized or re-encoded versions) and a real embedding cache for it whose vectors are
synthetic: ViT-B-32's 512 dimensions, random directions, copies close to their original
(cosine about 0.99), stored under the identity of ViT-B-32 with random weights so that
clipsort's own commands read them. Perceptual hashes and fingerprints are the files' real
ones. Then prints:

* query latency: reading every vector from the cache and scoring it (one matrix, a chunk
  at a time) for a new query vector, in-process, median of ``--runs``;
* the whole ``clipsort search "..." --no-index`` command over the library (a new query:
  start-up, the text tower, the scan), median of ``--runs``, and its peak RSS;
* the whole ``clipsort dupes --no-index`` command, once, with the groups it found and how
  many of the planted copies they hold.

The folder is kept with ``--folder`` (building 100,000 files takes a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]
#: The pictures' size: small, so that 100,000 files build in minutes, large enough to tell copies.
SIZE = (256, 192)
MODEL = ["--model", "ViT-B-32", "--pretrained", "none", "--device", "cpu"]


def build(folder: Path, count: int, copies: float, cache_file: Path) -> dict[str, str]:
    """The photos and their cache rows; returns each planted copy's original."""
    from PIL import Image
    from shapes import COLOURS, make_picture

    from clipsort.model.embed import Embedder
    from clipsort.model.model_spec import parse_spec
    from clipsort.photos.decode import load_image
    from clipsort.photos.location import file_fingerprint
    from clipsort.photos.phash import perceptual_hash
    from clipsort.store.cache import EmbeddingCache

    rng = random.Random(1)
    vectors = np.random.default_rng(1)
    planted: dict[str, str] = {}
    with EmbeddingCache(cache_file) as cache:
        model_id = Embedder(parse_spec("ViT-B-32", "none"), "cpu", cache, "auto").cache_model_id()
        rows = []
        originals: list[tuple[Path, np.ndarray]] = []
        for i in range(count):
            sub = folder / f"{i // 1000:03d}"
            sub.mkdir(parents=True, exist_ok=True)
            path = sub / f"IMG_{i:06d}.jpg"
            if originals and rng.random() < copies:
                source, vector = rng.choice(originals)
                with Image.open(source) as image:
                    if rng.random() < 0.5:
                        image.resize((image.width // 2, image.height // 2)).save(path, quality=80)
                    else:
                        image.save(path, quality=40)
                vector = vector + vectors.normal(0, 0.1 / np.sqrt(512), 512)
                planted[str(path)] = str(source)
            else:
                colour = rng.choice(list(COLOURS))
                make_picture(colour, SIZE, rng).save(path, quality=90)
                vector = vectors.normal(0, 1, 512)
                originals.append((path, vector))
            vector = (vector / np.linalg.norm(vector)).astype(np.float32)
            st = path.stat()
            rows.append(
                (path, st.st_size, st.st_mtime_ns, file_fingerprint(path), vector, perceptual_hash(load_image(path)))
            )
            if len(rows) == 5000:
                cache.put_images(model_id, rows)
                rows = []
                print(f"  {i + 1} photos", flush=True)
        cache.put_images(model_id, rows)
    return planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--copies", type=float, default=0.02, help="share of the photos that copy an earlier one")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--folder", type=Path, help="keep the library (and its cache) here; reused when present")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed copy runs (see startup.py)

    from clipsort.commands.library import cached_photos
    from clipsort.commands.search import rank
    from clipsort.model.embed import Embedder
    from clipsort.model.model_spec import parse_spec
    from clipsort.store.cache import EmbeddingCache

    with tempfile.TemporaryDirectory(prefix="clipsort-search-") as tmp:
        base = args.folder or Path(tmp)
        folder, cache_file = base / "library", base / "cache.sqlite3"
        env = dict(os.environ, CLIPSORT_CACHE=str(cache_file), HF_HUB_OFFLINE="1")
        if not cache_file.exists():
            start = time.perf_counter()
            (base / "planted.json").write_text(json.dumps(build(folder, args.photos, args.copies, cache_file)))
            print(f"built {args.photos} photos in {time.perf_counter() - start:.0f} s")
        planted = json.loads((base / "planted.json").read_text())
        size = cache_file.stat().st_size >> 20
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; cache {size} MiB")

        with EmbeddingCache(cache_file) as cache:
            model_id = Embedder(parse_spec("ViT-B-32", "none"), "cpu", cache, "auto").cache_model_id()
            rng = np.random.default_rng(7)
            times = []
            for _ in range(args.runs):
                query = rng.normal(0, 1, 512).astype(np.float32)
                query /= np.linalg.norm(query)
                start = time.perf_counter()
                hits = rank(cached_photos(cache, model_id, [folder], None), query, top=10)
                times.append(time.perf_counter() - start)
            assert len(hits) == 10
            low, middle, high = (1000 * t for t in (min(times), statistics.median(times), max(times)))
            print(
                f"query over {args.photos} cached vectors (read from SQLite + scored): "
                f"median {middle:.0f} ms (min {low:.0f}, max {high:.0f})"
            )

        # the whole command: one run first builds the model's fast runtime if it is not there
        command = [sys.executable, "-m", "clipsort", "search", "a red circle", str(folder), "--no-index", *MODEL, "-q"]
        subprocess.run(command, env=env, check=True, capture_output=True)
        runs = []
        for i in range(args.runs):
            command[4] = f"a red circle number {i} {time.time_ns()}"  # a new query: its prompts are not cached
            runs.append(_timed(command, env))
        seconds = statistics.median(r[0] for r in runs)
        rss = statistics.median(r[1] for r in runs)
        print(f"whole `clipsort search --no-index`, new query: median {seconds:.2f} s, peak RSS {rss:.0f} MiB")

        command = [sys.executable, "-m", "clipsort", "dupes", str(folder), "--no-index", *MODEL, "--json", "-q"]
        seconds, rss, out = _timed(command, env, output=True)
        groups = [{p["path"] for p in json.loads(line)["photos"]} for line in out.splitlines() if line.strip()]
        group_of = {path: n for n, group in enumerate(groups) for path in group}
        found = sum(
            1 for copy, source in planted.items() if copy in group_of and group_of[copy] == group_of.get(source)
        )
        planted_ones = set(planted) | set(planted.values())
        strays = sum(1 for group in groups for path in group if path not in planted_ones)
        print(
            f"whole `clipsort dupes --no-index`: {seconds:.1f} s, peak RSS {rss:.0f} MiB; {len(groups)} groups"
            f" of {sum(map(len, groups))} photos; {found} of the {len(planted)} planted copies grouped with their"
            f" original; {strays} photos grouped that are no planted copy or original"
        )


def _timed(command: list[str], env: dict[str, str], output: bool = False) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, stdout) of one process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        err = process.stderr.read().decode() if process.stderr else ""
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{err}")
        out.seek(0)
        text = out.read().decode() if output else ""
    return elapsed, usage.ru_maxrss / 1024, text


if __name__ == "__main__":
    main()
