"""Undo and recovery touch only what their own run touched: journals are absolute, sealed, held to
their run's folders, and every file they act on must still be the file they recorded.

Each test names the promise it guards; the hostile journals are built as an attacker would
write them (by hand, by editing a real one, by sealing with another key).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, make_colour_photos
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipsort.errors import ExitCode, UsageError
from clipsort.store import journal as journal_module
from clipsort.store.journal import Journal, JournalError, JournalRefused
from clipsort.store.journal_read import Appender, claimed, read
from clipsort.writes.mover import Mover
from clipsort.writes.recovery import recover, undo

CLI = [sys.executable, "-m", "clipsort"]
SMALL = {"min_px": 64, "max_px": 160}


def tree(folder: Path) -> dict[str, str]:
    """relative path -> content hash of every file and link under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if not p.is_symlink() else "->"
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def library_with_sidecars(folder: Path, count: int = 6) -> dict[Path, str]:
    photos = make_colour_photos(folder, ["red", "green", "blue"], count, **SMALL)
    for photo in photos:
        photo.with_name(photo.name + ".xmp").write_text(f"<x:xmpmeta>{photo.name}</x:xmpmeta>", encoding="utf-8")
    return photos


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd)


# ----------------------------------------------------------------------------- undo from anywhere


@pytest.mark.slow
def test_sort_with_relative_paths_then_undo_from_anywhere_restores_byte_for_byte(tmp_path, labels_file):
    """Promise: undo puts back exactly what the sort moved, whichever folder it is run from, and
    never touches a copy of the destination made beside it (the journal names files absolutely)."""
    work = tmp_path / "work"
    library_with_sidecars(work / "Inbox")
    before = tree(work / "Inbox")
    sort = run_cli("sort", "Inbox", "-l", str(labels_file), "--model", str(COLOUR_MODEL), "-d", "Sorted", cwd=work)
    assert sort.returncode == 0, sort.stderr
    assert tree(work / "Inbox") != before
    # a backup made with cp -a beside the destination, and one in another folder with the same relative names
    shutil.copytree(work / "Sorted", work / "Sorted-backup", symlinks=True)
    decoy = tmp_path / "elsewhere"
    shutil.copytree(work / "Sorted", decoy / "Sorted", symlinks=True)
    (decoy / "Inbox").mkdir()
    backups = tree(work / "Sorted-backup"), tree(decoy)
    undone = run_cli("undo", cwd=decoy)
    assert undone.returncode == 0, undone.stderr
    assert tree(work / "Inbox") == before
    assert not (work / "Sorted").exists()
    assert (tree(work / "Sorted-backup"), tree(decoy)) == backups


def test_recovery_run_from_another_folder_keeps_a_photo_and_its_sidecar_together(tmp_path, monkeypatch):
    """Promise: a killed run's half-done unit is settled as one unit, whatever the working folder
    of the run that recovers it."""
    monkeypatch.chdir(tmp_path)
    source = Path("in") / "p.jpg"
    source.parent.mkdir()
    source.write_bytes(b"photo bytes")
    Path("in/p.jpg.xmp").write_bytes(b"sidecar")
    journal = Journal.create("sort", [Path("in")], Path("out"), {"mode": "move"})
    target = Path("out") / "red" / "p.jpg"
    files = [(source, target), (Path("in/p.jpg.xmp"), target.with_name("p.jpg.xmp"))]
    journal.begin("move", files, [Path("out"), Path("out/red")])
    target.parent.mkdir(parents=True)
    os.rename(source, target)  # killed after the photo moved, before its sidecar
    journal.close()
    # the same relative names elsewhere, where the recovering run starts
    other = tmp_path / "other"
    (other / "in").mkdir(parents=True)
    (other / "in" / "p.jpg.xmp").write_bytes(b"someone else's")
    monkeypatch.chdir(other)
    messages: list[str] = []
    assert recover(messages.append) == 1
    assert (tmp_path / "out/red/p.jpg").read_bytes() == b"photo bytes"
    assert (tmp_path / "out/red/p.jpg.xmp").read_bytes() == b"sidecar"
    assert not (tmp_path / "in/p.jpg.xmp").exists()
    assert (other / "in" / "p.jpg.xmp").read_bytes() == b"someone else's"


