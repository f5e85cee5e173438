"""Careless and hostile input: links, locks, special files, huge files, bad numbers, odd names.

Each test rebuilds a case of issue 23 and names the promise it guards: the file outside is
untouched, the run goes on where it should, the message is one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_MODEL, make_colour_photos, run_cli
from PIL import Image

from clipsort.errors import ExitCode

CLI = [sys.executable, "-m", "clipsort"]
MODEL = ["--model", str(COLOUR_MODEL)]
SMALL = {"min_px": 64, "max_px": 160}


def tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): (
            "link->" + os.readlink(p) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def photo(path: Path, colour: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (96, 96), colour).save(path)
    return path


def one_line_error(err: str) -> bool:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    return len(lines) == 1 and "internal error" not in err and "Traceback" not in err


# ----------------------------------------------------------------------------- locks and the cache file


@pytest.mark.parametrize("planted", ["symlink", "hardlink", "foreign"])
def test_a_file_planted_at_the_cache_lock_is_never_emptied(tmp_path, capsys, planted):
    """Promise: clipsort never truncates a file that is not its own lock (a link planted at
    <cache>.lock in a shared folder emptied its target on every run)."""
    victim = tmp_path / "victim.txt"
    # an empty file is what clipsort's own lock looks like between runs: only its second name
    # tells the hard link apart
    contents = "" if planted == "hardlink" else "precious notes"
    victim.write_text(contents)
    cache = tmp_path / "shared" / "cache.sqlite3"
    cache.parent.mkdir()
    lock = Path(str(cache) + ".lock")
    if planted == "symlink":
        os.symlink(victim, lock)
    elif planted == "hardlink":
        os.link(victim, lock)
    else:
        shutil.copy(victim, lock)
    photo(tmp_path / "lib" / "p.jpg")
    code, _, err = run_cli(capsys, "index", str(tmp_path / "lib"), *MODEL, "--cache", str(cache))
    assert code == ExitCode.ERROR and one_line_error(err), err
    reason = {"symlink": "symbolic link", "hardlink": "hard links", "foreign": "not clipsort's"}[planted]
    assert str(lock) in err and reason in err
    assert victim.read_text() == contents and lock.read_text() == contents
    assert not cache.exists()


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_links_planted_at_the_cache_files_are_refused(tmp_path, capsys, suffix):
    """Promise: SQLite is never led through a link into writing another file."""
    victim = tmp_path / "victim.db"
    victim.write_bytes(b"")  # empty: SQLite would happily make a database of it
    cache = tmp_path / "cache.sqlite3"
    os.symlink(victim, Path(str(cache) + suffix))
    photo(tmp_path / "lib" / "p.jpg")
    code, _, err = run_cli(capsys, "index", str(tmp_path / "lib"), *MODEL, "--cache", str(cache))
    assert code == ExitCode.ERROR and one_line_error(err) and "symbolic link" in err, err
    assert victim.read_bytes() == b""


def test_an_ordinary_second_run_reuses_its_own_lock(tmp_path, capsys):
    photo(tmp_path / "lib" / "p.jpg")
    cache = tmp_path / "cache.sqlite3"
    for _ in range(2):
        code, _, err = run_cli(capsys, "index", str(tmp_path / "lib"), *MODEL, "--cache", str(cache))
        assert code == 0, err
    assert Path(str(cache) + ".lock").read_bytes() == b""  # emptied when released


# ----------------------------------------------------------------------------- links in the walk


def _library_with_links(tmp_path: Path) -> tuple[Path, Path]:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    make_colour_photos(inbox, ["red", "blue"], 4, **SMALL)
    photo(outside / "theirs.jpg", "green")
    (outside / "theirs.jpg.xmp").write_text("<x:xmpmeta/>")
    photo(outside / "folder" / "other.jpg", "red")
    (outside / "folder" / "other.jpg.xmp").write_text("<x:xmpmeta/>")
    os.symlink(outside / "folder", inbox / "linked-folder")
    os.symlink(os.path.join("..", "outside", "theirs.jpg"), inbox / "relative-link.jpg")
    return inbox, outside


@pytest.mark.parametrize("follow", [False, True])
def test_sort_never_moves_what_links_lead_to_and_never_leaves_a_link_dangling(tmp_path, labels_file, follow):
    """Promise: sort moves, copies or deletes only files whose real location is inside the paths
    given; a photo that is a link stays where it is, still pointing at its photo."""
    inbox, outside = _library_with_links(tmp_path)
    before = tree(outside)
    args = ["sort", str(inbox), "-l", str(labels_file), *MODEL, "-d", str(tmp_path / "sorted")]
    result = subprocess.run([*CLI, *args, *(["--follow-links"] if follow else [])], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert tree(outside) == before
    link = inbox / "relative-link.jpg"
    assert link.is_symlink() and link.resolve() == (outside / "theirs.jpg").resolve()
    assert "left out: " in result.stderr and "relative-link.jpg: the photo is a symbolic link" in result.stderr
    if follow:
        assert "outside the folders given" in result.stderr
    else:
        assert "linked-folder: a symbolic link to a folder: not followed" in result.stderr
    sorted_photos = [p for p in (tmp_path / "sorted").rglob("*") if p.suffix.lower() in (".jpg", ".png")]
    assert len(sorted_photos) == 4  # the library's own photos


def test_a_folder_in_the_destination_that_leads_elsewhere_is_not_followed(tmp_path, labels_file, capsys):
    """Promise: sort never places a photo outside the destination through a link planted in it."""
    inbox, dest, elsewhere = tmp_path / "inbox", tmp_path / "dest", tmp_path / "elsewhere"
    photo(inbox / "p.jpg", "red")
    dest.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, dest / "red")
    code, _, err = run_cli(capsys, "sort", str(inbox), "-l", str(labels_file), *MODEL, "-d", str(dest))
    assert code == ExitCode.PARTIAL and "leads outside the destination" in err
    assert list(elsewhere.iterdir()) == [] and (inbox / "p.jpg").exists()


# ----------------------------------------------------------------------------- folders other applications manage


def _photos_library(pictures: Path, name: str = "Photos Library.photoslibrary") -> Path:
    """An Apple Photos library laid out as macOS makes it."""
    bundle = pictures / name
    (bundle / "database").mkdir(parents=True)
    (bundle / "database" / "Photos.sqlite").write_bytes(b"SQLite format 3\x00")
    photo(bundle / "originals" / "A" / "0A1B2C3D.jpeg", "red")
    photo(bundle / "resources" / "derivatives" / "0A1B2C3D_1_105_c.jpeg", "red")
    return bundle


@pytest.mark.parametrize("name", ["Photos Library.photoslibrary", "Photos Library copy"])
def test_sort_and_tag_never_touch_an_apple_photos_library(tmp_path, labels_file, capsys, name):
    """Promise: nothing is moved out of or written into a library Apple Photos manages (by its
    name, or by its layout when renamed); the summary names it."""
    pictures = tmp_path / "Pictures"
    photo(pictures / "loose.jpg", "blue")
    bundle = _photos_library(pictures, name)
    before = tree(bundle)
    for command in (["tag"], ["sort", "-d", str(tmp_path / "Sorted")]):
        code, out, err = run_cli(capsys, *command, str(pictures), "-l", str(labels_file), *MODEL)
        assert code == 0, err
        assert tree(bundle) == before
        assert f"left out: {bundle}: an Apple Photos library" in err
    assert (tmp_path / "Sorted" / "blue" / "loose.jpg").exists()
    # named directly, or a photo inside it: refused, exit 3
    code, _, err = run_cli(capsys, "tag", str(bundle / "originals"), "-l", str(labels_file), *MODEL)
    assert code == ExitCode.PARTIAL and "an Apple Photos library" in err and tree(bundle) == before


def test_read_only_commands_enter_managed_folders_only_when_asked(tmp_path, capsys):
    pictures = tmp_path / "Pictures"
    photo(pictures / "loose.jpg", "blue")
    _photos_library(pictures)
    immich = pictures / "immich" / "library"
    photo(immich / "user" / "2024" / "x.jpg", "green")
    (immich / ".immich").write_text("")
    code, out, err = run_cli(capsys, "search", "red", str(pictures), *MODEL, "--top", "0", "--paths")
    assert code == 0, err
    assert out.splitlines() == [str(pictures / "loose.jpg")]
    assert "Immich's storage" in err
    code, out, err = run_cli(
        capsys, "search", "red", str(pictures), *MODEL, "--top", "0", "--paths", "--include-managed"
    )
    assert code == 0, err
    assert len(out.splitlines()) == 4


def test_tag_and_sort_have_no_include_managed_option(capsys):
    for command in ("tag", "sort"):
        code, _, err = run_cli(capsys, command, ".", "-l", "x.txt", "--include-managed")
        assert code == ExitCode.USAGE and "No such option" in err


# ----------------------------------------------------------------------------- special and huge files


@pytest.mark.parametrize("kind", ["fifo", "device", "link-outside", "too-large"])
def test_a_sidecar_that_is_not_a_plain_small_file_is_named_and_left_untouched(tmp_path, labels_file, kind):
    """Promise: a FIFO or device where a sidecar is expected never blocks or floods a run; a link
    is never written through; a sidecar over the size limit is named and left as it is."""
    library = tmp_path / "lib"
    make_colour_photos(library, ["red", "green"], 4, **SMALL)
    target = sorted(p for p in library.rglob("*") if p.suffix.lower() in (".jpg", ".png"))[0]
    sidecar = target.with_name(target.name + ".xmp")
    outside = tmp_path / "outside.xmp"
    if kind == "fifo":
        os.mkfifo(sidecar)
    elif kind == "device":
        os.symlink("/dev/zero", sidecar)
    elif kind == "link-outside":
        outside.write_text('<x:xmpmeta xmlns:x="adobe:ns:meta/"/>')
        os.symlink(outside, sidecar)
    else:
        with open(sidecar, "wb") as handle:
            handle.truncate(16 * 1024 * 1024 + 1)
    before = outside.read_bytes() if outside.exists() else None
    result = subprocess.run(
        [*CLI, "tag", str(library), "-l", str(labels_file), *MODEL], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == ExitCode.PARTIAL, result.stderr
    assert result.stderr.count(sidecar.name) == 1 and "left untouched" in result.stderr
    assert "tagged 3" in result.stderr or ("tagged" in result.stderr and "failed 1" in result.stderr)
    if kind == "link-outside":
        assert outside.read_bytes() == before and sidecar.is_symlink()
    if kind == "too-large":
        assert sidecar.stat().st_size == 16 * 1024 * 1024 + 1


def test_a_sidecar_declaring_entities_is_left_untouched(tmp_path):
    """Promise: XMP never declares a DOCTYPE or entities; a sidecar that does (how a small file
    expands into gigabytes) is refused before it is parsed, byte for byte as it was."""
    from clipsort.errors import SidecarError
    from clipsort.labels.label_set import parse_labels
    from clipsort.writes.sidecar import keywords_for, write_xmp

    target = photo(tmp_path / "p.jpg")
    entities = "".join(f'<!ENTITY e{i} "{"&e" + str(i - 1) + ";" * 1 if i else "x"}">' for i in range(3))
    data = (
        f'<?xml version="1.0"?><!DOCTYPE x [{entities}]><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="">&e2;'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    ).encode()
    sidecar = target.with_name("p.jpg.xmp")
    sidecar.write_bytes(data)
    with pytest.raises(SidecarError, match="DOCTYPE or entities"):
        write_xmp(target, keywords_for(parse_labels("red\n").labels), "clipsort", "m")
    assert sidecar.read_bytes() == data


def test_a_hard_linked_sidecar_leaves_its_other_name_as_it_was(tmp_path, labels_file, capsys):
    """Promise: a sidecar is replaced atomically, so a second name of it elsewhere keeps its bytes."""
    target = photo(tmp_path / "lib" / "p.jpg")
    original = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about=""/></rdf:RDF></x:xmpmeta>'
    )
    elsewhere = tmp_path / "elsewhere.xmp"
    elsewhere.write_bytes(original)
    os.link(elsewhere, target.with_name("p.jpg.xmp"))
    code, _, err = run_cli(capsys, "tag", str(tmp_path / "lib"), "-l", str(labels_file), *MODEL)
    assert code == 0, err
    assert elsewhere.read_bytes() == original
    assert b"<rdf:li>red</rdf:li>" in target.with_name("p.jpg.xmp").read_bytes()


def test_a_large_sidecar_within_the_limit_is_merged_keeping_every_keyword(tmp_path):
    """Promise: a sidecar of many thousands of keywords is merged, keeping them all (linearly: see
    benchmarks/sidecar_merge.py for the time per megabyte)."""
    from clipsort.labels.label_set import parse_labels
    from clipsort.writes.sidecar import keywords_for, read_keywords, write_xmp

    target = photo(tmp_path / "p.jpg")
    items = "".join(f"<rdf:li>keyword {i} &amp; more</rdf:li>" for i in range(60_000))
    target.with_name("p.jpg.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>{items}'
        "</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    labels = parse_labels("red\n")
    write_xmp(target, keywords_for(labels.labels), "clipsort", "m")
    found = read_keywords(target.with_name("p.jpg.xmp"))
    assert len(found["others"]["subject"]) == 60_000 and found["clipsort"]["subject"] == ["red"]
    assert found["others"]["subject"][-1] == "keyword 59999 & more"


@pytest.mark.parametrize("where", ["labels", "photo", "config"])
def test_special_files_given_as_paths_are_never_opened(tmp_path, where):
    """Promise: a FIFO given as a label file, a photo or found as the config file ends the run with
    one line, at once (opening it would block)."""
    fifo = tmp_path / "special"
    os.mkfifo(fifo)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\n")
    photo(tmp_path / "lib" / "p.jpg")
    env = {**os.environ, "CLIPSORT_CONFIG_DIR": str(tmp_path / "config")}
    args = ["tag", str(tmp_path / "lib"), "-l", str(labels), *MODEL, "-n"]
    if where == "labels":
        args[3] = str(fifo)
    elif where == "photo":
        args[1] = str(fifo.rename(tmp_path / "special.jpg"))
    else:
        (tmp_path / "config").mkdir()
        fifo.rename(tmp_path / "config" / "config.toml")
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode in (ExitCode.USAGE, ExitCode.PARTIAL), result.stderr
    assert "FIFO" in result.stderr and one_line_error(result.stderr), result.stderr


def test_a_huge_label_file_is_refused_before_it_is_read(tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    with open(labels, "w") as handle:
        handle.truncate(65 * 1024 * 1024)
    code, _, err = run_cli(capsys, "labels", "check", str(labels))
    assert code == ExitCode.USAGE and "65.0 MiB" in err and one_line_error(err)
    assert "more than the 64 MiB a label file may be" in err
    labels.write_text("".join(f"label{i}\n" for i in range(25_000)))
    code, _, err = run_cli(capsys, "labels", "check", str(labels))
    assert code == ExitCode.USAGE and "at most 20000" in err and one_line_error(err)


# ----------------------------------------------------------------------------- numbers


def _learned_file(tmp_path: Path, capsys) -> Path:
    """A real learned label file (learn over a few example photos)."""
    examples = tmp_path / "examples"
    for colour in ("red", "green", "blue"):
        make_colour_photos(examples / colour, [colour], 3, seed=hash(colour) % 100, **SMALL)
    output = tmp_path / "mine.labels.json"
    code, _, err = run_cli(capsys, "learn", str(examples), "-o", str(output), *MODEL)
    assert code == 0, err
    return output


def test_learned_files_with_nan_infinity_or_the_wrong_size_are_refused(tmp_path, capsys, labels_file):
    """Promise: a learned label file whose numbers are not finite, or whose vectors are not the
    model's size, is refused by labels check and by every run, in one line, before any photo."""
    learned = _learned_file(tmp_path, capsys)
    good = json.loads(learned.read_text())
    photo(tmp_path / "lib" / "p.jpg")
    cases = {
        "nan": learned.read_text().replace(json.dumps(good["labels"][0]["b"]), "NaN", 1),
        "overflow": learned.read_text().replace(json.dumps(good["labels"][1]["a"]), "1e999", 1),
        "zeros": json.dumps({**good, "labels": [{**good["labels"][0], "direction": [0] * 32}, *good["labels"][1:]]}),
    }
    shorter = {**good, "labels": [{**r, "direction": r["direction"][:-3]} for r in good["labels"]]}
    cases["dimension"] = json.dumps(shorter)
    for name, text in cases.items():
        bad = tmp_path / f"{name}.labels.json"
        bad.write_text(text)
        code, _, err = run_cli(capsys, "labels", "check", str(bad))
        assert code == ExitCode.USAGE and one_line_error(err), (name, err)
        code, out, err = run_cli(capsys, "sort", str(tmp_path / "lib"), "-l", str(bad), *MODEL, "-n")
        assert code == ExitCode.USAGE and one_line_error(err) and out == "", (name, err)
    assert (tmp_path / "lib" / "p.jpg").exists()


