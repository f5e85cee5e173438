"""Cost of a re-run over an unchanged library, against the first run (issue: incremental runs).

    python benchmarks/cache_rerun.py [--photos 2000] [--model ViT-B-32 --pretrained none]

Builds a folder of photos (coloured shapes, 800-1600 px JPEGs), runs
``clipsort tag`` twice with a fresh cache and prints both wall times, the ratio,
and what the second run took from the cache. The default model is ViT-B-32 with
random weights (``--pretrained none``): the same size and speed as the real one,
no download needed.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from shapes import make_picture  # noqa: E402


def build(folder: Path, count: int) -> None:
    rng = random.Random(7)
    colours = ["red", "green", "blue", "yellow"]
    for i in range(count):
        size = (rng.randint(800, 1600), rng.randint(800, 1600))
        sub = folder / f"roll{i // 250:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        make_picture(colours[i % 4], size, rng).save(sub / f"img{i:05d}.jpg", quality=88)


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"clipsort failed ({result.returncode}):\n{result.stderr}")
    return elapsed, result.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--sidecar", default="xmp", choices=["xmp", "json"])
    parser.add_argument("--folder", type=Path, help="use these photos instead of building them")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="clipsort-bench-") as tmp:
        folder = args.folder or Path(tmp) / "photos"
        if args.folder is None:
            start = time.perf_counter()
            build(folder, args.photos)
            print(f"built {args.photos} photos in {time.perf_counter() - start:.0f} s", flush=True)
        labels = Path(tmp) / "labels.txt"
        labels.write_text("red\ngreen\nblue\nyellow\n", encoding="utf-8")
        env = dict(os.environ, CLIPSORT_CACHE=str(Path(tmp) / "cache.sqlite3"))
        command = [sys.executable, "-m", "clipsort", "tag", str(folder), "-l", str(labels)]
        command += ["--model", args.model, "--pretrained", args.pretrained, "--sidecar", args.sidecar]
        command += ["--threshold", "0", "--top-k", "1"]  # every photo gets a sidecar, whatever the weights
        first, first_summary = timed(command, env)
        print(f"first run:  {first:7.1f} s   {first_summary}", flush=True)
        second, second_summary = timed(command, env)
        print(f"second run: {second:7.1f} s   {second_summary}", flush=True)
        print(f"second / first = {second / first:.1%} (goal: under 5%)")


if __name__ == "__main__":
    main()
