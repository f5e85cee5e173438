"""The nightly re-run: a second ``clipsort tag`` against a second ``clipsort index``, same library.

    python benchmarks/retag.py [--photos 100000] [--folder DIR]
    python benchmarks/retag.py --into-photo [--photos 20000]

Builds (or reuses) a library of small JPEGs, then times, as whole processes:
``index`` (first), ``tag`` (first), then ``index`` again and ``tag`` again with the same
labels, alternating ``--repeat`` times (medians), and ``tag`` again after another program
edited one sidecar (which must be merged again: checked, and said). Prints the seconds
of each and the ratio of the second ``tag`` to the second ``index`` (the goal: at most 1.5). Uses the trained tiny model
of tests/models, so only clipsort's own work is measured, and its own cache dir.

``--into-photo``: two copies of the library, one tagged with sidecars and one with ``--into photo``
(keywords inside the JPEGs, through ExifTool), each with its own cache; then second runs of
both, alternating. Prints both medians and their ratio (the goal: at most 1.5), and checks that
the second ``--into photo`` runs rewrote no photo (every mtime kept) and embedded nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "models" / "tiny-colours"
COLOURS = {"red": (200, 30, 30), "green": (30, 170, 40), "blue": (30, 40, 200)}


def make_library(folder: Path, count: int) -> None:
    from PIL import Image

    existing = sum(1 for _ in folder.rglob("*.jpg")) if folder.exists() else 0
    rng = random.Random(1)
    for n in range(existing, count):
        colour = rng.choice(list(COLOURS))
        path = folder / f"{n // 1000:03d}" / f"{colour}_{n:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        shade = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in COLOURS[colour])
        Image.new("RGB", (96, 64), shade).save(path, "JPEG", quality=85)


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "clipsort", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"clipsort {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds


def summary(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(seconds, the summary line on stderr) of one whole process."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "clipsort", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"clipsort {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds, result.stderr.strip().splitlines()[-1]


def into_photo(options: argparse.Namespace, work: Path) -> None:
    import shutil

    sidecars, inside = work / "sidecars", work / "inside"
    print(f"building {options.photos} photos twice in {work} ...", flush=True)
    make_library(sidecars, options.photos)
    shutil.copytree(sidecars, inside)
    labels = work / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    model = ["--model", f"local-dir:{MODEL}"]
    envs = {name: {**os.environ, "CLIPSORT_CACHE_DIR": str(work / f"cache-{name}"), "HF_HUB_OFFLINE": "1"}
            for name in ("sidecars", "inside")}  # fmt: skip
    runs = {
        "sidecars": ["tag", str(sidecars), "-l", str(labels), *model],
        "inside": ["tag", str(inside), "-l", str(labels), *model, "--into", "photo"],
    }
    for name, args in runs.items():
        seconds, line = summary(args, envs[name])
        print(f"first tag, {name}: {seconds:.1f} s  ({line})", flush=True)
    stamps = {p: p.stat().st_mtime_ns for p in inside.rglob("*.jpg")}
    again: dict[str, list[float]] = {name: [] for name in runs}
    lines = {}
    for _ in range(options.repeat):
        for name, args in runs.items():
            seconds, lines[name] = summary(args, envs[name])
            again[name].append(seconds)
    for name in runs:
        print(f"second tag, {name}: {', '.join(f'{s:.1f}' for s in again[name])} s  ({lines[name]})")
    ratio = statistics.median(again["inside"]) / statistics.median(again["sidecars"])
    kept = all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    print(f"second tag --into photo / second tag with sidecars: {ratio:.2f} (goal: at most 1.5)")
    print(f"photos rewritten by the second runs: {'none' if kept else 'SOME'}; embedded: "
          f"{'nothing' if 'embedded 0' in lines['inside'] else 'SOMETHING'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--folder", type=Path, help="where the library is built (default: a temp folder)")
    parser.add_argument("--repeat", type=int, default=3, help="second runs of each, alternating (median)")
    parser.add_argument("--into-photo", action="store_true", help="compare tag --into photo with sidecars")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clipsort-retag-"))
    if options.into_photo:
        into_photo(options, work)
        return
    library = options.folder or work / "library"
    print(f"building {options.photos} photos in {library} ...", flush=True)
    make_library(library, options.photos)
    labels = work / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    env = {**os.environ, "CLIPSORT_CACHE_DIR": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    model = ["--model", f"local-dir:{MODEL}", "--quiet"]
    figures = {
        "index (first)": timed(["index", str(library), *model], env),
        "tag (first)": timed(["tag", str(library), "-l", str(labels), *model], env),
    }
    # Second runs alternate, so that both meet the same state of the disk and page cache
    # (the first tag leaves 100,000 freshly written sidecars behind); medians are compared.
    again: dict[str, list[float]] = {"index (again)": [], "tag (again)": []}
    for _ in range(options.repeat):
        again["index (again)"].append(timed(["index", str(library), *model], env))
        again["tag (again)"].append(timed(["tag", str(library), "-l", str(labels), *model], env))
    for name, runs in again.items():
        figures[name] = statistics.median(runs)
        print(f"{name} runs: {', '.join(f'{r:.1f}' for r in runs)} s", flush=True)
    edited = next(library.rglob("*.jpg.xmp"))
    edited.write_text(edited.read_text().replace("<rdf:Bag>", "<rdf:Bag>\n     <rdf:li>edited-elsewhere</rdf:li>", 1))
    figures["tag (again, one sidecar edited)"] = timed(["tag", str(library), "-l", str(labels), *model], env)
    remerged = "edited-elsewhere" in edited.read_text() and "clipsort:addedSubject" in edited.read_text()
    for name, seconds in figures.items():
        print(f"{name:<34} {seconds:8.1f} s" + (" (median)" if name in again else ""))
    ratio = figures["tag (again)"] / figures["index (again)"]
    print(f"second tag / second index: {ratio:.2f} (goal: at most 1.5)")
    print(f"edited sidecar merged again, its keyword kept: {'yes' if remerged else 'NO'}")


if __name__ == "__main__":
    main()
