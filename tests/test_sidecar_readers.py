"""Sidecars proven against the real readers (exiftool, exiv2, darktable-cli), and re-tagging without re-reading.

Fixtures are made by the real tools where they are installed: darktable-cli writes
its edit history, exiftool adds a person's keywords and digiKam's fields. Each test
skips cleanly when its tool is missing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, run_cli
from shapes import make_picture

MODEL = ["--model", f"local-dir:{COLOUR_MODEL}"]
EXIFTOOL = shutil.which("exiftool")
DARKTABLE = shutil.which("darktable-cli")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is not installed")
needs_darktable = pytest.mark.skipif(DARKTABLE is None, reason="darktable-cli is not installed")


def photo(folder: Path, colour: str, name: str | None = None, seed: int = 1) -> Path:
    path = folder / (name or f"{colour}.jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    make_picture(colour, (320, 240), random.Random(seed)).save(path, "JPEG", quality=90)
    return path


def labels(folder: Path, *names: str) -> Path:
    path = folder / f"labels-{'-'.join(names)}.txt"
    path.write_text("\n".join(names) + "\n")
    return path


def exiv2_keywords(sidecar: Path) -> dict[str, list[str]]:
    """The three keyword fields as exiv2 (the library behind digiKam and darktable) reads them."""
    keys = {"Xmp.dc.subject": [], "Xmp.lr.hierarchicalSubject": [], "Xmp.digiKam.TagsList": []}
    if shutil.which("exiv2"):
        listing = subprocess.run(["exiv2", "-px", str(sidecar)], capture_output=True, text=True).stdout
        for line in listing.splitlines():
            key, *_, value = line.split(None, 3) if len(line.split(None, 3)) == 4 else [*line.split(), ""]
            if key in keys:
                keys[key] = [v.strip() for v in value.split(",") if v.strip()]
        return keys
    exiv2 = pytest.importorskip("exiv2", reason="neither the exiv2 command nor its Python binding is installed")
    image = exiv2.ImageFactory.open(str(sidecar))
    image.readMetadata()
    for datum in image.xmpData():
        if datum.key() in keys:
            keys[datum.key()] = [v.strip() for v in datum.toString().split(",") if v.strip()]
    return keys


def exiftool_json(path: Path, *tags: str) -> dict:
    out = subprocess.run([EXIFTOOL, "-json", "-struct", *tags, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def as_list(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def darktable_sidecar(picture: Path, scratch: Path) -> Path:
    """A sidecar written by darktable: darktable-cli develops the photo and embeds its XMP (edit
    history included) in the export; exiftool copies that packet out as the photo's sidecar."""
    scratch.mkdir(exist_ok=True)
    export = scratch / "developed.jpg"
    subprocess.run(
        [DARKTABLE, str(picture), str(export), "--core", "--configdir", str(scratch / "dt"), "--library", ":memory:"],
        capture_output=True,
        check=True,
        timeout=300,
    )
    packet = subprocess.run([EXIFTOOL, "-xmp", "-b", str(export)], capture_output=True, check=True).stdout
    assert b"darktable:history" in packet
    sidecar = Path(str(picture) + ".xmp")
    sidecar.write_bytes(packet)
    return sidecar


# ----------------------------------------------------------------------------- readers


def test_exiv2_reads_all_three_keyword_fields_of_every_sidecar(tmp_path, capsys):
    pictures = [photo(tmp_path, c, f"{c}_{n}.jpg", seed=n) for n, c in enumerate(["red", "green", "blue"])]
    label_file = tmp_path / "labels.txt"
    label_file.write_text("colours/warm/red\ngreen\nblue\n")
    code, _, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(label_file), *MODEL)
    assert code == 0, err
    for picture in pictures:
        keys = exiv2_keywords(Path(str(picture) + ".xmp"))
        colour = picture.name.split("_")[0]
        assert keys["Xmp.dc.subject"] == [colour]
        folder = "colours|warm|red" if colour == "red" else colour
        assert keys["Xmp.lr.hierarchicalSubject"] == [f"clipsort|{folder}"]
        assert keys["Xmp.digiKam.TagsList"] == [f"clipsort/{folder.replace('|', '/')}"]


