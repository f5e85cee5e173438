"""Races and crashes, without a clock: what happens between planning and moving, the order of the
journal's flush and each move, dedupe's last check, recovery beside a live run.

Faults are made real where they can be (a file put at a name, a journal held open by a run that
is still going); where a race needs a moment no test can hit by timing, the file system call is
wrapped to act at that moment (a fault simulated, the code under test unchanged)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, make_colour_photos

from clipsort.errors import ExitCode, MoveError
from clipsort.store.journal import Journal
from clipsort.store.journal_read import read
from clipsort.writes import placing
from clipsort.writes.mover import Mover
from clipsort.writes.recovery import recover, undo

CLI = [sys.executable, "-m", "clipsort"]


def put(path: Path, data: bytes = b"photo") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- nothing overwritten


@pytest.mark.parametrize("late", ["photo", "sidecar"])
def test_a_file_that_appears_at_the_target_after_planning_is_kept_and_the_unit_goes_back(tmp_path, late):
    """Promise: nothing is ever overwritten, even by a move planned while the name was free: the
    unit fails alone and is back where it was (the rename itself refuses to replace)."""
    photo = put(tmp_path / "in/p.jpg", b"mine")
    put(tmp_path / "in/p.jpg.xmp", b"my tags")
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {})
    mover = Mover("move", journal)
    plan = mover.plan(photo, tmp_path / "out")
    newcomer = plan.target if late == "photo" else plan.target.with_name("p.jpg.xmp")
    put(newcomer, b"someone else's, arrived after planning")
    with pytest.raises(MoveError, match="exists"):
        mover.execute(plan)
    journal.close()
    assert newcomer.read_bytes() == b"someone else's, arrived after planning"
    assert photo.read_bytes() == b"mine" and (tmp_path / "in/p.jpg.xmp").read_bytes() == b"my tags"
    assert [op.state for op in read(journal.path).operations.values()] == ["failed"]
    others = [p for p in (tmp_path / "out").iterdir() if p != newcomer]
    assert others == []  # the part of the unit that had moved came back


def test_the_rename_never_replaces_whatever_the_planner_thought(tmp_path):
    target = put(tmp_path / "b", b"b")
    put(tmp_path / "a", b"a")
    with pytest.raises(FileExistsError):
        placing.rename_no_replace(tmp_path / "a", target)
    assert target.read_bytes() == b"b" and (tmp_path / "a").read_bytes() == b"a"


@pytest.mark.parametrize("edit", [b"after the edit, made while the copy was written", b"cropped"])
def test_a_photo_edited_while_it_is_copied_to_another_file_system_is_kept(tmp_path, monkeypatch, edit):
    """Promise: a move across file systems removes the source only if it is still the file that was
    copied: an edit made meanwhile (larger or smaller) is never lost."""
    photo = put(tmp_path / "in/p.jpg", b"before the edit")
    real_copy = placing.copy_no_clobber

    def other_file_system(source, target):  # rename and link fail as across file systems
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def copy_then_edit(source, target):
        real_copy(source, target)
        if source == photo:
            photo.write_bytes(edit)

    monkeypatch.setattr(placing, "rename_no_replace", other_file_system)
    monkeypatch.setattr(placing, "copy_no_clobber", copy_then_edit)
    mover = Mover("move")
    with pytest.raises(MoveError, match="changed while it was being copied"):
        mover.execute(mover.plan(photo, tmp_path / "out"))
    assert photo.read_bytes() == edit
    assert not any((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else True


# ----------------------------------------------------------------------------- the journal comes first


def test_each_unit_is_in_the_journal_on_disk_before_any_of_its_files_moves(tmp_path, monkeypatch):
    """Promise: the journal's begin record is written and flushed before a unit's first file moves,
    so a crash at any moment leaves a record of what may be half-done."""
    events: list[str] = []
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {})
    journal_fd = journal._fd
    real_fsync, real_rename, real_write = os.fsync, placing.rename_no_replace, os.write

    def fsync(fd):
        events.append("flush journal" if fd == journal_fd else "flush other")
        return real_fsync(fd)

    def write(fd, data):
        if fd == journal_fd:
            events.append("journal " + data.split(b'"type":"', 1)[1].split(b'"', 1)[0].decode())
        return real_write(fd, data)

    def rename(source, target):
        events.append(f"move {Path(source).name}")
        return real_rename(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(placing, "rename_no_replace", rename)
    for name in ("a.jpg", "b.jpg"):
        put(tmp_path / "in" / name)
        put(tmp_path / "in" / (name + ".xmp"), b"x")
    mover = Mover("move", journal)
    for name in ("a.jpg", "b.jpg"):
        mover.execute(mover.plan(tmp_path / "in" / name, tmp_path / "out"))
    journal.end({})
    journal.close()
    assert events[-2:] == ["journal end", "flush journal"], events  # a finished run reads as finished after a power cut
    moves = [i for i, event in enumerate(events) if event.startswith("move ")]
    assert len(moves) == 4, events
    for i in moves:  # the last journal record before each move is a begin, already flushed
        last = max(j for j in range(i) if events[j].startswith("journal "))
        assert events[last] == "journal begin" and "flush journal" in events[last + 1 : i], events
    assert events.count("journal done") == 2


def test_a_unit_whose_second_file_fails_goes_back_whole_and_is_journaled_failed(tmp_path, monkeypatch):
    photo = put(tmp_path / "in/p.jpg", b"photo")
    put(tmp_path / "in/p.jpg.xmp", b"sidecar")
    real_rename = placing.rename_no_replace

    def fail_on_sidecar(source, target):
        if str(source).endswith(".xmp"):
            raise OSError(errno.EIO, "Input/output error", str(target))
        return real_rename(source, target)

    monkeypatch.setattr(placing, "rename_no_replace", fail_on_sidecar)
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {})
    mover = Mover("move", journal)
    with pytest.raises(MoveError, match="Input/output error"):
        mover.execute(mover.plan(photo, tmp_path / "out/red"))
    journal.close()
    assert photo.read_bytes() == b"photo" and (tmp_path / "in/p.jpg.xmp").read_bytes() == b"sidecar"
    assert not (tmp_path / "out").exists()  # the folders it made went too
    assert [op.state for op in read(journal.path).operations.values()] == ["failed"]


def test_recovery_leaves_the_journal_of_a_run_that_is_still_going_alone(tmp_path):
    """Promise: a journal whose run still holds its lock is not settled by another process."""
    photo = put(tmp_path / "in/p.jpg", b"photo")
    put(tmp_path / "in/p.jpg.xmp", b"sidecar")
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {})
    target = tmp_path / "out/p.jpg"
    journal.begin("move", [(photo, target), (tmp_path / "in/p.jpg.xmp", tmp_path / "out/p.jpg.xmp")], [])
    target.parent.mkdir()
    os.rename(photo, target)  # the live run is between its photo and its sidecar
    code = "from clipsort.writes.recovery import recover; import sys; print(recover(print))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == "0"
    assert target.read_bytes() == b"photo" and (tmp_path / "in/p.jpg.xmp").exists()
    assert not read(journal.path).ended
    journal.close()  # the run is gone now: its unit is settled by the next recovery
    assert recover(lambda message: None) == 1
    assert (tmp_path / "out/p.jpg.xmp").read_bytes() == b"sidecar"


# ----------------------------------------------------------------------------- dedupe, the one path that deletes


def _duplicate(tmp_path: Path) -> tuple[Path, Path]:
    original = put(tmp_path / "out/p.jpg", b"the same bytes")
    copy = put(tmp_path / "in/p.jpg", b"the same bytes")
    os.utime(copy, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return copy, original


def test_dedupe_removes_a_byte_identical_copy_and_undo_puts_it_back_as_it_was(tmp_path):
    copy, original = _duplicate(tmp_path)
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": "move"})
    mover = Mover("move", journal, dedupe=True)
    plan = mover.plan(copy, tmp_path / "out")
    assert plan.action == "dedupe"
    mover.execute(plan)
    journal.end({})
    journal.close()
    assert not copy.exists() and original.read_bytes() == b"the same bytes"
    _, result = undo(str(journal.path), lambda message: None)
    assert result.undone == 1 and result.refused == []
    assert copy.read_bytes() == b"the same bytes" and copy.stat().st_mtime_ns == 1_600_000_000_000_000_000
    assert original.read_bytes() == b"the same bytes"


def test_dedupe_checks_the_copy_again_just_before_deleting(tmp_path):
    """Promise: the only copy of a photo's bytes is never deleted: if the kept file changed after
    planning, the duplicate stays."""
    copy, original = _duplicate(tmp_path)
    mover = Mover("move", dedupe=True)
    plan = mover.plan(copy, tmp_path / "out")
    original.write_bytes(b"edited after planning")
    with pytest.raises(MoveError, match="changed; duplicate not removed"):
        mover.execute(plan)
    assert copy.read_bytes() == b"the same bytes"


def test_dedupe_leaves_a_photo_with_sidecars_and_undo_refuses_when_the_kept_copy_changed(tmp_path):
    copy, original = _duplicate(tmp_path)
    put(tmp_path / "in/p.jpg.xmp", b"its own tags")
    assert Mover("move", dedupe=True).plan(copy, tmp_path / "out").action == "duplicate"
    (tmp_path / "in/p.jpg.xmp").unlink()
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": "move"})
    mover = Mover("move", journal, dedupe=True)
    mover.execute(mover.plan(copy, tmp_path / "out"))
    journal.end({})
    journal.close()
    original.write_bytes(b"edited since")
    _, result = undo(str(journal.path), lambda message: None)
    assert result.undone == 0 and "kept copy" in result.refused[0].reason and not copy.exists()


@pytest.mark.slow
def test_sort_dedupe_then_undo_through_the_command(tmp_path, labels_file):
    inbox, dest = tmp_path / "in", tmp_path / "out"
    photos = make_colour_photos(inbox, ["red"], 2, min_px=64, max_px=120)
    first = sorted(photos)[0]
    (dest / "red").mkdir(parents=True)
    (dest / "red" / first.name).write_bytes(first.read_bytes())  # already sorted once, by hand
    run = subprocess.run(
        [*CLI, "sort", str(inbox), "-l", str(labels_file), "--model", str(COLOUR_MODEL), "-d", str(dest), "--dedupe"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and "deduplicated 1" in run.stderr, run.stderr
    assert not first.exists()
    back = subprocess.run([*CLI, "undo"], capture_output=True, text=True)
    assert back.returncode == 0 and first.exists() and (dest / "red" / first.name).exists()


# ----------------------------------------------------------------------------- exit codes cron reads


def test_an_undo_that_could_not_put_everything_back_exits_3(tmp_path):
    inbox, dest = tmp_path / "in", tmp_path / "out"
    for name in ("a.jpg", "b.jpg"):
        put(inbox / name, name.encode())
    journal = Journal.create("sort", [inbox], dest, {"mode": "move"})
    mover = Mover("move", journal)
    for name in ("a.jpg", "b.jpg"):
        mover.execute(mover.plan(inbox / name, dest))
    journal.end({})
    journal.close()
    put(inbox / "a.jpg", b"a new photo in the old name")
    result = subprocess.run([*CLI, "undo", str(journal.path)], capture_output=True, text=True)
    assert result.returncode == ExitCode.PARTIAL, result.stderr
    assert "is taken by another file" in result.stderr and "undid 1 photos" in result.stderr
    assert (inbox / "b.jpg").read_bytes() == b"b.jpg" and (dest / "a.jpg").read_bytes() == b"a.jpg"


# ----------------------------------------------------------------------------- copies, where a rename cannot go


def _across_file_systems(monkeypatch) -> None:
    def exdev(source, target):  # rename and link fail as they do across file systems
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(placing, "rename_no_replace", exdev)


def test_a_move_across_file_systems_copies_then_removes_the_source(tmp_path, monkeypatch):
    photo = put(tmp_path / "in/p.jpg", b"pixels")
    os.utime(photo, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    _across_file_systems(monkeypatch)
    mover = Mover("move")
    mover.execute(mover.plan(photo, tmp_path / "out"))
    target = tmp_path / "out/p.jpg"
    assert not photo.exists() and target.read_bytes() == b"pixels"
    assert target.stat().st_mtime_ns == 1_500_000_000_000_000_000  # the copy keeps the photo's time


def test_a_copy_across_file_systems_is_on_disk_before_its_source_is_removed(tmp_path, monkeypatch):
    """Promise: a power cut right after a move across file systems never leaves the photo only in a
    copy still in the page cache: the copy is flushed before the source is deleted."""
    photo = put(tmp_path / "in/p.jpg", b"pixels")
    _across_file_systems(monkeypatch)
    events: list[str] = []
    real_fsync, real_unlink = os.fsync, os.unlink

    def fsync(fd):
        events.append("flush " + os.path.dirname(os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def unlink(path, *args, **kwargs):
        events.append(f"remove {path}")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "unlink", unlink)
    mover = Mover("move")
    mover.execute(mover.plan(photo, tmp_path / "out"))
    removed = events.index(f"remove {photo}")
    assert f"flush {tmp_path / 'out'}" in events[:removed], events
    assert (tmp_path / "out/p.jpg").read_bytes() == b"pixels"


def test_a_sidecar_is_on_disk_before_it_gets_its_name(tmp_path, monkeypatch):
    """A power cut never leaves an empty or half-written sidecar under the sidecar's name."""
    from clipsort.labels.label_set import parse_labels
    from clipsort.writes.sidecar import keywords_for, write_xmp

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("flush " + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(source, target):
        events.append(f"rename {os.path.basename(source)}")
        return real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_xmp(tmp_path / "p.jpg", keywords_for(parse_labels("red\n").labels), "clipsort", "m")
    renamed = [e for e in events if e.startswith("rename ")]
    assert len(renamed) == 1 and events.index(renamed[0]) > 0, events
    assert events[events.index(renamed[0]) - 1] == "flush " + renamed[0].removeprefix("rename "), events


@pytest.mark.parametrize("flip", range(6))
def test_a_copy_that_differs_from_its_original_is_never_given_its_name(tmp_path, monkeypatch, flip):
    """Promise: copies are verified: a copy whose bytes came out different (a bad disk, a bad
    cable) is thrown away and the photo stays, whichever byte went wrong."""
    import shutil

    photo = put(tmp_path / "in/p.jpg", bytes(range(256)) * 4)
    real = shutil.copyfileobj

    def corrupting(source, target, length=0):
        data = bytearray(source.read())
        data[flip * 97 % len(data)] ^= 0x5A
        target.write(bytes(data))

    monkeypatch.setattr(shutil, "copyfileobj", corrupting)
    _across_file_systems(monkeypatch)
    mover = Mover("move")
    with pytest.raises(MoveError, match="the copy differs from the original"):
        mover.execute(mover.plan(photo, tmp_path / "out"))
    monkeypatch.setattr(shutil, "copyfileobj", real)
    assert photo.read_bytes() == bytes(range(256)) * 4
    assert [p.name for p in (tmp_path / "out").iterdir()] == [] if (tmp_path / "out").exists() else True


def test_a_file_system_without_hard_links_still_gets_a_verified_copy_that_never_replaces(tmp_path, monkeypatch):
    photo = put(tmp_path / "in/p.jpg", b"pixels")
    real_link = os.link

    def no_hard_links(source, target, *args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    _across_file_systems(monkeypatch)
    monkeypatch.setattr(os, "link", no_hard_links)
    mover = Mover("copy")
    mover.execute(mover.plan(photo, tmp_path / "out"))
    assert (tmp_path / "out/p.jpg").read_bytes() == b"pixels" and photo.exists()
    # and where the name is taken by the time the copy is ready, the copy goes, nothing is replaced
    put(tmp_path / "other/p.jpg", b"mine")
    monkeypatch.setattr(os, "link", real_link)
    with pytest.raises(FileExistsError):
        monkeypatch.setattr(os, "link", no_hard_links)
        placing.copy_no_clobber(tmp_path / "in/p.jpg", tmp_path / "other/p.jpg")
    assert (tmp_path / "other/p.jpg").read_bytes() == b"mine"
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["p.jpg"]  # no temp copy left


def test_moves_named_by_relative_paths_work_from_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    put(Path("in/p.jpg"), b"pixels")
    put(Path("in/p.jpg.xmp"), b"tags")
    mover = Mover("move")
    mover.execute(mover.plan(Path("in/p.jpg"), Path("out")))
    assert Path("out/p.jpg").read_bytes() == b"pixels" and Path("out/p.jpg.xmp").read_bytes() == b"tags"


def test_a_different_photo_of_the_same_size_and_name_is_no_duplicate(tmp_path):
    """Promise: only byte-identical files are duplicates (and only those may be removed by
    --dedupe); a different photo of the same size takes a numbered name."""
    data = bytes(range(256)) * 8  # past the small sizes Python keeps as single objects
    photo = put(tmp_path / "in/p.jpg", data)
    put(tmp_path / "out/p.jpg", data[::-1])  # same size, other bytes
    plan = Mover("move", dedupe=True).plan(photo, tmp_path / "out")
    assert plan.action == "move" and plan.target.name == "p_1.jpg"
    put(tmp_path / "out2/p.jpg", data)  # the same bytes: a duplicate
    assert Mover("move", dedupe=True).plan(photo, tmp_path / "out2").action == "dedupe"


def test_recovery_removes_its_own_temp_copies_and_nothing_else(tmp_path):
    photo = put(tmp_path / "in/p.jpg", b"photo")
    put(tmp_path / "in/p.jpg.xmp", b"tags")
    target = tmp_path / "out/p.jpg"
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {})
    journal.begin("move", [(photo, target), (tmp_path / "in/p.jpg.xmp", tmp_path / "out/p.jpg.xmp")], [])
    journal.close()
    ours = put(tmp_path / "out/.p.jpg.a1b2c3d4.clipsort-tmp", b"pho")  # the killed run's half copy
    theirs = put(tmp_path / "out/.other.jpg.e5f6a7b8.clipsort-tmp", b"another run's copy, still being written")
    assert recover(lambda message: None) == 1
    assert not ours.exists() and theirs.read_bytes() == b"another run's copy, still being written"
    assert photo.read_bytes() == b"photo"


def test_a_link_at_the_destination_is_no_duplicate_even_when_it_points_at_the_photo(tmp_path):
    """Promise: only a regular file with the same bytes is a duplicate: removing the photo because
    a link to it sits at the destination would leave the link pointing at nothing."""
    photo = tmp_path / "in/p.jpg"
    put(photo, b"x" * len(os.fsencode(photo)))  # as long as the link's own size: only its type differs
    (tmp_path / "out").mkdir()
    os.symlink(photo, tmp_path / "out/p.jpg")
    plan = Mover("move", dedupe=True).plan(photo, tmp_path / "out")
    assert plan.action == "move" and plan.target.name == "p_1.jpg"


def test_same_size_same_time_other_bytes_is_no_duplicate(tmp_path):
    photo = put(tmp_path / "in/p.jpg", b"a" * 1000)
    other = put(tmp_path / "out/p.jpg", b"b" * 1000)
    stamp = photo.stat().st_mtime_ns
    os.utime(other, ns=(stamp, stamp))  # what a shallow comparison would take for the same file
    assert Mover("move", dedupe=True).plan(photo, tmp_path / "out").action == "move"


def test_a_file_system_without_rename_noreplace_falls_back_and_still_never_replaces(tmp_path, monkeypatch):
    import ctypes

    def unsupported(source, target):
        ctypes.set_errno(errno.EINVAL)  # what renameat2 says where the flag is not supported
        return -1

    monkeypatch.setattr(placing, "_RENAMEAT2", unsupported)
    put(tmp_path / "a", b"a")
    placing.rename_no_replace(tmp_path / "a", tmp_path / "b")  # through link() and unlink()
    assert (tmp_path / "b").read_bytes() == b"a" and not (tmp_path / "a").exists()
    put(tmp_path / "c", b"c")
    with pytest.raises(FileExistsError):
        placing.rename_no_replace(tmp_path / "c", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == b"a" and (tmp_path / "c").read_bytes() == b"c"


def test_link_mode_where_hard_links_are_impossible_copies_and_says_so(tmp_path, monkeypatch):
    photo = put(tmp_path / "in/p.jpg", b"pixels")
    put(tmp_path / "in/p.jpg.xmp", b"its sidecar")
    put(tmp_path / "in/p.AAE", b"its edits")

    def cross_device(source, target, *args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    mover = Mover("link")
    warnings = mover.execute(mover.plan(photo, tmp_path / "out"))
    assert (tmp_path / "out/p.jpg").read_bytes() == b"pixels" and photo.exists()
    assert (tmp_path / "out/p.jpg.xmp").read_bytes() == b"its sidecar"
    assert len(warnings) == 1, warnings  # said once, for the photo, not again for each companion
    assert "hard links are not possible" in warnings[0] and "copied instead" in warnings[0]
