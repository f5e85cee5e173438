"""Reading journals back: the limits on what is read, the seal's rules for each line, the records'
meaning, the list of journals and which one ``undo`` takes.

Journals here are written by clipsort's own writer (sealed with the test's key) and then, where a
test needs it, damaged or extended on disk as a crash or another program would leave them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from clipsort.errors import UsageError
from clipsort.store import journal_read
from clipsort.store.journal import Journal, JournalError, JournalRefused, journals_dir, key_path
from clipsort.store.journal_read import all_journals, read, resolve
from clipsort.writes.recovery import recover


def _journal(tmp_path: Path, **details) -> Journal:
    return Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": "move", **details})


def _begun(tmp_path: Path) -> Path:
    """A killed run's journal: a photo moved, its unit not yet done."""
    photo = tmp_path / "in/p.jpg"
    photo.parent.mkdir(parents=True, exist_ok=True)
    photo.write_bytes(b"photo")
    journal = _journal(tmp_path)
    journal.begin("move", [(photo, tmp_path / "out/p.jpg")], [tmp_path / "out"])
    (tmp_path / "out").mkdir()
    os.rename(photo, tmp_path / "out/p.jpg")
    journal.close()
    return journal.path


@pytest.mark.parametrize(
    ("started", "shown"),
    [(1_700_000_000.5, 1_700_000_000.5), (-0.5, 0.0), (True, 0.0), (99_999_999_999.5, 99_999_999_999.5), (1e11, 0.0)],
)
def test_a_run_is_dated_by_its_start_unless_that_is_no_time(tmp_path, started, shown):
    journal = _journal(tmp_path, started=started)
    journal.end({})
    journal.close()
    assert read(journal.path).started == shown


def test_an_old_journal_that_says_no_start_is_dated_zero(tmp_path):
    journals_dir().mkdir(parents=True)
    path = journals_dir() / "20200101-000000-1.jsonl"
    path.write_text('{"type":"run","version":1,"command":"sort","dest":"/x"}\n{"type":"end"}\n')
    assert read(path).started == 0.0


def test_a_journal_that_cannot_be_read_is_one_clear_error(tmp_path):
    gone = tmp_path / "gone.jsonl"
    with pytest.raises(JournalError) as failed:
        read(gone)
    assert str(failed.value) == f"cannot read the journal {gone}: No such file or directory"


def test_a_sealed_begin_record_whose_folders_are_not_paths_is_not_a_journal_record(tmp_path):
    journal = _journal(tmp_path)
    files = [[str(tmp_path / "in/p.jpg"), str(tmp_path / "out/p.jpg")]]
    journal.write({"type": "begin", "op": 0, "action": "move", "files": files, "stats": [None], "folders": "ab"})
    journal.close()
    with pytest.raises(JournalError, match="not a journal record"):
        read(journal.path)


@pytest.mark.parametrize(
    ("limit", "measure", "refusal"),
    [
        ("JOURNAL_LIMIT", lambda data: len(data), "larger than a journal may be"),
        ("JOURNAL_LINE_LIMIT", lambda data: max(len(line) for line in data.splitlines()), "a line longer than"),
    ],
)
def test_a_journal_is_read_up_to_each_limit_and_refused_one_byte_past_it(
    tmp_path, monkeypatch, limit, measure, refusal
):
    """The whole file's size, and each record line's (without its newline)."""
    journal = _journal(tmp_path)
    journal.end({})
    journal.close()
    at_limit = measure(journal.path.read_bytes())
    monkeypatch.setattr(journal_read, limit, at_limit)
    assert read(journal.path).ended
    monkeypatch.setattr(journal_read, limit, at_limit - 1)
    with pytest.raises(JournalError, match=refusal):
        read(journal.path)


def test_blank_lines_are_passed_over_and_the_records_after_them_count(tmp_path):
    path = _begun(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"\n  \n" + b"".join(lines[1:]))
    assert [op.state for op in read(path).operations.values()] == ["begun"]


def test_a_complete_line_without_the_seal_is_refused_and_a_cut_short_last_line_is_ignored(tmp_path):
    path = _begun(tmp_path)
    sealed = path.read_bytes()
    path.write_bytes(sealed + b'{"type":"done","op":0}\n')
    with pytest.raises(JournalRefused, match="without clipsort's seal"):
        read(path)
    path.write_bytes(sealed + b'{"type":"done","o')  # the crash cut the last write short
    assert [op.state for op in read(path).operations.values()] == ["begun"]


def test_a_run_killed_while_writing_a_record_is_still_recovered_and_its_journal_stays_readable(tmp_path):
    path = _begun(tmp_path)
    with open(path, "ab") as stream:
        stream.write(b'{"type":"done","op":0,"stats":[[1,2')
    messages: list[str] = []
    assert recover(messages.append) == 1 and "completed" in messages[0]
    view = read(path)  # what recovery appended is sealed after the last whole record
    assert view.ended and [op.state for op in view.operations.values()] == ["done"]
    assert b'"stats":[[1,2{' not in path.read_bytes()


