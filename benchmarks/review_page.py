"""The review page at scale, and what ``--review`` adds to a sort.

    python benchmarks/review_page.py [--photos 10000] [--run-photos 400] [--chromium /usr/bin/chromium]

1. A library of ``--photos`` JPEGs (640x480, several colours, some stored sideways by EXIF), then
   ``clipsort sort --dry-run --review`` over it as a whole process (the tiny trained model of
   tests/models, so that the page, not the model, is what is measured; its own cache). Prints the
   page's size (the HTML, the thumbnail folder, and both per photo), then opens the page in
   Chromium (headless, through Playwright) five times and prints the medians of the first paint,
   the first contentful paint and the time until the page's script is ready, and the thumbnails
   the browser fetched at first (only those near the screen: the rest load as they scroll in).
2. The cost of the page in a run: ``sort --dry-run`` over ``--run-photos`` photos with and without
   ``--review``, each with a fresh cache (every photo decoded), alternating, three times each
   (medians); and once more with the cache warm (every vector cached: each thumbnail decodes its
   photo, small). A random-weight model as small as the test model but with ViT-B-32's 224-pixel
   input (made in the work folder), so that photos are decoded at a real model's size and the
   thumbnails come from that decode (the run's summary says how many: printed). Prints the
   seconds and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]
MODEL = ROOT / "tests" / "models" / "tiny-colours"
COLOURS = {
    "red": (200, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 40, 200),
    "yellow": (230, 220, 40),
    "purple": (130, 40, 160),
}


def make_library(folder: Path, count: int) -> None:
    from PIL import Image, ImageDraw

    existing = sum(1 for _ in folder.rglob("*.jpg")) if folder.exists() else 0
    rng = random.Random(27)
    for i in range(existing, count):
        colour = list(COLOURS.values())[i % len(COLOURS)]
        picture = Image.new("RGB", (640, 480), tuple(rng.randint(200, 255) for _ in range(3)))
        draw = ImageDraw.Draw(picture)
        x, y = rng.randint(0, 400), rng.randint(0, 260)
        draw.ellipse((x, y, x + rng.randint(80, 240), y + rng.randint(80, 220)), fill=colour)
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        exif = Image.Exif()
        exif[0x0112] = 6 if i % 10 == 0 else 1
        stored = picture.transpose(Image.Transpose.ROTATE_90) if i % 10 == 0 else picture
        stored.save(sub / f"IMG_{i:05d}.jpg", "JPEG", quality=85, exif=exif.tobytes())


NOTES: list[str] = []


def clipsort(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "clipsort", *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"clipsort {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    NOTES[:] = [line for line in done.stderr.splitlines() if "thumbnails" in line]
    return elapsed


def model_224(folder: Path) -> Path:
    """A random-weight CLIP as small as the test model but with a 224-pixel input, as ViT-B-32's:
    photos are decoded at the size a real model decodes them (the test model's 48 pixels are too
    small for a thumbnail, so its photos are decoded again for the page)."""
    if (folder / "open_clip_config.json").exists():
        return folder
    from conftest import write_random_model

    return write_random_model(folder, image_size=224, patch_size=32)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def paint_times(page: Path, chromium: str, runs: int = 5) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    figures: dict[str, list[float]] = {"first-paint": [], "first-contentful-paint": [], "ready": [], "images": []}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for _ in range(runs):
            tab = browser.new_page(viewport={"width": 1440, "height": 900})
            fetched: list[str] = []
            tab.on("request", lambda request, fetched=fetched: fetched.append(request.url))
            tab.goto(page.as_uri(), wait_until="commit")
            tab.wait_for_selector("body[data-ready]", timeout=60_000)
            tab.wait_for_timeout(300)
            paints = tab.evaluate(
                """() => Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]))"""
            )
            ready = float(tab.get_attribute("body", "data-ready-ms") or "nan")  # set by the page's script
            for name in ("first-paint", "first-contentful-paint"):
                figures[name].append(paints.get(name, float("nan")) / 1000)
            figures["ready"].append(ready / 1000)
            figures["images"].append(sum(1 for url in fetched if url.endswith(".jpg")))
            tab.close()
        browser.close()
    return {name: statistics.median(values) for name, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--run-photos", type=int, default=400)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "clipsort-review-bench")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    options = parser.parse_args()
    work = options.folder
    library = work / f"library-{options.photos}"
    print(f"making {options.photos} photos in {library} ...", flush=True)
    make_library(library, options.photos)
    labels = work / "labels.txt"
    labels.write_text("\n".join(COLOURS) + "\n", encoding="utf-8")
    env = {**os.environ, "CLIPSORT_CACHE_DIR": str(work / "cache"), "CLIPSORT_DATA_DIR": str(work / "data")}
    model = ["--model", f"local-dir:{MODEL}", "--device", "cpu"]
    page = work / "review.html"
    sort = ["sort", str(library), "-l", str(labels), "-d", str(work / "sorted"), "--dry-run", *model]
    clipsort(["index", str(library), *model], env)  # the page's figures, not the model's
    seconds = clipsort([*sort, "--review", str(page)], env)
    html = page.stat().st_size
    thumbs = folder_size(work / "review_files")
    print(f"\n{options.photos} photos (cache warm): sort --dry-run --review took {seconds:.1f} s")
    print(
        f"page {html / 1e6:.2f} MB ({html / options.photos / 1024:.2f} KiB a photo) + thumbnails "
        f"{thumbs / 1e6:.1f} MB ({thumbs / options.photos / 1024:.1f} KiB a photo): "
        f"{(html + thumbs) / options.photos / 1024:.1f} KiB a photo in all"
    )
    if options.chromium:
        figures = paint_times(page, options.chromium)
        print(
            f"Chromium (headless, median of 5): first paint {figures['first-paint']:.2f} s, first contentful "
            f"paint {figures['first-contentful-paint']:.2f} s, its script ready (keys work) {figures['ready']:.2f} s; "
            f"{figures['images']:.0f} thumbnails fetched at first of {options.photos}"
        )
    else:
        print("no Chromium found: page timings not measured (--chromium PATH)")

    small = work / f"library-run-{options.run_photos}"
    make_library(small, options.run_photos)
    model = ["--model", f"local-dir:{model_224(work / 'model-224')}", "--device", "cpu"]
    sort = ["sort", str(small), "-l", str(labels), "-d", str(work / "sorted"), "--dry-run", *model]
    clipsort([*sort, "--no-cache"], env)  # the model's runtime is built once, before any timing
    plain, reviewed = [], []
    for _ in range(3):
        for target, extra in ((plain, []), (reviewed, ["--review", str(work / "run.html")])):
            shutil.rmtree(work / "cache-run", ignore_errors=True)
            run_env = {**env, "CLIPSORT_CACHE_DIR": str(work / "cache-run")}
            target.append(clipsort([*sort, *extra], run_env))
    fresh_notes = list(NOTES)
    warm_env = {**env, "CLIPSORT_CACHE_DIR": str(work / "cache-run")}
    warm_plain = clipsort(sort, warm_env)
    warm_review = clipsort([*sort, "--review", str(work / "run.html")], warm_env)
    a, b = statistics.median(plain), statistics.median(reviewed)
    print(f"\n{options.run_photos} photos, a model with a 224-pixel input, all decoded (fresh cache), median of 3:")
    print("  " + "; ".join(fresh_notes))
    extra = 1000 * (b - a) / options.run_photos
    print(f"  sort --dry-run {a:.2f} s; with --review {b:.2f} s ({b / a:.2f}x; {extra:.1f} ms a photo)")
    print("cache warm (no photo decoded by the run; each thumbnail decodes its photo once, small):")
    print(
        f"  sort --dry-run {warm_plain:.2f} s; with --review {warm_review:.2f} s "
        f"({1000 * (warm_review - warm_plain) / options.run_photos:.1f} ms a photo)"
    )
    print("  " + "; ".join(NOTES))
    print(json.dumps({"photos": options.photos, "html_bytes": html, "thumb_bytes": thumbs}))


if __name__ == "__main__":
    main()
