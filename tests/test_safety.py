"""Never lose a photo: journal, undo, recovery after a kill, hostile input, a full disk."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_MODEL, make_colour_photos
from PIL import Image

from clipsort.commands.sorting import SortOptions, run_sort
from clipsort.errors import ExitCode
from clipsort.run.events import RunOptions
from clipsort.store import journal_read
from clipsort.store.journal import Journal
from clipsort.store.journal_read import Appender, claimed, read
from clipsort.writes.mover import Mover
from clipsort.writes.recovery import recover, undo

SMALL = {"min_px": 64, "max_px": 200}
CLI = [sys.executable, "-m", "clipsort"]
MODEL = ["--model", str(COLOUR_MODEL)]


def tree(folder: Path) -> dict[str, str]:
    """relative path -> content hash of every file (hidden temp files included)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def with_companions(photos: dict[Path, str]) -> None:
    for i, photo in enumerate(sorted(photos)):
        if i % 3 == 0:
            photo.with_name(photo.name + ".xmp").write_text(f"<x:xmpmeta>{i}</x:xmpmeta>", encoding="utf-8")
        if i % 5 == 0:
            photo.with_suffix(".AAE").write_bytes(b"apple edits %d" % i)
            photo.with_suffix(".MOV").write_bytes(os.urandom(3000))


def test_sort_then_undo_restores_the_tree_byte_for_byte(tmp_path, colour_embedder, rgb_labels):
    library = tmp_path / "library"
    photos = make_colour_photos(library, ["red", "green", "blue"], 24, **SMALL)
    with_companions(photos)
    (library / "a" / "notes.txt").write_text("not a photo, stays put")
    before = tree(library)
    report = run_sort([library], rgb_labels, colour_embedder, SortOptions())
    assert report.actions["moved"] == 24 and report.journal is not None
    assert tree(library) != before
    moved = tree(library)
    assert sorted(moved.values()) == sorted(before.values())  # companions travelled, nothing lost
    path, result = undo(None, lambda message: None)
    assert path == report.journal and result.undone == 24 and result.refused == []
    assert tree(library) == before
    assert sorted(str(p.relative_to(library)) for p in library.rglob("*") if p.is_dir()) == ["a", "a/b", "über"]
    assert read(path).undone


def test_undo_refuses_changed_photos_and_keeps_the_rest(tmp_path, colour_embedder, rgb_labels):
    inbox, dest = tmp_path / "in", tmp_path / "out"
    photos = make_colour_photos(inbox, ["red", "blue"], 6, **SMALL)
    report = run_sort([inbox], rgb_labels, colour_embedder, SortOptions(dest=dest))
    edited = dest / photos[sorted(photos)[0]] / sorted(photos)[0].name
    edited.write_bytes(edited.read_bytes() + b"edited")
    _, result = undo(str(report.journal), lambda message: None)
    assert result.undone == 5 and len(result.refused) == 1 and "changed since it was sorted" in result.refused[0].reason
    assert edited.exists() and sum(1 for p in inbox.rglob("*") if p.is_file()) == 5
    assert not read(report.journal).undone  # incomplete: a later undo can finish it


