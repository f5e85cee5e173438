"""The Ray engine on one machine: a Ray head of 1 CPU, then of 2 CPUs, against the local engine (issue: Ray).

    python benchmarks/scale_out.py [--photos 200] [--folder DIR] [--model ViT-B-32 --pretrained none]

Each run is a whole ``clipsort index --engine ray --address auto`` in a fresh process, over
the same photos, with a new cache, joining a Ray head started beforehand with ``ray start
--head --num-cpus N`` (so the head's own start-up is not counted, as on a cluster that is
already up). Each is timed on all the photos and on a subset: the difference gives the
marginal rate (what a large library sees) and the fixed start-up. The local engine's whole
commands are timed the same way beside them. Ray's CPU count limits how many tasks it runs
at once; it does not pin them: on a 2-core machine both heads use both cores. Photos are
built as benchmarks/throughput.py builds them (8-12 MP JPEGs).
Needs the ray extra.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]


def index(folder: Path, cache: Path, args: argparse.Namespace, engine: list[str]) -> float:
    command = [
        sys.executable,
        "-m",
        "clipsort",
        "index",
        str(folder),
        "--model",
        args.model,
        "--pretrained",
        args.pretrained,
        "--cache",
        str(cache),
        "--quiet",
        *engine,
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--folder", type=Path, help="use these photos instead of building them")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--cpus", default="1,2", help="the Ray head's CPUs, one run each")
    parser.add_argument("--subset", type=int, default=40, help="photos of the small run, for marginal rates")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="clipsort-scale-") as tmp:
        folder = args.folder or Path(tmp) / "photos"
        if args.folder is None:
            from throughput import build

            build(folder, args.photos)
        count = sum(1 for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        for photo in folder.rglob("*"):
            if photo.is_file():
                photo.read_bytes()  # every run reads from the page cache
        # The fast runtime's artifact is built once, before anything is timed.
        index(folder, Path(tmp) / "warm.sqlite3", args, [])
        small = Path(tmp) / "subset"
        small.mkdir()
        photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        for photo in photos[: args.subset]:
            os.link(photo, small / photo.name)

        def timed(label: str, engine: list[str]) -> float:
            whole = index(folder, Path(tmp) / f"{label}-all.sqlite3", args, engine)
            part = index(small, Path(tmp) / f"{label}-part.sqlite3", args, engine)
            marginal = (count - args.subset) / (whole - part)
            print(
                f"{label:13} {whole:6.1f} s whole ({count / whole:5.1f} img/s), {part:5.1f} s for {args.subset};"
                f" {marginal:5.1f} img/s marginal, start-up {whole - count / marginal:4.1f} s",
                flush=True,
            )
            return marginal

        local = timed("local engine", [])
        rates = {}
        for cpus in [int(c) for c in args.cpus.split(",")]:
            subprocess.run(
                [ray_cli, "start", "--head", f"--num-cpus={cpus}", "--include-dashboard=false"],
                check=True,
                capture_output=True,
            )
            try:
                label = f"ray, {cpus} CPU{'s' if cpus != 1 else ''}"
                rates[cpus] = timed(label, ["--engine", "ray", "--address", "auto"])
            finally:
                subprocess.run([ray_cli, "stop", "--force"], check=True, capture_output=True)
        if 1 in rates and 2 in rates:
            print(
                f"marginal rates: 2 CPUs / 1 CPU {rates[2] / rates[1]:.2f}x;"
                f" ray with 2 CPUs / local engine {rates[2] / local:.2f}x"
            )


if __name__ == "__main__":
    main()
