"""The rules for files clipsort reads and the files it makes for itself (clipsort/safe_files.py):
the documented size limits, at their boundaries; links followed only to the user's own files;
errors named for what they are; new files with the user's permissions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipsort import safe_files
from clipsort.safe_files import (
    LIMITS,
    UnsafeFile,
    _open_same,
    create_private,
    human_limit,
    kind_of,
    open_append,
    open_own,
    open_regular,
    read_json,
    read_regular,
    real_location,
)

#: The limits docs/security.md promises, as it writes them.
DOCUMENTED = {
    "sidecar": "16 MiB",
    "label file": "64 MiB",
    "config file": "1 MiB",
    "journal": "1024 MiB",
    "model config": "16 MiB",
}
MiB = 1024 * 1024


def test_the_limits_are_the_documented_ones():
    """The limits table of docs/security.md states each limit clipsort applies."""
    assert set(LIMITS) == set(DOCUMENTED)
    security = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text(encoding="utf-8")
    rows = {
        "sidecar": "| XMP or JSON sidecar | 16 MiB",
        "label file": "| label file | 64 MiB",
        "config file": "| `config.toml` | 1 MiB |",
        "journal": "| journal | 1 GiB",
        "model config": "an artifact's manifest | 16 MiB |",
    }
    for kind, row in rows.items():
        assert row in security, kind
        assert LIMITS[kind] == int(DOCUMENTED[kind].split()[0]) * MiB


@pytest.mark.parametrize("kind", sorted(DOCUMENTED))
def test_a_file_one_byte_over_its_limit_is_refused_before_it_is_read(tmp_path, kind):
    big = tmp_path / "big"
    with open(big, "wb") as handle:
        handle.truncate(int(DOCUMENTED[kind].split()[0]) * MiB + 1)  # sparse: no time, no disk
    with pytest.raises(UnsafeFile) as refused:
        read_regular(big, LIMITS[kind], kind)
    assert refused.value.reason.endswith(f"MiB, more than the {DOCUMENTED[kind]} a {kind} may be")


def test_a_file_exactly_at_its_limit_is_read_whole(tmp_path):
    exact = tmp_path / "exact"
    exact.write_bytes(b"x" * 1000)
    assert read_regular(exact, 1000, "file") == b"x" * 1000
    with pytest.raises(UnsafeFile, match="is 0.0 MiB, more than the 999 bytes a file may be"):
        read_regular(exact, 999, "file")


def test_a_model_config_over_its_limit_is_refused(tmp_path):
    config = tmp_path / "open_clip_config.json"
    with open(config, "wb") as handle:
        handle.truncate(16 * MiB + 1)
    with pytest.raises(UnsafeFile, match="more than the 16 MiB a model config may be"):
        read_json(config)


def test_a_log_that_cannot_be_created_is_named_for_what_went_wrong(tmp_path):
    """The error is the system's own (no such folder), not a made-up one about links."""
    with pytest.raises(FileNotFoundError):
        open_append(tmp_path / "no-such-folder" / "clipsort.log")