@pytest.mark.parametrize("damage", ["nan", "short"])
def test_damaged_cached_vectors_are_not_used_and_json_stays_json(tmp_path, capsys, labels_file, damage):
    """Promise: a cache row with NaN or of the wrong length never decides anything: the photo is
    embedded again, the run says so once, and --json prints valid JSON."""
    make_colour_photos(tmp_path / "lib", ["red", "green", "blue"], 6, **SMALL)
    cache = tmp_path / "cache.sqlite3"
    code, _, err = run_cli(capsys, "index", str(tmp_path / "lib"), *MODEL, "--cache", str(cache))
    assert code == 0, err
    db = sqlite3.connect(cache)
    blob = np.full(32, np.nan, dtype=np.float16).tobytes() if damage == "nan" else b"\x00\x3c" * 7
    db.execute("UPDATE images SET vector=? WHERE id IN (SELECT id FROM images LIMIT 3)", (blob,))
    db.execute("UPDATE texts SET vector=? WHERE id IN (SELECT id FROM texts LIMIT 5)", (blob,))
    db.commit()
    db.close()
    code, out, err = run_cli(
        capsys, "tag", str(tmp_path / "lib"), "-l", str(labels_file), *MODEL, "--json", "-n", "--cache", str(cache)
    )
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 6 and all(r["labels"] for r in records)
    assert err.count("damaged vectors") == 1 and "embedded 3, from cache 3" in err


