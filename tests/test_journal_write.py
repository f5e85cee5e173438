"""Writing journals: the key that seals them is made once, safely, even by two runs at once; a
journal is made in the journals folder or the run stops with one clear error before any photo
moves; a journal closes once and never closes another file.

Journals here are written by clipsort's own writer in the test's own data dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clipsort.store import journal as journal_module
from clipsort.store.journal import Journal, JournalError, journal_key, journals_dir, key_path
from clipsort.store.journal_read import read

CLI = [sys.executable, "-m", "clipsort"]


def _journal(tmp_path: Path) -> Journal:
    return Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": "move"})


def test_the_key_is_made_in_a_data_folder_that_already_exists(tmp_path):
    key_path().parent.mkdir(parents=True)  # made by the user, or by another part of clipsort
    (key_path().parent / "something-else").write_text("kept")
    key = journal_key(create=True)
    assert key is not None and len(key) == 32
    assert journal_key() == key  # read back, not made again
    assert sorted(p.name for p in key_path().parent.iterdir()) == ["journal.key", "something-else"]
    assert oct(key_path().stat().st_mode & 0o777) == "0o600"


def test_a_key_made_by_another_run_at_the_same_moment_is_the_one_both_use(monkeypatch):
    """Two first runs at once: the one that links its key second uses the first one's, and leaves
    no temp file behind."""
    theirs = "ab" * 32
    real_link = os.link

    def another_run_links_first(source, target):
        handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(handle, theirs.encode("ascii"))
        os.close(handle)
        real_link(source, target)

    monkeypatch.setattr(journal_module.os, "link", another_run_links_first)
    assert journal_key(create=True) == bytes.fromhex(theirs)
    assert [p.name for p in key_path().parent.iterdir()] == ["journal.key"]


def test_a_key_that_cannot_be_written_is_one_clear_error_and_leaves_no_temp_file(monkeypatch, tmp_path):
    """A full disk while the key is written (simulated: the one fault no folder can cause for
    root): the run stops with one line naming the key, and no half-written key stays behind."""

    def disk_full(_handle):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(journal_module.os, "fsync", disk_full)
        with pytest.raises(JournalError) as refused:
            journal_key(create=True)
        assert str(refused.value) == f"cannot make the journal key {key_path()}: No space left on device"
        with pytest.raises(JournalError, match="cannot make the journal key"):
            _journal(tmp_path)
    assert list(key_path().parent.iterdir()) == []
    assert journal_key(create=True) is not None  # made once the disk has room


def test_a_journals_folder_that_cannot_be_made_is_one_clear_error_before_anything_moves(tmp_path):
    from conftest import COLOUR_MODEL, make_colour_photos

    photos = make_colour_photos(tmp_path / "in", ["red", "blue"], 2, min_px=64, max_px=96)
    journal_key(create=True)
    journals_dir().write_text("a file where the journals folder goes")
    with pytest.raises(JournalError) as refused:
        _journal(tmp_path)
    assert str(refused.value) == f"cannot write the journal in {journals_dir()}: File exists"
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n")
    done = subprocess.run(
        [*CLI, "sort", str(tmp_path / "in"), "--labels", str(labels), "--dest", str(tmp_path / "out")]
        + ["--model", f"local-dir:{COLOUR_MODEL}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stderr
    assert "cannot write the journal in" in done.stderr and "Traceback" not in done.stderr
    assert all(photo.exists() for photo in photos)  # nothing moved without a journal


def test_runs_of_one_process_in_one_second_get_numbered_journals_up_to_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module.time, "strftime", lambda _format: "20261205-120000")
    stem = f"20261205-120000-{os.getpid()}"
    journals_dir().mkdir(parents=True)
    (journals_dir() / f"{stem}.jsonl").write_text("")
    for n in range(1, 999):
        (journals_dir() / f"{stem}-{n}.jsonl").write_text("")
    last = _journal(tmp_path)
    assert last.path.name == f"{stem}-999.jsonl"  # the thousandth of that second
    last.close()
    assert read(last.path).dest == tmp_path / "out"
    with pytest.raises(JournalError, match="too many journals this second"):
        _journal(tmp_path)


def test_closing_a_journal_twice_closes_no_other_file(tmp_path):
    journal = _journal(tmp_path)
    journal.end({})
    journal.close()
    kept = [os.dup(0), os.dup(1), os.dup(2)]  # whatever stdin, stdout and stderr are here
    other = os.open(tmp_path / "another-file", os.O_WRONLY | os.O_CREAT, 0o600)  # may reuse the journal's number
    try:
        journal.close()
        for handle in (0, 1, 2, other):
            os.fstat(handle)  # still open
        os.write(other, b"still mine")
    finally:
        os.close(other)
        for handle in kept:
            os.close(handle)
    assert (tmp_path / "another-file").read_bytes() == b"still mine"


def test_journals_are_private_to_their_user(tmp_path):
    journal = _journal(tmp_path)
    journal.close()
    assert journal.path.stat().st_mode & 0o777 == 0o600  # they name every photo a run touched
    assert key_path().stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_key_that_belongs_to_another_user_is_refused(tmp_path):
    """A key another user planted in a shared data folder would let them seal journals this user's
    undo then acts on."""
    journal_key(create=True)
    os.chown(key_path(), 65534, 65534)
    with pytest.raises(JournalError, match="belongs to another user"):
        journal_key()
    with pytest.raises(JournalError, match="belongs to another user"):
        _journal(tmp_path)


def test_a_key_that_cannot_be_read_is_named_with_the_reason_in_words(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CLIPSORT_DATA_DIR", str(blocker / "clipsort"))
    with pytest.raises(JournalError) as refused:
        journal_key(create=True)
    assert str(refused.value) == f"the journal key {blocker}/clipsort/journal.key cannot be used: Not a directory"


def test_the_key_is_made_where_no_folder_of_the_data_dir_exists_yet(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPSORT_DATA_DIR", str(tmp_path / "fresh/home/.local/share/clipsort"))
    journal = _journal(tmp_path)
    journal.close()
    assert key_path().is_file() and journal.path.parent == journals_dir()


def test_a_key_that_is_a_link_is_refused_even_to_a_good_key(tmp_path):
    """A link planted where the key goes could lend this user's undo a key someone else holds."""
    elsewhere = tmp_path / "planted.key"
    elsewhere.write_text("ab" * 32)
    key_path().parent.mkdir(parents=True)
    key_path().symlink_to(elsewhere)
    with pytest.raises(JournalError, match="cannot be used: is a symbolic link"):
        journal_key()


