"""Indexing throughput on 8-12 MP JPEGs, side by side, in one run (issue: throughput).

    python benchmarks/throughput.py [--photos 200] [--folder DIR] [--model ViT-B-32 --pretrained none]
    python benchmarks/throughput.py --device cuda --batch-size 256 --photos 2000

Prints, for the same photos on this machine:

* naive:     sequential full-size decode + open_clip preprocessing + fp32 model, batch 32
             (what a straightforward script does);
* clipsort:  ``clipsort index`` (draft decoding, decode threads ahead of the model,
             precision auto), model loading excluded, then the whole command with it;
* ceiling:   the model alone on ready tensors, same precision and batch size as clipsort;
* decode:    clipsort's decode pool alone (read, decode, orient, prepare; no model): the CPU
             threads alone, and on CUDA the GPU's JPEG decoder (nvJPEG) alone and both at once;
* cached:    a second ``clipsort index`` over the same photos;
* peak RSS of the clipsort command (and on CUDA its peak GPU memory, torch's reserved bytes);
* rclip:     when ``--rclip PATH`` is given (rclip >= 4, installed in a Python 3.12
             venv), rclip indexing the same folder with random-weight stand-ins of its
             model (benchmarks/rclip_standin.py).

Whole commands (clipsort index, rclip) are also timed on a subset of the photos: the
difference gives each tool's marginal rate, start-up excluded, which is what a large
library sees.

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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "exif-samples" / "jpg"
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]


def build(folder: Path, count: int) -> None:
    """``count`` photos of 8-12 MP, built on every core (2,000 take a minute on 16)."""
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max(1, min(os.cpu_count() or 1, 32))) as pool:
        list(pool.map(build_one, [folder] * count, range(count), chunksize=8))


def build_one(folder: Path, i: int) -> None:
    from shapes import make_picture

    rng = random.Random(11 * 100_003 + i)
    sources = sorted(p for p in CORPUS.rglob("*.jpg") if p.stat().st_size > 150_000) if CORPUS.is_dir() else []
    megapixels = rng.uniform(8.0, 12.0) * 1e6
    width = int((megapixels * 4 / 3) ** 0.5)
    height = int(megapixels / width)
    if sources:
        with Image.open(sources[i % len(sources)]) as source:
            picture = ImageOps.exif_transpose(source).convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
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


def naive(photos: list[Path], model_name: str, pretrained: str | None, batch: int, device: str) -> float:
    import open_clip
    import torch

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(photos), batch):
            tensors = []
            for path in photos[first : first + batch]:
                with Image.open(path) as image:
                    tensors.append(preprocess(ImageOps.exif_transpose(image).convert("RGB")))
            model.encode_image(torch.stack(tensors).to(device)).cpu()
    return len(photos) / (time.perf_counter() - start)


def decode_rate(photos: list[Path], model, device: str, workers: int, decoder=None, cpu_jpegs: bool = True):
    """(images/s, share decoded by ``decoder``) of clipsort's decode pool alone, no model: each
    photo read, decoded, turned upright and prepared for the model, as an index does it. With
    ``decoder`` (the device's JPEG decoder) beside the CPU threads; ``cpu_jpegs=False`` leaves
    every JPEG to it."""
    from clipsort.model.embed import Embedder
    from clipsort.photos.discover import ImageRef
    from clipsort.run.decode_pool import DecodePool

    embedder = Embedder(model.spec, device, None, model.precision, loader=lambda *a: model)
    embedder.model()
    refs = [ImageRef(p, p.stat().st_size, p.stat().st_mtime_ns) for p in photos]
    start = time.perf_counter()
    with DecodePool(embedder, workers, cpu_takes_jpegs=cpu_jpegs) as pool:
        if decoder is not None:
            pool.start_device_decoder(decoder)
        futures = [pool.submit(ref) for ref in refs]
        for future in futures:
            future.result()
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return len(photos) / elapsed, pool.on_device / max(1, pool.on_device + pool.on_cpu)


def transfer_only(model, batch: int, batches: int = 20) -> float | None:
    """Images/s of pinned uint8 batches copied to a CUDA device; None elsewhere."""
    import torch

    if not model.device.startswith("cuda"):
        return None
    pixels = torch.randint(0, 256, (batch, 3, model.image_size, model.image_size), dtype=torch.uint8)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        pixels.pin_memory().to(model.device, non_blocking=True)
    torch.cuda.synchronize()
    return batch * batches / (time.perf_counter() - start)


class BusyClock:
    """Time spent inside the model's encode calls (they end by copying the result to the host)."""

    def __init__(self, model) -> None:
        self.seconds = 0.0
        self._encode = model.encode_prepared
        model.encode_prepared = self._timed

    def _timed(self, batch):
        start = time.perf_counter()
        try:
            return self._encode(batch)
        finally:
            self.seconds += time.perf_counter() - start


def ceiling(model, batch: int, batches: int = 4) -> float:
    """Images/s of the model alone on prepared pixels (whichever runtime: each prepares its own)."""
    rng = np.random.default_rng(0)
    pixels = [
        model.prepare(Image.fromarray(rng.integers(0, 256, (model.image_size, model.image_size, 3), dtype=np.uint8)))
        for _ in range(batch)
    ]
    model.encode_prepared(pixels)  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        model.encode_prepared(pixels)
    return batch * batches / (time.perf_counter() - start)


def subset(folder: Path, photos: list[Path], count: int, where: Path) -> Path:
    """A folder of the first ``count`` photos (hard links), for the marginal rate of whole commands."""
    where.mkdir()
    for photo in photos[:count]:
        try:
            os.link(photo, where / photo.name)
        except OSError:
            shutil.copyfile(photo, where / photo.name)
    return where


def clipsort_command(folder: Path, args: argparse.Namespace, precision: str, cache: Path) -> tuple[float, float, float]:
    """(seconds, peak RSS in MiB, peak GPU memory in MiB) of a whole ``clipsort index`` over
    ``folder``, in a fresh process."""
    gpu_flag = {None: "", True: ", '--gpu-decode'", False: ", '--no-gpu-decode'"}[args.gpu_decode]
    script = (
        "import resource, sys\nfrom clipsort.cli import run\ntry:\n"
        f"    run(['index', {str(folder)!r}, '--model', {args.model!r}, '--pretrained', {args.pretrained!r},"
        f" '--precision', {precision!r}, '--batch-size', '{args.batch_size}', '--quiet', '--device', {args.device!r},"
        f" '--cache', {str(cache)!r}{gpu_flag}])\n"
        "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
        # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child of this (large) process would
        # report this process's peak.
        "status = open('/proc/self/status').read().split('VmHWM:')\n"
        "print(int(status[1].split()[0]) if len(status) > 1 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "torch = sys.modules.get('torch')\n"
        "print(torch.cuda.max_memory_reserved() if torch is not None and torch.cuda.is_initialized() else 0)\n"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - start
    rss, gpu = out.strip().splitlines()[-2:]
    return elapsed, int(rss) / 1024, int(gpu) / 2**20


def rclip_command(folder: Path, rclip: str, datadir: Path) -> float:
    """Seconds for rclip to index ``folder`` from scratch (its index is deleted first) and answer a query."""
    for stale in datadir.glob("db.sqlite3*"):
        stale.unlink()
    env = dict(os.environ, RCLIP_DATADIR=str(datadir), HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    subprocess.run([rclip, "-f", "a photo"], cwd=folder, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--folder", type=Path, help="use these photos instead of building them")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--precision", default="auto", help="one or more, comma-separated: auto,fp32,bf16")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--gpu-decode",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="JPEGs decoded by the model's device too (default: on CUDA); on a CPU with a torch"
        " model, --gpu-decode runs the same path on CPU tensors",
    )
    parser.add_argument("--naive-photos", type=int, default=64, help="photos for the (slow) naive baseline")
    parser.add_argument("--subset", type=int, default=40, help="photos of the small run for marginal rates")
    parser.add_argument(
        "--rclip",
        help="rclip's executable (rclip >= 4 in a Python 3.12 venv); it is given random-weight stand-ins"
        " of its model built by benchmarks/rclip_standin.py (needs the onnx package here)",
    )
    args = parser.parse_args()
    # Measure clipsort as an installed copy runs: with its modules' compiled bytecode, which pip
    # writes at install time (an environment that forbids writing it recompiles every module of
    # every process: 0.1 s of each start here).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

    import clipsort.model.devices  # noqa: F401 - before torch, as in the command (it sets how OpenMP threads wait)
    from clipsort.model.embed import Embedder
    from clipsort.model.model_spec import parse_spec
    from clipsort.run.engine_local import default_workers
    from clipsort.run.events import RunOptions
    from clipsort.run.pipeline import run_index
    from clipsort.store.cache import EmbeddingCache

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
        small = subset(folder, photos, args.subset, Path(tmp) / "subset")
        pretrained = None if args.pretrained == "none" else args.pretrained
        for photo in photos:  # every contender reads from the page cache
            photo.read_bytes()

        rate_naive = naive(photos[: args.naive_photos], args.model, pretrained, args.batch_size, args.device)
        print(
            f"naive     {rate_naive:6.1f} img/s  (fp32, full-size sequential decode, {args.naive_photos} photos)",
            flush=True,
        )

        spec = parse_spec(args.model, args.pretrained)
        precisions = args.precision.split(",")
        args.precision = precisions[0]
        results: dict[str, tuple[float, float, float, float]] = {}
        for precision in precisions:
            with EmbeddingCache(Path(tmp) / f"cache-{precision}.sqlite3") as cache:
                embedder = Embedder(spec, args.device, cache, precision)
                model = embedder.model()
                workers = args.workers or default_workers(model.device)
                if precision == args.precision:
                    sample = photos[:400]
                    decoder = model.jpeg_decoder() if hasattr(model, "jpeg_decoder") else "ONNX Runtime decodes nothing"
                    use_decoder = not isinstance(decoder, str) and (args.gpu_decode or model.device.startswith("cuda"))
                    cpu_rate, _ = decode_rate(sample, model, args.device, workers)
                    print(
                        f"decode    {cpu_rate:6.1f} img/s  ({workers} CPU decode threads alone, no model,"
                        f" {len(sample)} photos)",
                        flush=True,
                    )
                    decode_best = cpu_rate
                    if use_decoder:
                        alone, _ = decode_rate(sample, model, args.device, workers, decoder, cpu_jpegs=False)
                        print(f"decode    {alone:6.1f} img/s  ({model.device} JPEG decoder alone)", flush=True)
                        both, share = decode_rate(sample, model, args.device, workers, decoder)
                        print(
                            f"decode    {both:6.1f} img/s  (both at once: {share:.0%} on {model.device},"
                            f" the rest on {workers} CPU threads)",
                            flush=True,
                        )
                        decode_best = max(both, alone)
                    elif model.device.startswith("cuda"):
                        print(f"decode    no GPU decoding: {decoder}", flush=True)
                    transfer = transfer_only(model, args.batch_size)
                    if transfer is not None:
                        print(f"transfer  {transfer:6.0f} img/s  (pinned uint8 batches to {model.device})", flush=True)
                    if model.device.startswith("cuda"):
                        import torch

                        torch.cuda.reset_peak_memory_stats()
                before = ceiling(model, args.batch_size)
                run = RunOptions(batch_size=args.batch_size, workers=args.workers, gpu_decode=args.gpu_decode)
                start = time.perf_counter()
                clock = BusyClock(model)
                report = run_index([folder], embedder, run)
                elapsed = time.perf_counter() - start
                rate = report.embedded / elapsed
                busy = clock.seconds / elapsed
                rate_ceiling = max(before, ceiling(model, args.batch_size))
                label = model.precision
                print(
                    f"ceiling   {rate_ceiling:6.1f} img/s  (model alone on ready uint8 batches, {label},"
                    f" batch {args.batch_size}, {model.threads} threads; best of before and after)",
                    flush=True,
                )
                gpu_peak = ""
                if model.device.startswith("cuda"):
                    import torch

                    gpu_peak = f"; GPU peak {torch.cuda.max_memory_reserved() / 2**20:.0f} MiB"
                print(
                    f"clipsort  {rate:6.1f} img/s  ({label}, {len(photos)} photos, model loaded beforehand;"
                    f" model busy {busy:.0%} of the time{gpu_peak})",
                    flush=True,
                )
                for note in report.notes:
                    print(f"          {note}", flush=True)
                if precision == args.precision:
                    start = time.perf_counter()
                    again = run_index([folder], Embedder(spec, args.device, cache, precision), run)
                    cached = again.cached / (time.perf_counter() - start)
                    print(f"cached    {cached:6.0f} img/s  (second run, {again.cached} from the cache)", flush=True)
                del embedder, model

            whole, rss, gpu_memory = clipsort_command(folder, args, precision, Path(tmp) / f"cli-{precision}.sqlite3")
            part, _, _ = clipsort_command(small, args, precision, Path(tmp) / f"cli-small-{precision}.sqlite3")
            marginal = (len(photos) - args.subset) / (whole - part)
            print(
                f"command   {len(photos) / whole:6.1f} img/s  (whole `clipsort index --precision {precision}`,"
                f" start-up included: {whole:.1f} s), {marginal:.1f} img/s marginal ({args.subset} vs"
                f" {len(photos)} photos), peak RSS {rss:.0f} MiB"
                + (f", GPU peak {gpu_memory:.0f} MiB" if gpu_memory else ""),
                flush=True,
            )
            results[label] = (rate, rate_ceiling, marginal, whole)
            if precision == args.precision:
                slowest = min(("decode", decode_best), ("model", rate_ceiling), key=lambda pair: pair[1])
                if transfer is not None and transfer < slowest[1]:
                    slowest = ("transfer", transfer)
                print(f"bottleneck: {slowest[0]} ({slowest[1]:.1f} img/s alone)", flush=True)
                if args.device == "cpu":
                    # Decode and model share the same cores: their times add up.
                    bound = 1 / (1 / cpu_rate + 1 / rate_ceiling)
                    print(
                        f"shared-core bound {bound:.1f} img/s = 1 / (1/decode + 1/ceiling), {bound / rate_ceiling:.0%}"
                        f" of the ceiling; clipsort reached {rate / bound:.0%} of it",
                        flush=True,
                    )

        rclip_marginal = rclip_whole = None
        if args.rclip:
            from rclip_standin import build as build_standin

            datadir = Path(tmp) / "rclip-data"
            build_standin(datadir)
            rclip_time = rclip_command(folder, args.rclip, datadir)
            rclip_part = rclip_command(small, args.rclip, datadir)
            rclip_whole = len(photos) / rclip_time
            rclip_marginal = (len(photos) - args.subset) / (rclip_time - rclip_part)
            print(
                f"rclip     {rclip_whole:6.1f} img/s  (whole `rclip -f`, start-up included: {rclip_time:.1f} s),"
                f" {rclip_marginal:.1f} img/s marginal; ViT-B-32-256 fp32 on ONNX Runtime, random-weight stand-in"
            )
        else:
            print("rclip     not measured (pass --rclip PATH)")

        print()
        for label, (rate, rate_ceiling, marginal, whole) in results.items():
            print(
                f"{label}: clipsort / naive = {rate / rate_naive:.1f}x (goal 4x),"
                f" clipsort / ceiling = {rate / rate_ceiling:.0%} (goal 85%)"
            )
            if rclip_marginal and rclip_whole:
                print(
                    f"{label}: clipsort / rclip = {marginal / rclip_marginal:.1f}x marginal, "
                    f"{len(photos) / whole / rclip_whole:.2f}x whole commands on {len(photos)} photos"
                    " (goals: 1.8x on 200, 2x on 1,000)"
                )


if __name__ == "__main__":
    main()