def test_json_output_never_holds_bare_nan():
    from clipsort.render import json_text

    text = json_text({"score": float("nan"), "scores": {"a": float("inf"), "b": 0.5}})
    assert json.loads(text) == {"score": None, "scores": {"a": None, "b": 0.5}}


@pytest.mark.parametrize("option", ["--threshold", "--margin"])
def test_nan_is_not_a_number_on_the_command_line(tmp_path, capsys, labels_file, option):
    code, _, err = run_cli(capsys, "sort", str(tmp_path), "-l", str(labels_file), option, "nan", "-n")
    assert code == ExitCode.USAGE and "not a finite number" in err


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["tag", "--tag-root", "root\x1b[31m"], "the tag root"),
        (["tag", "--tag-root", "a\nb"], "the tag root"),
        (["sort", "--unsorted-name", "none\nof these"], "--unsorted-name"),
        (["sort", "--unsorted-name", "\x1b[2Jcleared"], "--unsorted-name"),
        (["sort", "--pattern", "{label}/\x07{year}"], "--pattern"),
    ],
)
def test_names_with_control_characters_are_refused_before_any_work(tmp_path, capsys, labels_file, args, what):
    photo(tmp_path / "lib" / "p.jpg")
    code, out, err = run_cli(capsys, args[0], str(tmp_path / "lib"), "-l", str(labels_file), *args[1:])
    assert code == ExitCode.USAGE and what in err and "control characters" in err and one_line_error(err)
    assert out == "" and not list((tmp_path / "lib").glob("*.xmp"))


