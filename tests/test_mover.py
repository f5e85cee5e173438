"""Placing photos: never overwrite, sidecars travel, duplicates, in-place, modes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipsort.errors import MoveError
from clipsort.writes.mover import Mover, companions_of


def put(path: Path, data: bytes = b"photo") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_move_takes_sidecars_along(tmp_path: Path):
    photo = put(tmp_path / "in/p.jpg", b"pixels")
    put(tmp_path / "in/p.jpg.xmp", b"xmp")
    put(tmp_path / "in/p.xmp", b"lightroom")
    put(tmp_path / "in/p.jpg.clipsort.json", b"{}")
    mover = Mover("move")
    plan = mover.plan(photo, tmp_path / "out/red")
    mover.execute(plan)
    out = tmp_path / "out/red"
    assert sorted(p.name for p in out.iterdir()) == ["p.jpg", "p.jpg.clipsort.json", "p.jpg.xmp", "p.xmp"]
    assert (out / "p.jpg").read_bytes() == b"pixels" and (out / "p.xmp").read_bytes() == b"lightroom"
    assert list((tmp_path / "in").iterdir()) == []


def test_stem_sidecar_stays_when_another_file_shares_the_stem(tmp_path: Path):
    photo = put(tmp_path / "IMG_1.jpg")
    put(tmp_path / "IMG_1.CR2")
    put(tmp_path / "IMG_1.xmp")
    assert companions_of(photo) == []
    put(tmp_path / "IMG_1.jpg.xmp")
    assert companions_of(photo) == [tmp_path / "IMG_1.jpg.xmp"]


def test_never_overwrites_and_numbers_the_whole_unit(tmp_path: Path):
    existing = put(tmp_path / "out/p.jpg", b"someone else's photo")
    put(tmp_path / "out/p_1.jpg.xmp", b"orphan sidecar")  # makes _1 unusable for the unit
    photo = put(tmp_path / "in/p.jpg", b"mine")
    put(tmp_path / "in/p.jpg.xmp", b"my tags")
    mover = Mover("move")
    plan = mover.plan(photo, tmp_path / "out")
    assert plan.target == tmp_path / "out/p_2.jpg"
    mover.execute(plan)
    assert existing.read_bytes() == b"someone else's photo"
    assert (tmp_path / "out/p_2.jpg").read_bytes() == b"mine"
    assert (tmp_path / "out/p_2.jpg.xmp").read_bytes() == b"my tags"
    assert (tmp_path / "out/p_1.jpg.xmp").read_bytes() == b"orphan sidecar"


def test_names_given_out_in_a_run_are_reserved_for_dry_runs(tmp_path: Path):
    a = put(tmp_path / "a/p.jpg", b"1")
    b = put(tmp_path / "b/p.jpg", b"2")
    mover = Mover("move")
    targets = [mover.plan(a, tmp_path / "out").target, mover.plan(b, tmp_path / "out").target]
    assert targets == [tmp_path / "out/p.jpg", tmp_path / "out/p_1.jpg"]
    assert not (tmp_path / "out").exists()


def test_identical_file_at_destination_is_a_duplicate_and_stays(tmp_path: Path):
    put(tmp_path / "out/p.jpg", b"same")
    photo = put(tmp_path / "in/p.jpg", b"same")
    mover = Mover("move")
    plan = mover.plan(photo, tmp_path / "out")
    assert plan.action == "duplicate"
    mover.execute(plan)
    assert photo.exists()


def test_photo_already_in_its_folder_is_in_place(tmp_path: Path):
    photo = put(tmp_path / "red/p.jpg")
    plan = Mover("move").plan(photo, tmp_path / "red")
    assert plan.action == "in-place"


@pytest.mark.parametrize("mode", ["copy", "link"])
def test_copy_and_link_keep_the_source(tmp_path: Path, mode: str):
    photo = put(tmp_path / "in/p.jpg", b"data")
    put(tmp_path / "in/p.jpg.xmp", b"x")
    mover = Mover(mode)
    mover.execute(mover.plan(photo, tmp_path / "out"))
    assert photo.read_bytes() == b"data" and (tmp_path / "in/p.jpg.xmp").exists()
    target = tmp_path / "out/p.jpg"
    assert target.read_bytes() == b"data" and (tmp_path / "out/p.jpg.xmp").exists()
    assert (os.stat(target).st_ino == os.stat(photo).st_ino) == (mode == "link")


def test_failure_leaves_the_unit_where_it_was(tmp_path: Path):
    photo = put(tmp_path / "in/p.jpg", b"data")
    put(tmp_path / "in/p.jpg.xmp", b"x")
    blocker = put(tmp_path / "out", b"a file where the folder should be")
    mover = Mover("move")
    with pytest.raises(MoveError):
        mover.execute(mover.plan(photo, blocker / "red"))
    assert photo.read_bytes() == b"data" and (tmp_path / "in/p.jpg.xmp").read_bytes() == b"x"


@pytest.mark.permissions
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_destination_fails_cleanly(tmp_path: Path):
    photo = put(tmp_path / "in/p.jpg", b"data")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        mover = Mover("move")
        with pytest.raises(MoveError, match="Permission denied"):
            mover.execute(mover.plan(photo, out))
        assert photo.read_bytes() == b"data"
    finally:
        out.chmod(0o755)


def test_live_photo_video_and_apple_edits_travel_with_the_photo(tmp_path: Path):
    photo = put(tmp_path / "in/IMG_1.JPG", b"still")
    put(tmp_path / "in/IMG_1.MOV", b"video")
    put(tmp_path / "in/IMG_1.AAE", b"edits")
    put(tmp_path / "in/IMG_1.xmp", b"lightroom")  # still unambiguous: MOV and AAE belong to the photo
    put(tmp_path / "in/IMG_10.JPG", b"another photo")
    assert [p.name for p in companions_of(photo)] == ["IMG_1.xmp", "IMG_1.AAE", "IMG_1.MOV"]
    put(tmp_path / "out/IMG_1.MOV", b"someone else's video")
    mover = Mover("move")
    plan = mover.plan(photo, tmp_path / "out")
    assert plan.target.name == "IMG_1_1.JPG"
    mover.execute(plan)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["IMG_1.MOV", "IMG_1_1.AAE", "IMG_1_1.JPG", "IMG_1_1.MOV", "IMG_1_1.xmp"]
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["IMG_10.JPG"]


def test_folder_index_follows_the_runs_own_moves(tmp_path: Path):
    jpg = put(tmp_path / "in/a.jpg", b"jpg")
    png = put(tmp_path / "in/a.png", b"png")
    put(tmp_path / "in/a.xmp", b"xmp")
    mover = Mover("".join(["mo", "ve"]))  # the mode as a command line gives it: a string made at run time
    first = mover.plan(jpg, tmp_path / "out")
    assert first.companions == ()  # a.xmp is ambiguous while a.png shares the stem
    mover.execute(first)
    second = mover.plan(png, tmp_path / "out")
    assert [c.name for c, _ in second.companions] == ["a.xmp"]  # now it is a.png's alone
    mover.execute(second)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "a.png", "a.xmp"]


@pytest.mark.parametrize("mode", ["copy", "link"])
def test_a_copied_photo_still_shares_its_stem_sidecar(tmp_path: Path, mode: str):
    """After ``--copy``/``--link`` the original is still there, so a stem sidecar it shares with
    another photo stays ambiguous: it is given to neither."""
    jpg = put(tmp_path / "in/a.jpg", b"jpg")
    png = put(tmp_path / "in/a.png", b"png")
    put(tmp_path / "in/a.xmp", b"xmp")
    mover = Mover(mode)
    mover.execute(mover.plan(jpg, tmp_path / "out"))
    assert mover.plan(png, tmp_path / "out").companions == ()


def test_a_photo_sorted_before_under_a_numbered_name_is_a_duplicate(tmp_path: Path):
    """Sorting the same import twice places nothing twice, also where the first run had to number
    the name."""
    put(tmp_path / "out/p.jpg", b"another photo of that name")
    put(tmp_path / "out/p_1.jpg", b"mine")
    photo = put(tmp_path / "in/p.jpg", b"mine")
    plan = Mover("move").plan(photo, tmp_path / "out")
    assert (plan.action, plan.target) == ("duplicate", tmp_path / "out/p_1.jpg")
    put(tmp_path / "in2/p.jpg", b"mine, edited")
    plan = Mover("move").plan(tmp_path / "in2/p.jpg", tmp_path / "out")
    assert (plan.action, plan.target) == ("move", tmp_path / "out/p_2.jpg")


def test_a_photo_whose_folder_went_since_it_was_found_fails_alone(tmp_path: Path):
    photo = put(tmp_path / "in/gone/p.jpg", b"data")
    photo.unlink()
    photo.parent.rmdir()
    mover = Mover("move")
    with pytest.raises(MoveError) as failed:
        mover.execute(mover.plan(photo, tmp_path / "out"))
    assert failed.value.reason == f"cannot move to {tmp_path / 'out'}: No such file or directory"
    assert not (tmp_path / "out").exists()


def test_a_companion_gone_since_its_folder_was_read_does_not_hide_a_linked_one(tmp_path: Path):
    first = put(tmp_path / "in/a.jpg")
    photo = put(tmp_path / "in/p.jpg")
    put(tmp_path / "in/p.jpg.xmp", b"xmp")
    put(tmp_path / "in/p.jpg.clipsort.json", b"{}")
    mover = Mover("move")
    mover.plan(first, tmp_path / "out")  # the folder is read now
    (tmp_path / "in/p.jpg.xmp").unlink()  # gone since
    (tmp_path / "in/p.jpg.clipsort.json").unlink()
    (tmp_path / "in/p.jpg.clipsort.json").symlink_to(tmp_path / "elsewhere.json")
    plan = mover.plan(photo, tmp_path / "out")
    assert plan.action == "left" and "symbolic link" in (plan.note or "")


@pytest.mark.parametrize("companion", ["p.AAE", "p.jpg.xmp"])
def test_a_linked_companion_is_named_as_the_companion(tmp_path: Path, companion: str):
    photo = put(tmp_path / "in/p.jpg")
    put(tmp_path / "elsewhere", b"edits")
    (tmp_path / "in" / companion).symlink_to(tmp_path / "elsewhere")
    plan = Mover("move").plan(photo, tmp_path / "out")
    assert plan.action == "left" and (plan.note or "").startswith(f"its companion {companion} is a symbolic link")


def test_a_raw_partner_travels_with_its_sidecars_and_an_absent_one_is_ignored(tmp_path: Path):
    jpg = put(tmp_path / "in/IMG_1.JPG")
    nef = put(tmp_path / "in/IMG_1.NEF")
    put(tmp_path / "in/IMG_1.NEF.xmp")
    put(tmp_path / "in/IMG_1.xmp")
    found = companions_of(jpg, partners=[nef, tmp_path / "in/IMG_1.CR2"])
    assert [p.name for p in found] == ["IMG_1.xmp", "IMG_1.NEF", "IMG_1.NEF.xmp"]


def test_a_photo_moved_into_a_folder_read_before_makes_a_stem_sidecar_there_ambiguous(tmp_path: Path):
    folder = tmp_path / "lib/x"
    png = put(folder / "b.png")
    put(folder / "b.xmp")
    mover = Mover("move")
    mover.plan(put(folder / "c.jpg"), tmp_path / "out")  # the folder is read now
    mover.execute(mover.plan(put(tmp_path / "in/b.jpg"), folder))
    assert mover.plan(png, tmp_path / "out").companions == ()  # b.jpg shares the stem now


def test_a_deduplicated_photo_no_longer_shares_its_stem_sidecar(tmp_path: Path):
    put(tmp_path / "out/p.jpg", b"same")
    jpg = put(tmp_path / "in/p.jpg", b"same")
    png = put(tmp_path / "in/p.png")
    put(tmp_path / "in/p.xmp")
    mover = Mover("move", dedupe=True)
    mover.execute(mover.plan(jpg, tmp_path / "out"))
    assert not jpg.exists()
    assert [c.name for c, _ in mover.plan(png, tmp_path / "out").companions] == ["p.xmp"]


def test_a_numbered_name_too_long_for_the_destination_is_quoted_in_the_error(tmp_path: Path):
    name = "n" * 251 + ".jpg"  # 255 bytes, the most a name may have: "_1" cannot be added
    photo = put(tmp_path / "in" / name)
    put(tmp_path / "out" / name, b"another photo of that name")
    with pytest.raises(MoveError) as failed:
        Mover("move", dest=tmp_path / "out").plan(photo, tmp_path / "out")
    assert failed.value.reason.startswith(f"cannot be placed as {'n' * 60!r}...: ")
    assert photo.exists()


def test_a_duplicate_that_cannot_be_removed_fails_alone_and_is_journaled(tmp_path: Path, monkeypatch):
    from clipsort.store.journal import Journal
    from clipsort.store.journal_read import read

    put(tmp_path / "out/p.jpg", b"same")
    photo = put(tmp_path / "in/p.jpg", b"same")
    journal = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": "move"})
    mover = Mover("move", journal, dedupe=True)
    plan = mover.plan(photo, tmp_path / "out")
    real_unlink = os.unlink

    def busy(path, *args, **kwargs):  # a fault made at that call
        if Path(path) == photo:
            raise OSError(16, "Device or resource busy")
        return real_unlink(path, *args, **kwargs)

    with monkeypatch.context() as faults, pytest.raises(MoveError) as failed:
        faults.setattr(os, "unlink", busy)
        mover.execute(plan)
    journal.close()
    assert failed.value.reason == "cannot remove duplicate: Device or resource busy"
    assert photo.read_bytes() == b"same"
    assert [op.state for op in read(journal.path).operations.values()] == ["failed"]