def test_undo_and_history_commands(tmp_path, labels_file):
    photos = make_colour_photos(tmp_path / "in", ["red", "green"], 4, **SMALL)
    before = tree(tmp_path / "in")
    sort = subprocess.run(
        [*CLI, "sort", str(tmp_path / "in"), "-l", str(labels_file), *MODEL, "-d", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert sort.returncode == 0 and "journal " in sort.stderr and "clipsort undo" in sort.stderr
    history = subprocess.run([*CLI, "history"], capture_output=True, text=True)
    assert history.returncode == 0 and "move 4 photos" in history.stdout and "[complete]" in history.stdout
    result = subprocess.run([*CLI, "undo"], capture_output=True, text=True)
    assert result.returncode == 0 and "undid 4 photos" in result.stderr
    assert tree(tmp_path / "in") == before and not (tmp_path / "out").exists()
    after = subprocess.run([*CLI, "history"], capture_output=True, text=True).stdout
    assert "[undone]" in after and "move 4 photos" in after  # what the run did, not what is left of it
    assert len(photos) == 4


# ----------------------------------------------------------------------------- recovery


def _half_done(tmp_path: Path, stage: str) -> tuple[Path, Path, Path]:
    """A journaled move of photo + sidecar, stopped at ``stage``, as a killed run leaves it."""
    src = tmp_path / "in" / "p.jpg"
    src.parent.mkdir()
    src.write_bytes(b"photo bytes")
    src.with_name("p.jpg.xmp").write_bytes(b"xmp")
    target = tmp_path / "out" / "red" / "p.jpg"
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {})
    files = [(src, target), (src.with_name("p.jpg.xmp"), target.with_name("p.jpg.xmp"))]
    journal.begin("move", files, [tmp_path / "out", tmp_path / "out" / "red"])
    if stage != "nothing":
        target.parent.mkdir(parents=True)
        if stage == "linked":
            os.link(src, target)  # between link() and unlink() of the fallback path
        elif stage == "temp-copy":
            (target.parent / ".p.jpg.x1.clipsort-tmp").write_bytes(b"photo by")
        else:
            os.rename(src, target)  # the photo moved, its sidecar not yet
    journal.close()  # the process is gone: the lock is free, no end record
    return src, target, journal.path


@pytest.mark.parametrize(
    ("stage", "forward"), [("nothing", False), ("temp-copy", False), ("linked", True), ("photo-moved", True)]
)
def test_recovery_completes_or_rolls_back_the_unit(tmp_path, stage, forward):
    src, target, path = _half_done(tmp_path, stage)
    messages: list[str] = []
    assert recover(messages.append) == 1
    assert len(messages) == 1 and ("completed" if forward else "rolled back") in messages[0]
    here, there = (target, src) if forward else (src, target)
    assert here.read_bytes() == b"photo bytes" and not there.exists()
    assert here.with_name("p.jpg.xmp").read_bytes() == b"xmp" and not there.with_name("p.jpg.xmp").exists()
    assert not list(target.parent.glob(".*clipsort-tmp")) if target.parent.exists() else True
    view = read(path)
    assert view.ended and view.interrupted
    assert recover(messages.append) == 0  # settled once


STRACE = shutil.which("strace")


@pytest.mark.slow
@pytest.mark.skipif(STRACE is None, reason="needs strace (.ci/run installs it)")
def test_sigkill_at_chosen_moments_loses_nothing(tmp_path):
    """Promise: a run killed at any moment leaves every photo's bytes once, whole, and the next run
    settles what was under way. The moments are exact, whatever the machine's speed: strace kills
    the run as it enters its Nth rename (a unit half-moved), or its Nth fsync (a journal record or
    a cache commit half-flushed)."""
    library = tmp_path / "library"
    photos = make_colour_photos(library, ["red", "green", "blue"], 60, min_px=48, max_px=120)
    with_companions(dict(list(photos.items())[:30]))
    originals = sorted(tree(library).values())
    flat, nested = tmp_path / "flat.txt", tmp_path / "nested.txt"
    flat.write_text("red\ngreen\nblue\n")
    nested.write_text("colours/red\ncolours/green\ncolours/blue\n")  # same prompts: no model load
    cache = ["--cache", str(tmp_path / "cache.sqlite3")]
    for labels in (flat, nested):  # cache every vector and prompt: the runs below load no model
        subprocess.run([*CLI, "sort", str(library), "-l", str(labels), *MODEL, *cache, "-q", "-n"], check=True)
    killed = 0
    moments = [("renameat2", n) for n in (1, 2, 3, 5, 8, 13, 21, 34, 55)] + [("fsync", n) for n in (1, 2, 4, 7, 11)]
    for attempt, (call, when) in enumerate(moments):
        labels = flat if attempt % 2 else nested  # every run moves every photo to the other layout
        inject = ["-e", f"trace={call}", "-e", f"inject={call}:signal=SIGKILL:when={when}"]
        run = subprocess.run(
            [
                STRACE,
                "-f",
                "-qq",
                "-o",
                os.devnull,
                *inject,
                *CLI,
                "sort",
                str(library),
                "-l",
                str(labels),
                *MODEL,
                *cache,
                "-q",
            ]
        )
        killed += run.returncode == -signal.SIGKILL or run.returncode == 128 + signal.SIGKILL
        now = tree(library)
        contents = sorted(h for name, h in now.items() if not name.rsplit("/", 1)[-1].startswith("."))
        assert contents == originals, f"killed at {call} #{when}: photos lost, duplicated or damaged"
    assert killed == len(moments), "a run ended before the moment it was to be killed at"
    final = subprocess.run([*CLI, "sort", str(library), "-l", str(flat), *MODEL, *cache, "-q"], capture_output=True)
    assert final.returncode == 0, final.stderr
    assert sorted(tree(library).values()) == originals
    assert not [p for p in library.rglob(".*clipsort-tmp")]
    entries = journal_read.history()
    assert entries and all(problem is None for _, _, problem in entries)
    views = [view for _, view, _ in entries if view is not None]
    assert all(view.ended for view in views)
    killed_mid_move = [v for v in views if v.interrupted and v.operations]
    assert len(killed_mid_move) >= 9, f"only {len(killed_mid_move)} runs were killed while moving"
    assert all(op.state in ("done", "failed") for view in views for op in view.operations.values())


# ----------------------------------------------------------------------------- hostile input


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims huge dimensions: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_hostile_folder(tmp_path, labels_file):
    folder = tmp_path / "hostile"
    good = make_colour_photos(folder, ["red", "green", "blue"], 9, **SMALL)
    bad: list[Path] = []

    def add_bad(name: str, data: bytes) -> None:
        path = folder / name
        path.write_bytes(data)
        bad.append(path)

    add_bad("zero.jpg", b"")
    jpeg = next(p for p in good if p.suffix.lower() == ".jpg").read_bytes()
    add_bad("truncated.jpg", jpeg[: len(jpeg) // 2])
    add_bad("text.png", b"plain text\n" * 10)
    add_bad("random.webp", os.urandom(4096))
    _png_header_only(folder / "bomb.png", 60000, 60000)
    bad.append(folder / "bomb.png")
    # odd but valid: modes, names
    Image.new("CMYK", (80, 60), (0, 255, 255, 0)).save(folder / "cmyk.jpg")
    Image.fromarray(np.full((60, 80), 40000, dtype="uint16")).save(folder / "sixteen.png")
    Image.new("LA", (80, 60), (128, 200)).save(folder / "la.png")
    Image.new("P", (80, 60)).save(folder / "palette.gif")
    shutil.copy(sorted(good)[0], folder / "name with spaces.jpg")
    shutil.copy(sorted(good)[1], folder / "new\nline.jpg")
    add_bad("bad\nname.jpg", b"not an image")  # its message must stay on one line
    shutil.copy(sorted(good)[2], folder / os.fsdecode(b"latin1-\xe9.jpg"))
    shutil.copy(sorted(good)[3], folder / "-n.jpg")  # looks like an option
    shutil.copy(sorted(good)[4], folder / "[a-z]*.jpg")  # looks like a pattern
    os.symlink(folder, folder / "cycle-link")  # not followed: named once in the summary
    valid = len(good) + 9
    result = subprocess.run(
        [*CLI, "tag", str(folder), "-l", str(labels_file), *MODEL, "--max-megapixels", "50"], capture_output=True
    )
    err = result.stderr.decode("utf-8", "backslashreplace")
    assert result.returncode == ExitCode.PARTIAL, err
    assert "Traceback" not in err
    for path in bad:
        shown = path.name.replace("\n", "\\n")
        assert err.count(shown) == 1, (shown, err)
    known = ("error: ", "model ", "tagged ", "left out: ", "labels: ", "keywords written in", "building the fast")
    assert all(line.startswith(known) for line in err.splitlines()), err
    assert err.count("cycle-link") == 1 and "left out: " in err and "not followed" in err
    assert "too large to decode safely: 60000x60000" in err
    found = re.search(rf"tagged (\d+)(?:, untagged (\d+))?, failed {len(bad)} ", err)
    assert found and int(found.group(1)) + int(found.group(2) or 0) == valid, err
    assert len(list(folder.glob("*.xmp"))) + len(list(folder.rglob("*/*.xmp"))) >= valid


def test_explicit_odd_names_are_paths_not_options(tmp_path, labels_file):
    photo = tmp_path / "-n.jpg"
    Image.new("RGB", (64, 64), "red").save(photo)
    result = subprocess.run(
        [*CLI, "tag", "-l", str(labels_file), *MODEL, "--json", "--", "-n.jpg"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert '"labels": ["red"]' in result.stdout


def _tmpfs(mount: Path, options: str):
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_filesystem(tmp_path):
    yield from _tmpfs(tmp_path / "small", "size=600k")


@pytest.fixture
def read_only_filesystem(tmp_path):
    yield from _tmpfs(tmp_path / "readonly", "ro,size=100k")


def test_read_only_destination_fails_each_photo_and_keeps_it(tmp_path, read_only_filesystem, labels_file):
    photos = make_colour_photos(tmp_path / "in", ["red", "blue"], 3, **SMALL)
    before = tree(tmp_path / "in")
    result = subprocess.run(
        [*CLI, "sort", str(tmp_path / "in"), "-l", str(labels_file), *MODEL, "-d", str(read_only_filesystem)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == ExitCode.PARTIAL and "Traceback" not in result.stderr
    assert result.stderr.count("Read-only file system") == len(photos)
    assert tree(tmp_path / "in") == before


def test_full_destination_stops_cleanly(tmp_path, small_filesystem, colour_embedder, rgb_labels):
    inbox = tmp_path / "in"
    inbox.mkdir()
    rng = random.Random(1)
    for i in range(12):  # about 100 KB each: the 600 KB filesystem fills after a few
        picture = Image.effect_noise((200, 170), 80).convert("RGB")
        picture.paste((255, 0, 0) if i % 2 else (0, 0, 255), (0, 0, 200, 60 + rng.randint(0, 20)))
        picture.save(inbox / f"p{i:02d}.png")
    before = sorted(tree(inbox).values())
    report = run_sort(
        [inbox], rgb_labels, colour_embedder, SortOptions(dest=small_filesystem), RunOptions(batch_size=4)
    )
    assert report.fatal and "no space left" in report.fatal and report.exit_code == ExitCode.ERROR
    moved = tree(small_filesystem)
    assert 0 < len([n for n in moved if not n.rsplit("/", 1)[-1].startswith(".")]) < 12
    assert not [n for n in moved if n.rsplit("/", 1)[-1].startswith(".")]  # no temp copies left
    assert sorted([*tree(inbox).values(), *moved.values()]) == before  # every photo once, intact
    view = read(report.journal)
    assert view.ended and sum(op.state == "failed" for op in view.operations.values()) == 1


def test_move_across_filesystems_is_verified_and_undoable(tmp_path, small_filesystem):
    source = tmp_path / "p.png"
    Image.new("RGB", (50, 50), "red").save(source)
    data = source.read_bytes()
    journal = Journal.create("sort", [tmp_path], small_filesystem, {})
    mover = Mover("move", journal)
    plan = mover.plan(source, small_filesystem / "red")
    mover.execute(plan)
    journal.end({})
    journal.close()
    assert (small_filesystem / "red" / "p.png").read_bytes() == data and not source.exists()
    _, result = undo(str(journal.path), lambda m: None)
    assert result.undone == 1 and source.read_bytes() == data and not (small_filesystem / "red").exists()


def test_an_undo_killed_half_way_through_a_unit_is_finished_by_the_next_undo(tmp_path):
    src = tmp_path / "in" / "p.jpg"
    src.parent.mkdir()
    src.write_bytes(b"photo")
    src.with_name("p.jpg.xmp").write_bytes(b"xmp")
    before = tree(tmp_path / "in")
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {})
    mover = Mover("move", journal)
    plan = mover.plan(src, tmp_path / "out")
    mover.execute(plan)
    journal.end({})
    journal.close()
    # an undo that was killed after putting the photo back, before its sidecar
    with claimed(journal.path) as handle:
        Appender(handle, read(journal.path))({"type": "undo", "op": 0})
    os.rename(tmp_path / "out" / "p.jpg", src)
    _, result = undo(str(journal.path), lambda m: None)
    assert result.undone == 1 and result.refused == []
    assert tree(tmp_path / "in") == before and not (tmp_path / "out").exists()