def test_a_toml_tag_root_with_control_characters_is_refused_with_its_line(tmp_path, capsys):
    labels = tmp_path / "labels.toml"
    labels.write_text('threshold = 0.5\ntag_root = "ours\\u0007"\n[labels.red]\n')
    code, _, err = run_cli(capsys, "labels", "check", str(labels))
    assert code == ExitCode.USAGE and "labels.toml:2" in err and "control characters" in err


def test_a_tag_with_an_ampersand_writes_well_formed_xmp(tmp_path, capsys):
    """Promise: whatever a label holds, the sidecar is XML every reader parses."""
    from xml.dom import minidom

    photo(tmp_path / "lib" / "p.jpg", "red")
    labels = tmp_path / "labels.txt"
    labels.write_text("Tom & Jerry <3: red | a red picture\n")
    code, _, err = run_cli(capsys, "tag", str(tmp_path / "lib"), "-l", str(labels), *MODEL, "--threshold", "0.01")
    # '<' is not allowed in labels (a folder name on Windows): refused in one line
    assert code == ExitCode.USAGE and one_line_error(err)
    labels.write_text("Tom & Jerry: red | a red picture\n")
    code, _, err = run_cli(capsys, "tag", str(tmp_path / "lib"), "-l", str(labels), *MODEL, "--threshold", "0.01")
    assert code == 0, err
    document = minidom.parse(str(tmp_path / "lib" / "p.jpg.xmp"))
    assert "Tom & Jerry" in document.toxml().replace("&amp;", "&")


