"""Every file of a library read right (issue 30): the formats people keep (JFIF, MPO, PSD, JPEG 2000,
the RAW kinds LibRaw reads), what is left out said and counted, dates read in the order photo apps
read them (EXIF, XMP, IPTC), RAW+JPEG pairs that really are pairs, and no C library's line on
stderr. Files are made here with Pillow (and exiftool, where IPTC is needed)."""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_MODEL
from PIL import Image
from shapes import make_picture

from clipsort.photos.exif import read_facts
from clipsort.photos.formats import FORMATS, RAW_EXTENSIONS, format_of

CLIPSORT = Path(sys.executable).with_name("clipsort")
MODEL = ["--model", f"local-dir:{COLOUR_MODEL}"]
EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None, reason="exiftool writes IPTC (apt install libimage-exiftool-perl)"
)


def clipsort(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLIPSORT), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, env=dict(os.environ),
        timeout=600,
    )  # fmt: skip


def picture(colour: str, seed: int = 1, size: tuple[int, int] = (320, 240)) -> Image.Image:
    return make_picture(colour, size, random.Random(seed))


def write_psd(path: Path, image: Image.Image) -> Path:
    """A Photoshop file holding ``image`` as its composite (RGB, 8 bits, no layers), as Photoshop
    saves one with "maximize compatibility"."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    planes = b"".join(rgb.getchannel(i).tobytes() for i in range(3))
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    path.write_bytes(header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + planes)
    return path


def exif_bytes(taken: str | None = None, make: str | None = None, model: str | None = None) -> bytes:
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    return exif.tobytes()


# ----------------------------------------------------------------------------- formats


def test_the_format_table_knows_the_formats_people_keep():
    names = {fmt.name for fmt in FORMATS}
    assert {"MPO (stereo JPEG)", "Photoshop PSD", "JPEG 2000"} <= names
    assert format_of("photo.JFIF").name == "JPEG" and format_of("scan.j2k").name == "JPEG 2000"
    assert {".crw", ".nrw", ".mrw", ".x3f", ".iiq", ".raw", ".3fr", ".srf", ".sr2", ".kdc"} <= set(RAW_EXTENSIONS)
    listed = [json.loads(line) for line in clipsort("formats", "--json").stdout.splitlines()]
    readable = {row["format"]: row["readable"] for row in listed}
    assert readable["MPO (stereo JPEG)"] and readable["Photoshop PSD"] and readable["JPEG 2000"]


def test_a_folder_of_the_formats_people_keep_is_read_or_named_and_a_text_file_is_counted(
    tmp_path: Path, labels_file: Path
):
    library = tmp_path / "lib"
    library.mkdir()
    picture("red", 1).save(library / "plain.jpg", quality=90)
    picture("green", 2).save(library / "browser download.jfif", "JPEG", quality=90)
    left, right = picture("blue", 3), picture("red", 4)
    left.save(library / "3ds.mpo", "MPO", save_all=True, append_images=[right])  # the first image is judged
    write_psd(library / "layout.psd", picture("green", 5))
    picture("red", 6).save(library / "scan.jp2")
    shutil.copy(library / "plain.jpg", library / "old canon.crw")  # a renamed JPEG: named, unreadable
    (library / "notes.txt").write_text("not a photo\n")
    ran = clipsort("tag", str(library), "--labels", str(labels_file), "--json", *MODEL)
    assert ran.returncode == 3, ran.stderr  # the .crw fails; the others are tagged
    records = {Path(r["path"]).name: r for r in map(json.loads, ran.stdout.splitlines())}
    expected = {"plain.jpg": "red", "browser download.jfif": "green", "3ds.mpo": "blue", "layout.psd": "green",
                "scan.jp2": "red"}  # fmt: skip
    assert {name: records[name]["labels"] for name in expected} == {n: [c] for n, c in expected.items()}
    assert records["notes.txt"]["action"] == "left-out" and ".txt" in records["notes.txt"]["note"]
    crw = [line for line in ran.stderr.splitlines() if "old canon.crw" in line]
    assert len(crw) == 1 and "RAW" in crw[0]
    assert "left out: 1 file that is not a photo or video (.txt 1)" in ran.stderr
    assert "not photos 1" in ran.stderr.splitlines()[-1] or any("not photos 1" in x for x in ran.stderr.splitlines())

    verbose = clipsort("index", str(library), "--verbose", *MODEL)
    assert str(library / "notes.txt") in verbose.stderr


def test_a_folder_with_no_photo_says_so(tmp_path: Path, labels_file: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("a")
    (tmp_path / "docs" / "b.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "docs" / "b.pdf.xmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")  # a sidecar: not counted
    ran = clipsort("tag", str(tmp_path / "docs"), "--labels", str(labels_file), *MODEL)
    assert ran.returncode == 0, ran.stderr
    assert "no photo or video found" in ran.stderr and "nothing to do" not in ran.stderr
    assert "left out: 2 files that are not photos or videos (.pdf 1, .txt 1)" in ran.stderr


# ----------------------------------------------------------------------------- dates


@needs_exiftool
def test_dates_are_read_in_the_order_photo_apps_read_them(tmp_path: Path):
    """EXIF DateTimeOriginal, then XMP exif:DateTimeOriginal, then XMP photoshop:DateCreated, then
    IPTC Date Created with Time Created; time zones kept; show says which field."""
    files = {}
    for name in ("iptc", "exif and iptc", "xmp", "photoshop and iptc", "iptc date only"):
        files[name] = tmp_path / f"{name}.jpg"
        picture("red").save(files[name], quality=85)

    def exiftool(path: Path, *tags: str) -> None:
        subprocess.run([EXIFTOOL, "-q", "-overwrite_original", *tags, str(path)], check=True)

    exiftool(files["iptc"], "-IPTC:DateCreated=2015:03:04", "-IPTC:TimeCreated=10:11:12+05:30")
    exiftool(files["exif and iptc"], "-IPTC:DateCreated=2015:03:04", "-IPTC:TimeCreated=10:11:12",
             "-EXIF:DateTimeOriginal=2016:01:02 03:04:05", "-EXIF:OffsetTimeOriginal=-04:00")  # fmt: skip
    exiftool(files["xmp"], "-XMP-exif:DateTimeOriginal=2013-05-06T07:08:09Z",
             "-XMP-photoshop:DateCreated=2012-01-01T00:00:00", "-IPTC:DateCreated=2011:01:01")  # fmt: skip
    exiftool(files["photoshop and iptc"], "-XMP-photoshop:DateCreated=2014-02-03T04:05:06+01:00",
             "-IPTC:DateCreated=2011:01:01")  # fmt: skip
    exiftool(files["iptc date only"], "-IPTC:DateCreated=2010:12:24")
    facts = {name: read_facts(path) for name, path in files.items()}
    seen = {name: (f.taken.isoformat(sep=" "), f.taken_source, f.offset) for name, f in facts.items()}
    assert seen == {
        "iptc": ("2015-03-04 10:11:12", "IPTC DateCreated", "+05:30"),
        "exif and iptc": ("2016-01-02 03:04:05", "DateTimeOriginal", "-04:00"),
        "xmp": ("2013-05-06 07:08:09", "XMP exif:DateTimeOriginal", "+00:00"),
        "photoshop and iptc": ("2014-02-03 04:05:06", "XMP photoshop:DateCreated", "+01:00"),
        "iptc date only": ("2010-12-24 00:00:00", "IPTC DateCreated", None),
    }
    shown = json.loads(clipsort("show", str(files["iptc"]), "--json").stdout)
    assert (shown["taken_source"], shown["taken_offset"]) == ("IPTC DateCreated", "+05:30")


@needs_exiftool
def test_a_photo_dated_only_by_iptc_is_filed_under_that_date(tmp_path: Path, labels_file: Path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    picture("red", 1).save(inbox / "press.jpg", quality=90)
    picture("red", 2).save(inbox / "both.jpg", quality=90)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-IPTC:DateCreated=1998:07:12", str(inbox / "press.jpg")],
                   check=True)  # fmt: skip
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-IPTC:DateCreated=1998:07:12",
                    "-EXIF:DateTimeOriginal=2003:02:01 12:00:00", str(inbox / "both.jpg")], check=True)  # fmt: skip
    ran = clipsort("sort", str(inbox), "--labels", str(labels_file), "-d", str(tmp_path / "out"),
                   "--pattern", "{year}/{month}", *MODEL)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "out" / "1998" / "07" / "press.jpg").is_file()
    assert (tmp_path / "out" / "2003" / "02" / "both.jpg").is_file()


# ----------------------------------------------------------------------------- pairs


def raw_with_exif(path: Path, taken: str, make: str, model: str) -> Path:
    """A TIFF-structured file named as a RAW (as NEF, CR2, ARW and DNG are), holding EXIF: its date
    and camera read as a real RAW's are (LibRaw does not decode it)."""
    picture("red").save(path, "TIFF", exif=exif_bytes(taken, make, model))
    return path


