"""Finding photos: recursion, filters, order, symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipsort.photos.discover import WalkOptions, discover


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def found(roots, errors=None, follow_links=False, left_out=None):
    on_error = (lambda p, r: errors.append((p, r))) if errors is not None else (lambda p, r: None)
    on_left_out = (lambda p, r: left_out.append((p, r))) if left_out is not None else (lambda p, r: None)
    options = WalkOptions(follow_links=follow_links)
    return [ref.path for ref in discover(roots, on_error=on_error, options=options, on_left_out=on_left_out)]


def test_walks_recursively_in_a_stable_order_and_filters_extensions(tmp_path: Path):
    for name in ["b.JPG", "a.png", "c.txt", "sub/z.webp", "sub/deeper/y.TIFF", "sub/x.gif", "d.jpeg", "e.bmp", "f.tif"]:
        touch(tmp_path / name)
    paths = found([tmp_path])
    rel = [str(p.relative_to(tmp_path)) for p in paths]
    assert rel == ["a.png", "b.JPG", "d.jpeg", "e.bmp", "f.tif", "sub/x.gif", "sub/z.webp", "sub/deeper/y.TIFF"]
    assert found([tmp_path]) == paths  # deterministic


def test_records_size_and_mtime(tmp_path: Path):
    photo = touch(tmp_path / "p.jpg", b"12345")
    (ref,) = discover([tmp_path])
    assert ref.size == 5 and ref.mtime_ns == photo.stat().st_mtime_ns


def test_hidden_and_junk_folders_are_skipped(tmp_path: Path):
    touch(tmp_path / ".hidden.jpg")
    touch(tmp_path / ".git/p.jpg")
    touch(tmp_path / "@eaDir/thumb.jpg")
    keep = touch(tmp_path / "ok/p.jpg")
    assert found([tmp_path]) == [keep]


def test_explicit_hidden_root_is_walked(tmp_path: Path):
    photo = touch(tmp_path / ".trip/p.jpg")
    assert found([tmp_path / ".trip"]) == [photo]


def test_symlink_loops_end_and_linked_folders_are_walked_once(tmp_path: Path):
    photo = touch(tmp_path / "real/p.jpg")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    os.symlink(tmp_path, tmp_path / "real/loop")
    errors: list = []
    paths = found([tmp_path], errors, follow_links=True)
    assert len(paths) == 1 and paths[0].resolve() == photo.resolve()
    assert [(p.name, "loop" in r) for p, r in errors] == [("loop", True)]  # named once, not followed


def test_linked_folders_are_not_followed_unless_asked_and_are_named(tmp_path: Path):
    library, elsewhere = tmp_path / "library", tmp_path / "elsewhere"
    own = touch(library / "own.jpg")
    outside = touch(elsewhere / "outside.jpg")
    os.symlink(elsewhere, library / "link")
    left_out: list = []
    assert found([library], left_out=left_out) == [own]
    assert [(p.name, "not followed" in r) for p, r in left_out] == [("link", True)]
    assert found([library], follow_links=True) == [own, library / "link" / outside.name]
    assert found([library / "link"]) == [library / "link" / outside.name]  # a link named by the user is followed


def test_same_file_through_two_roots_is_yielded_once(tmp_path: Path):
    photo = touch(tmp_path / "p.jpg")
    assert found([tmp_path, photo, tmp_path]) == [photo]


def test_file_roots_and_errors(tmp_path: Path):
    photo = touch(tmp_path / "p.png")
    text = touch(tmp_path / "notes.txt")
    errors: list = []
    assert found([photo, text, tmp_path / "missing"], errors) == [photo]
    reasons = dict(errors)
    assert "not a photo or video file name" in reasons[text]
    assert reasons[tmp_path / "missing"] == "no such file or folder"


def test_broken_symlink_is_reported(tmp_path: Path):
    os.symlink(tmp_path / "gone.jpg", tmp_path / "link.jpg")
    errors: list = []
    assert found([tmp_path], errors) == []
    assert errors == [(tmp_path / "link.jpg", "broken symbolic link")]


@pytest.mark.permissions
@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_unreadable_folder_is_reported_and_the_walk_goes_on(tmp_path: Path):
    locked = tmp_path / "locked"
    touch(locked / "p.jpg")
    keep = touch(tmp_path / "z.jpg")
    locked.chmod(0)
    try:
        errors: list = []
        assert found([tmp_path], errors) == [keep]
        assert errors and errors[0][0] == locked
    finally:
        locked.chmod(0o755)


def test_the_walk_records_the_size_and_mtime_of_sidecars_it_passes(tmp_path: Path):
    from clipsort.photos.discover import SideFiles

    touch(tmp_path / "a.jpg")
    sidecar = touch(tmp_path / "sub" / "b.jpg.xmp", b"<x/>")
    touch(tmp_path / "sub" / "b.jpg")
    touch(tmp_path / "notes.txt")
    (tmp_path / "gone.xmp").symlink_to(tmp_path / "missing")
    side_files = SideFiles((".xmp",))
    errors: list = []
    refs = list(discover([tmp_path], on_error=lambda p, r: errors.append((p, r)), side_files=side_files))
    assert [r.path.name for r in refs] == ["a.jpg", "b.jpg"]
    st = sidecar.stat()
    assert side_files.stats == {str(sidecar): (st.st_size, st.st_mtime_ns)}
    assert errors == []  # a broken link that is no photo is none of the photo walk's business


def excluded_walk(roots, exclude=(), errors=None):
    on_error = (lambda p, r: errors.append((p, r))) if errors is not None else (lambda p, r: None)
    options = WalkOptions(exclude=tuple(exclude))
    return [ref.path for ref in discover(roots, on_error=on_error, options=options)]


def test_exclude_patterns_follow_gitignore_rules_relative_to_each_root(tmp_path: Path):
    for name in [
        "top.jpg",
        "a.tmp.jpg",
        "keep.jpg",
        "drafts/d.jpg",
        "sub/top.jpg",
        "sub/drafts/e.jpg",
        "2019/x/old.png",
        "2019/x/old.jpg",
        "sub/a.tmp.jpg",
    ]:
        touch(tmp_path / name)
    rel = lambda paths: sorted(str(p.relative_to(tmp_path)) for p in paths)  # noqa: E731
    assert len(excluded_walk([tmp_path])) == 9
    # unanchored names match at every depth; a trailing slash names folders only; a leading one, the top
    got = excluded_walk([tmp_path], ["*.tmp.jpg", "drafts/", "/top.jpg", "/2019/**/*.png"])
    assert rel(got) == ["2019/x/old.jpg", "keep.jpg", "sub/top.jpg"]
    # a negation takes a file back; relative to each root: the same pattern under another root
    got = excluded_walk([tmp_path / "sub"], ["*.jpg", "!top.jpg"])
    assert rel(got) == ["sub/top.jpg"]
    # a file named on the command line (a shell's glob) and excluded too: excluded
    assert excluded_walk([tmp_path / "a.tmp.jpg", tmp_path / "keep.jpg"], ["*.tmp.jpg"]) == [tmp_path / "keep.jpg"]


def test_a_clipsortignore_file_applies_below_its_folder_the_deeper_one_last(tmp_path: Path):
    for name in [
        "a.jpg",
        "b.jpg",
        "inbox/a.jpg",
        "inbox/b.jpg",
        "inbox/c.png",
        "inbox/deep/b.jpg",
        "inbox/deep/c.png",
        "inbox/private/p.jpg",
    ]:
        touch(tmp_path / name)
    (tmp_path / "inbox/.clipsortignore").write_text("# my rules\nb.jpg\n*.png\nprivate/\n", encoding="utf-8")
    (tmp_path / "inbox/deep/.clipsortignore").write_text("!*.png\n", encoding="utf-8")
    rel = sorted(str(p.relative_to(tmp_path)) for p in excluded_walk([tmp_path]))
    assert rel == ["a.jpg", "b.jpg", "inbox/a.jpg", "inbox/deep/c.png"]


def test_an_excluded_folder_is_not_entered_and_a_broken_ignore_file_keeps_its_folder_out(tmp_path: Path):
    touch(tmp_path / "ok.jpg")
    (tmp_path / "cache").mkdir()
    os.mkfifo(tmp_path / "cache" / "pipe.jpg")  # walked, it would be named: a FIFO is not a photo
    touch(tmp_path / "cache/thumb.jpg")
    errors: list = []
    assert excluded_walk([tmp_path], ["cache/"], errors) == [tmp_path / "ok.jpg"] and errors == []
    # an ignore file that cannot be used: the folder it guards is named and left out, not walked
    touch(tmp_path / "mine/secret.jpg")
    os.symlink("/etc/hostname", tmp_path / "mine/.clipsortignore")
    touch(tmp_path / "bad/x.jpg")
    (tmp_path / "bad/.clipsortignore").write_bytes(b"\xff\xfe not text")
    errors = []
    paths = excluded_walk([tmp_path], ["cache/"], errors)
    assert paths == [tmp_path / "ok.jpg"]
    assert sorted(p.name for p, _ in errors) == ["bad", "mine"]
    assert all(".clipsortignore" in reason and "not walked" in reason for _, reason in errors)


def test_an_exclude_pattern_git_would_not_take_is_a_usage_error():
    from clipsort.errors import UsageError
    from clipsort.photos.ignore import check_excludes

    check_excludes(["*.jpg", "!keep.jpg", "a/**/b"])
    with pytest.raises(UsageError, match="--exclude"):
        check_excludes(["a\nb"])
    with pytest.raises(UsageError, match="not a gitignore pattern"):
        check_excludes(["*.jpg", "!"])


def test_the_limits_of_an_ignore_file_and_of_an_exclude_pattern(tmp_path: Path):
    from clipsort.errors import UsageError
    from clipsort.photos.ignore import IGNORE_FILE_LIMIT, check_excludes

    # a folder-only pattern leaves a file of that name alone
    touch(tmp_path / "plain" / "keep.jpg")
    touch(tmp_path / "plain" / "keep.jpg.d" / "x.jpg")
    assert excluded_walk([tmp_path / "plain"], ["keep.jpg/"]) == [
        tmp_path / "plain" / "keep.jpg",
        tmp_path / "plain" / "keep.jpg.d" / "x.jpg",
    ]
    # one pattern per --exclude: any line break or NUL is refused
    for bad in ("a\rb", "a\0b", "a\nb"):
        with pytest.raises(UsageError, match="one pattern per --exclude"):
            check_excludes([bad])
    # an ignore file of the limit exactly is read; one byte more keeps its folder out, said so
    for name, size in (("at", IGNORE_FILE_LIMIT), ("over", IGNORE_FILE_LIMIT + 1)):
        touch(tmp_path / name / "p.jpg")
        body = b"# " + b"x" * (size - 11) + b"\nnone.jpg\n"
        (tmp_path / name / ".clipsortignore").write_bytes(body[:size])
        assert len((tmp_path / name / ".clipsortignore").read_bytes()) == size
    errors: list = []
    assert excluded_walk([tmp_path / "at", tmp_path / "over"], errors=errors) == [tmp_path / "at" / "p.jpg"]
    assert [(p.name, r) for p, r in errors] == [
        ("over", f".clipsortignore is larger than {IGNORE_FILE_LIMIT // 1024} KiB; the folder is not walked")
    ]
    # why an ignore file could not be read is said in words; a pattern git would not take is named
    touch(tmp_path / "linked" / "p.jpg")
    os.symlink(tmp_path / "at" / ".clipsortignore", tmp_path / "linked" / ".clipsortignore")
    touch(tmp_path / "bang" / "p.jpg")
    (tmp_path / "bang" / ".clipsortignore").write_text("*.png\n!\n", encoding="utf-8")
    errors = []
    assert excluded_walk([tmp_path / "linked", tmp_path / "bang"], errors=errors) == []
    reasons = {p.name: r for p, r in errors}
    assert reasons["linked"].startswith(".clipsortignore cannot be read (") and "link" in reasons["linked"]
    assert "True" not in reasons["linked"] and "Errno" not in reasons["linked"]
    assert reasons["bang"].startswith(".clipsortignore holds a pattern git would not take: ")
