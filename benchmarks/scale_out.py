"""The Ray engine on one machine: a Ray head of 1 CPU, then of 2 CPUs, against the local engine (issue: Ray).

    python benchmarks/scale_out.py [--photos 200] [--folder DIR] [--model ViT-B-32 --pretrained none]

Each run is a whole ``clipsort index --engine ray --address auto`` in a fresh process, over
the same photos, with a new cache, joining a Ray head started beforehand with ``ray start
--head --num-cpus N`` (so Ray's own start-up is not counted, as on a cluster that is already
up). Prints seconds, images/s and the ratio of 2 CPUs to 1; the local engine's whole command
is timed beside it. Photos are built as benchmarks/throughput.py builds them (8-12 MP JPEGs).
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
        local = index(folder, Path(tmp) / "local.sqlite3", args, [])
        print(f"local engine   {local:6.1f} s  {count / local:5.1f} img/s (whole command)", flush=True)
        rates = {}
        for cpus in [int(c) for c in args.cpus.split(",")]:
            subprocess.run(
                [ray_cli, "start", "--head", f"--num-cpus={cpus}", "--include-dashboard=false"],
                check=True,
                capture_output=True,
            )
            try:
                engine = ["--engine", "ray", "--address", "auto"]
                seconds = index(folder, Path(tmp) / f"ray-{cpus}.sqlite3", args, engine)
            finally:
                subprocess.run([ray_cli, "stop", "--force"], check=True, capture_output=True)
            rates[cpus] = count / seconds
            print(
                f"ray, {cpus} CPU{'s' if cpus != 1 else ' '}    {seconds:6.1f} s  {rates[cpus]:5.1f} img/s"
                " (whole command, joining a running head)",
                flush=True,
            )
        if 1 in rates and 2 in rates:
            print(
                f"2 CPUs / 1 CPU: {rates[2] / rates[1]:.2f}x;"
                f" ray with 2 CPUs / local engine: {rates[2] * local / count:.2f}x"
            )


if __name__ == "__main__":
    main()