def test_a_raw_and_a_jpeg_of_one_name_from_two_cameras_or_times_are_judged_apart(tmp_path: Path, labels_file: Path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    # a Nikon D70's NEF (2004) beside a Coolpix E775's JPEG (2001) of the same name
    raw_with_exif(inbox / "Nikon.nef", "2004:03:01 10:00:00", "NIKON CORPORATION", "NIKON D70")
    picture("red", 2).save(inbox / "Nikon.jpg", exif=exif_bytes("2001:06:02 11:00:00", "NIKON", "E775"))
    # two bodies in one import folder: same second, different cameras
    raw_with_exif(inbox / "DSC_0001.NEF", "2020:05:05 09:00:00", "NIKON CORPORATION", "NIKON Z 6")
    picture("red", 3).save(
        inbox / "DSC_0001.JPG", exif=exif_bytes("2020:05:05 09:00:00", "NIKON CORPORATION", "NIKON D750")
    )
    # a real pair: same time (within 2 s), same camera
    raw_with_exif(inbox / "DSC_0002.NEF", "2020:05:05 09:00:10", "NIKON CORPORATION", "NIKON Z 6")
    picture("red", 4).save(
        inbox / "DSC_0002.JPG", exif=exif_bytes("2020:05:05 09:00:11", "NIKON CORPORATION", "NIKON Z 6")
    )
    out = tmp_path / "out"
    ran = clipsort("sort", str(inbox), "--labels", str(labels_file), "-d", str(out), "--pattern", "{camera}/{year}",
                   "--json", *MODEL)  # fmt: skip
    records = {Path(r["path"]).name: r for r in map(json.loads, ran.stdout.splitlines())}
    # the real pair moves as one, under its camera and year
    assert (out / "NIKON Z 6" / "2020" / "DSC_0002.JPG").is_file() and (
        out / "NIKON Z 6" / "2020" / "DSC_0002.NEF"
    ).is_file()
    assert records["DSC_0002.NEF"].get("pair_of", "").endswith("DSC_0002.JPG")
    # the others are judged apart: each JPEG under its own camera and year; each NEF on its own
    # (LibRaw cannot decode these stand-ins: named, left where they are, never filed under the JPEG)
    assert (out / "NIKON E775" / "2001" / "Nikon.jpg").is_file() and (
        out / "NIKON D750" / "2020" / "DSC_0001.JPG"
    ).is_file()
    assert (inbox / "Nikon.nef").is_file() and (inbox / "DSC_0001.NEF").is_file()
    assert "pair_of" not in records.get("Nikon.nef", {}) and "pair_of" not in records.get("DSC_0001.NEF", {})
    notes = [line for line in ran.stderr.splitlines() if "share a name but not a picture" in line]
    assert len(notes) == 2
    assert any("taken 2004-03-01 10:00:00 and 2001-06-02 11:00:00" in n for n in notes)
    assert any("NIKON Z 6 and NIKON D750" in n for n in notes)


# ----------------------------------------------------------------------------- noise


def test_what_libtiff_prints_becomes_part_of_the_files_message(tmp_path: Path, labels_file: Path):
    """A TIFF whose LZW data is damaged makes libtiff print on the process's stderr; clipsort's
    stderr holds only its own lines, the file's one line carrying what libtiff said."""
    library = tmp_path / "lib"
    library.mkdir()
    noise = (np.random.default_rng(1).random((300, 400, 3)) * 255).astype("uint8")
    Image.fromarray(noise).save(library / "scan.tif", compression="tiff_lzw")
    data = bytearray((library / "scan.tif").read_bytes())
    rng = random.Random(1)
    for at in range(2000, len(data) // 2, 97):
        data[at] = rng.randrange(256)
    (library / "scan.tif").write_bytes(bytes(data))
    picture("red").save(library / "fine.tif", compression="tiff_lzw")
    ran = clipsort("tag", str(library), "--labels", str(labels_file), *MODEL)
    assert ran.returncode == 3, ran.stderr
    ours = ("error: ", "model ", "tagged ", "labels: ", "keywords ", "note: ", "left out: ")
    assert all(line.startswith(ours) for line in ran.stderr.splitlines() if line.strip()), ran.stderr
    failed = [line for line in ran.stderr.splitlines() if "scan.tif" in line]
    assert len(failed) == 1 and "libtiff says:" in failed[0]


def test_the_date_of_a_raw_comes_from_the_raw_itself(tmp_path: Path):
    """Canon's CR3 (its CMT blocks) and Fujifilm's RAF (the JPEG inside it) keep their EXIF where a
    TIFF reader does not look: their own date and camera are read, not a partner's."""

    def tiff_block(**tags: object) -> bytes:
        exif = Image.Exif()
        for number, value in tags.items():
            exif[int(number[1:], 16)] = value
        return exif.tobytes()[6:]  # without the "Exif\0\0" of a JPEG's APP1

    def box(kind: bytes, payload: bytes) -> bytes:
        return (8 + len(payload)).to_bytes(4, "big") + kind + payload

    cmt1 = tiff_block(x010F="Canon", x0110="Canon EOS R5")
    cmt2 = tiff_block(x9003="2022:08:09 10:11:12")
    canon = bytes.fromhex("85C0B687820F11E08111F4CE462B6A48")
    cr3 = box(b"ftyp", b"crx \x00\x00\x00\x01crx isom") + box(
        b"moov", box(b"uuid", canon + box(b"CMT1", cmt1) + box(b"CMT2", cmt2))
    )
    (tmp_path / "IMG_0001.CR3").write_bytes(cr3 + b"\x00" * 64)
    preview = tmp_path / "preview.jpg"
    picture("red").save(preview, exif=exif_bytes("2019:01:02 03:04:05", "FUJIFILM", "X-T3"))
    jpeg = preview.read_bytes()
    header = b"FUJIFILMCCD-RAW 0201FF383501".ljust(84, b"\x00")
    header += (100).to_bytes(4, "big") + len(jpeg).to_bytes(4, "big")
    (tmp_path / "DSCF0001.RAF").write_bytes(header.ljust(100, b"\x00") + jpeg + b"raw data")
    cr3_facts, raf_facts = read_facts(tmp_path / "IMG_0001.CR3"), read_facts(tmp_path / "DSCF0001.RAF")
    assert (cr3_facts.taken.isoformat(sep=" "), cr3_facts.taken_source, cr3_facts.camera) == (
        "2022-08-09 10:11:12",
        "DateTimeOriginal",
        "Canon EOS R5",
    )
    assert (raf_facts.taken.isoformat(sep=" "), raf_facts.camera) == ("2019-01-02 03:04:05", "FUJIFILM X-T3")
    (tmp_path / "cut.CR3").write_bytes(cr3[:40])  # cut short: no facts, no error
    assert read_facts(tmp_path / "cut.CR3").taken_source == "mtime"


def test_a_file_that_is_not_a_photo_never_enters_a_sort_plan(tmp_path: Path, labels_file: Path):
    """A sort's review page holds the plan `sort --plan` carries out: a text file left out of the run
    is not in it, so no plan ever moves it."""
    import re

    inbox = tmp_path / "in"
    inbox.mkdir()
    picture("red").save(inbox / "a.jpg", quality=90)
    (inbox / "notes.txt").write_text("mine\n")
    page = tmp_path / "page.html"
    ran = clipsort("sort", str(inbox), "--labels", str(labels_file), "-d", str(tmp_path / "out"), "--review",
                   str(page), *MODEL)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    found = re.search(r'<script type="application/json" id="plan">(.*?)</script>', page.read_text("utf-8"), re.S)
    assert found and "a.jpg" in found.group(1) and "notes.txt" not in found.group(1)
    assert (inbox / "notes.txt").read_text() == "mine\n" and (tmp_path / "out" / "red" / "a.jpg").is_file()


def test_xmp_dates_are_found_by_their_namespace_whatever_the_prefix(tmp_path: Path):
    """Photoshop CS2 wrote the xmp namespace as ``xap:``; a packet may bind any prefix: the date is
    the namespace's, as exiftool reads it."""
    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        "<rdf:Description rdf:about='' xmlns:xap='http://ns.adobe.com/xap/1.0/'"
        " xmlns:e='http://ns.adobe.com/exif/1.0/' xap:CreateDate='2005-09-07T15:07:40-07:00'"
        " {extra}/></rdf:RDF></x:xmpmeta>"
    )
    old = tmp_path / "cs2.jpg"
    picture("red").save(old, xmp=packet.format(extra="").encode())
    custom = tmp_path / "custom.jpg"
    picture("red").save(custom, xmp=packet.format(extra="e:DateTimeOriginal='2004-01-02T03:04:05'").encode())
    first, second = read_facts(old), read_facts(custom)
    assert (first.taken.isoformat(sep=" "), first.taken_source, first.offset) == (
        "2005-09-07 15:07:40",
        "XMP xmp:CreateDate",
        "-07:00",
    )
    assert (second.taken.isoformat(sep=" "), second.taken_source) == (
        "2004-01-02 03:04:05",
        "XMP exif:DateTimeOriginal",
    )


def test_what_tells_a_raw_and_a_jpeg_of_one_name_apart(tmp_path: Path):
    """Capture times more than 2 s apart when both are dated; cameras that differ, whichever name
    sorts first; a file without a capture time compared by its camera alone."""
    from clipsort.photos.discover import capture_mismatch

    def jpeg(name: str, taken: str | None, model: str | None) -> Path:
        path = tmp_path / name
        picture("red").save(path, exif=exif_bytes(taken, "NIKON CORPORATION" if model else None, model))
        return path

    raw = raw_with_exif(tmp_path / "a.NEF", "2020:05:05 09:00:00", "NIKON CORPORATION", "NIKON D750")
    assert capture_mismatch(raw, jpeg("two seconds.jpg", "2020:05:05 09:00:02", "NIKON D750")) is None
    assert "taken 2020-05-05 09:00:00 and 2020-05-05 09:00:03" in (
        capture_mismatch(raw, jpeg("three seconds.jpg", "2020:05:05 09:00:03", "NIKON D750")) or ""
    )
    # the JPEG names the camera whose name sorts after the RAW's, and the one before
    assert capture_mismatch(raw, jpeg("z6.jpg", "2020:05:05 09:00:00", "NIKON Z 6")) == (
        "taken with NIKON D750 and NIKON Z 6"
    )
    assert capture_mismatch(raw, jpeg("d70.jpg", "2020:05:05 09:00:00", "NIKON D70")) is not None
    # a JPEG without a capture time (its file's time is today's): compared by its camera alone
    undated = jpeg("undated.jpg", None, "NIKON D750")
    os.utime(undated, (1_700_000_000, 1_700_000_000))
    assert read_facts(undated).taken_source == "mtime" and capture_mismatch(raw, undated) is None
    picture("red").save(tmp_path / "bare.NEF", "TIFF")  # a RAW that says nothing: its JPEG's partner
    assert capture_mismatch(tmp_path / "bare.NEF", jpeg("dated.jpg", "2001:01:01 00:00:00", "E775")) is None