def _photo_with_camera(path: Path, make: str, model: str, colour: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, model
    Image.new("RGB", (96, 96), colour).save(path, exif=exif.tobytes())
    return path


def test_a_name_too_long_fails_that_photo_and_the_run_goes_on(tmp_path, capsys, labels_file):
    """Promise: a folder name over the file system's limits (a 300-character camera name) fails
    its photo (exit 3), named; the other photos are sorted."""
    _photo_with_camera(tmp_path / "in" / "long.jpg", "Maker", "X" * 300)
    _photo_with_camera(tmp_path / "in" / "short.jpg", "Maker", "Z9", "blue")
    code, _, err = run_cli(
        capsys,
        "sort",
        str(tmp_path / "in"),
        "-l",
        str(labels_file),
        *MODEL,
        "-d",
        str(tmp_path / "out"),
        "--pattern",
        "{camera}/{label}",
    )
    assert code == ExitCode.PARTIAL and "long.jpg" in err and "more than the file system allows" in err, err
    assert "internal error" not in err
    assert (tmp_path / "in" / "long.jpg").exists() and (tmp_path / "out" / "Maker Z9" / "blue" / "short.jpg").exists()


def test_deeply_nested_labels_past_the_path_limit_fail_their_photos_only(tmp_path, capsys):
    deep = "/".join(f"{i:02d}" + "x" * 98 for i in range(45))  # 45 folders of 100 characters
    labels = tmp_path / "labels.txt"
    labels.write_text(f"{deep}/red: a red picture\nblue\n")
    photo(tmp_path / "in" / "r.jpg", "red")
    photo(tmp_path / "in" / "b.jpg", "blue")
    code, out, err = run_cli(
        capsys, "sort", str(tmp_path / "in"), "-l", str(labels), *MODEL, "-d", str(tmp_path / "o"), "-n"
    )
    assert code == ExitCode.PARTIAL and "r.jpg" in err and "more than the file system allows" in err, err
    assert "would move: " in out and "b.jpg" in out


def test_paths_output_cannot_be_split_by_a_file_name(tmp_path, capsys):
    """Promise: `dupes --paths` never prints a name with a line break as two lines (the second
    could name a file that is no duplicate); -0 prints it whole."""
    library = tmp_path / "lib"
    original = photo(library / "a.jpg", "red")
    shutil.copy(original, library / "keep.jpg\nb.jpg")
    photo(library / "b.jpg", "blue")  # a file whose name the broken line would show
    code, out, err = run_cli(capsys, "dupes", str(library), *MODEL, "--paths")
    assert code == ExitCode.PARTIAL and "-0 prints it" in err
    assert "b.jpg" not in out.splitlines()
    code, out, _ = run_cli(capsys, "dupes", str(library), *MODEL, "-0")
    assert code == 0 and ("keep.jpg\nb.jpg\0" in out or "a.jpg\0" in out)


# ----------------------------------------------------------------------------- other bad input: one line each


def test_bad_input_ends_in_one_line_and_the_documented_code(tmp_path, capsys, labels_file):
    photo(tmp_path / "lib" / "p.jpg")
    lib = str(tmp_path / "lib")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 3000 + "1" + "]" * 3000 + "\n")
    brace = tmp_path / "brace.toml"
    brace.write_text('templates = ["a photo of a {} }"]\n[labels.red]\n')
    cases = [
        (["tag", lib, "-l", str(deep)], ExitCode.USAGE, "nested too deeply"),
        (["tag", lib, "-l", str(brace)], ExitCode.USAGE, "exactly once"),
        (["tag", lib, "-l", str(labels_file), "--cache", str(tmp_path)], ExitCode.ERROR, "is a folder"),
        (["tag", lib, "-l", str(labels_file), "--log", str(tmp_path)], ExitCode.USAGE, "--log"),
        (["undo", str(tmp_path)], ExitCode.USAGE, "not a journal file"),
    ]
    for args, expected, words in cases:
        code, _, err = run_cli(capsys, *args, *MODEL) if args[0] != "undo" else run_cli(capsys, *args)
        assert code == expected and words in err and one_line_error(err), (args, err)


