"""The rules for files clipsort reads and the files it makes for itself (clipsort/safe_files.py):
the documented size limits, at their boundaries; links followed only to the user's own files;
errors named for what they are; new files with the user's permissions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipsort.safe_files import LIMITS, UnsafeFile, open_append, open_regular, read_json, read_regular

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
    assert set(LIMITS) == set(DOCUMENTED)
    security = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text(encoding="utf-8")
    for kind, limit in DOCUMENTED.items():
        assert limit.replace("1024 MiB", "1 GiB") in security or limit in security, kind


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
