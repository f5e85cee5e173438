"""Peak memory of ``clipsort index`` against the number of photos (issue: memory stays flat).

    python benchmarks/index_memory.py [--counts 2000 20000] [--model PATH-or-NAME]

Builds folders of small PNGs, runs ``clipsort index`` on each in a fresh process with
a fresh cache, and prints each run's peak RSS and the ratio of the largest to the
smallest (goal: within 10%). The default model is the tiny test model, so the figure
shows what clipsort itself holds per photo, not the model's weights.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def build(folder: Path, count: int) -> None:
    for i in range(count):
        sub = folder / f"d{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (i % 256, (i // 256) % 256, 120)).save(sub / f"{i:06d}.png")


def peak_rss_kib(folder: Path, cache: Path, model: list[str]) -> tuple[int, float]:
    script = (
        "import resource, sys\n"
        "from clipsort.cli import main\n"
        "try:\n"
        f"    main(['index', {str(folder)!r}, *{model!r}, '--quiet', '--cache', {str(cache)!r}])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--model", default=str(ROOT / "tests" / "models" / "tiny-colours"))
    parser.add_argument("--pretrained")
    args = parser.parse_args()
    model = ["--model", args.model] + (["--pretrained", args.pretrained] if args.pretrained else [])
    peaks = []
    with tempfile.TemporaryDirectory(prefix="clipsort-mem-") as tmp:
        for count in args.counts:
            folder = Path(tmp) / f"photos-{count}"
            build(folder, count)
            peak, seconds = peak_rss_kib(folder, Path(tmp) / f"cache-{count}.sqlite3", model)
            peaks.append(peak)
            print(f"{count:7d} photos: peak RSS {peak / 1024:7.1f} MiB ({seconds:.0f} s)", flush=True)
    print(f"largest / smallest = {max(peaks) / min(peaks):.3f} (goal: at most 1.10)")


if __name__ == "__main__":
    main()