# ----------------------------------------------------------------------------- journals from elsewhere


@pytest.fixture
def victims(tmp_path):
    """Files outside any library that a hostile journal aims at, and a library with one photo."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_bytes(b"the only copy")
    (outside / "secret.key").write_bytes(b"private key")
    (outside / "pictures.jpg").write_bytes(b"someone's photo")
    library = tmp_path / "library"
    library.mkdir()
    (library / "notes.txt").write_bytes(b"a file in the library")
    return outside, library


def _four_lines(outside: Path, library: Path) -> str:
    """The journal of the issue, in the format of clipsort before journal version 2."""

    def begin(op: int, action: str, source: Path, target: Path) -> dict:
        return {"type": "begin", "op": op, "action": action, "files": [[str(source), str(target)]], "folders": []}

    records = [
        {"type": "run", "version": 1, "command": "sort", "started": 0, "dest": "/", "roots": ["/"]},
        begin(0, "copy", library / "mine.jpg", outside / "precious.txt"),
        begin(1, "move", library / "stolen.jpg", outside / "pictures.jpg"),
        begin(2, "dedupe", library / "key.txt", outside / "secret.key"),
        {"type": "done", "op": 0},
        {"type": "done", "op": 1},
        {"type": "done", "op": 2},
        {"type": "end"},
    ]
    return "".join(json.dumps(r) + "\n" for r in records)


def test_a_hand_written_journal_is_refused_whole_touching_nothing(tmp_path, victims):
    """Promise: undo FILE with a journal clipsort did not write deletes, moves and copies nothing."""
    outside, library = victims
    hostile = tmp_path / "hostile.jsonl"
    hostile.write_text(_four_lines(outside, library))
    before = tree(tmp_path)
    result = run_cli("undo", str(hostile), cwd=tmp_path)
    assert result.returncode == ExitCode.ERROR
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "older than journal version 2" in result.stderr and "by hand" in result.stderr
    assert tree(tmp_path) == before


def test_an_unfinished_hostile_journal_in_the_journals_folder_is_not_replayed_by_sort(tmp_path, victims, labels_file):
    """Promise: the recovery every sort runs first never acts on a journal that is not its own."""
    outside, library = victims
    make_colour_photos(library, ["red"], 2, **SMALL)
    first = run_cli("sort", str(library), "-l", str(labels_file), "--model", str(COLOUR_MODEL), cwd=tmp_path)
    assert first.returncode == 0, first.stderr  # this user's journal key exists now
    hand_written = _four_lines(outside, library).replace('{"type": "end"}\n', "")
    (journal_module.journals_dir() / "20200101-000000-1.jsonl").write_text(hand_written)
    # and one in today's format, sealed with a key that is not this user's
    stranger = tmp_path / "stranger"
    env = {**os.environ, "CLIPSORT_DATA_DIR": str(stranger)}
    code = (
        "import os, sys; from pathlib import Path; from clipsort.store.journal import Journal\n"
        f"j = Journal.create('sort', [Path('/')], Path('/'), {{}})\n"
        f"j.begin('move', [(Path({str(library / 'x.jpg')!r}), Path({str(outside / 'pictures.jpg')!r}))], [])\n"
        "j.close()\nprint(j.path)\n"
    )
    made = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    shutil.copy(made.stdout.strip(), journal_module.journals_dir() / "20200101-000001-2.jsonl")
    before = tree(outside)
    sort = run_cli("sort", str(library), "-l", str(labels_file), "--model", str(COLOUR_MODEL), cwd=tmp_path)
    assert sort.returncode == 0, sort.stderr
    assert tree(outside) == before
    assert sort.stderr.count("was not recovered") == 2
    assert "older than journal version 2" in sort.stderr and "seal does not match" in sort.stderr


def _real_sort_journal(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A real journal of moving two photos with sidecars from ``in`` to ``out``."""
    inbox, dest = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (inbox / name).write_bytes(name.encode() * 100)
        (inbox / (name + ".xmp")).write_bytes(b"xmp of " + name.encode())
    journal = Journal.create("sort", [inbox], dest, {"mode": "move"})
    mover = Mover("move", journal, roots=[inbox], dest=dest)
    for name in ("a.jpg", "b.jpg"):
        mover.execute(mover.plan(inbox / name, dest / "red"))
    journal.end({})
    journal.close()
    return journal.path, inbox, dest


