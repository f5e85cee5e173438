"""What a video clip costs beside a photo, on this machine, in one run (issue 29, item 5).

    python benchmarks/video.py [--photos 10] [--seconds 60] [--whole-runs 4]

Builds, with PyAV (nothing is downloaded):

* a phone's clip: ``--seconds`` of 1080p at 30 frames a second, H.264, a keyframe every second
  (as phones write them), moving coloured shapes;
* a camera's 4K clip: 10 s of 3840x2160 HEVC at 24 frames a second, a keyframe every 2 s;
* a clip with one keyframe: 20 s of 1080p H.264 whose only keyframe is its first;

and ``--photos`` JPEGs of 8-12 MP (as benchmarks/throughput.py builds them). Then, each the
median of 3: reading a clip's frames (``clipsort.photos.video.read_clip`` at ViT-B-32's size:
seeks, decoding, scaling, turning) against decoding one photo (``clipsort.photos.decode``'s
``load_image`` at the same size), and the frames' embedding against one photo's (ViT-B-32 with
random weights on the int8 fast runtime, the default CPU run). A clip's whole cost is its
reading plus its frames' embedding; it is printed in photos' worth (a photo's decoding plus its
embedding). ``--whole-runs N`` then times whole ``clipsort index`` processes over N phone clips
and over N of the photos, the clips now read, embedded and cached by the pipeline as in a user's
run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks"), str(ROOT)]


def make_clip(path: Path, seconds: float, size: tuple[int, int], codec: str, rate: int, keyint: int) -> Path:
    """Moving coloured discs on a gradient: content that compresses like a real scene, not a flat colour."""
    import av

    out = av.open(str(path), "w")
    out.metadata["creation_time"] = "2024-05-01T10:00:00.000000Z"
    options = {"g": str(keyint), "keyint_min": str(keyint), "preset": "ultrafast"}
    if codec == "libx265":
        options = {"preset": "ultrafast", "x265-params": f"keyint={keyint}:min-keyint={keyint}:log-level=none"}
    stream = out.add_stream(codec, rate=rate, options=options)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    background = np.stack([xs * 255 // width, ys * 255 // height, np.full_like(xs, 90)], axis=-1).astype(np.uint8)
    for i in range(int(seconds * rate)):
        pixels = background.copy()
        for k, colour in enumerate(((230, 40, 40), (40, 230, 40), (40, 40, 230))):
            cx = int((0.2 + 0.3 * k + 0.1 * np.sin(i / rate + k)) * width)
            cy = int((0.5 + 0.3 * np.cos(i / rate * 0.7 + k)) * height)
            r = height // 8
            y0, y1, x0, x1 = max(cy - r, 0), min(cy + r, height), max(cx - r, 0), min(cx + r, width)
            pixels[y0:y1, x0:x1] = colour
        for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


def median_seconds(work: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--whole-runs",
        type=int,
        default=0,
        metavar="N",
        help="also time clipsort index over N phone clips and N photos (processes of their own)",
    )
    args = parser.parse_args()
    from startup import MODEL_FOLDER
    from throughput import build

    from clipsort.photos.decode import load_image
    from clipsort.photos.video import read_clip

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="clipsort-video-") as tmp_name:
        tmp = Path(tmp_name)
        start = time.perf_counter()
        clips = {
            f"phone 1080p H.264, {args.seconds:.0f} s": make_clip(
                tmp / "phone.mp4", args.seconds, (1920, 1080), "libx264", 30, 30
            ),
            "camera 4K HEVC, 10 s": make_clip(tmp / "camera.mov", 10, (3840, 2160), "libx265", 24, 48),
            "one keyframe, 1080p H.264, 20 s": make_clip(tmp / "one.mp4", 20, (1920, 1080), "libx264", 30, 100_000),
        }
        build(tmp / "photos", args.photos)
        photos = sorted((tmp / "photos").glob("*.jpg"))
        print(f"built the clips and {len(photos)} photos of 8-12 MP in {time.perf_counter() - start:.0f} s")
        model = tmp / "model"
        subprocess.run([sys.executable, "-c", MODEL_FOLDER, str(model)], check=True, capture_output=True)
        os.environ["CLIPSORT_CACHE_DIR"] = str(tmp / "cache")
        from clipsort.model.loading import load_model
        from clipsort.model.model_spec import parse_spec

        clip_model = load_model(parse_spec(f"local-dir:{model}"), "cpu", "int8")
        side = clip_model.min_side
        decode_one = median_seconds(lambda: [load_image(p, side) for p in photos]) / len(photos)
        picture = load_image(photos[0], side)
        clip_model.encode_images([picture] * 8)  # warm
        embed_one = median_seconds(lambda: clip_model.encode_images([picture] * 8)) / 8
        photo = decode_one + embed_one
        print(f"\none photo: decoding {decode_one * 1000:.0f} ms + embedding {embed_one * 1000:.0f} ms")
        print(f"{'clip':34s} {'frames':>6s} {'reading':>9s} {'embedding':>10s} {'in photos':>10s}")
        for name, path in clips.items():
            frames = len(read_clip(path, side).frames)
            reading = median_seconds(lambda path=path: read_clip(path, side))
            embedding = frames * embed_one
            size = path.stat().st_size / 1e6
            print(
                f"{name:34s} {frames:6d} {reading * 1000:7.0f} ms {embedding * 1000:8.0f} ms "
                f"{(reading + embedding) / photo:10.1f}   ({size:.0f} MB)"
            )
        if args.whole_runs:
            whole_runs(tmp, model, photos, args.seconds, args.whole_runs)


def whole_runs(tmp: Path, model: Path, photos: list[Path], seconds: float, count: int) -> None:
    """``clipsort index`` in a process of its own, nothing cached but the prepared model: ``count``
    phone clips against as many photos (each the median of 3), less a run over one photo (the
    start, the model's load): what one more clip and one more photo cost in a whole run."""
    folders = {"clips": tmp / "whole-clips", "photos": tmp / "whole-photos", "one photo": tmp / "whole-one"}
    folders["clips"].mkdir()
    for i in range(count):
        make_clip(folders["clips"] / f"phone {i}.mp4", seconds, (1920, 1080), "libx264", 30 + i, 30)
    folders["photos"].mkdir()
    for photo in photos[:count]:
        (folders["photos"] / photo.name).symlink_to(photo)
    folders["one photo"].mkdir()
    (folders["one photo"] / photos[0].name).symlink_to(photos[0])
    command = [str(Path(sys.executable).with_name("clipsort")), "index", "--model", f"local-dir:{model}", "--quiet"]

    def run(folder: Path) -> None:
        shutil.rmtree(tmp / "whole-cache", ignore_errors=True)
        (tmp / "whole-cache").mkdir()
        shutil.copytree(tmp / "cache" / "runtime", tmp / "whole-cache" / "runtime")  # the prepared model
        env = {**os.environ, "CLIPSORT_CACHE_DIR": str(tmp / "whole-cache")}
        subprocess.run([*command, str(folder)], check=True, env=env, capture_output=True)

    run(folders["one photo"])  # prepares the model once, kept in the runtime folder
    shutil.copytree(tmp / "whole-cache" / "runtime", tmp / "cache" / "runtime", dirs_exist_ok=True)
    times = {name: median_seconds(lambda folder=folder: run(folder)) for name, folder in folders.items()}
    base = times["one photo"]
    photo = (times["photos"] - base) / max(count - 1, 1)
    clip = (times["clips"] - (base - photo)) / count  # the start without its one photo
    print(
        f"\nwhole runs (clipsort index, {count} of each, medians of 3): one photo {base:.2f} s, "
        f"{count} clips {times['clips']:.2f} s, {count} photos {times['photos']:.2f} s"
    )
    print(
        f"one more clip {clip * 1000:.0f} ms, one more photo {photo * 1000:.0f} ms:"
        f" a clip costs {clip / photo:.1f} photos"
    )


if __name__ == "__main__":
    main()
