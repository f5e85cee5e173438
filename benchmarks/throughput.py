"""Indexing throughput on 8-12 MP JPEGs, side by side, in one run (issue: throughput).

    python benchmarks/throughput.py [--photos 200] [--folder DIR] [--model ViT-B-32 --pretrained none]

Prints, for the same photos on this machine:

* naive:     sequential full-size decode + open_clip preprocessing + fp32 model, batch 32
             (what a straightforward script does);
* clipsort:  ``clipsort index`` (draft decoding, decode threads ahead of the model,
             precision auto), model loading excluded, then the whole command with it;
* ceiling:   the model alone on ready tensors, same precision and batch size as clipsort;
* cached:    a second ``clipsort index`` over the same photos;
* peak RSS of the clipsort command;
* rclip:     when ``--rclip CMD`` is given (rclip >= 4 needs Python 3.12 and its model
             files), the wall time of ``CMD`` indexing the same folder.

Photos are built from the large photos of ../shared/corpus/exif-samples when present
(scaled to 8-12 MP, light noise so they do not compress unrealistically well, some
stored rotated with an EXIF orientation tag), else from synthetic pictures.
The default model is ViT-B-32 with random weights (the same speed as the real one).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "exif-samples" / "jpg"
sys.path.insert(0, str(ROOT / "tests"))


def build(folder: Path, count: int) -> None:
    from shapes import make_picture

    rng = random.Random(11)
    sources = sorted(p for p in CORPUS.rglob("*.jpg") if p.stat().st_size > 150_000) if CORPUS.is_dir() else []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        megapixels = rng.uniform(8.0, 12.0) * 1e6
        width = int((megapixels * 4 / 3) ** 0.5)
        height = int(megapixels / width)
        if sources:
            with Image.open(sources[i % len(sources)]) as source:
                picture = (
                    ImageOps.exif_transpose(source).convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
                )
        else:
            picture = make_picture(rng.choice(["red", "green", "blue"]), (width, height), rng)
        noise = np.random.default_rng(i).integers(-6, 7, size=(height, width, 1), dtype=np.int16)
        picture = Image.fromarray(np.clip(np.asarray(picture, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
        orientation = rng.choice([1, 1, 1, 6, 8, 3])
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}
        if orientation in stored:
            picture = picture.transpose(stored[orientation])
        picture.save(folder / f"IMG_{i:04d}.jpg", quality=90, exif=exif.tobytes())


def naive(photos: list[Path], model_name: str, pretrained: str | None, batch: int) -> float:
    import open_clip
    import torch

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(photos), batch):
            tensors = []
            for path in photos[first : first + batch]:
                with Image.open(path) as image:
                    tensors.append(preprocess(ImageOps.exif_transpose(image).convert("RGB")))
            model.encode_image(torch.stack(tensors))
    return len(photos) / (time.perf_counter() - start)


def ceiling(model, batch: int, batches: int = 4) -> float:
    import torch

    pixels = torch.randn(batch, 3, model.image_size, model.image_size)
    model.encode_prepared(list(pixels))  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        model.encode_prepared(list(pixels))
    return batch * batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--folder", type=Path, help="use these photos instead of building them")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--naive-photos", type=int, default=64, help="photos for the (slow) naive baseline")
    parser.add_argument("--rclip", help="command that makes rclip index the folder, run with the folder as cwd")
    args = parser.parse_args()

    from clipsort.cache import EmbeddingCache
    from clipsort.embed import Embedder
    from clipsort.model import parse_spec
    from clipsort.pipeline import RunOptions, run_index

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="clipsort-throughput-") as tmp:
        folder = args.folder or Path(tmp) / "photos"
        if args.folder is None:
            start = time.perf_counter()
            build(folder, args.photos)
            print(f"built {args.photos} JPEGs of 8-12 MP in {time.perf_counter() - start:.0f} s", flush=True)
        photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        pretrained = None if args.pretrained == "none" else args.pretrained

        rate_naive = naive(photos[: args.naive_photos], args.model, pretrained, args.batch_size)
        print(
            f"naive     {rate_naive:6.1f} img/s  (fp32, full-size sequential decode, {args.naive_photos} photos)",
            flush=True,
        )

        spec = parse_spec(args.model, args.pretrained)
        with EmbeddingCache(Path(tmp) / "cache.sqlite3") as cache:
            embedder = Embedder(spec, "cpu", cache, args.precision)
            model = embedder.model()
            rate_ceiling = ceiling(model, args.batch_size)
            print(
                f"ceiling   {rate_ceiling:6.1f} img/s  (model alone, {model.precision}, batch {args.batch_size})",
                flush=True,
            )
            run = RunOptions(batch_size=args.batch_size, workers=args.workers)
            start = time.perf_counter()
            report = run_index([folder], embedder, run)
            rate = report.embedded / (time.perf_counter() - start)
            print(
                f"clipsort  {rate:6.1f} img/s  ({model.precision}, {len(photos)} photos, model loaded beforehand)",
                flush=True,
            )
            start = time.perf_counter()
            again = run_index([folder], Embedder(spec, "cpu", cache, args.precision), run)
            cached = again.cached / (time.perf_counter() - start)
            print(f"cached    {cached:6.0f} img/s  (second run, {again.cached} from the cache)", flush=True)

        script = (
            "import resource, sys\nfrom clipsort.cli import main\ntry:\n"
            f"    main(['index', {str(folder)!r}, '--model', {args.model!r}, '--pretrained', {args.pretrained!r},"
            f" '--precision', {args.precision!r}, '--batch-size', '{args.batch_size}', '--quiet',"
            f" '--cache', {str(Path(tmp) / 'cli.sqlite3')!r}])\n"
            "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        )
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
        whole = time.perf_counter() - start
        peak = int(out.strip().splitlines()[-1]) / 1024
        print(
            f"command   {len(photos) / whole:6.1f} img/s  (clipsort index, whole command with start-up),"
            f" peak RSS {peak:.0f} MiB"
        )

        if args.rclip:
            start = time.perf_counter()
            subprocess.run(shlex.split(args.rclip), cwd=folder, check=True, capture_output=True)
            rclip = len(photos) / (time.perf_counter() - start)
            print(f"rclip     {rclip:6.1f} img/s  (whole command)")
        else:
            print("rclip     not measured here (pass --rclip); PEERS.md reports 12.6 img/s on this CPU")

        print(
            f"\nclipsort / naive = {rate / rate_naive:.1f}x (goal 4x); clipsort / ceiling = {rate / rate_ceiling:.0%} "
            f"(goal 85%); clipsort / rclip 12.6 = {rate / 12.6:.1f}x (goal 2x)"
        )


if __name__ == "__main__":
    main()
