"""Keywords inside the photo file (``tag --into photo|both``): the worst cases first (a kill at any
moment, files clipsort may not replace, broken metadata, a second run), then what readers see.
ExifTool is the writer; each test skips cleanly without it."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, corpus, run_cli
from PIL import Image
from shapes import make_picture

from clipsort.photos.image_data import same_picture

EXIFTOOL = shutil.which("exiftool")
pytestmark = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is not installed")
MODEL = ["--model", f"local-dir:{COLOUR_MODEL}"]
COLOURS = ("red", "green", "blue")


def photo(folder: Path, colour: str, name: str, seed: int = 1, fmt: str = "JPEG") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    make_picture(colour, (320, 240), random.Random(seed)).save(path, fmt)
    return path


def label_file(folder: Path) -> Path:
    path = folder / "labels.txt"
    path.write_text("\n".join(COLOURS) + "\n")
    return path


#: The keyword fields read back: XMP's three and IPTC's.
FIELDS = ["-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject", "-XMP-digiKam:TagsList", "-IPTC:Keywords"]


def in_file(path: Path) -> dict[str, list[str]]:
    """The keyword fields exiftool reads in ``path`` (a photo or a sidecar)."""
    out = subprocess.run(
        [EXIFTOOL, "-j", *FIELDS, str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    record = json.loads(out)[0]
    return {k: v if isinstance(v, list) else [v] for k, v in record.items() if k != "SourceFile"}


def pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".clipsort-tmp")]


# ----------------------------------------------------------------------------- worst cases


def all_in_file(folder: Path) -> dict[Path, dict[str, list[str]]]:
    """The keyword fields exiftool reads inside every photo under ``folder``, in one call."""
    out = subprocess.run(
        [EXIFTOOL, "-j", "-r", *FIELDS, str(folder)],
        capture_output=True,
        text=True,
    ).stdout
    return {
        Path(r["SourceFile"]): {k: v if isinstance(v, list) else [v] for k, v in r.items() if k != "SourceFile"}
        for r in json.loads(out or "[]")
    }


def test_a_run_killed_at_any_moment_leaves_every_photo_whole_and_a_full_run_tags_each_once(tmp_path):
    """200 photos, twelve runs each killed at a random moment (each with another tag root, so each
    has photos to rewrite when it is killed), then a full run: no photo torn, no temporary file,
    every photo tagged once."""
    library = tmp_path / "library"
    originals = {}
    for i in range(200):
        colour = COLOURS[i % 3]
        path = photo(library / f"{i // 50}", colour, f"{colour}_{i:03d}.jpg", seed=i)
        originals[path] = (colour, pixels(path))
    labels = label_file(tmp_path)
    env = dict(os.environ, CLIPSORT_CACHE_DIR=str(tmp_path / "cache-dir"))
    command = [sys.executable, "-m", "clipsort", "tag", str(library), "-l", str(labels), *MODEL, "--into", "photo"]
    subprocess.run([sys.executable, "-m", "clipsort", "index", str(library), *MODEL], env=env, check=True)
    rng = random.Random(7)
    for kill in range(12):
        process = subprocess.Popen(
            [*command, "--tag-root", f"run{kill}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.5, 4.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        found = all_in_file(library)
        for path, (colour, before) in originals.items():
            assert pixels(path) == before, path
            assert found[path].get("Subject", [colour]) == [colour], (path, found[path])  # whole: one or none
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert temps(library) == []
    found = all_in_file(library)
    for path, (colour, before) in originals.items():
        assert pixels(path) == before
        fields = found[path]
        assert fields["Subject"] == [colour] and fields["Keywords"] == [colour], (path, fields)
        assert fields["HierarchicalSubject"] == [f"clipsort|{colour}"]


def test_a_temporary_file_left_by_a_killed_run_is_removed_and_others_files_are_not(tmp_path, capsys):
    red = photo(tmp_path, "red", "red.jpg")
    left = tmp_path / ".red.jpg.0123456789abcdef.clipsort-tmp"  # as a run killed before its rename leaves it
    left.write_bytes(red.read_bytes()[:100])
    theirs = [tmp_path / ".red.jpg.mine.clipsort-tmp", tmp_path / ".red.jpg.0123456789abcdeg.clipsort-tmp"]
    for path in theirs:
        path.write_text("not clipsort's")
    code, _, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(label_file(tmp_path)), *MODEL, "--into", "photo")
    assert code == 0, err
    assert not left.exists() and all(p.exists() for p in theirs)
    assert in_file(red)["Subject"] == ["red"]


def test_photos_clipsort_may_not_replace_whole_get_sidecars_and_the_summary_says_why(tmp_path, capsys):
    library = tmp_path / "library"
    read_only = photo(library, "red", "read-only.jpg")
    read_only.chmod(0o444)
    linked = photo(library, "green", "linked.jpg", seed=2)
    os.link(linked, tmp_path / "another-name.jpg")
    plain = photo(library, "blue", "plain.jpg", seed=3)
    before = {p: p.read_bytes() for p in (read_only, linked)}
    code, _, err = run_cli(capsys, "tag", str(library), "-l", str(label_file(tmp_path)), *MODEL, "--into", "photo")
    assert code == 0, err
    for path, data in before.items():
        assert path.read_bytes() == data  # untouched
        assert Path(f"{path}.xmp").exists()  # its keywords went to its sidecar
    assert "it is read-only" in err and "2 names (hard links)" in err
    assert in_file(plain)["Subject"] == ["blue"] and not Path(f"{plain}.xmp").exists()


def test_a_photo_with_broken_xmp_fails_alone_and_is_left_as_it_was(tmp_path, capsys):
    broken = photo(tmp_path, "red", "broken.jpg")
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=mine", str(broken)], check=True)
    data = broken.read_bytes()
    start = data.index(b"<x:xmpmeta")
    broken.write_bytes(data[:start] + b"<!DOCTYPE x [<!ENTITY a 'b'>]>" + data[start + 30 :])
    damaged = broken.read_bytes()
    good = photo(tmp_path, "blue", "good.jpg", seed=2)
    code, _, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(label_file(tmp_path)), *MODEL, "--into", "photo")
    assert code == 3, err
    assert broken.read_bytes() == damaged and "broken.jpg" in err and "XMP" in err
    assert in_file(good)["Subject"] == ["blue"]


def test_a_second_run_rewrites_nothing_and_embeds_nothing(tmp_path, capsys):
    pictures = [photo(tmp_path / "lib", c, f"{c}.jpg", seed=n) for n, c in enumerate(COLOURS)]
    labels = label_file(tmp_path)
    code, _, err = run_cli(capsys, "tag", str(tmp_path / "lib"), "-l", str(labels), *MODEL, "--into", "photo")
    assert code == 0, err
    stamps = {p: p.stat().st_mtime_ns for p in pictures}
    code, _, err = run_cli(capsys, "tag", str(tmp_path / "lib"), "-l", str(labels), *MODEL, "--into", "photo")
    assert code == 0, err
    assert "photos unchanged 3" in err and "embedded 0" in err
    assert {p: p.stat().st_mtime_ns for p in pictures} == stamps


def test_keywords_of_others_stay_and_clipsorts_own_give_way(tmp_path, capsys):
    mine = photo(tmp_path / "lib", "red", "mine.jpg")
    subprocess.run(
        [EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=Anna", "-IPTC:Keywords=Anna", "-IPTC:Keywords=Rome"]
        + ["-XMP-lr:HierarchicalSubject=People|Anna", str(mine)],
        check=True,
    )
    code, _, err = run_cli(
        capsys, "tag", str(tmp_path / "lib"), "-l", str(label_file(tmp_path)), *MODEL, "--into", "photo"
    )
    assert code == 0, err
    fields = in_file(mine)
    assert fields["Subject"] == ["Anna", "red"] and fields["Keywords"] == ["Anna", "Rome", "red"]
    assert fields["HierarchicalSubject"] == ["People|Anna", "clipsort|red"]
    other = tmp_path / "other.txt"
    other.write_text("crimson\n")
    code, _, err = run_cli(capsys, "tag", str(tmp_path / "lib"), "-l", str(other), *MODEL, "--into", "photo")
    assert code == 0, err
    fields = in_file(mine)
    assert "red" not in fields["Subject"] and fields["Subject"][0] == "Anna"
    assert [k for k in fields["Keywords"] if k != "crimson"] == ["Anna", "Rome"]


def test_raw_files_and_unwritable_formats_get_sidecars_and_both_writes_both(tmp_path, capsys):
    lib = tmp_path / "lib"
    jpeg = photo(lib, "red", "a.jpg")
    raw = lib / "b.nef"
    raw.write_bytes(b"not really a NEF")  # never opened for writing: RAW files are never rewritten
    gif = photo(lib, "blue", "c.gif", fmt="GIF")
    code, _, err = run_cli(capsys, "tag", str(lib), "-l", str(label_file(tmp_path)), *MODEL, "--into", "both")
    assert Path(f"{jpeg}.xmp").exists() and in_file(jpeg)["Subject"] == ["red"]
    assert raw.read_bytes() == b"not really a NEF"
    assert "camera RAW files are never rewritten" in err or "b.nef" in err
    assert Path(f"{gif}.xmp").exists() and "GIF files hold no keywords clipsort writes" in err


def test_without_exiftool_every_photo_gets_its_sidecar_and_the_summary_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLIPSORT_EXIFTOOL", str(tmp_path / "no-exiftool"))
    red = photo(tmp_path / "lib", "red", "red.jpg")
    before = red.read_bytes()
    code, _, err = run_cli(
        capsys, "tag", str(tmp_path / "lib"), "-l", str(label_file(tmp_path)), *MODEL, "--into", "photo"
    )
    assert code == 0, err
    assert red.read_bytes() == before and Path(f"{red}.xmp").exists()
    assert "exiftool is not installed" in err


# ----------------------------------------------------------------------------- what readers see


def metadata(path: Path) -> dict:
    """Every field exiftool lists, but the file system's, XMP, IPTC and ExifTool's own, and the
    offsets of blocks within the file and the size of HEIF's media box, which a longer XMP block moves or
    grows (the thumbnail's and the picture's bytes are compared), and WebP's flags, which say that an
    XMP chunk is there."""
    out = subprocess.run([EXIFTOOL, "-j", "-a", "-G1", "-b", str(path)], capture_output=True, text=True).stdout
    record = json.loads(out)[0]
    skip = ("System:", "File:", "XMP", "IPTC:", "ExifTool:", "Composite:", "SourceFile")
    return {
        k: v
        for k, v in record.items()
        if not k.startswith(skip) and not k.endswith(("Offset", "Offsets", "MediaDataSize", "WebP_Flags"))
    }


@pytest.mark.parametrize("kind", ["jpg", "tiff", "heic", "avif", "jxl"])
def test_corpus_photos_keep_their_picture_and_every_other_field(tmp_path, capsys, kind):
    folder = corpus(kind)
    sources = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))[:6]
    lib = tmp_path / "lib"
    lib.mkdir()
    copies = []
    for source in sources:
        copy = lib / source.name
        shutil.copyfile(source, copy)
        copies.append(copy)
    before = {p: (metadata(p), p.read_bytes()) for p in copies}
    labels = label_file(tmp_path)  # every label kept: every photo gets keywords to write
    code, _, err = run_cli(capsys, "tag", str(lib), "-l", str(labels), *MODEL, "--into", "photo", "--threshold", "0")
    assert code in (0, 3), err
    written = 0
    for path in copies:
        fields, data = before[path]
        if path.read_bytes() == data:
            continue  # refused or failed: left as it was (the test below names why)
        written += 1
        original = tmp_path / f"original{path.suffix}"
        original.write_bytes(data)
        assert same_picture(original, path), path
        assert metadata(path) == fields, path
        found = in_file(path)
        assert set(found["Subject"]) >= set(COLOURS), path  # every label kept (threshold 0)
        if kind in ("jpg", "tiff"):  # the formats that hold IPTC
            assert set(found["Keywords"]) >= set(COLOURS), path
            if shutil.which("exiv2"):
                from test_sidecar_readers import exiv2_keywords

                assert set(exiv2_keywords(path)["Xmp.dc.subject"]) >= set(COLOURS), path
    assert written >= 1, err


def test_same_picture_sees_one_changed_byte_of_the_picture_and_ignores_metadata(tmp_path):
    a = photo(tmp_path, "red", "a.jpg")
    b = tmp_path / "b.jpg"
    subprocess.run([EXIFTOOL, "-q", "-o", str(b), "-XMP-dc:Subject=x", str(a)], check=True)
    assert same_picture(a, b)
    data = bytearray(b.read_bytes())
    data[-10] ^= 0x01  # inside the scan
    b.write_bytes(bytes(data))
    assert not same_picture(a, b)
    p = photo(tmp_path, "red", "p.png", fmt="PNG")
    q = tmp_path / "q.png"
    subprocess.run([EXIFTOOL, "-q", "-o", str(q), "-XMP-dc:Subject=x", str(p)], check=True)
    assert same_picture(p, q)
    other = photo(tmp_path, "red", "o.png", seed=9, fmt="PNG")
    assert not same_picture(p, other)


# ----------------------------------------------------------------------------- sidecars carry the file's keywords


def test_a_sidecar_holds_the_photos_own_keywords_beside_clipsorts(tmp_path, capsys):
    """Immich takes the first non-empty of TagsList, hierarchicalSubject, IPTC Keywords, and digiKam
    lets a sidecar replace the file's XMP: the sidecar must carry the file's keywords in each field."""
    mine = photo(tmp_path / "lib", "red", "mine.jpg")
    subprocess.run(
        [EXIFTOOL, "-q", "-overwrite_original", "-IPTC:Keywords=Rome", "-IPTC:Keywords=Anna"]
        + ["-XMP-lr:HierarchicalSubject=People|Anna", str(mine)],
        check=True,
    )
    lib, labels = tmp_path / "lib", label_file(tmp_path)
    code, _, err = run_cli(capsys, "tag", str(lib), "-l", str(labels), *MODEL)
    assert code == 0, err
    fields = in_file(Path(f"{mine}.xmp"))
    assert fields["Subject"] == ["Anna", "Rome", "red"]
    assert fields["HierarchicalSubject"] == ["People|Anna", "Rome", "clipsort|red"]
    assert fields["TagsList"] == ["People/Anna", "Rome", "clipsort/red"]


def test_clipsorts_own_keywords_inside_the_photo_are_not_carried_as_the_persons(tmp_path, capsys):
    mine = photo(tmp_path / "lib", "red", "mine.jpg")
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=Anna", str(mine)], check=True)
    lib, labels = tmp_path / "lib", label_file(tmp_path)
    code, _, err = run_cli(capsys, "tag", str(lib), "-l", str(labels), *MODEL, "--into", "both")
    assert code == 0, err
    other = tmp_path / "other.txt"
    other.write_text("crimson\n")
    code, _, err = run_cli(capsys, "tag", str(lib), "-l", str(other), *MODEL, "--into", "both", "-t", "0")
    assert code == 0, err
    fields = in_file(Path(f"{mine}.xmp"))
    assert fields["Subject"] == ["Anna", "crimson"] and in_file(mine)["Subject"] == ["Anna", "crimson"]
    assert fields["TagsList"] == ["Anna", "clipsort/crimson"]


def test_only_untagged_looks_inside_photos_with_into_photo(tmp_path, capsys):
    lib, labels = tmp_path / "lib", label_file(tmp_path)
    tagged = photo(lib, "red", "tagged.jpg")
    code, _, err = run_cli(capsys, "tag", str(lib), "-l", str(labels), *MODEL, "--into", "photo")
    assert code == 0, err
    fresh = photo(lib, "blue", "fresh.jpg", seed=2)
    stamp = tagged.stat().st_mtime_ns
    more = tmp_path / "more.txt"
    more.write_text("red\nblue\ncrimson\n")
    code, out, err = run_cli(
        capsys, "tag", str(lib), "-l", str(more), *MODEL, "--into", "photo", "--only-untagged", "--json"
    )
    assert code == 0, err
    actions = {Path(r["path"]).name: r["action"] for r in map(json.loads, out.splitlines())}
    assert actions == {"tagged.jpg": "already-tagged", "fresh.jpg": "tagged"}
    assert tagged.stat().st_mtime_ns == stamp and in_file(fresh)["Subject"] == ["blue"]


# ----------------------------------------------------------------------------- the readers


def test_exiv2_and_darktable_read_the_keywords_inside_a_tagged_jpeg(tmp_path, capsys):
    """exiv2 (inside digiKam and darktable) reads the three fields inside the file; darktable-cli
    imports a tagged JPEG with no sidecar beside it and its export carries clipsort's keyword."""
    from test_sidecar_readers import exiv2_keywords

    lib, labels = tmp_path / "lib", label_file(tmp_path)
    red = photo(lib, "red", "red.jpg")
    code, _, err = run_cli(capsys, "tag", str(lib), "-l", str(labels), *MODEL, "--into", "photo")
    assert code == 0, err
    assert not Path(f"{red}.xmp").exists()
    keys = exiv2_keywords(red)
    assert keys["Xmp.dc.subject"] == ["red"] and keys["Xmp.lr.hierarchicalSubject"] == ["clipsort|red"]
    assert keys["Xmp.digiKam.TagsList"] == ["clipsort/red"]
    darktable = shutil.which("darktable-cli")
    if darktable is None:
        pytest.skip("darktable-cli is not installed (exiv2 checked above)")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    alone = scratch / "red.jpg"  # a copy with no sidecar beside it
    shutil.copyfile(red, alone)
    export = scratch / "export.jpg"
    subprocess.run(
        [darktable, str(alone), str(export), "--core", "--configdir", str(scratch / "dt"), "--library", ":memory:"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert "red" in in_file(export).get("Subject", [])


def test_formats_says_which_formats_are_tagged_inside_and_what_the_rest_need(tmp_path, capsys, monkeypatch):
    code, out, _ = run_cli(capsys, "formats", "--json")
    rows = {r["format"]: r for r in map(json.loads, out.splitlines())}
    assert code == 0 and rows["JPEG"]["tags_inside"] and rows["HEIC/HEIF"]["tags_inside"]
    assert not rows["camera RAW"]["tags_inside"] and "--into-dng" in rows["camera RAW"]["tags_inside_note"]
    assert not rows["GIF"]["tags_inside"]
    monkeypatch.setenv("CLIPSORT_EXIFTOOL", str(tmp_path / "none"))
    code, out, _ = run_cli(capsys, "formats")
    assert code == 0 and "tag --into photo: needs exiftool" in out


def test_show_lists_keywords_by_where_they_live_and_who_wrote_them(tmp_path, capsys):
    lib, labels = tmp_path / "lib", label_file(tmp_path)
    red = photo(lib, "red", "red.jpg")
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=Anna", str(red)], check=True)
    code, _, err = run_cli(capsys, "tag", str(lib), "-l", str(labels), *MODEL, "--into", "both")
    assert code == 0, err
    code, out, err = run_cli(capsys, "show", str(red), *MODEL, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["in_file"]["clipsort"]["subject"] == ["red"] and record["in_file"]["others"]["subject"] == ["Anna"]
    assert record["in_file"]["iptc"] == ["red"]
    sidecar = record["sidecars"][0]
    assert sidecar["clipsort"]["subject"] == ["red"] and sidecar["others"]["subject"] == ["Anna"]
    code, out, _ = run_cli(capsys, "show", str(red), *MODEL)
    assert "  in file" in out and "    clipsort  red" in out and "    others    Anna" in out and "IPTC      red" in out


# ----------------------------------------------------------------------------- undo


def test_undo_puts_the_keywords_back_and_refuses_a_photo_edited_since(tmp_path, capsys):
    lib, labels = tmp_path / "lib", label_file(tmp_path)
    red = photo(lib, "red", "red.jpg")
    subprocess.run(
        [EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=Anna", "-IPTC:Keywords=Rome", str(red)], check=True
    )
    green, blue = photo(lib, "green", "green.jpg", seed=2), photo(lib, "blue", "blue.jpg", seed=3)
    before = {p: (pixels(p), in_file(p)) for p in (red, green, blue)}
    code, _, err = run_cli(capsys, "tag", str(lib), "-l", str(labels), *MODEL, "--into", "photo")
    assert code == 0, err
    assert in_file(blue)["Subject"] == ["blue"]
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject+=edited", str(blue)], check=True)
    code, out, err = run_cli(capsys, "history")
    assert "tag 3 photos (keywords inside)" in out, out
    code, _, err = run_cli(capsys, "undo")
    assert code == 3 and f"{blue} changed since it was tagged" in err and "undid 2 photos" in err
    for path in (red, green):
        assert pixels(path) == before[path][0] and in_file(path) == before[path][1], path
    assert in_file(blue)["Subject"] == ["blue", "edited"]  # left as the person left it


def test_a_killed_tag_run_is_settled_and_undone_whole(tmp_path):
    library = tmp_path / "library"
    originals = {}
    for i in range(60):
        colour = COLOURS[i % 3]
        path = photo(library, colour, f"{colour}_{i:02d}.jpg", seed=i)
        originals[path] = path.read_bytes()
    labels = label_file(tmp_path)
    env = dict(os.environ, CLIPSORT_CACHE_DIR=str(tmp_path / "cache-dir"))
    clipsort = [sys.executable, "-m", "clipsort"]
    subprocess.run([*clipsort, "index", str(library), *MODEL], env=env, check=True)
    process = subprocess.Popen(
        [*clipsort, "tag", str(library), "-l", str(labels), *MODEL, "--into", "photo"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(random.Random(5).uniform(0.6, 1.6))  # most often while it rewrites photos
    process.send_signal(signal.SIGKILL)
    process.wait()
    undone = subprocess.run([*clipsort, "undo"], env=env, capture_output=True, text=True)
    if "nothing to undo" in undone.stderr:  # killed before its first rewrite: no journal was needed
        assert undone.returncode == 2, undone.stderr
    else:
        assert undone.returncode == 0, undone.stderr
    assert temps(library) == []  # none without a journal record that names it
    for path, data in originals.items():
        assert pixels(path) == pixels_of_bytes(data, tmp_path) and "Subject" not in in_file(path), path


def pixels_of_bytes(data: bytes, scratch: Path) -> bytes:
    copy = scratch / "original.jpg"
    copy.write_bytes(data)
    return pixels(copy)


def test_a_tag_journal_naming_a_photo_outside_its_folders_is_refused_whole(tmp_path, capsys):
    from clipsort.store.journal import Journal

    lib, outside = tmp_path / "lib", photo(tmp_path / "elsewhere", "red", "victim.jpg")
    lib.mkdir()
    journal = Journal.create("tag", [lib], None, {"into": "photo"})
    op = journal.begin_retag(
        outside,
        {"xmp": False, "fields": {}, "iptc": []},
        outside.with_name(".victim.jpg.0123456789abcdef.clipsort-tmp"),
    )
    journal.done(op, [outside])
    journal.end({})
    journal.close()
    data = outside.read_bytes()
    code, _, err = run_cli(capsys, "undo")
    assert code != 0 and "is outside the folders its run tagged" in err and "nothing was touched" in err
    assert outside.read_bytes() == data


def test_recovery_settles_a_rewrite_cut_between_its_journal_records(tmp_path, capsys):
    """A run killed after its journal's begin record: the photo is whole either way; recovery
    removes the temporary file and records whether the rename happened, and undo then puts back
    the keywords of a photo that was replaced and leaves the other alone."""
    from clipsort.store.journal import Journal

    lib = tmp_path / "lib"
    kept, replaced = photo(lib, "red", "kept.jpg"), photo(lib, "blue", "replaced.jpg", seed=2)
    kept_data = kept.read_bytes()
    journal = Journal.create("tag", [lib], None, {"into": "photo"})
    temps_left = []
    for path in (kept, replaced):
        temp = path.with_name(f".{path.name}.0123456789abcdef.clipsort-tmp")
        temp.write_bytes(path.read_bytes())
        temps_left.append(temp)
        journal.begin_retag(path, {"xmp": False, "fields": {}, "iptc": []}, temp)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=blue", str(replaced)], check=True)
    journal.close()  # killed: no done, no end, lock released
    code, _, err = run_cli(capsys, "undo")
    assert code == 0, err
    assert "was rolled back" in err and "was completed" in err
    assert not any(t.exists() for t in temps_left)
    assert kept.read_bytes() == kept_data
    assert "Subject" not in in_file(replaced)


def test_dng_files_are_rewritten_only_when_asked_and_other_raw_files_never(tmp_path, capsys):
    lib = tmp_path / "lib"
    lib.mkdir()
    dng = lib / "photo.dng"
    shutil.copyfile(corpus("raw", "nikon_z_9_high_efficiency_compressed_dx_cropped_max_overexposed.dng"), dng)
    arw = lib / "photo.arw"
    shutil.copyfile(corpus("raw", "sony_alpha_a7iii_raw_image.ARW"), arw)
    for path in (dng, arw):
        path.chmod(0o644)  # copies of a read-only corpus: a read-only photo is never rewritten
    originals = {p: p.read_bytes() for p in (dng, arw)}
    labels = label_file(tmp_path)
    args = ["tag", str(lib), "-l", str(labels), *MODEL, "--into", "photo", "--threshold", "0", "--no-pairs"]
    code, _, err = run_cli(capsys, *args)
    assert {p: p.read_bytes() for p in originals} == originals  # no RAW file rewritten by default
    assert Path(f"{dng}.xmp").exists() and "camera RAW files are never rewritten" in err
    code, _, err = run_cli(capsys, *args, "--into-dng")
    assert arw.read_bytes() == originals[arw]
    if dng.read_bytes() != originals[dng]:  # this exiftool writes this DNG: inside it, the rest as it was
        assert set(in_file(dng)["Subject"]) >= set(COLOURS)
        assert metadata(dng) == metadata_of(originals[dng], tmp_path)
    else:  # a DNG version this exiftool does not know yet: left as it was, its sidecar said why
        assert "exiftool does not write it" in err and Path(f"{dng}.xmp").exists(), err
        assert str(dng) not in err.split("exiftool does not write it")[1].splitlines()[0]


def metadata_of(data: bytes, scratch: Path) -> dict:
    copy = scratch / "original.dng"
    copy.write_bytes(data)
    return metadata(copy)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp_photos_get_their_keywords_inside_and_keep_their_picture(tmp_path, capsys, fmt):
    lib, labels = tmp_path / "lib", label_file(tmp_path)
    suffix = ".png" if fmt == "PNG" else ".webp"
    path = photo(lib, "green", f"green{suffix}", fmt=fmt)
    original = tmp_path / f"original{suffix}"
    shutil.copyfile(path, original)
    code, _, err = run_cli(capsys, "tag", str(lib), "-l", str(labels), *MODEL, "--into", "photo")
    assert code == 0, err
    if path.read_bytes() == original.read_bytes():  # an exiftool that does not write this file
        assert "exiftool does not write it" in err and Path(f"{path}.xmp").exists(), err
        return
    assert in_file(path)["Subject"] == ["green"] and "Keywords" not in in_file(path)  # no IPTC in these
    assert same_picture(original, path) and pixels(original) == pixels(path)
    assert metadata(path) == metadata(original)
    if shutil.which("exiv2"):
        from test_sidecar_readers import exiv2_keywords

        assert exiv2_keywords(path)["Xmp.dc.subject"] == ["green"]


def test_a_photo_with_more_keywords_than_undo_keeps_gets_a_sidecar_and_a_huge_packet_is_refused(
    tmp_path, capsys, monkeypatch
):
    """Foreign input: every photo rewritten must be undoable (its keywords fit one journal line),
    and a packet past the sidecar's 16 MiB limit is not parsed."""
    from clipsort.writes import in_photo

    lib, labels = tmp_path / "lib", label_file(tmp_path)
    crowded = photo(lib, "red", "crowded.png", fmt="PNG")  # a JPEG segment holds no such packet
    # The limits, made smaller here (64 KiB kept for undo, a 100 KiB packet) so that the test
    # need not build packets of megabytes: the rules are the same.
    monkeypatch.setattr(in_photo, "UNDO_RECORD_LIMIT", 64 << 10)
    items = "".join(f"<rdf:li>keyword {n:06d}</rdf:li>" for n in range(6_000))
    packet = tmp_path / "crowded.xmp"
    packet.write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", f"-XMP<={packet}", str(crowded)], check=True)
    before = crowded.read_bytes()
    code, _, err = run_cli(capsys, "tag", str(lib), "-l", str(labels), *MODEL, "--into", "photo")
    assert code == 0, err
    assert crowded.read_bytes() == before and "more keywords than clipsort keeps for undo" in err
    assert Path(f"{crowded}.xmp").exists()
    monkeypatch.setattr(in_photo, "XMP_LIMIT", 100 << 10)
    code, _, err = run_cli(capsys, "tag", str(lib), "-l", str(labels), *MODEL, "--into", "photo")
    assert code == 3 and crowded.read_bytes() == before and "XMP packet is larger than" in err
