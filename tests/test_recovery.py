"""Recovery of every kind of unit a killed run can leave half-done, and undo's own faults.

Each test lays out the files exactly as a run killed at one moment leaves them (the journal's
begin record on disk, the unit part-placed, no done record, the run's lock released), then lets
the next run's recovery, or an undo, settle it, and checks what a user would find: where each
photo is, that no bytes were lost or doubled, and what the journal now says (what a later undo
will do)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clipsort.store.journal import Journal
from clipsort.store.journal_read import Appender, claimed, read
from clipsort.writes import recovery
from clipsort.writes.mover import Mover
from clipsort.writes.recovery import recover, undo


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _unit(tmp_path: Path) -> list[tuple[Path, Path]]:
    """A photo and its sidecar in the inbox, and where a run sends them."""
    photo = put(tmp_path / "in/p.jpg", b"photo bytes")
    sidecar = put(tmp_path / "in/p.jpg.xmp", b"<x:xmpmeta/>")
    return [(photo, tmp_path / "out/red/p.jpg"), (sidecar, tmp_path / "out/red/p.jpg.xmp")]


def _killed(tmp_path: Path, action: str, files: list[tuple[Path, Path]], placed: int, how) -> Path:
    """The journal of a ``sort --<action>`` killed after placing the first ``placed`` files of its
    unit with ``how(source, target)``: begun, never done nor ended."""
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": action})
    journal.begin(action, files, [tmp_path / "out", tmp_path / "out/red"])
    for source, target in files[:placed]:
        target.parent.mkdir(parents=True, exist_ok=True)
        how(source, target)
    journal.close()  # the process is gone: its lock is free, no end record
    return journal.path


def _sorted(tmp_path: Path, photo: Path, action: str = "move", dedupe: bool = False) -> Path:
    """The journal of a finished ``sort`` that placed ``photo`` (and its companions) in out/."""
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": action})
    mover = Mover(action, journal, dedupe=dedupe)
    mover.execute(mover.plan(photo, tmp_path / "out"))
    journal.end({})
    journal.close()
    return journal.path


def _settle(path: Path) -> list[str]:
    messages: list[str] = []
    assert recover(messages.append) == 1
    assert read(path).ended
    return messages


@pytest.mark.parametrize("action", ["copy", "link"])
@pytest.mark.parametrize("placed", [1, 2])
def test_a_killed_copy_or_link_run_is_completed_and_never_touches_the_originals(tmp_path, action, placed):
    """A ``--copy``/``--link`` run killed once its photo was placed is completed (the sidecar
    follows), and its originals stay where they are, untouched: recovery removes a source only for
    a move."""
    files = _unit(tmp_path)
    how = shutil.copy2 if action == "copy" else os.link
    path = _killed(tmp_path, action, files, placed, how)
    messages = _settle(path)
    assert "completed" in messages[0], messages
    for source, target in files:
        assert source.read_bytes() == target.read_bytes()  # original there, and its copy or link
    assert [op.state for op in read(path).operations.values()] == ["done"]
    _, result = undo(str(path), lambda message: None)  # undo of the completed unit takes the copies back
    assert result.undone == 1 and result.refused == []
    assert all(source.exists() and not target.exists() for source, target in files)


def test_recovery_names_the_photo_of_each_unit_it_settles(tmp_path):
    files = _unit(tmp_path)
    path = _killed(tmp_path, "move", files, 1, os.rename)
    messages = _settle(path)
    assert messages == [f"{path.name}: an interrupted move of {files[0][0]} was completed"]


def test_a_killed_copy_run_whose_photo_was_not_placed_is_rolled_back_keeping_the_originals(tmp_path):
    files = _unit(tmp_path)
    path = _killed(tmp_path, "copy", files, 0, shutil.copy2)
    assert "rolled back" in _settle(path)[0]
    assert all(source.exists() and not target.exists() for source, target in files)
    assert not (tmp_path / "out").exists()  # the folders the run made went too


def _copied_across(source: Path, target: Path) -> None:
    shutil.copy2(source, target)  # what a move across file systems does before removing the source


def test_a_move_across_file_systems_killed_after_its_copy_ends_with_the_photo_once(tmp_path):
    """Killed between the verified copy and the removal of the source: the copy (same bytes, size
    and time, another inode) is the photo placed; recovery completes the move, and the photo is in
    one place only."""
    files = _unit(tmp_path)
    path = _killed(tmp_path, "move", files, 1, _copied_across)
    assert "completed" in _settle(path)[0]
    photo, target = files[0]
    assert not photo.exists() and target.read_bytes() == b"photo bytes"
    assert not files[1][0].exists() and files[1][1].read_bytes() == b"<x:xmpmeta/>"


def test_a_move_across_file_systems_killed_after_removing_the_source_is_completed(tmp_path):
    files = _unit(tmp_path)

    def copied_then_removed(source: Path, target: Path) -> None:
        _copied_across(source, target)
        source.unlink()

    path = _killed(tmp_path, "move", files, 1, copied_then_removed)
    assert "completed" in _settle(path)[0]
    assert all(not source.exists() and target.exists() for source, target in files)
    _, result = undo(str(path), lambda message: None)
    assert result.undone == 1 and files[0][0].read_bytes() == b"photo bytes"


def test_a_copy_of_another_size_at_the_target_is_not_taken_for_the_placed_photo(tmp_path):
    """A file at the target that is not what the run placed (another size) is left alone and the
    photo stays in the inbox."""
    files = _unit(tmp_path)
    path = _killed(tmp_path, "move", files, 1, lambda s, t: t.write_bytes(b"someone else's photo"))
    messages = _settle(path)
    assert "rolled back" in messages[0] and any("not the file the run placed" in m for m in messages)
    assert files[0][0].read_bytes() == b"photo bytes"
    assert files[0][1].read_bytes() == b"someone else's photo"


def _dedupe_begun(tmp_path: Path, deleted: bool) -> tuple[Path, Path, Path]:
    kept = put(tmp_path / "out/p.jpg", b"the same bytes")
    copy = put(tmp_path / "in/p.jpg", b"the same bytes")
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": "move"})
    journal.begin("dedupe", [(copy, kept)], [])
    if deleted:
        copy.unlink()
    journal.close()
    return copy, kept, journal.path


def test_a_dedupe_killed_after_deleting_the_copy_is_completed_and_undo_brings_the_copy_back(tmp_path):
    copy, kept, path = _dedupe_begun(tmp_path, deleted=True)
    assert "completed" in _settle(path)[0]
    _, result = undo(str(path), lambda message: None)
    assert result.undone == 1 and result.refused == []
    assert copy.read_bytes() == b"the same bytes" and kept.read_bytes() == b"the same bytes"


def test_a_dedupe_killed_before_deleting_the_copy_is_rolled_back_and_undo_has_nothing_to_refuse(tmp_path):
    copy, kept, path = _dedupe_begun(tmp_path, deleted=False)
    assert "rolled back" in _settle(path)[0]
    assert copy.exists() and kept.exists()
    _, result = undo(str(path), lambda message: None)
    assert result.undone == 0 and result.refused == []


def test_an_undo_that_cannot_put_one_photo_back_refuses_it_and_undoes_the_rest(tmp_path):
    """A folder of the inbox replaced by a file since the sort: that photo cannot go back (and
    stays sorted, named), every other photo goes back."""
    inbox, dest = tmp_path / "in", tmp_path / "out"
    photos = [put(inbox / "b.jpg", b"b"), put(inbox / "trip/a.jpg", b"a")]  # undone newest first
    put(inbox / "trip/a.jpg.xmp", b"its sidecar")
    journal = Journal.create("sort", [inbox], dest, {"mode": "move"})
    mover = Mover("move", journal)
    for photo in photos:
        mover.execute(mover.plan(photo, dest))
    journal.end({})
    journal.close()
    (inbox / "trip").rmdir()
    (inbox / "trip").write_bytes(b"a file where the folder was")
    _, result = undo(str(journal.path), lambda message: None)
    assert result.undone == 1 and (inbox / "b.jpg").read_bytes() == b"b"
    assert len(result.refused) == 1 and "cannot put back" in result.refused[0].reason
    assert result.refused[0].path == inbox / "trip/a.jpg"
    assert (dest / "a.jpg").read_bytes() == b"a" and (dest / "a.jpg.xmp").exists()  # still sorted, not lost
    assert (inbox / "trip").read_bytes() == b"a file where the folder was"


@pytest.mark.parametrize("way", ["renamed, then edited", "copied across file systems"])
def test_an_undo_killed_after_putting_the_photo_back_is_finished_by_the_next(tmp_path, way):
    """The photo an interrupted undo already put back counts as back, whether it was renamed (and
    edited since) or copied back across file systems (another inode, same size and time): the next
    undo puts its sidecar back too instead of refusing the unit."""
    files = _unit(tmp_path)
    journal_path = _sorted(tmp_path, files[0][0])
    with claimed(journal_path) as handle:
        Appender(handle, read(journal_path))({"type": "undo", "op": 0})
    moved = tmp_path / "out/p.jpg"
    if way.startswith("renamed"):
        os.rename(moved, files[0][0])  # killed after the photo went back
        files[0][0].write_bytes(b"photo bytes, retouched after the interrupted undo")
    else:
        shutil.copy2(moved, files[0][0])
        moved.unlink()
    _, result = undo(str(journal_path), lambda message: None)
    assert result.undone == 1 and result.refused == []
    assert files[1][0].read_bytes() == b"<x:xmpmeta/>" and not (tmp_path / "out/p.jpg.xmp").exists()


def test_a_photo_edited_where_the_killed_run_put_it_is_still_its_own_and_the_sidecar_follows(tmp_path):
    files = _unit(tmp_path)
    path = _killed(tmp_path, "move", files, 1, os.rename)
    files[0][1].write_bytes(b"photo bytes, retouched in the destination before the next run")
    assert "completed" in _settle(path)[0]
    assert files[1][1].read_bytes() == b"<x:xmpmeta/>" and not files[1][0].exists()
    assert files[0][1].read_bytes() == b"photo bytes, retouched in the destination before the next run"


@pytest.mark.parametrize("edit", [b"<x:xmpmeta>edited meanwhile by another tool</x:xmpmeta>", b"<x/>"])
def test_a_sidecar_edited_since_the_killed_run_began_stays_where_it_is(tmp_path, edit):
    files = _unit(tmp_path)
    path = _killed(tmp_path, "move", files, 1, os.rename)
    files[1][0].write_bytes(edit)  # longer or shorter than it was
    messages = _settle(path)
    assert "completed" in messages[0] and any("changed since the run began" in m for m in messages)
    assert files[1][0].read_bytes() == edit and not files[1][1].exists()


def test_a_photo_deleted_by_hand_after_the_kill_does_not_send_its_sidecar_off_alone(tmp_path):
    files = _unit(tmp_path)
    path = _killed(tmp_path, "move", files, 0, os.rename)
    files[0][0].unlink()
    assert "rolled back" in _settle(path)[0]
    assert files[1][0].read_bytes() == b"<x:xmpmeta/>" and not (tmp_path / "out").exists()


def test_a_source_edited_after_a_killed_copy_across_file_systems_keeps_the_edit(tmp_path):
    """Killed between the copy and the source's removal, then the photo was edited in the inbox:
    the edit is never lost (the photo stays, the run's unit is not completed)."""
    files = _unit(tmp_path)
    path = _killed(tmp_path, "move", files, 1, _copied_across)
    files[0][0].write_bytes(b"photo bytes, edited in the inbox after the kill")
    assert "rolled back" in _settle(path)[0]
    assert files[0][0].read_bytes() == b"photo bytes, edited in the inbox after the kill"
    assert files[1][0].exists()


def test_recovery_settles_a_killed_run_even_behind_a_live_one(tmp_path):
    """Journals that ended, or whose run is still going, are skipped; the killed run after them is
    settled."""
    finished = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": "move"})
    finished.end({})
    finished.close()
    live = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": "move"})
    live.begin("move", [(tmp_path / "in/x.jpg", tmp_path / "out/x.jpg")], [])
    files = _unit(tmp_path)
    killed = _killed(tmp_path, "move", files, 1, os.rename)
    code = "from clipsort.writes.recovery import recover; print(recover(print))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip().splitlines()[-1] == "1"
    assert read(killed).ended and not read(live.path).ended
    assert files[1][1].read_bytes() == b"<x:xmpmeta/>"
    live.close()


def _deduped(tmp_path: Path) -> tuple[Path, Path, Path]:
    kept = put(tmp_path / "out/p.jpg", b"the same bytes")
    copy = put(tmp_path / "in/p.jpg", b"the same bytes")
    path = _sorted(tmp_path, copy, dedupe=True)
    assert not copy.exists()
    return copy, kept, path


def test_undo_of_a_dedupe_refuses_when_the_photo_is_back_already(tmp_path):
    copy, _, path = _deduped(tmp_path)
    put(copy, b"put back by hand, then edited")
    _, result = undo(str(path), lambda message: None)
    assert result.undone == 0 and "exists again" in result.refused[0].reason
    assert copy.read_bytes() == b"put back by hand, then edited"


def test_an_undo_of_a_dedupe_killed_before_its_copy_is_finished_by_the_next_undo(tmp_path):
    copy, kept, path = _deduped(tmp_path)
    with claimed(path) as handle:
        Appender(handle, read(path))({"type": "undo", "op": 0})  # killed right after this record
    _, result = undo(str(path), lambda message: None)
    assert result.undone == 1 and copy.read_bytes() == b"the same bytes"


@pytest.mark.parametrize("action", ["move", "copy"])
def test_an_undo_whose_sidecar_cannot_go_back_leaves_the_unit_whole(tmp_path, monkeypatch, action):
    """The sidecar's put-back fails (a fault made at that call): the photo that went back first
    returns to where the sort put it, so the unit stays whole and can be undone later."""
    files = _unit(tmp_path)
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": action})
    mover = Mover(action, journal)
    mover.execute(mover.plan(files[0][0], tmp_path / "out"))
    journal.end({})
    journal.close()
    sidecar_target = tmp_path / "out/p.jpg.xmp"
    real_place, real_unlink = recovery.place, os.unlink

    def place(source, target, how):
        if source == sidecar_target:
            raise OSError(5, "Input/output error")
        return real_place(source, target, how)

    def unlink(path, *args, **kwargs):
        if Path(path) == sidecar_target:
            raise OSError(5, "Input/output error")
        return real_unlink(path, *args, **kwargs)

    with monkeypatch.context() as faults:
        faults.setattr(recovery, "place", place)
        faults.setattr(recovery.os, "unlink", unlink)
        _, result = undo(str(journal.path), lambda message: None)
    assert result.undone == 0 and "cannot put back" in result.refused[0].reason
    if action == "move":
        assert (tmp_path / "out/p.jpg").read_bytes() == b"photo bytes" and not files[0][0].exists()
        assert sidecar_target.exists() and not files[1][0].exists()
    else:  # the originals never move
        assert files[0][0].read_bytes() == b"photo bytes" and files[1][0].exists()


def test_a_photo_edited_between_its_link_and_unlink_is_rolled_back_to_one_name(tmp_path):
    """Killed between link() and unlink() of the no-rename fallback, then edited (both names are one
    file): the photo goes back to one name, the inbox's, with the edit."""
    files = _unit(tmp_path)
    path = _killed(tmp_path, "move", files, 1, os.link)
    files[0][0].write_bytes(b"photo bytes, edited after the kill")
    assert "rolled back" in _settle(path)[0]
    assert files[0][0].read_bytes() == b"photo bytes, edited after the kill" and not files[0][1].exists()
    assert files[1][0].exists() and not (tmp_path / "out").exists()


def test_undo_refuses_a_unit_whose_photo_changed_and_names_the_photo(tmp_path):
    files = _unit(tmp_path)
    journal_path = _sorted(tmp_path, files[0][0])
    (tmp_path / "out/p.jpg").write_bytes(b"edited in its new place")
    _, result = undo(str(journal_path), lambda message: None)
    assert result.undone == 0 and [f.path for f in result.refused] == [files[0][0]]
    assert "changed since it was sorted" in result.refused[0].reason
    assert (tmp_path / "out/p.jpg.xmp").exists() and not files[1][0].exists()  # the unit stays whole


@pytest.mark.parametrize("action", ["move", "copy"])
def test_a_companion_at_its_target_while_the_photo_never_left_goes_back(tmp_path, action):
    """Whatever order a unit's files were placed in, the photo decides: it never left, so a
    companion found at its target (moved there, or copied) is taken back, and nothing is lost."""
    files = _unit(tmp_path)
    how = os.rename if action == "move" else shutil.copy2
    path = _killed(tmp_path, action, files, 0, how)
    (sidecar, target) = files[1]
    target.parent.mkdir(parents=True)
    how(sidecar, target)
    assert "rolled back" in _settle(path)[0]
    assert sidecar.read_bytes() == b"<x:xmpmeta/>" and not target.exists()
    assert files[0][0].exists() and not (tmp_path / "out").exists()


def test_recovery_settles_the_unit_left_half_done_after_units_that_finished(tmp_path):
    first = put(tmp_path / "in/a.jpg", b"a")
    files = _unit(tmp_path)
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": "move"})
    mover = Mover("move", journal)
    mover.execute(mover.plan(first, tmp_path / "out/red"))  # done
    journal.begin("move", files, [])
    os.rename(*files[0])  # the photo moved, then the kill
    journal.close()
    messages = _settle(journal.path)
    assert len(messages) == 1 and "completed" in messages[0]
    assert files[1][1].read_bytes() == b"<x:xmpmeta/>" and (tmp_path / "out/red/a.jpg").exists()


@pytest.mark.parametrize("foreign", [b"someone else's, larger photo", b"tiny"])
def test_a_photo_gone_from_the_inbox_is_not_taken_for_a_foreign_file_at_its_target(tmp_path, foreign):
    files = _unit(tmp_path)
    path = _killed(tmp_path, "move", files, 1, lambda s, t: t.write_bytes(foreign))
    files[0][0].unlink()
    assert "rolled back" in _settle(path)[0]
    assert files[1][0].exists() and not files[1][1].exists()  # the sidecar does not join a stranger


def test_a_foreign_file_of_the_same_size_and_time_is_not_taken_for_a_killed_copy(tmp_path):
    files = _unit(tmp_path)

    def lookalike(source: Path, target: Path) -> None:
        target.write_bytes(b"PHOTO BYTES")  # the same size
        shutil.copystat(source, target)  # and the same time

    path = _killed(tmp_path, "copy", files, 1, lookalike)
    messages = _settle(path)
    assert "rolled back" in messages[0] and any("not the file the run placed" in m for m in messages)
    assert files[0][1].read_bytes() == b"PHOTO BYTES" and not files[1][1].exists()


def test_a_killed_move_whose_copy_and_touched_source_are_alike_is_rolled_back_to_one_copy(tmp_path):
    """Killed after copying across file systems; the source was then touched (same bytes, a new
    time): the move is not completed, and the copy, whose bytes live on at the source, goes."""
    files = _unit(tmp_path)
    path = _killed(tmp_path, "move", files, 1, _copied_across)
    os.utime(files[0][0], (1_700_000_000, 1_700_000_000))
    assert "rolled back" in _settle(path)[0]
    assert files[0][0].read_bytes() == b"photo bytes" and not files[0][1].exists()


def test_a_companion_copy_whose_original_is_gone_is_kept_where_it_is(tmp_path):
    files = _unit(tmp_path)
    path = _killed(tmp_path, "copy", files, 0, shutil.copy2)
    (sidecar, target) = files[1]
    target.parent.mkdir(parents=True)
    shutil.copy2(sidecar, target)
    sidecar.unlink()
    assert "rolled back" in _settle(path)[0]
    assert target.read_bytes() == b"<x:xmpmeta/>" and not sidecar.exists()  # maybe the only copy now


def test_an_interrupted_undo_does_not_take_another_file_at_the_photos_name_for_it(tmp_path):
    files = _unit(tmp_path)
    journal_path = _sorted(tmp_path, files[0][0])
    with claimed(journal_path) as handle:
        Appender(handle, read(journal_path))({"type": "undo", "op": 0})
    # killed after the photo went back; then it was replaced by another, smaller file (not the
    # photo: another inode, size and time)
    put(files[0][0], b"small")
    os.utime(files[0][0], (1_000_000_000, 1_000_000_000))
    (tmp_path / "out/p.jpg").unlink()
    _, result = undo(str(journal_path), lambda message: None)
    assert result.undone == 0 and "is gone" in result.refused[0].reason
    assert (tmp_path / "out/p.jpg.xmp").exists()


def test_a_foreign_file_with_a_lower_inode_at_the_target_is_not_taken_for_the_photo(tmp_path):
    """Whatever its inode number, a file that is not the photo is not the photo: the photo is kept."""
    first, second = put(tmp_path / "in/x", b"someone else's"), put(tmp_path / "in/y", b"photo bytes")
    foreign, photo = sorted([first, second], key=lambda p: p.stat().st_ino)  # the lower inode is the stranger's
    content = photo.read_bytes()
    files = [(photo, tmp_path / "out/red/p.jpg")]
    path = _killed(tmp_path, "move", files, 0, os.rename)
    files[0][1].parent.mkdir(parents=True)
    os.rename(foreign, files[0][1])
    messages = _settle(path)
    assert "rolled back" in messages[0] and any("not the file the run placed" in m for m in messages)
    assert photo.read_bytes() == content


def test_recovery_goes_on_past_a_finished_journal_whose_undo_was_killed_mid_record(tmp_path):
    """An undo killed while writing a record leaves a finished run's journal ending in half a line;
    recovery reads it, sees it ended, and still settles the killed run after it."""
    done = _sorted(tmp_path, put(tmp_path / "in/first.jpg", b"first"))
    with open(done, "ab") as stream:
        stream.write(b'{"type":"undo","o')  # cut short by the kill
    files = _unit(tmp_path)
    killed = _killed(tmp_path, "move", files, 1, os.rename)
    messages: list[str] = []
    assert recover(messages.append) == 1
    assert read(killed).ended and "completed" in messages[0]
    assert files[1][1].read_bytes() == b"<x:xmpmeta/>"  # the sidecar followed its photo
    assert (tmp_path / "out/first.jpg").read_bytes() == b"first"  # the finished run is left alone


def test_an_undo_of_a_dedupe_killed_after_its_copy_is_finished_by_the_next_undo(tmp_path):
    copy, kept, path = _deduped(tmp_path)
    with claimed(path) as handle:
        Appender(handle, read(path))({"type": "undo", "op": 0})
    shutil.copy2(kept, copy)  # killed after the copy came back, before its "undone" record
    _, result = undo(str(path), lambda message: None)
    assert result.undone == 1 and result.refused == []
    assert copy.read_bytes() == b"the same bytes" and kept.read_bytes() == b"the same bytes"
    assert read(path).operations[0].state == "undone"


def test_undo_of_a_dedupe_brings_the_copy_back_with_its_own_time(tmp_path):
    kept = put(tmp_path / "out/p.jpg", b"the same bytes")
    copy = put(tmp_path / "in/p.jpg", b"the same bytes")
    os.utime(copy, ns=(1_500_000_000_123_456_789, 1_400_000_000_987_654_321))
    path = _sorted(tmp_path, copy, dedupe=True)
    _, result = undo(str(path), lambda message: None)
    assert result.undone == 1
    # modified as it was; accessed set to the same (the access time is not recorded)
    assert copy.stat().st_mtime_ns == 1_400_000_000_987_654_321
    assert copy.stat().st_atime_ns == 1_400_000_000_987_654_321
    assert kept.read_bytes() == b"the same bytes"


def test_undo_puts_a_photo_back_into_inbox_folders_deleted_since_the_sort(tmp_path):
    photo = put(tmp_path / "in/2020/trip/p.jpg", b"photo bytes")
    put(tmp_path / "in/2020/trip/p.jpg.xmp", b"<x:xmpmeta/>")
    path = _sorted(tmp_path, photo)
    shutil.rmtree(tmp_path / "in/2020")  # the emptied import folders, cleaned up by hand
    _, result = undo(str(path), lambda message: None)
    assert result.undone == 1 and result.refused == []
    assert photo.read_bytes() == b"photo bytes" and (tmp_path / "in/2020/trip/p.jpg.xmp").exists()


def test_an_undo_that_cannot_put_a_photo_back_says_why_in_words(tmp_path):
    photo = put(tmp_path / "in/trip/a.jpg", b"a")
    path = _sorted(tmp_path, photo)
    shutil.rmtree(tmp_path / "in/trip")
    (tmp_path / "in/trip").write_bytes(b"a file where the folder was")
    _, result = undo(str(path), lambda message: None)
    assert [(f.path, f.reason) for f in result.refused] == [(photo, "cannot put back: File exists")]


def test_an_interrupted_undo_refuses_the_unit_when_its_sidecar_changed_since_the_sort(tmp_path):
    """The photo went back before the kill; the sidecar, still sorted, was edited since: the unit
    is refused (as any unit with a changed file), and the edited sidecar stays where it is."""
    files = _unit(tmp_path)
    journal_path = _sorted(tmp_path, files[0][0])
    with claimed(journal_path) as handle:
        Appender(handle, read(journal_path))({"type": "undo", "op": 0})
    os.rename(tmp_path / "out/p.jpg", files[0][0])  # killed after the photo went back
    (tmp_path / "out/p.jpg.xmp").write_bytes(b"<x:xmpmeta>edited in digiKam since</x:xmpmeta>")
    _, result = undo(str(journal_path), lambda message: None)
    assert result.undone == 0 and "changed since it was sorted" in result.refused[0].reason
    assert (tmp_path / "out/p.jpg.xmp").read_bytes() == b"<x:xmpmeta>edited in digiKam since</x:xmpmeta>"
    assert not files[1][0].exists()


def test_an_interrupted_undo_does_not_take_a_larger_newer_file_with_a_lower_inode_for_the_photo(tmp_path):
    """Killed after the photo went back, and the photo then replaced by another file (larger, newer,
    with a lower inode number): that file is not the photo, so the unit is refused."""
    first, second = put(tmp_path / "in/x", b""), put(tmp_path / "in/y", b"")
    foreign, photo = sorted([first, second], key=lambda p: p.stat().st_ino)  # the stranger's inode is lower
    foreign.write_bytes(b"someone else's file, larger")
    photo.write_bytes(b"photo bytes")
    source = tmp_path / "in/p.jpg"
    os.rename(photo, source)
    put(tmp_path / "in/p.jpg.xmp", b"<x:xmpmeta/>")
    journal_path = _sorted(tmp_path, source)
    with claimed(journal_path) as handle:
        Appender(handle, read(journal_path))({"type": "undo", "op": 0})
    (tmp_path / "out/p.jpg").unlink()
    os.utime(foreign, (4_000_000_000, 4_000_000_000))
    os.rename(foreign, source)
    _, result = undo(str(journal_path), lambda message: None)
    assert result.undone == 0 and "is gone" in result.refused[0].reason
    assert (tmp_path / "out/p.jpg.xmp").exists() and source.read_bytes() == b"someone else's file, larger"
