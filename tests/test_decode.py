"""Decoding: orientation, modes, reduced size, and failures with reasons."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import corpus, save_photo
from PIL import Image

from clipsort.errors import DecodeError
from clipsort.photos.decode import load_image


def marker_picture(size=(400, 300)) -> Image.Image:
    """White picture with a red block in the top-left corner: shows any wrong rotation or flip."""
    image = Image.new("RGB", size, "white")
    image.paste((255, 0, 0), (0, 0, size[0] // 3, size[1] // 3))
    return image


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int):
    path = save_photo(marker_picture(), tmp_path / f"o{orientation}.jpg", orientation)
    picture = load_image(path)
    assert picture.size == (400, 300)
    pixels = np.asarray(picture).astype(int)
    assert pixels[20, 20, 0] > 200 and pixels[20, 20, 1] < 60  # red top-left
    assert pixels[-20, -20].min() > 200  # white bottom-right


def test_stored_pixels_really_differ_without_orientation(tmp_path: Path):
    # Guard for the test above: the stored file is rotated, so only the EXIF tag makes it upright.
    path = save_photo(marker_picture(), tmp_path / "o6.jpg", 6)
    with Image.open(path) as raw:
        assert raw.size == (300, 400)


def test_corpus_orientations_decode_to_the_same_picture():
    folder = corpus("jpg", "orientation")
    for kind in ("landscape", "portrait"):
        upright = load_image(folder / f"{kind}_1.jpg")
        reference = np.asarray(upright).astype(float)
        # Each file was re-encoded, so pixels differ a little (about 15 of 255 on average);
        # a picture the wrong way round differs by more than 40.
        mirrored = np.asarray(upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT)).astype(float)
        assert np.abs(mirrored - reference).mean() > 35
        for n in range(2, 9):
            picture = np.asarray(load_image(folder / f"{kind}_{n}.jpg")).astype(float)
            assert picture.shape == reference.shape, (kind, n)
            assert np.abs(picture - reference).mean() < 22, (kind, n)


def test_draft_decoding_keeps_the_short_side_and_orientation(tmp_path: Path):
    path = save_photo(marker_picture((3000, 2000)), tmp_path / "big.jpg", 6)
    picture = load_image(path, min_side=224)
    assert min(picture.size) >= 224 and min(picture.size) < 1000
    assert picture.size[0] > picture.size[1]  # upright landscape
    pixels = np.asarray(picture).astype(int)
    assert pixels[5, 5, 0] > 200 and pixels[5, 5, 1] < 80


def test_reduced_decoding_gives_the_embeddings_of_a_full_decode_on_real_photos():
    """Draft (DCT-scaled) and reduced decodes must not change what the model sees: cosine >= 0.99
    against a full-size decode, for every camera photo of the corpus that is large enough for the
    fast path to apply (short side at least twice the input size), with ViT-B-32's 224 px input."""
    from clipsort.model.loading import load_model
    from clipsort.model.model_spec import parse_spec

    root = corpus()
    model = load_model(parse_spec("ViT-B-32", "none"), "cpu")  # bf16 where the CPU has it: 2.5x faster
    fast, full, names = [], [], []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".tif", ".tiff", ".png"):
            continue
        try:
            with Image.open(path) as image:
                if min(image.size) < 2 * model.min_side:
                    continue
            reduced, whole = load_image(path, model.min_side), load_image(path)
        except (DecodeError, OSError):
            continue  # the corpus's broken files: other tests cover them
        assert min(reduced.size) >= model.min_side and max(reduced.size) < max(whole.size), path
        fast.append(reduced)
        full.append(whole)
        names.append(path.name)
    assert len(names) >= 40  # the corpus has about 60 such photos
    cosines = (model.encode_images(fast) * model.encode_images(full)).sum(axis=1)
    worst = int(cosines.argmin())
    assert cosines.min() >= 0.99, f"{names[worst]}: cosine {cosines[worst]:.4f}"


def test_non_jpeg_is_reduced_exactly(tmp_path: Path):
    path = tmp_path / "big.png"
    marker_picture((2400, 1800)).save(path)
    picture = load_image(path, min_side=224)
    assert 224 <= min(picture.size) < 450


@pytest.mark.parametrize(
    ("mode", "maker"),
    [
        ("RGBA", lambda: Image.new("RGBA", (64, 64), (255, 0, 0, 0))),
        ("LA", lambda: Image.new("LA", (64, 64), (0, 0))),
        ("P", lambda: Image.new("RGBA", (64, 64), (255, 0, 0, 0)).convert("P")),
    ],
)
def test_transparency_becomes_white(tmp_path: Path, mode, maker):
    path = tmp_path / "t.png"
    maker().save(path)
    picture = load_image(path)
    assert picture.mode == "RGB"
    assert np.asarray(picture).min() >= 250


@pytest.mark.parametrize("mode", ["L", "1", "CMYK", "I;16", "I", "F", "P"])
def test_every_mode_becomes_rgb(tmp_path: Path, mode):
    grey = Image.linear_gradient("L").resize((64, 64))
    if mode == "I;16":
        image = Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)
        assert image.mode == "I;16"
    elif mode == "I":
        image = Image.fromarray(np.asarray(grey).astype(np.int32) * 257, mode="I")
    elif mode == "F":
        image = Image.fromarray(np.asarray(grey).astype(np.float32) / 255.0, mode="F")
    else:
        image = grey.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "F", "I") else "x.png")
    image.save(path)
    picture = load_image(path)
    assert picture.mode == "RGB" and picture.size == (64, 64)
    values = np.asarray(picture)[:, :, 0].astype(int)
    if mode != "1":  # a gradient stays a gradient: 16-bit and float are scaled, not clipped
        assert values[0].mean() < 30 and values[-1].mean() > 220


def test_animation_gives_its_first_frame(tmp_path: Path):
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    r, g, b = load_image(path).getpixel((16, 16))
    assert r > 200 and b < 50


def test_bad_files_raise_decode_errors_with_reasons(tmp_path: Path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not a photo")
    buffer = io.BytesIO()
    marker_picture((800, 600)).save(buffer, "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    with pytest.raises(DecodeError, match="empty file"):
        load_image(empty)
    with pytest.raises(DecodeError, match="not an image"):
        load_image(text)
    with pytest.raises(DecodeError, match="truncated"):
        load_image(truncated)


def test_corpus_files_with_broken_exif_decode():
    for name in ("corrupted.jpg", "tests/30-type_error.jpg", "tests/87_OSError.jpg", "tests/42_IndexError.jpg"):
        picture = load_image(corpus("jpg", name), min_side=48)
        assert picture.mode == "RGB" and min(picture.size) >= 48


@pytest.mark.permissions
@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_is_a_named_failure(tmp_path: Path):
    path = tmp_path / "locked.jpg"
    Image.new("RGB", (64, 48), (200, 0, 0)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(DecodeError, match="Permission denied") as info:
            load_image(path, min_side=32)
        assert str(path) in str(info.value)
    finally:
        path.chmod(0o644)
