"""RAW+JPEG pairs travel and are judged together; sort --pattern files photos by the date they were taken."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, corpus, run_cli
from PIL import Image
from shapes import make_picture

from clipsort.photos.exif import parse_exif_date, read_facts
from clipsort.writes.pattern import parse_pattern

MODEL = ["--model", f"local-dir:{COLOUR_MODEL}"]


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def jpeg_with_exif(path: Path, colour: str, seed: int = 1, **tags: str) -> Path:
    """A JPEG of ``colour`` with EXIF fields (DateTimeOriginal, CreateDate, DateTime, Make, Model)."""
    picture = make_picture(colour, (320, 240), random.Random(seed))
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    numbers = {"DateTimeOriginal": 0x9003, "CreateDate": 0x9004}
    for name, value in tags.items():
        if name in numbers:
            ifd[numbers[name]] = value
        else:
            exif[{"DateTime": 0x0132, "Make": 0x010F, "Model": 0x0110}[name]] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, "JPEG", quality=90, exif=exif.tobytes())
    return path


# ----------------------------------------------------------------------------- EXIF facts


def test_date_taken_prefers_date_time_original_then_create_date_then_date_time_then_mtime(tmp_path):
    both = jpeg_with_exif(
        tmp_path / "a.jpg", "red", DateTimeOriginal="2019:07:04 10:00:00", DateTime="2023:01:01 00:00:00"
    )
    created = jpeg_with_exif(tmp_path / "b.jpg", "red", CreateDate="2018:02:03 04:05:06", DateTime="2023:01:01 0:0:0")
    changed = jpeg_with_exif(tmp_path / "c.jpg", "red", DateTime="2017:12:31 23:59:59")
    bare = jpeg_with_exif(tmp_path / "d.jpg", "red")
    os.utime(bare, (1_600_000_000, 1_600_000_000))
    assert (read_facts(both).taken, read_facts(both).taken_source) == (datetime(2019, 7, 4, 10), "DateTimeOriginal")
    assert (read_facts(created).taken, read_facts(created).taken_source) == (
        datetime(2018, 2, 3, 4, 5, 6),
        "CreateDate",
    )
    assert read_facts(changed).taken_source == "DateTime" and read_facts(changed).taken.year == 2017
    assert read_facts(bare).taken_source == "mtime"
    assert read_facts(bare).taken == datetime.fromtimestamp(1_600_000_000)


def test_blank_and_impossible_dates_fall_through():
    assert parse_exif_date("0000:00:00 00:00:00") is None
    assert parse_exif_date("    ") is None
    assert parse_exif_date("2019:13:45 10:00:00") is None
    assert parse_exif_date("2011-09-23T12:43:03Z") == datetime(2011, 9, 23, 12, 43, 3)
    assert parse_exif_date("2010:04:13 09:37:22+02:00") == datetime(2010, 4, 13, 9, 37, 22)


def test_camera_names_the_maker_once(tmp_path):
    nikon = read_facts(jpeg_with_exif(tmp_path / "n.jpg", "red", Make="NIKON CORPORATION", Model="NIKON Z 9"))
    canon = read_facts(jpeg_with_exif(tmp_path / "c.jpg", "red", Make="Apple", Model="iPhone 13 Pro"))
    assert nikon.camera == "NIKON Z 9"
    assert canon.camera == "Apple iPhone 13 Pro"
    assert read_facts(jpeg_with_exif(tmp_path / "x.jpg", "red")).camera is None


# ----------------------------------------------------------------------------- sort --pattern


def test_pattern_with_an_unknown_field_is_a_usage_error_before_anything_moves(tmp_path, capsys, labels_file):
    jpeg_with_exif(tmp_path / "in" / "a.jpg", "red")
    before = tree(tmp_path)
    code, _, err = run_cli(
        capsys, "sort", str(tmp_path / "in"), "-l", str(labels_file), *MODEL, "--pattern", "{label}/{yr}"
    )
    assert code == 2
    assert "unknown field {yr}" in err and "{year}" in err
    assert tree(tmp_path) == before
    for bad in ("", "/abs/{label}", "{label}/../x", "{label:>3}"):
        with pytest.raises(Exception, match="pattern"):
            parse_pattern(bad)


def test_pattern_folders_from_label_date_camera_and_extension(tmp_path, capsys, labels_file):
    inbox = tmp_path / "inbox"
    jpeg_with_exif(inbox / "r.jpg", "red", DateTimeOriginal="2019:07:04 10:00:00", Make="Canon", Model="EOS R/5")
    jpeg_with_exif(inbox / "g.jpg", "green", seed=2, DateTime="2017:12:31 23:59:59")
    dest = tmp_path / "sorted"
    args = ["sort", str(inbox), "-l", str(labels_file), *MODEL, "-d", str(dest), "--json"]
    code, out, err = run_cli(capsys, *args, "--pattern", "{label}/{year}/{month}/{camera}/{ext}")
    assert code == 0, err
    assert (dest / "red" / "2019" / "07" / "Canon EOS R_5" / "jpg" / "r.jpg").is_file()
    assert (dest / "green" / "2017" / "12" / "unknown" / "jpg" / "g.jpg").is_file()
    # A second run finds every photo in its place.
    code, out, err = run_cli(
        capsys,
        "sort",
        str(dest),
        "-l",
        str(labels_file),
        *MODEL,
        "--json",
        "--pattern",
        "{label}/{year}/{month}/{camera}/{ext}",
    )
    assert code == 0, err
    assert {json.loads(line)["action"] for line in out.splitlines()} == {"in-place"}


def test_photos_with_no_date_taken_go_to_unknown_or_by_their_file_time_marked_as_a_guess(tmp_path, capsys, labels_file):
    inbox = tmp_path / "inbox"
    jpeg_with_exif(inbox / "dated.jpg", "red", DateTimeOriginal="2019:07:04 10:00:00")
    bare = jpeg_with_exif(inbox / "bare.jpg", "red", seed=3)  # copied in 2020: its mtime is no date taken
    os.utime(bare, (1_600_000_000, 1_600_000_000))
    copied = datetime.fromtimestamp(1_600_000_000)
    dest = tmp_path / "sorted"
    args = ["sort", str(inbox), "-l", str(labels_file), *MODEL, "-d", str(dest), "--pattern", "{label}/{year}/{month}"]
    code, out, err = run_cli(capsys, *args, "--dry-run", "--json")
    records = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert code == 0 and Path(records["bare.jpg"]["destination"]).parent == dest / "red" / "unknown" / "unknown"
    assert records["bare.jpg"]["undated"] == "unknown" and "undated" not in records["dated.jpg"]
    assert Path(records["dated.jpg"]["destination"]).parent == dest / "red" / "2019" / "07"

    # --undated mtime: the file's month, marked as a guess in the results and in the plan
    page = tmp_path / "review.html"
    code, out, err = run_cli(capsys, *args, "--undated", "mtime", "--dry-run", "--json", "--review", str(page))
    records = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    by_file_time = dest / "red" / f"{copied.year:04d}" / f"{copied.month:02d}"
    assert code == 0 and Path(records["bare.jpg"]["destination"]).parent == by_file_time
    assert records["bare.jpg"]["undated"] == "mtime"
    html = page.read_text(encoding="utf-8")
    assert "no date taken: filed by the file" in html  # on its card
    found = re.search(r'<script type="application/json" id="plan">(.*?)</script>', html, re.S)
    plan = json.loads(found.group(1))
    assert plan["undated"] == "mtime"
    assert {Path(p["photo"]).name: p.get("undated") for p in plan["photos"]} == {"bare.jpg": "mtime", "dated.jpg": None}
    # the plan carried out puts each where the run said
    saved = tmp_path / "saved.plan.json"
    saved.write_text(json.dumps(plan), encoding="utf-8")
    code, out, err = run_cli(capsys, "sort", "--plan", str(saved))
    assert code == 0, err
    assert (by_file_time / "bare.jpg").is_file() and (dest / "red" / "2019" / "07" / "dated.jpg").is_file()


def test_corpus_gps_photos_go_under_the_year_and_month_exiftool_reads(tmp_path, capsys, labels_file):
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not installed")
    inbox = tmp_path / "gps"
    shutil.copytree(corpus("jpg", "gps"), inbox, ignore=shutil.ignore_patterns("README*"))
    for path in inbox.iterdir():
        path.chmod(0o644)
    read = subprocess.run([exiftool, "-json", "-DateTimeOriginal", str(inbox)], capture_output=True, text=True)
    expected = {Path(r["SourceFile"]).name: r["DateTimeOriginal"] for r in json.loads(read.stdout)}
    dest = tmp_path / "sorted"
    code, out, err = run_cli(
        capsys, "sort", str(inbox), "-l", str(labels_file), *MODEL, "-d", str(dest), "--json",
        "--pattern", "{label}/{year}/{month}", "--threshold", "0", "--margin", "0",
    )  # fmt: skip
    assert code == 0, err
    placed = [json.loads(line) for line in out.splitlines()]
    assert len(placed) == len(expected) > 0
    for record in placed:
        year, month = expected[Path(record["path"]).name][:7].split(":")
        destination = Path(record["destination"]).relative_to(dest)
        assert destination.parts[1:3] == (year, month), record


# ----------------------------------------------------------------------------- RAW+JPEG pairs


def make_pair(folder: Path, colour: str, stem: str = "IMG_0001") -> tuple[Path, Path]:
    jpeg = jpeg_with_exif(folder / f"{stem}.JPG", colour)
    raw = folder / f"{stem}.NEF"
    raw.write_bytes(b"II*\x00not really raw data, never decoded while paired" * 50)
    return jpeg, raw


def test_pair_sorted_and_undone_moves_together_both_ways(tmp_path, capsys, labels_file):
    inbox = tmp_path / "inbox"
    jpeg, raw = make_pair(inbox, "red")
    (inbox / "IMG_0001.xmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>\n")  # Lightroom's shared sidecar
    (inbox / "IMG_0001.NEF.xmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>\n")  # darktable's
    jpeg_with_exif(inbox / "other.jpg", "blue", seed=3)
    before = tree(inbox)
    dest = tmp_path / "sorted"
    code, out, err = run_cli(capsys, "sort", str(inbox), "-l", str(labels_file), *MODEL, "-d", str(dest), "--json")
    assert code == 0, err
    assert sorted(p.name for p in (dest / "red").iterdir()) == [
        "IMG_0001.JPG",
        "IMG_0001.NEF",
        "IMG_0001.NEF.xmp",
        "IMG_0001.xmp",
    ]
    records = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert records["IMG_0001.NEF"]["action"] == "moved"
    assert records["IMG_0001.NEF"]["destination"] == str(dest / "red" / "IMG_0001.NEF")
    assert "RAW+JPEG pair" in err
    assert sorted(os.listdir(inbox)) == []
    code, _, err = run_cli(capsys, "undo")
    assert code == 0, err
    assert tree(inbox) == before


def test_pair_name_clash_renames_both_alike(tmp_path, capsys, labels_file):
    inbox = tmp_path / "inbox"
    make_pair(inbox, "red")
    dest = tmp_path / "sorted"
    (dest / "red").mkdir(parents=True)
    (dest / "red" / "IMG_0001.NEF").write_bytes(b"someone else's raw")
    code, _, err = run_cli(capsys, "sort", str(inbox), "-l", str(labels_file), *MODEL, "-d", str(dest))
    assert code == 0, err
    names = sorted(p.name for p in (dest / "red").iterdir())
    assert names == ["IMG_0001.NEF", "IMG_0001_1.JPG", "IMG_0001_1.NEF"]


def test_tag_gives_each_file_of_a_pair_its_sidecar_and_index_embeds_once(tmp_path, capsys, labels_file):
    jpeg, raw = make_pair(tmp_path, "green")
    code, out, err = run_cli(capsys, "index", str(tmp_path), *MODEL, "--json")
    assert code == 0, err
    records = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert records[jpeg.name]["action"] == "indexed"
    assert records[raw.name]["action"] == "paired" and jpeg.name in records[raw.name]["note"]
    assert "embedded 1," in err and "pair" in err
    code, out, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(labels_file), *MODEL, "--json")
    assert code == 0, err
    records = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert records[jpeg.name]["labels"] == records[raw.name]["labels"] == ["green"]
    for photo in (jpeg, raw):
        text = Path(str(photo) + ".xmp").read_text()
        assert "<rdf:li>green</rdf:li>" in text
    # --xmp-name stem: the pair shares IMG_0001.xmp, written once, no complaint.
    code, out, err = run_cli(
        capsys, "tag", str(tmp_path), "-l", str(labels_file), *MODEL, "--xmp-name", "stem", "--json"
    )
    assert code == 0, err
    assert "<rdf:li>green</rdf:li>" in (tmp_path / "IMG_0001.xmp").read_text()
    # --no-pairs: the RAW is a photo of its own (this one cannot be decoded: it is named as failed).
    code, out, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(labels_file), *MODEL, "--no-pairs")
    assert code == 3
    assert f"{raw}: cannot decode RAW" in err


def test_the_raw_of_a_pair_whose_jpeg_fails_is_named_too(tmp_path, capsys, labels_file):
    (tmp_path / "IMG_0002.JPG").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    raw = tmp_path / "IMG_0002.NEF"
    raw.write_bytes(b"II*\x00raw bytes" * 50)
    for command in ("tag", "sort", "index"):
        args = [command, str(tmp_path), *MODEL] + ([] if command == "index" else ["-l", str(labels_file)])
        code, out, err = run_cli(capsys, *args)
        assert code == 3, (command, err)
        assert f"{raw}: not handled: it goes with its RAW+JPEG partner IMG_0002.JPG, which failed" in err, command
        assert raw.exists()
