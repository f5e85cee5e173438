"""Formats beyond JPEG: HEIC/HEIF, camera RAW, AVIF, JPEG XL; and what happens when one cannot be read."""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_MODEL, STORE, corpus, run_cli
from PIL import Image
from shapes import make_picture

from clipsort.errors import DecodeError
from clipsort.photos import formats
from clipsort.photos.decode import load_image

MODEL = ["--model", f"local-dir:{COLOUR_MODEL}"]


def _copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def test_corpus_heic_and_dng_get_sidecars_and_the_cut_short_arw_fails(tmp_path, capsys, labels_file):
    library = tmp_path / "library"
    _copy_tree(corpus("heic"), library / "heic")
    _copy_tree(corpus("raw"), library / "raw")
    code, out, err = run_cli(
        capsys, "tag", str(library), "--labels", str(labels_file), *MODEL, "--threshold", "0", "--json"
    )
    assert code == 3, err
    results = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    heics = [p for p in (library / "heic").rglob("*") if p.suffix.lower() in (".heic", ".heif")]
    assert len(heics) == 6
    for photo in heics:
        assert results[photo.name]["action"] == "tagged"
        assert Path(str(photo) + ".xmp").is_file()
    dng = next((library / "raw").glob("*.dng"))
    assert results[dng.name]["action"] == "tagged"
    assert Path(str(dng) + ".xmp").is_file()
    arw = next((library / "raw").glob("*.ARW"))
    assert arw.name not in results
    assert f"{arw}: cannot decode RAW: the file is cut short or unreadable" in err
    assert not Path(str(arw) + ".xmp").exists()
    assert "failed 1" in err


def test_heic_thumbnail_decode_is_upright_like_the_full_decode():
    for photo in corpus("heic").rglob("*"):
        if photo.suffix.lower() not in (".heic", ".heif"):
            continue
        small = load_image(photo, min_side=224)
        assert min(small.size) >= 224
        full = np.asarray(load_image(photo).resize(small.size), dtype=float)
        difference = np.abs(np.asarray(small, dtype=float) - full).mean()
        assert difference < 15, (photo.name, difference)


def _heic_with_orientation(image: Image.Image, path: Path, orientation: int) -> Path:
    pillow_heif = pytest.importorskip("pillow_heif")
    stored = image.transpose(STORE[orientation]) if orientation in STORE else image
    exif = Image.Exif()
    exif[0x0112] = orientation
    pillow_heif.from_pillow(stored).save(path, quality=90, exif=exif.tobytes())
    return path


def test_heic_written_with_an_exif_orientation_is_decoded_upright(tmp_path):
    rng = random.Random(3)
    upright = make_picture("red", (320, 200), rng)
    upright.paste((0, 0, 255), (0, 0, 80, 50))  # a blue corner: top left when upright
    for orientation in (1, 3, 6, 8):
        picture = load_image(_heic_with_orientation(upright, tmp_path / f"o{orientation}.heic", orientation))
        assert picture.size == (320, 200), orientation
        r, g, b = picture.getpixel((20, 12))
        assert b > 150 and r < 120, (orientation, (r, g, b))


def test_heic_photos_are_classified(tmp_path, capsys, labels_file):
    rng = random.Random(5)
    for n, colour in enumerate(["red", "green", "blue"] * 2):
        _heic_with_orientation(
            make_picture(colour, (400, 300), rng), tmp_path / f"{colour}_{n}.heic", 6 if n % 2 else 1
        )
    code, out, err = run_cli(capsys, "tag", str(tmp_path), "--labels", str(labels_file), *MODEL, "--json")
    assert code == 0, err
    records = [r for r in map(json.loads, out.splitlines()) if r["action"] != "left-out"]  # labels.txt is there
    assert len(records) == 6
    for record in records:
        assert record["labels"] == [Path(record["path"]).name.split("_")[0]]


def test_avif_and_jpeg_xl_from_the_corpus_decode_when_their_reader_is_installed():
    for folder, name in (("avif", "AVIF"), ("jxl", "JPEG XL")):
        fmt = next(f for f in formats.FORMATS if f.name == name)
        for photo in corpus(folder).iterdir():
            if not formats.available(fmt):
                with pytest.raises(DecodeError, match=fmt.install.replace("[", r"\[").replace("]", r"\]")):
                    load_image(photo)
                continue
            picture = load_image(photo, min_side=64)
            assert picture.mode == "RGB" and min(picture.size) >= 64


def test_raw_preview_is_used_when_large_enough():
    dng = next(corpus("raw").glob("*.dng"))
    picture = load_image(dng, min_side=224)
    assert picture.mode == "RGB" and min(picture.size) >= 224


def test_truncated_heic_is_a_named_failure(tmp_path):
    source = next(corpus("heic").glob("*.heic"))
    broken = tmp_path / "broken.heic"
    broken.write_bytes(source.read_bytes()[:4000])
    with pytest.raises(DecodeError) as info:
        load_image(broken, min_side=64)
    assert str(broken) in str(info.value)


def test_a_format_this_installation_cannot_read_is_counted_with_what_to_install(
    tmp_path, capsys, labels_file, monkeypatch
):
    rng = random.Random(7)
    make_picture("red", (200, 150), rng).save(tmp_path / "red.png")
    (tmp_path / "photo.jxl").write_bytes(b"\xff\x0a" + b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "pillow_jxl", None)  # as if pillow-jxl-plugin were not installed
    formats.available.cache_clear()
    try:
        code, out, err = run_cli(capsys, "tag", str(tmp_path), "--labels", str(labels_file), *MODEL, "--json")
        listing = run_cli(capsys, "formats", "--json")[1]
    finally:
        formats.available.cache_clear()
    assert code == 0, err
    records = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert records["photo.jxl"]["action"] == "unreadable"
    assert "clipsort[jxl]" in records["photo.jxl"]["note"]
    assert records["red.png"]["labels"] == ["red"]
    assert "not read: 1 JPEG XL file(s); to read them: pip install 'clipsort[jxl]'" in err
    rows = {row["format"]: row for row in map(json.loads, listing.splitlines())}
    assert rows["JPEG XL"]["readable"] is False and "clipsort[jxl]" in rows["JPEG XL"]["install"]
    assert rows["JPEG"]["readable"] is True


def test_formats_lists_every_known_extension(capsys):
    code, out, _ = run_cli(capsys, "formats")
    assert code == 0
    for fmt in formats.FORMATS:
        assert fmt.name in out
        for extension in fmt.extensions:
            assert extension in out