@pytest.mark.parametrize("variable", ["CLIPSORT_CACHE_DIR", "CLIPSORT_DATA_DIR"])
def test_clipsort_folders_that_are_files_are_one_line_errors(tmp_path, capsys, monkeypatch, labels_file, variable):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    monkeypatch.setenv(variable, str(a_file))
    photo(tmp_path / "lib" / "p.jpg")
    code, _, err = run_cli(
        capsys, "sort", str(tmp_path / "lib"), "-l", str(labels_file), *MODEL, "-d", str(tmp_path / "o")
    )
    assert code == ExitCode.ERROR and "is a file, not a folder" in err and one_line_error(err), err
    assert a_file.read_text() == "not a folder"


@pytest.mark.permissions
def test_a_read_only_cache_folder_is_a_one_line_error(tmp_path, capsys, monkeypatch, labels_file):
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only folders")
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(0o555)
    monkeypatch.setenv("CLIPSORT_CACHE_DIR", str(folder))
    photo(tmp_path / "lib" / "p.jpg")
    try:
        code, _, err = run_cli(capsys, "tag", str(tmp_path / "lib"), "-l", str(labels_file), *MODEL)
    finally:
        folder.chmod(0o755)
    assert code == ExitCode.ERROR and "Permission denied" in err and one_line_error(err), err


