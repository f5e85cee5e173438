"""Decisions of each runtime and precision against open_clip fp32 on torch (issue: fast start).

    python benchmarks/agreement.py

Prints, for the fast runtime in fp32 and int8 and for torch bf16:

* top-label agreement with open_clip fp32 on the tests' photos: the tiny colour model on
  200 colour photos (5 labels), the tiny shape model on 384 pictures of 64 colour-shape
  classes;
* cosine of image vectors to open_clip fp32 (min and mean) on the corpus's camera JPEGs
  (../shared/corpus/exif-samples) with ViT-B-32, random weights (no real weights can be
  downloaded here), and of prompt vectors.

tests/test_runtime.py asserts the thresholds (agreement >= 99%, cosine >= 0.99); this
script prints the figures for docs/performance.md.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]
CORPUS = ROOT.parent / "shared" / "corpus" / "exif-samples" / "jpg"


def main() -> None:
    os.environ.setdefault("CLIPSORT_RUNTIME_DIR", tempfile.mkdtemp(prefix="clipsort-runtime-"))
    from conftest import COLOUR_MODEL, make_colour_photos
    from shapes import COLOURS, SHAPES, make_picture

    from clipsort.errors import DecodeError
    from clipsort.labels import score
    from clipsort.model import torch_model
    from clipsort.model.loading import load_model
    from clipsort.model.model_spec import parse_spec
    from clipsort.photos.decode import load_image

    def tops(model, pictures, prompts) -> np.ndarray:  # noqa: ANN001
        images, texts = score.normalise(model.encode_images(pictures)), score.normalise(model.encode_texts(prompts))
        return (images @ texts.T).argmax(1)  # the best label: the highest cosine

    others = ("fp32", "int8", "bf16")
    with tempfile.TemporaryDirectory() as tmp:
        colours = ["red", "green", "blue", "yellow", "purple"]
        photos = make_colour_photos(Path(tmp), colours, 40, min_px=64, max_px=400)
        spec = parse_spec(str(COLOUR_MODEL))
        reference = torch_model.load(spec, "cpu", "fp32")
        pictures = [load_image(p, reference.min_side) for p in photos]
        prompts = [f"a photo of a {c}." for c in colours]
        expected = tops(reference, pictures, prompts)
        for precision in others:
            got = tops(load_model(spec, "cpu", precision), pictures, prompts)
            print(f"colours, {len(pictures)} photos, {precision}: top label agrees {np.mean(got == expected):.1%}")

    spec = parse_spec(str(COLOUR_MODEL.parent / "tiny-shapes"))
    reference = torch_model.load(spec, "cpu", "fp32")
    rng = random.Random(5)
    cases = [(c, s) for c in COLOURS for s in SHAPES]
    pictures = [make_picture(c, (rng.randint(64, 300), rng.randint(64, 300)), rng, shape=s) for c, s in cases * 6]
    prompts = [f"a photo of a {c} {s}." for c, s in cases]
    expected = tops(reference, pictures, prompts)
    right = np.mean(expected == [i % len(cases) for i in range(len(pictures))])
    print(f"shapes: open_clip fp32 itself is right on {right:.1%} of {len(pictures)} pictures ({len(cases)} classes)")
    for precision in others:
        got = tops(load_model(spec, "cpu", precision), pictures, prompts)
        print(f"shapes, {len(pictures)} pictures, {precision}: top label agrees {np.mean(got == expected):.1%}")

    files = sorted(CORPUS.rglob("*.jpg")) if CORPUS.is_dir() else []
    if not files:
        print("corpus not present: no camera photos measured")
        return
    spec = parse_spec("ViT-B-32", "none")
    reference = torch_model.load(spec, "cpu", "fp32")
    pictures = []
    for photo in files:
        try:
            pictures.append(load_image(photo, reference.min_side))
        except DecodeError:
            continue
    theirs = reference.encode_images(pictures)
    texts = [f"a photo of a {w}." for w in ("dog", "cat", "beach", "mountain", "city street", "birthday cake")]
    their_texts = reference.encode_texts(texts)
    for precision in others:
        model = load_model(spec, "cpu", precision)
        cosines = (model.encode_images(pictures) * theirs).sum(axis=1)
        text = (model.encode_texts(texts) * their_texts).sum(axis=1).min()
        print(
            f"corpus, {len(pictures)} camera JPEGs, ViT-B-32, {precision}: image cosine min {cosines.min():.5f}"
            f" mean {cosines.mean():.5f}; prompt cosine min {text:.6f}"
        )


if __name__ == "__main__":
    main()