def test_a_record_whose_newline_the_crash_cut_off_counts_and_the_next_goes_on_a_line_of_its_own(tmp_path):
    path = _begun(tmp_path)
    with journal_read.claimed(path) as handle:
        journal_read.Appender(handle, read(path))({"type": "failed", "op": 0, "reason": "test"})
    path.write_bytes(path.read_bytes()[:-1])  # the newline of the last record lost
    assert [op.state for op in read(path).operations.values()] == ["failed"]
    with journal_read.claimed(path) as handle:
        journal_read.Appender(handle, read(path))({"type": "end", "finished": 1.0})
    view = read(path)
    assert view.ended and [op.state for op in view.operations.values()] == ["failed"]
    assert all(path.read_bytes().splitlines())  # one record a line, no line left empty


def test_records_appended_to_a_whole_journal_follow_it_line_for_line(tmp_path):
    path = _begun(tmp_path)
    before = path.read_bytes()
    with journal_read.claimed(path) as handle:
        journal_read.Appender(handle, read(path))({"type": "failed", "op": 0, "reason": "test"})
    after = path.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1
    assert all(after.splitlines())


@pytest.mark.parametrize("version", [1, 3])
def test_a_sealed_journal_of_another_version_is_refused(tmp_path, version):
    journal = _journal(tmp_path, version=version)
    journal.end({})
    journal.close()
    with pytest.raises(JournalRefused, match=f"journal version {version}; this clipsort reads 2"):
        read(journal.path)


@pytest.mark.parametrize("files", [{}, "ab", ["ab"], [["only one path"]], [[1, 2]]])
def test_a_sealed_begin_record_whose_files_are_not_pairs_of_paths_is_not_a_journal_record(tmp_path, files):
    journal = _journal(tmp_path)
    journal.write({"type": "begin", "op": 0, "action": "move", "files": files, "stats": [], "folders": []})
    journal.close()
    with pytest.raises(JournalError, match="not a journal record"):
        read(journal.path)


def test_stray_files_in_the_journals_folder_do_not_stop_the_listing(tmp_path):
    journal = _journal(tmp_path)
    journal.end({})
    journal.close()
    (journals_dir() / "20260101-000000-123-x.jsonl").write_text("not a journal\n")
    (journals_dir() / "notes.jsonl").write_text("not a journal\n")
    assert journal.path in all_journals()


def test_journals_are_listed_oldest_first_by_their_time_then_their_number(tmp_path):
    journals_dir().mkdir(parents=True)
    names = ["20260101-080000-7-1.jsonl", "20260101-080000-7-2.jsonl", "20260101-080000-7-10.jsonl"]
    names += ["20260101-200000-9.jsonl"]
    names += ["20260101-200000-9-1.jsonl", "20260102-010000-3.jsonl"]
    for name in reversed(names):
        (journals_dir() / name).write_text("{}\n")
    assert [p.name for p in all_journals()] == names


def test_history_lists_every_journal_with_the_reason_when_the_key_is_damaged(tmp_path, capsys):
    from conftest import run_cli

    journal = _journal(tmp_path)
    journal.end({})
    journal.close()
    key_path().write_text("not a key")
    code, out, _ = run_cli(capsys, "history")
    assert code == 0 and journal.path.name in out and "is not a clipsort journal key" in out


def test_undo_without_a_name_takes_the_newest_run(tmp_path):
    paths = []
    for _ in range(3):
        journal = _journal(tmp_path)
        journal.end({})
        journal.close()
        paths.append(journal.path)
        time.sleep(0.01)
    assert resolve(None) == paths[-1]


def test_a_journal_name_that_is_a_folder_is_named_as_not_a_journal_file(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(UsageError, match="not a journal file"):
        resolve(str(folder))
    (journals_dir() / "kept-aside").mkdir(parents=True)  # a folder in the journals folder, named alone
    with pytest.raises(UsageError, match="not a journal file"):
        resolve("kept-aside")
    with pytest.raises(UsageError, match="no journal"):
        resolve(str(tmp_path / "nothing-here"))


def test_a_link_in_the_journals_folder_is_named_not_followed_by_recovery(tmp_path):
    """Recovery never reads a journal through a link (it could lead anywhere); it says so each time
    instead of passing over it without a word."""
    journal = _journal(tmp_path)
    journal.end({})
    journal.close()
    kept = tmp_path / "kept-aside.jsonl"
    journal.path.rename(kept)
    (journals_dir() / "20260101-080000-7.jsonl").symlink_to(kept)
    messages: list[str] = []
    assert recover(messages.append) == 0
    assert len(messages) == 1 and "20260101-080000-7.jsonl" in messages[0] and "not a regular file" in messages[0]
    with pytest.raises(JournalError, match="is a symbolic link"):
        read(journals_dir() / "20260101-080000-7.jsonl")  # what `history` lists as unreadable