def test_a_cache_from_elsewhere_with_odd_rows_and_facts_is_checked_where_it_enters(tmp_path, capsys, labels_file):
    """Promise: a cache whose rows or numbers are not what clipsort writes (a foreign or damaged
    file) never ends in an internal error: odd rows are not used, odd facts are measured again."""
    make_colour_photos(tmp_path / "lib", ["red", "green", "blue"], 6, **SMALL)
    cache = tmp_path / "cache.sqlite3"
    code, _, err = run_cli(capsys, "index", str(tmp_path / "lib"), *MODEL, "--cache", str(cache))
    assert code == 0, err
    db = sqlite3.connect(cache)
    db.execute("UPDATE images SET phash='not a number', size='big' WHERE id IN (SELECT id FROM images LIMIT 2)")
    db.execute("UPDATE models SET logit_scale=1e300")
    db.execute("UPDATE meta SET value='NaN' WHERE key LIKE 'model:%'")
    db.commit()
    db.close()
    for args in (["dupes", str(tmp_path / "lib")], ["search", "red", str(tmp_path / "lib"), "--no-index"]):
        code, _, err = run_cli(capsys, *args, *MODEL, "--cache", str(cache))
        assert code == 0 and "internal error" not in err, (args, err)
    code, out, err = run_cli(
        capsys, "tag", str(tmp_path / "lib"), "-l", str(labels_file), *MODEL, "--cache", str(cache), "--json", "-n"
    )
    assert code == 0 and len(out.splitlines()) == 6 and all(json.loads(line)["labels"] for line in out.splitlines()), (
        err
    )