@needs_exiftool
@needs_darktable
def test_darktable_history_and_manual_keyword_survive_two_runs_with_different_labels(tmp_path, capsys):
    picture = photo(tmp_path / "photos", "red")
    sidecar = darktable_sidecar(picture, tmp_path / "scratch")
    history = exiftool_json(sidecar, "-XMP-darktable:History")["History"]
    subprocess.run(
        [EXIFTOOL, "-overwrite_original", "-XMP-dc:Subject+=holiday", "-XMP-lr:HierarchicalSubject+=places|Rome",
         str(sidecar)],
        check=True, capture_output=True,
    )  # fmt: skip
    first = labels(tmp_path, "red", "green")
    second = labels(tmp_path, "blue")
    for label_file in (first, second):
        code, _, err = run_cli(capsys, "tag", str(picture), "-l", str(label_file), *MODEL, "--threshold", "0")
        assert code == 0, err
    tags = exiftool_json(sidecar, "-XMP-darktable:History", "-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject")
    assert tags["History"] == history
    assert sorted(as_list(tags["Subject"])) == ["blue", "holiday"]
    assert sorted(as_list(tags["HierarchicalSubject"])) == ["clipsort|blue", "places|Rome"]
    assert exiv2_keywords(sidecar)["Xmp.digiKam.TagsList"] == ["clipsort/blue"]
    # darktable itself reads the merged sidecar: its export carries clipsort's keyword and the person's
    # (darktable imports tags from lr:hierarchicalSubject, each level a keyword).
    export = tmp_path / "scratch" / "export.jpg"
    subprocess.run(
        [DARKTABLE, str(picture), str(sidecar), str(export), "--core", "--configdir", str(tmp_path / "scratch" / "dt"),
         "--library", ":memory:"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    exported = as_list(exiftool_json(export, "-XMP-dc:Subject").get("Subject"))
    assert "blue" in exported and "Rome" in exported


@needs_exiftool
def test_digikam_style_sidecar_keeps_its_tags_across_runs(tmp_path, capsys):
    picture = photo(tmp_path, "green")
    sidecar = Path(str(picture) + ".xmp")
    subprocess.run(
        [EXIFTOOL, "-o", str(sidecar), "-XMP-digiKam:TagsList=People/Anna", "-XMP-digiKam:TagsList=Places/Rome",
         "-XMP-dc:Subject=Anna", "-XMP-dc:Subject=Rome", "-XMP-lr:HierarchicalSubject=People|Anna",
         "-XMP-microsoft:LastKeywordXMP=People/Anna", "-XMP-xmp:Rating=4", str(picture)],
        check=True, capture_output=True,
    )  # fmt: skip
    for label_file in (labels(tmp_path, "green"), labels(tmp_path, "red")):
        code, _, err = run_cli(capsys, "tag", str(picture), "-l", str(label_file), *MODEL, "--threshold", "0")
        assert code == 0, err
    tags = exiftool_json(sidecar, "-XMP:all")
    assert as_list(tags["TagsList"]) == ["People/Anna", "Places/Rome", "clipsort/red"]
    assert sorted(as_list(tags["Subject"])) == ["Anna", "Rome", "red"]
    assert as_list(tags["LastKeywordXMP"]) == ["People/Anna"]
    assert tags["Rating"] == 4


# ----------------------------------------------------------------------------- re-tagging


def test_second_tag_leaves_unchanged_sidecars_unread_and_remerges_an_edited_one(tmp_path, capsys):
    pictures = [photo(tmp_path, c, f"{c}_{n}.jpg", seed=n) for n, c in enumerate(["red", "green", "blue"] * 2)]
    label_file = labels(tmp_path, "red", "green", "blue")
    code, _, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(label_file), *MODEL)
    assert code == 0, err
    sidecars = [Path(str(p) + ".xmp") for p in pictures]
    stamps = {s: s.stat().st_mtime_ns for s in sidecars}
    # Someone edits one sidecar (another keyword); another is replaced by bytes of the same size
    # with its old mtime put back, which only a run that trusts the record would not notice.
    edited, disguised = sidecars[0], sidecars[1]
    text = edited.read_text()  # dc:subject comes first, before clipsort's own record of what it added
    edited.write_text(text.replace("<rdf:li>red</rdf:li>", "<rdf:li>red</rdf:li><rdf:li>mine</rdf:li>", 1))
    original = disguised.read_bytes()
    disguised.write_bytes(original.replace(b"green", b"gre3n"))
    os.utime(disguised, ns=(stamps[disguised], stamps[disguised]))
    code, _, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(label_file), *MODEL)
    assert code == 0, err
    assert "sidecars unchanged 5" in err
    assert "mine" in edited.read_text() and "<rdf:li>red</rdf:li>" in edited.read_text()
    assert b"gre3n" in disguised.read_bytes()  # not read: its stat matched the record
    for sidecar in sidecars[2:]:
        assert sidecar.stat().st_mtime_ns == stamps[sidecar]
    # Other keywords (another tag root) rewrite them all; the same keywords from another label file do not.
    code, _, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(label_file), *MODEL, "--tag-root", "auto")
    assert code == 0, err
    assert "sidecars unchanged" not in err
    assert all("auto|" in s.read_text() for s in sidecars)
    code, _, err = run_cli(
        capsys, "tag", str(tmp_path), "-l", str(labels(tmp_path, "red", "blue")), *MODEL, "--tag-root", "auto"
    )
    assert code == 0, err
    assert "sidecars unchanged 4" in err  # the red and blue photos; the green ones lose their keyword