def test_a_new_log_gets_the_users_permissions_and_an_existing_one_keeps_its_own(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    log = tmp_path / "clipsort.log"
    os.close(open_append(log))
    assert log.stat().st_mode & 0o777 == 0o644 & ~umask
    log.chmod(0o600)
    handle = open_append(log)
    os.write(handle, b"appended\n")
    os.close(handle)
    assert log.stat().st_mode & 0o777 == 0o600 and log.read_bytes() == b"appended\n"


def test_a_link_is_refused_where_links_are_not_followed_and_read_where_they_are(tmp_path):
    own = tmp_path / "labels.txt"
    own.write_text("red\n")
    link = tmp_path / "linked.txt"
    link.symlink_to(own)
    assert read_regular(link, 100, "label file") == b"red\n"
    with pytest.raises(UnsafeFile, match="is a symbolic link"):
        read_regular(link, 100, "sidecar", follow=False)
    os.close(open_regular(own, follow=False))


def test_a_new_log_is_appended_through_a_link_the_user_made(tmp_path):
    kept = tmp_path / "logs" / "clipsort.log"
    kept.parent.mkdir()
    kept.write_bytes(b"earlier\n")
    (tmp_path / "clipsort.log").symlink_to(kept)
    handle = open_append(tmp_path / "clipsort.log")
    os.write(handle, b"now\n")
    os.close(handle)
    assert kept.read_bytes() == b"earlier\nnow\n"


def test_files_clipsort_makes_for_itself_get_their_documented_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    os.close(create_private(tmp_path / "private"))  # journals and the journal key
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600 & ~umask
    os.close(open_own(tmp_path / "cache.lock"))
    assert (tmp_path / "cache.lock").stat().st_mode & 0o777 == 0o644 & ~umask
    os.close(open_own(tmp_path / "cache.lock"))  # an existing one is opened again
    os.link(tmp_path / "cache.lock", tmp_path / "second-name")
    with pytest.raises(UnsafeFile, match="has 2 names"):
        open_own(tmp_path / "cache.lock")


def test_the_real_location_of_a_relative_path_whose_folders_do_not_exist_yet(tmp_path, monkeypatch):
    """`sort -d Sorted` before Sorted exists: the place is found from the working folder, through
    the links of the folders that do exist."""
    (tmp_path / "real").mkdir()
    (tmp_path / "work").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path / "work")
    assert real_location(Path("Sorted/red/p.jpg")) == str(tmp_path.resolve() / "real/Sorted/red/p.jpg")
    (tmp_path / "real/link.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    # the file itself is not followed
    assert real_location(Path("link.jpg")) == str(tmp_path.resolve() / "real/link.jpg")


def test_what_a_file_is_is_said_in_words(tmp_path):
    import socket
    import stat

    os.mkfifo(tmp_path / "fifo")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "socket"))
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    try:
        said = {
            name: kind_of(os.lstat(tmp_path / name).st_mode) for name in ("fifo", "socket", "folder", "file", "link")
        }
    finally:
        server.close()
    said["device"] = kind_of(os.stat("/dev/null").st_mode)
    said["block device"] = kind_of(stat.S_IFBLK | 0o600)
    said["other"] = kind_of(0)
    assert said == {
        "fifo": "a FIFO",
        "socket": "a socket",
        "folder": "a folder",
        "file": "a regular file",
        "link": "a symbolic link",
        "device": "a device",
        "block device": "a device",
        "other": "not a regular file",
    }


@pytest.mark.parametrize(
    ("limit", "said"),
    [(999, "999 bytes"), (MiB, "1 MiB"), (16 * MiB, "16 MiB"), (MiB + MiB // 2, "1572864 bytes"), (0, "0 bytes")],
)
def test_limits_are_said_in_mib_when_they_are_whole_mib(limit, said):
    assert human_limit(limit) == said


def test_a_file_swapped_between_its_check_and_its_open_is_refused(tmp_path):
    """The check (stat) and the open are two steps: whatever is opened must be the file that was
    checked (simulated: the check of one file, the open of another, whichever inode is lower)."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("checked")
    second.write_text("swapped in")
    for checked, opened in ((first, second), (second, first)):
        with pytest.raises(UnsafeFile, match="changed while it was being opened"):
            _open_same(opened, os.O_RDONLY, os.stat(checked))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeFile, match="changed while it was being opened"):
        _open_same(fifo, os.O_RDONLY | os.O_NONBLOCK, None)  # a FIFO in the place of a new file
    link = tmp_path / "link"
    link.symlink_to(first)
    with pytest.raises(UnsafeFile, match="is a symbolic link"):  # a link swapped in, met by O_NOFOLLOW
        _open_same(link, os.O_RDONLY | os.O_NOFOLLOW, os.stat(first))


def test_a_file_that_grows_past_its_limit_while_it_is_read_is_refused(tmp_path, monkeypatch):
    grows = tmp_path / "grows"
    grows.write_bytes(b"x" * 1000)  # exactly the limit when it is checked
    real_read = os.read
    appended = []

    def read_while_another_program_appends(handle, size):
        if not appended:  # one byte, once, after the size was checked
            with open(grows, "ab") as other:
                other.write(b"y")
            appended.append(True)
        return real_read(handle, size)

    monkeypatch.setattr(safe_files.os, "read", read_while_another_program_appends)
    with pytest.raises(UnsafeFile, match="is more than the 1000 bytes a file may be"):
        read_regular(grows, 1000, "file")