@pytest.mark.parametrize("version", ["'three'", "-4"])
def test_a_cache_with_a_nonsense_schema_version_is_set_aside(tmp_path, capsys, version):
    photo(tmp_path / "lib" / "p.jpg")
    cache = tmp_path / "cache.sqlite3"
    code, _, err = run_cli(capsys, "index", str(tmp_path / "lib"), *MODEL, "--cache", str(cache))
    assert code == 0, err
    db = sqlite3.connect(cache)
    db.execute(f"UPDATE meta SET value={version} WHERE key='schema_version'")
    db.commit()
    db.close()
    code, _, err = run_cli(capsys, "index", str(tmp_path / "lib"), *MODEL, "--cache", str(cache))
    assert code == 0 and "is damaged" in err and "moved it to" in err, err


def test_a_companion_that_is_a_folder_or_fifo_keeps_its_unit_in_place(tmp_path, capsys, labels_file):
    """Promise: sort moves a photo's unit only when every member is a plain file."""
    inbox = tmp_path / "in"
    photo(inbox / "a.jpg", "red")
    (inbox / "a.jpg.xmp").mkdir()  # a folder with a sidecar's name
    (inbox / "a.jpg.xmp" / "inside.txt").write_text("someone's notes")
    photo(inbox / "b.jpg", "red")
    os.mkfifo(inbox / "b.MOV")
    code, out, err = run_cli(capsys, "sort", str(inbox), "-l", str(labels_file), *MODEL, "-d", str(tmp_path / "out"))
    assert code == 3, err  # b.MOV has a video's name: a file that cannot be read, named (never opened)
    assert (inbox / "a.jpg").exists() and (inbox / "a.jpg.xmp" / "inside.txt").exists()
    assert (inbox / "b.jpg").exists() and "is a folder" in err and "is a FIFO" in err


def test_a_photo_with_a_name_near_the_limit_gets_its_sidecar_or_fails_alone(tmp_path, capsys, labels_file):
    """Promise: a sidecar whose own name fits is written (its temporary file's name is cut short to
    fit too); one whose name cannot fit fails its photo only."""
    long_name = "x" * 246 + ".jpg"  # 250 bytes: .xmp fits in 255, .clipsort.json does not
    photo(tmp_path / "lib" / long_name, "red")
    photo(tmp_path / "lib" / "b.jpg", "blue")
    code, _, err = run_cli(capsys, "tag", str(tmp_path / "lib"), "-l", str(labels_file), *MODEL)
    assert code == 0, err
    assert (tmp_path / "lib" / (long_name + ".xmp")).exists()
    code, _, err = run_cli(capsys, "tag", str(tmp_path / "lib"), "-l", str(labels_file), *MODEL, "--sidecar", "json")
    assert code == ExitCode.PARTIAL and "File name too long" in err and one_line_error(err)
    assert (tmp_path / "lib" / "b.jpg.clipsort.json").exists()


def test_a_config_file_over_its_limit_is_refused_in_words():
    from clipsort import settings
    from clipsort.errors import UsageError

    config = settings.config_file()
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("#" * (1024 * 1024 + 1))  # one byte over 1 MiB
    with pytest.raises(UsageError, match="is 1.0 MiB, more than the 1 MiB a config file may be"):
        settings.load_config()
    config.write_text("#" * (1024 * 1024))  # exactly the limit: read
    assert settings.load_config() == {}


def test_label_and_config_files_that_are_links_to_the_users_own_files_are_read(tmp_path, capsys):
    """Dotfile managers (stow, chezmoi, yadm) link config and label files from a repository: the
    user's own files are read through their links (only files clipsort creates or replaces never
    follow one)."""
    from clipsort import settings

    kept = tmp_path / "dotfiles"
    kept.mkdir()
    (kept / "labels.txt").write_text("red\nblue\n")
    (kept / "config.toml").write_text("batch_size = 7\n")
    (tmp_path / "labels.txt").symlink_to(kept / "labels.txt")
    settings.config_file().parent.mkdir(parents=True, exist_ok=True)
    settings.config_file().symlink_to(kept / "config.toml")
    code, out, err = run_cli(capsys, "labels", "check", str(tmp_path / "labels.txt"))
    assert code == 0 and "red" in out + err and "blue" in out + err, err
    assert settings.load_config() == {"batch_size": 7}