def test_a_second_tag_with_json_output_still_gives_every_photo_its_scores_and_sidecar(tmp_path, capsys):
    pictures = [photo(tmp_path, c, f"{c}.jpg", seed=n) for n, c in enumerate(["red", "green", "blue"])]
    label_file = labels(tmp_path, "red", "green", "blue")
    code, first, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(label_file), *MODEL, "--json")
    assert code == 0, err
    code, second, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(label_file), *MODEL, "--json")
    assert code == 0, err
    assert "sidecars unchanged 3" in err  # left alone, and still reported in full
    # the label file lies in the folder tagged: named as left out, not a photo
    before = {r["path"]: r for r in map(json.loads, first.splitlines()) if r["action"] != "left-out"}
    after = {r["path"]: r for r in map(json.loads, second.splitlines()) if r["action"] != "left-out"}
    assert sorted(after) == sorted(str(p) for p in pictures)
    for path, result in after.items():
        assert result["sidecar"] == path + ".xmp" and result["labels"] == [Path(path).stem]
        assert result["scores"] == before[path]["scores"] and set(result["why"]) == {"red", "green", "blue"}


def test_mode_append_keeps_earlier_clipsort_keywords_and_replace_does_not(tmp_path, capsys):
    picture = photo(tmp_path, "red")
    sidecar = Path(str(picture) + ".xmp")
    run_cli(capsys, "tag", str(picture), "-l", str(labels(tmp_path, "red")), *MODEL, "--threshold", "0")
    code, _, err = run_cli(
        capsys,
        "tag",
        str(picture),
        "-l",
        str(labels(tmp_path, "green")),
        *MODEL,
        "--threshold",
        "0",
        "--mode",
        "append",
    )
    assert code == 0, err
    text = sidecar.read_text()
    assert "<rdf:li>red</rdf:li>" in text and "<rdf:li>green</rdf:li>" in text
    run_cli(capsys, "tag", str(picture), "-l", str(labels(tmp_path, "blue")), *MODEL, "--threshold", "0")
    text = sidecar.read_text()
    assert "<rdf:li>blue</rdf:li>" in text and "red" not in text and "green" not in text


def test_only_untagged_skips_photos_clipsort_already_tagged(tmp_path, capsys):
    first = photo(tmp_path, "red", "a.jpg")
    label_file = labels(tmp_path, "red", "green", "blue")
    run_cli(capsys, "tag", str(first), "-l", str(label_file), *MODEL)
    second = photo(tmp_path, "green", "b.jpg")
    other_tool = photo(tmp_path, "blue", "c.jpg")
    Path(str(other_tool) + ".xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>'
        "<rdf:li>mine</rdf:li></rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>\n"
    )
    code, out, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(label_file), *MODEL, "--only-untagged", "--json")
    assert code == 0, err
    actions = {Path(r["path"]).name: r["action"] for r in map(json.loads, out.splitlines())}
    left_out = [name for name, action in actions.items() if action == "left-out"]  # the label file beside them
    photos = {name: action for name, action in actions.items() if name not in left_out}
    assert photos == {"a.jpg": "already-tagged", "b.jpg": "tagged", "c.jpg": "tagged"}
    assert left_out == [label_file.name]
    assert "<rdf:li>green</rdf:li>" in Path(str(second) + ".xmp").read_text()
    assert "mine" in Path(str(other_tool) + ".xmp").read_text()


def test_show_tells_keywords_date_camera_cache_and_decisions(tmp_path, capsys):
    from test_pairs_and_dates import jpeg_with_exif

    picture = jpeg_with_exif(
        tmp_path / "p.jpg", "red", DateTimeOriginal="2019:07:04 10:00:00", Make="Canon", Model="EOS R"
    )
    label_file = labels(tmp_path, "red", "green", "blue")
    Path(str(picture) + ".xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>'
        "<rdf:li>mine</rdf:li></rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>\n"
    )
    run_cli(capsys, "tag", str(picture), "-l", str(label_file), *MODEL)
    code, out, err = run_cli(capsys, "show", str(picture), "--json", *MODEL)
    assert code == 0, err
    record = json.loads(out)
    assert record["taken"] == "2019-07-04 10:00:00" and record["taken_source"] == "DateTimeOriginal"
    assert record["camera"] == "Canon EOS R"
    sidecar = record["sidecars"][0]
    assert sidecar["clipsort"]["subject"] == ["red"] and sidecar["others"]["subject"] == ["mine"]
    assert [m["current"] for m in record["cached_models"]] == [True]
    assert "scores" not in record
    code, out, err = run_cli(capsys, "show", str(picture), "-l", str(label_file), *MODEL)
    assert code == 0, err
    assert "tag      red" in out and "sort     red" in out and "from DateTimeOriginal" in out
    code, _, err = run_cli(capsys, "show", str(tmp_path), *MODEL)
    assert code == 2 and "not a file" in err