def test_an_edited_journal_is_refused_whole(tmp_path):
    """Promise: a journal changed since clipsort wrote it (a path pointed elsewhere) touches nothing."""
    path, inbox, dest = _real_sort_journal(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    text = path.read_text().replace(str(inbox / "a.jpg"), str(victim))
    path.write_text(text)
    before = tree(tmp_path)
    with pytest.raises(JournalRefused, match="seal does not match"):
        undo(str(path), lambda message: None)
    assert tree(tmp_path) == before


def test_a_sealed_journal_naming_files_outside_its_run_is_refused_whole(tmp_path):
    """Promise: even a journal clipsort sealed acts only inside its run's roots and destination."""
    inbox, dest, outside = tmp_path / "in", tmp_path / "out", tmp_path / "outside"
    for folder in (inbox, dest, outside):
        folder.mkdir()
    (outside / "f.txt").write_bytes(b"outside")
    (inbox / "p.jpg").write_bytes(b"photo")
    journal = Journal.create("sort", [inbox], dest, {"mode": "move"})
    mover = Mover("move", journal)
    mover.execute(mover.plan(inbox / "p.jpg", dest / "red"))
    op = journal.begin("copy", [(inbox / "p2.jpg", outside / "f.txt")], [])  # a target outside dest
    journal.done(op, [outside / "f.txt"])
    journal.end({})
    journal.close()
    before = tree(tmp_path)
    with pytest.raises(JournalRefused, match="outside its run's destination"):
        undo(str(journal.path), lambda message: None)
    assert tree(tmp_path) == before  # the legitimate move was not undone either: refused as a whole


def test_a_journal_without_identities_is_refused_whole(tmp_path):
    """Promise: undo acts only on files whose identity the journal recorded."""
    path, _, _ = _real_sort_journal(tmp_path)
    view = read(path)
    # rewrite the journal through the real writer, dropping the identities of what was placed
    rewritten = Journal.create("sort", view.roots, view.dest, {"mode": "move"})
    for operation in view.operations.values():
        rewritten.begin(operation.action, operation.files, operation.folders)
        rewritten.write({"type": "done", "op": operation.op})
    rewritten.end({})
    rewritten.close()
    before = tree(tmp_path)
    with pytest.raises(JournalRefused, match="identity"):
        undo(str(rewritten.path), lambda message: None)
    assert tree(tmp_path) == before


def test_a_file_swapped_for_a_lookalike_is_not_put_back(tmp_path):
    """Promise: undo moves a file only while it is the very file the sort placed (same inode, size
    and mtime); a different file of the same name, size and time stays where it is."""
    path, inbox, dest = _real_sort_journal(tmp_path)
    placed = dest / "red" / "a.jpg"
    stat = placed.stat()
    placed.unlink()
    placed.write_bytes(b"x" * stat.st_size)  # another file, same size
    os.utime(placed, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime
    _, result = undo(str(path), lambda message: None)
    assert result.undone == 1 and len(result.refused) == 1 and "changed since" in result.refused[0].reason
    assert placed.read_bytes() == b"x" * stat.st_size and not (inbox / "a.jpg").exists()
    assert (inbox / "b.jpg").exists()


def test_undo_of_a_copy_never_deletes_the_only_copy_left(tmp_path):
    """Promise: undo of --mode copy deletes a copy only while its original is still there, unchanged."""
    inbox, dest = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "a.jpg").write_bytes(b"a" * 50)
    (inbox / "b.jpg").write_bytes(b"b" * 50)
    journal = Journal.create("sort", [inbox], dest, {"mode": "copy"})
    mover = Mover("copy", journal, roots=[inbox], dest=dest)
    for name in ("a.jpg", "b.jpg"):
        mover.execute(mover.plan(inbox / name, dest))
    journal.end({})
    journal.close()
    (inbox / "a.jpg").unlink()  # the user deleted an original: the copy is all that is left
    _, result = undo(str(journal.path), lambda message: None)
    assert result.undone == 1 and "only copy" in result.refused[0].reason
    assert (dest / "a.jpg").read_bytes() == b"a" * 50 and not (dest / "b.jpg").exists()


def test_a_journal_that_is_a_fifo_or_a_link_to_one_is_never_opened(tmp_path):
    """Promise: undo never blocks on a FIFO named as a journal."""
    fifo = tmp_path / "journal.jsonl"
    os.mkfifo(fifo)
    result = subprocess.run([*CLI, "undo", str(fifo)], capture_output=True, text=True, timeout=60)
    assert result.returncode == ExitCode.USAGE and "not a regular file" in result.stderr
    assert result.stderr.count("\n") == 1


def test_legacy_journals_are_listed_and_explained_not_acted_on(tmp_path, victims):
    outside, library = victims
    journal_module.journals_dir().mkdir(parents=True)
    (journal_module.journals_dir() / "20200101-000000-1.jsonl").write_text(_four_lines(outside, library))
    listing = run_cli("history", cwd=tmp_path)
    assert listing.returncode == 0 and "undo by hand" in listing.stdout
    refused = run_cli("undo", cwd=tmp_path)
    assert refused.returncode == ExitCode.ERROR and "mv -n TARGET SOURCE" in refused.stderr


# ----------------------------------------------------------------------------- random damage

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _all_contents(root: Path) -> list[bytes]:
    return sorted(p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@SETTINGS
@given(
    edit=st.sampled_from(["truncate", "flip", "drop-line", "swap-path", "append-foreign"]),
    position=st.floats(min_value=0.0, max_value=1.0),
    value=st.integers(0, 255),
)
def test_a_damaged_journal_never_touches_outside_and_never_loses_a_file(tmp_path_factory, edit, position, value):
    """Promise: whatever happens to a journal (cut short, bytes changed, lines dropped, paths swapped
    for foreign ones, records appended), undo and recovery touch nothing outside the run's folders
    and every file's bytes still exist afterwards."""
    tmp_path = tmp_path_factory.mktemp("damaged")
    path, inbox, dest = _real_sort_journal(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "b.jpg").write_bytes(b"not yours")  # same name as a photo of the run
    data = bytearray(path.read_bytes())
    at = int(position * (len(data) - 1))
    if edit == "truncate":
        data = data[:at]
    elif edit == "flip":
        data[at] = value
    elif edit == "drop-line":
        lines = bytes(data).splitlines(keepends=True)
        del lines[int(position * (len(lines) - 1))]
        data = bytearray(b"".join(lines))
    elif edit == "swap-path":
        data = bytearray(bytes(data).replace(os.fsencode(inbox), os.fsencode(outside)))
    else:
        data += b'{"type":"begin","op":9,"action":"move","files":[["%s","%s"]]}\n' % (
            os.fsencode(inbox / "z.jpg"),
            os.fsencode(outside / "b.jpg"),
        )
    path.write_bytes(bytes(data))
    contents = _all_contents(tmp_path)
    outside_before = tree(outside)
    try:
        recover(lambda message: None)
        undo(str(path), lambda message: None)
    except (JournalError, UsageError):
        pass
    assert tree(outside) == outside_before
    assert _all_contents(tmp_path) == contents
    for photo in ("a.jpg", "b.jpg"):  # each photo is in exactly one place, its sidecar beside it
        places = [p for p in (inbox / photo, dest / "red" / photo) if p.exists()]
        assert len(places) == 1, (edit, places)
        assert places[0].with_name(photo + ".xmp").exists()


def test_an_undo_appends_sealed_records_that_a_second_undo_accepts(tmp_path):
    """The records undo adds are sealed too: a refused unit can be undone by a later undo."""
    path, inbox, dest = _real_sort_journal(tmp_path)
    (inbox / "a.jpg").write_bytes(b"in the way")
    _, first = undo(str(path), lambda message: None)
    assert first.undone == 1 and len(first.refused) == 1
    (inbox / "a.jpg").unlink()
    _, second = undo(str(path), lambda message: None)
    assert second.undone == 1 and second.refused == []
    assert read(path).undone


def test_appending_needs_the_records_read_under_the_lock(tmp_path):
    path, _, _ = _real_sort_journal(tmp_path)
    view = read(path)
    with claimed(path) as handle:
        Appender(handle, view)({"type": "undo", "op": 0})
    assert read(path).operations[0].state == "undoing"


# ----------------------------------------------------------------------------- what a sealed journal must still hold


def _view(
    files,
    roots=("/lib",),
    dest="/out",
    folders=(),
    stats=None,
    placed=None,
    action="move",
    state="done",
    command="sort",
):
    from clipsort.store.journal_read import JournalView, Operation

    count = len(files)
    identity = [1, 2, 3, 4, 5]
    operation = Operation(
        0,
        action,
        [(Path(s), Path(t)) for s, t in files],
        [identity] * count if stats is None else stats,
        [Path(f) for f in folders],
        state=state,
        target_stats=[identity] * count if placed is None else placed,
    )
    run = {"type": "run", "version": 2, "command": command, "roots": roots if isinstance(roots, dict) else list(roots)}
    run["dest"] = dest
    return JournalView(Path("/data/journals/j.jsonl"), run, {0: operation}, True, False)


@pytest.mark.parametrize(
    ("case", "view", "words"),
    [
        ("relative source", _view([("lib/a.jpg", "/out/a.jpg")]), "not absolute and normalised"),
        ("dotted target", _view([("/lib/a.jpg", "/out/../etc/a.jpg")]), "not absolute and normalised"),
        ("NUL in a path", _view([("/lib/a\0.jpg", "/out/a.jpg")]), "not absolute and normalised"),
        ("relative root", _view([("/lib/a.jpg", "/out/a.jpg")], roots=("lib",)), "folders it sorted"),
        ("dotted root", _view([("/lib/a.jpg", "/out/a.jpg")], roots=("/x/../lib",)), "folders it sorted"),
        ("relative destination", _view([("/lib/a.jpg", "/out/a.jpg")], dest="out"), "destination as an absolute path"),
        ("the destination itself", _view([("/lib/a.jpg", "/out")]), "outside its run's destination"),
        ("a sibling of the destination", _view([("/lib/a.jpg", "/outside/a.jpg")]), "outside its run's destination"),
        ("a source outside the roots", _view([("/library/a.jpg", "/out/a.jpg")]), "outside the folders"),
        ("a folder elsewhere", _view([("/lib/a.jpg", "/out/a.jpg")], folders=["/etc/x"]), "the folder /etc/x"),
        (
            "fewer source identities",
            _view([("/lib/a.jpg", "/out/a.jpg"), ("/lib/a.jpg.xmp", "/out/a.jpg.xmp")], stats=[[1, 2, 3, 4, 5]]),
            "identity",
        ),
        ("more source identities", _view([("/lib/a.jpg", "/out/a.jpg")], stats=[[1, 2, 3, 4, 5]] * 2), "identity"),
        ("an identity of four numbers", _view([("/lib/a.jpg", "/out/a.jpg")], placed=[[1, 2, 3, 4]]), "identity"),
        ("an identity of booleans", _view([("/lib/a.jpg", "/out/a.jpg")], placed=[[True, 2, 3, 4, 5]]), "identity"),
        (
            "a begun move without identities",
            _view([("/lib/a.jpg", "/out/a.jpg")], stats=[None], state="begun"),
            "identity",
        ),
        (
            "a dedupe without the duplicate's identity",
            _view([("/lib/a.jpg", "/out/a.jpg")], stats=[None], action="dedupe"),
            "duplicate",
        ),
        ("an unknown action", _view([("/lib/a.jpg", "/out/a.jpg")], action="delete"), "unknown action"),
        ("a way out of the roots", _view([("/lib/../zoo/a.jpg", "/out/a.jpg")]), "not absolute and normalised"),
        (
            "the journal of an index",
            _view([("/lib/a.jpg", "/out/a.jpg")], command="index"),
            "not the journal of a sort",
        ),
        ("the journal of an undo", _view([("/lib/a.jpg", "/out/a.jpg")], command="undo"), "not the journal of a sort"),
        (  # tag journals rewrite photos in place (tag --into photo): a move in one is refused
            "a move in the journal of a tag",
            _view([("/lib/a.jpg", "/out/a.jpg")], command="tag"),
            "not a rewrite of one photo",
        ),
        ("no roots", _view([("/lib/a.jpg", "/out/a.jpg")], roots=()), "folders it sorted"),
        ("roots that are no list", _view([("/lib/a.jpg", "/out/a.jpg")], roots={"/lib": 0}), "folders it sorted"),
        ("a unit of no files", _view([]), "no files"),
        (
            "a dedupe of two files",
            _view([("/lib/a.jpg", "/out/a.jpg"), ("/lib/b.jpg", "/out/b.jpg")], action="dedupe"),
            "dedupe of several",
        ),
        ("an identity of six numbers", _view([("/lib/a.jpg", "/out/a.jpg")], placed=[[1, 2, 3, 4, 5, 6]]), "identity"),
        ("more placed identities", _view([("/lib/a.jpg", "/out/a.jpg")], placed=[[1, 2, 3, 4, 5]] * 2), "identity"),
    ],
)
def test_a_sealed_journal_is_still_refused_when_it_does_not_hold_what_undo_needs(case, view, words):
    """Promise: the seal proves where a journal comes from, not that its content is sane: a journal
    of a clipsort with a bug, or written by hand with the key, is held to its run's folders too."""
    from clipsort.store.journal_check import check_journal

    with pytest.raises(JournalRefused, match=words):
        check_journal(view)


def test_the_folders_a_run_made_may_be_the_destination_and_its_missing_parents():
    from clipsort.store.journal_check import check_journal

    pair = [("/lib/a.jpg", "/out/a.jpg"), ("/lib/a.jpg.xmp", "/out/a.jpg.xmp")]
    for action in ("move", "copy", "link"):  # a photo and its sidecar: a unit of two files
        check_journal(_view(pair, action=action))

    check_journal(_view([("/lib/a.jpg", "/out/red/a.jpg")], dest="/out", folders=["/out", "/out/red"]))
    check_journal(_view([("/lib/a.jpg", "/new/out/a.jpg")], dest="/new/out", folders=["/new", "/new/out"]))


def test_undo_refuses_a_unit_whose_folder_now_leads_elsewhere(tmp_path):
    """Promise: undo puts a photo back only into the folders its run sorted: a folder replaced by a
    link since the sort (to anywhere else) is not followed."""
    inbox, dest, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "sub" / "a.jpg").write_bytes(b"a")
    (inbox / "b.jpg").write_bytes(b"b")
    elsewhere.mkdir()
    journal = Journal.create("sort", [inbox], dest, {"mode": "move"})
    mover = Mover("move", journal)
    for photo in (inbox / "sub" / "a.jpg", inbox / "b.jpg"):
        mover.execute(mover.plan(photo, dest))
    journal.end({})
    journal.close()
    (inbox / "sub").rmdir()
    os.symlink(elsewhere, inbox / "sub")
    _, result = undo(str(journal.path), lambda message: None)
    assert result.undone == 1 and "leads outside the folders sorted" in result.refused[0].reason
    assert list(elsewhere.iterdir()) == [] and (dest / "a.jpg").exists() and (inbox / "b.jpg").exists()


# ----------------------------------------------------------------------------- history and undo say what happened


def test_history_lists_every_run_with_its_state_and_goes_on_past_one_it_cannot_read(tmp_path, capsys):
    from conftest import run_cli

    code, out, err = run_cli(capsys, "history")
    assert code == 0 and out == "" and err == "no sort runs yet\n"
    empty = Journal.create("sort", [tmp_path / "in"], tmp_path / "out", {"mode": "copy"})
    empty.end({})
    empty.close()
    (tmp_path / "second").mkdir()
    killed, inbox, dest = _real_sort_journal(tmp_path / "second")
    broken = journal_module.journals_dir() / "20000101-000000-1.jsonl"  # listed first
    broken.write_text("not a journal\n")
    with claimed(killed) as handle:  # the second run was killed, then recovered
        view = read(killed)
        Appender(handle, view)({"type": "end", "finished": 0, "interrupted": True})
    code, out, err = run_cli(capsys, "history")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3, out
    assert "20000101-000000-1.jsonl" in lines[0] and "cannot be read or undone" in lines[0]
    assert f"{empty.path.name}  copy 0 photos -> {tmp_path / 'out'}  [complete]" in lines[1]
    assert f"{killed.name}  move 2 photos" in lines[2] and "[interrupted, recovered]" in lines[2]
    run_cli(capsys, "undo", str(killed))
    code, out, _ = run_cli(capsys, "history")
    assert "[undone]" in out.splitlines()[2]


def test_undo_says_how_many_it_put_back_and_how_many_it_refused(tmp_path, capsys):
    from conftest import run_cli

    path, inbox, dest = _real_sort_journal(tmp_path)
    (inbox / "a.jpg").write_bytes(b"in the way")
    code, _, err = run_cli(capsys, "undo", str(path))
    assert code == ExitCode.PARTIAL
    assert f"undid 1 photos of {path}; 1 refused" in err and "is taken by another file" in err
    (inbox / "a.jpg").unlink()
    code, _, err = run_cli(capsys, "undo", str(path))
    assert code == 0 and err.strip().endswith(f"undid 1 photos of {path}")


@pytest.mark.parametrize("started", ["1e999", "-5", "1e30", "1e11", '"yesterday"', "true"])
def test_history_of_an_old_journal_with_a_nonsense_time_is_still_one_line(tmp_path, capsys, started):
    from conftest import run_cli

    journal_module.journals_dir().mkdir(parents=True)
    (journal_module.journals_dir() / "20200101-000000-1.jsonl").write_text(
        f'{{"type":"run","version":1,"command":"sort","started":{started},"dest":"/x"}}\n{{"type":"end"}}\n'
    )
    code, out, err = run_cli(capsys, "history")
    epoch = time.strftime("%Y-%m-%d", time.localtime(0))  # the time of a journal that says none
    assert code == 0 and epoch in out and "undo by hand" in out and err == ""


def test_a_journal_gone_before_it_is_claimed_is_one_clear_error(tmp_path):
    gone = tmp_path / "20260101-000000-1.jsonl"
    with pytest.raises(JournalError) as refused, claimed(gone):
        pass
    assert str(refused.value) == f"cannot open the journal {gone}: No such file or directory"


def _tag_view(photo="/lib/a.jpg", temp="/lib/.a.jpg.0123456789abcdef.clipsort-tmp", before=None, **changes):
    """The journal of a tag --into photo run rewriting ``photo``, read back (see _view)."""
    files = changes.pop("files", [(photo, changes.pop("target", photo))])
    view = _view(files, command="tag", action=changes.pop("action", "retag"), **changes)
    del view.run["dest"]
    operation = view.operations[0]
    operation.temp = temp
    operation.before = {"xmp": True, "fields": {"subject": ["Anna"]}, "iptc": []} if before is None else before
    return view


@pytest.mark.parametrize(
    ("case", "view", "words"),
    [
        ("a photo outside the folders tagged", _tag_view("/elsewhere/a.jpg"), "outside the folders its run tagged"),
        ("a rewrite that moves", _tag_view(target="/lib/b.jpg"), "two of them"),
        ("a temporary file elsewhere", _tag_view(temp="/tmp/.a.jpg.0123456789abcdef.clipsort-tmp"), "not beside"),
        ("a temporary file of another name", _tag_view(temp="/lib/victim.jpg"), "not named as clipsort"),
        (
            "keywords that are not text",
            _tag_view(before={"xmp": True, "fields": {"subject": [1]}, "iptc": []}),
            "as they were",
        ),
        ("no record of the keywords", _tag_view(before="rm -rf"), "as they were"),
        ("no identity of the rewritten photo", _tag_view(placed=[]), "identity of the photo it rewrote"),
        ("two identities of one photo", _tag_view(placed=[[1, 2, 3, 4, 5]] * 2), "identity of the photo it rewrote"),
        ("no folders tagged", _tag_view(roots=()), "folders it tagged"),
        ("a relative folder tagged", _tag_view(roots=("lib",)), "folders it tagged"),
        ("keywords that are no mapping", _tag_view(before={"xmp": True, "fields": "x", "iptc": []}), "as they were"),
        ("a temporary file with clipsort's ending only", _tag_view(temp="/lib/victim.jpg.clipsort-tmp"), "not named"),
        ("a rewrite of no photo", _tag_view(files=[]), "not a rewrite of one photo"),
        ("no identity of the photo before", _tag_view(stats=[]), "does not record the photo's identity"),
        ("two identities before", _tag_view(stats=[[1, 2, 3, 4, 5]] * 2), "does not record the photo's identity"),
        ("no temporary file", _tag_view(temp=None), "not beside"),
        ("a rewrite that made folders", _tag_view(folders=["/lib/new"]), "not a rewrite of one photo"),
        (
            "a rewrite of two photos",
            _tag_view(files=[("/lib/a.jpg",) * 2, ("/lib/b.jpg",) * 2]),
            "not a rewrite of one",
        ),
        (
            "a temporary file in a folder named before",
            _tag_view(temp="/a/.a.jpg.0123456789abcdef.clipsort-tmp"),
            "beside",
        ),
    ],
)
def test_a_tag_journal_is_held_to_its_folders_and_to_what_undo_needs(case, view, words):
    from clipsort.store.journal_check import check_journal

    with pytest.raises(JournalRefused, match=words):
        check_journal(view)


def test_a_sane_tag_journal_passes():
    from clipsort.store.journal_check import check_journal

    check_journal(_tag_view())


def test_a_tag_journal_as_clipsort_writes_it_is_read_back_and_passes(tmp_path):
    """Through the real writer and reader (JSON's strings, the seal): the checks take a journal of
    a tag run as it is on disk."""
    from clipsort.store.journal import Journal
    from clipsort.store.journal_check import check_journal
    from clipsort.store.journal_read import read

    photo = tmp_path / "lib" / "a.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"x")
    journal = Journal.create("tag", [photo.parent], None, {"into": "photo"})
    op = journal.begin_retag(
        photo, {"xmp": False, "fields": {}, "iptc": []}, photo.with_name(".a.jpg.0123456789abcdef.clipsort-tmp")
    )
    journal.done(op, [photo])
    journal.end({})
    journal.close()
    view = read(journal.path)
    check_journal(view)
    assert view.operations[0].state == "done" and view.operations[0].action == "retag"