@pytest.mark.parametrize(
    "content",
    ["ab" * 32 + "\n", "ab" * 32 + "00", "AB" * 32, "zz" * 32, "ab" * 31],
    ids=["newline", "longer", "upper", "not-hex", "shorter"],
)
def test_a_damaged_key_is_refused_not_read_in_part(content):
    key_path().parent.mkdir(parents=True)
    key_path().write_text(content)
    with pytest.raises(JournalError, match="is not a clipsort journal key"):
        journal_key()
    with pytest.raises(JournalError, match="is not a clipsort journal key"):
        journal_key(create=True)  # never replaced by a new one: journals sealed with it would be refused


def test_reading_journals_on_a_fresh_install_makes_no_key(tmp_path, capsys):
    from conftest import run_cli

    journals_dir().mkdir(parents=True)
    (journals_dir() / "20260101-080000-7.jsonl").write_text('{"type":"run","version":2}\n')
    code, out, _ = run_cli(capsys, "history")
    assert code == 0 and "20260101-080000-7.jsonl" in out
    assert not key_path().exists()  # only a sort makes the key


def test_a_full_disk_while_writing_a_record_stops_the_run_in_words(tmp_path, monkeypatch):
    journal = _journal(tmp_path)
    real_write = os.write

    def disk_full(handle, data):
        if handle == journal._fd:
            raise OSError(28, "No space left on device")
        return real_write(handle, data)

    with monkeypatch.context() as faults:
        faults.setattr(journal_module.os, "write", disk_full)
        with pytest.raises(JournalError) as failed:
            journal.begin("move", [(tmp_path / "in/p.jpg", tmp_path / "out/p.jpg")], [])
    assert str(failed.value) == f"cannot write the journal {journal.path}: No space left on device"
    journal.close()


def _as_nobody(code: str, data_dir: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in Python as the user nobody (uid 65534), with ``data_dir`` as its data dir."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to run as another user")
    return subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        env={**os.environ, "CLIPSORT_DATA_DIR": str(data_dir), "HOME": str(data_dir), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
    )


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_key_is_used_only_by_the_user_it_belongs_to():
    """As an ordinary user (uid 65534, above the uids Python keeps one object for), the user's own
    key is used, and a key owned by root (a lower uid) in that user's data folder is refused."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="clipsort-uid-"))
    try:
        base.chmod(0o755)
        data = base / "data"
        data.mkdir()
        os.chown(data, 65534, 65534)
        code = (
            "from clipsort.store.journal import journal_key; print(len(journal_key(create=True)), len(journal_key()))"
        )
        own = _as_nobody(code, data)
        assert own.returncode == 0 and own.stdout.split() == ["32", "32"], own.stderr
        os.chown(data / "journal.key", 0, 0)
        (data / "journal.key").chmod(0o644)  # readable: only its owner tells it apart
        planted = _as_nobody(code, data)
        assert planted.returncode != 0 and "belongs to another user" in planted.stderr
    finally:
        shutil.rmtree(base)
