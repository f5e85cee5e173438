"""``sort --plan``: a plan is checked whole before anything moves, a photo that changed or moved since
the plan was made is refused and named, and a plan file from elsewhere is checked where it enters
(issue 27). Real files in tmp_path, the real mover and journal, ``undo`` through the CLI."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_cli
from PIL import Image

from clipsort.commands.apply_plan import apply_plan
from clipsort.review.sort_view import plan_file
from clipsort.safe_files import MAX_LABELS
from clipsort.writes import sort_plan
from clipsort.writes.sort_plan import PlanError, parse_plan, read_plan


def photo(path: Path, colour: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(path, "JPEG")
    return path


def make_plan(root: Path, dest: Path, decisions: dict[Path, str], **settings: object) -> dict:
    """A plan as ``sort --review`` writes it, for ``decisions`` (photo -> decision)."""
    record = {
        "version": 1,
        "kind": "clipsort sort plan",
        "roots": [str(root)],
        "dest": str(dest),
        "mode": "move",
        "pattern": None,
        "unsorted": "_unsorted",
        "leave_unsorted": False,
        "labels": {
            "file": "labels.txt",
            "sha256": "",
            "names": [
                {"name": "red", "folder": ["red"]},
                {"name": "blue", "folder": ["blue"]},
            ],
        },
        "photos": [],
    }
    record.update(settings)
    for path, decision in decisions.items():
        entry = plan_file(path).to_json()
        entry["decision"] = decision
        record["photos"].append(entry)
    return record


def save(plan: dict, path: Path) -> Path:
    path.write_text(json.dumps(plan), encoding="utf-8")
    return path


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def library(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    root = tmp_path / "inbox"
    photos = [photo(root / "a.jpg"), photo(root / "sub" / "b.jpg", "blue"), photo(root / "c.jpg")]
    return root, tmp_path / "sorted", photos


def test_a_plan_is_carried_out_exactly_and_undone(library, tmp_path, capsys):
    root, dest, (a, b, c) = library
    (root / "a.jpg.xmp").write_text("<x/>")  # a sidecar moves with its photo
    plan = save(make_plan(root, dest, {a: "blue", b: "blue", c: "_leave"}), tmp_path / "plan.json")
    before = tree(tmp_path)
    code, out, err = run_cli(capsys, "sort", "--plan", str(plan))
    assert code == 0, err
    assert (dest / "blue" / "a.jpg").is_file() and (dest / "blue" / "a.jpg.xmp").is_file()
    assert (dest / "blue" / "b.jpg").is_file()
    assert c.is_file() and not (dest / "red").exists()  # left where it is
    assert "labels: blue 2, left where it is 1" in err and f"into {dest}" in err
    code, out, err = run_cli(capsys, "undo")
    assert code == 0, err
    assert tree(tmp_path) == before


def test_a_changed_photo_refuses_the_whole_plan_and_names_it(library, tmp_path, capsys):
    root, dest, (a, b, c) = library
    plan = save(make_plan(root, dest, {a: "red", b: "blue", c: "red"}), tmp_path / "plan.json")
    # Same size and modification time, other content: only the fingerprint tells.
    st = os.stat(b)
    data = bytearray(b.read_bytes())
    data[-3] ^= 0xFF
    b.write_bytes(bytes(data))
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = tree(tmp_path)
    code, out, err = run_cli(capsys, "sort", "--plan", str(plan))
    assert code == 2
    assert f"{b}: changed since the plan was made (its content)" in err
    assert "nothing was moved" in err
    assert tree(tmp_path) == before and not dest.exists()


def test_a_photo_moved_since_is_named_and_nothing_moves(library, tmp_path, capsys):
    root, dest, (a, b, c) = library
    plan = save(make_plan(root, dest, {a: "red", b: "blue", c: "red"}), tmp_path / "plan.json")
    a.rename(root / "renamed.jpg")
    os.utime(c, ns=(0, time.time_ns() + 5_000_000_000))  # touched: changed
    before = tree(tmp_path)
    code, out, err = run_cli(capsys, "sort", "--plan", str(plan))
    assert code == 2
    assert f"{a}: moved or deleted since the plan was made" in err
    assert f"{c}: changed since the plan was made (size or modification time)" in err
    assert "(2 problems)" in err
    assert tree(tmp_path) == before


def test_a_plan_carried_out_twice_moves_nothing_the_second_time(library, tmp_path, capsys):
    root, dest, (a, b, c) = library
    plan = save(make_plan(root, dest, {a: "red", b: "blue", c: "red"}), tmp_path / "plan.json")
    assert run_cli(capsys, "sort", "--plan", str(plan))[0] == 0
    after = tree(tmp_path)
    code, _, err = run_cli(capsys, "sort", "--plan", str(plan))
    assert code == 2 and "moved or deleted since the plan was made" in err
    assert tree(tmp_path) == after


def test_files_outside_the_plans_folders_are_refused(library, tmp_path, capsys):
    root, dest, (a, b, c) = library
    secret = photo(tmp_path / "elsewhere" / "private.jpg")
    hidden = photo(root / ".hidden" / "h.jpg")
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    through_link = root / "linked" / "private.jpg"
    note = tmp_path / "inbox" / "notes.txt"
    note.write_text("not a photo")
    link = root / "link.jpg"
    link.symlink_to(a)
    plan = make_plan(root, dest, {a: "red", secret: "red", hidden: "red", through_link: "red"})
    for path in (note, link):
        plan["photos"].append({"photo": str(path), "size": 1, "mtime_ns": "1", "fingerprint": "00", "decision": "red"})
    save(plan, tmp_path / "plan.json")
    before = tree(tmp_path)
    code, _, err = run_cli(capsys, "sort", "--plan", str(tmp_path / "plan.json"))
    assert code == 2, err
    assert f"{secret}: not below any folder of the plan" in err
    assert f"{hidden}: hidden" in err
    assert f"{through_link}: it really is in {tmp_path / 'elsewhere'}" in err
    assert f"{note}: not a photo's name" in err
    assert f"{link}: not a regular file any more" in err
    assert tree(tmp_path) == before and a.is_file()


def test_a_photo_inside_another_applications_library_is_refused(tmp_path, capsys):
    root = tmp_path / "inbox"
    inside = photo(root / "Pictures.photoslibrary" / "originals" / "x.jpg")
    plan = save(make_plan(root, tmp_path / "sorted", {inside: "red"}), tmp_path / "plan.json")
    code, _, err = run_cli(capsys, "sort", "--plan", str(plan))
    library = root / "Pictures.photoslibrary"
    assert code == 2 and f"{inside}: inside {library}: an Apple Photos library, managed by its application" in err
    assert inside.is_file()


def test_a_record_of_a_run_that_moved_is_not_carried_out(library, tmp_path, capsys):
    root, dest, (a, b, c) = library
    plan = save(make_plan(root, dest, {a: "red"}, applied=True), tmp_path / "plan.json")
    code, _, err = run_cli(capsys, "sort", "--plan", str(plan))
    assert code == 2 and "carried out already" in err and a.is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(version=2), "version 2"),
        (lambda p: p.update(kind="something else"), "not a clipsort sort plan"),
        (lambda p: p.update(dest="relative/dest"), "must be an absolute path"),
        (lambda p: p.update(dest="/tmp/../etc"), "must be an absolute path"),
        (lambda p: p.update(mode="delete"), "mode must be one of"),
        (lambda p: p.update(undated="guess"), "undated must be one of unknown, mtime"),
        (lambda p: p.update(pattern="/abs/{label}"), "must be relative"),
        (lambda p: p.update(pattern="{label}/../.."), "'..'"),
        (lambda p: p.update(unsorted="../up"), "plain folder name"),
        (lambda p: p["labels"]["names"].append({"name": "evil", "folder": ["..", "x"]}), "'..'"),
        (lambda p: p["labels"]["names"].append({"name": "evil", "folder": ["a/b"]}), "plain folder names"),
        (lambda p: p["labels"]["names"].append({"name": "red", "folder": ["red2"]}), "named twice"),
        (lambda p: p["labels"]["names"].append({"name": "_leave", "folder": ["x"]}), "not a label"),
        (lambda p: p["photos"][0].update(decision="green"), "neither a label of the plan"),
        (lambda p: p["photos"][0].update(photo="photo.jpg"), "must be an absolute path"),
        (lambda p: p["photos"][0].update(size="12"), "whole number"),
        (lambda p: p["photos"][0].update(fingerprint="zz"), "hexadecimal"),
        (lambda p: p["photos"][0].update(mtime_ns=1733456789123456789), "string of digits"),
        (lambda p: p["photos"].append(dict(p["photos"][0])), "in the plan twice"),
        (lambda p: p.update(leave_unsorted="yes"), "true or false"),
        (lambda p: p.update(version=0), "version 0"),
        (lambda p: p.update(kind="another plan"), "not a clipsort sort plan"),
        (lambda p: p["labels"].update(names=[]), "names must be a list of 1"),
        (lambda p: p.update(unsorted="Red"), "has the name of a decision that is not a label"),
        (lambda p: p.update(roots=[]), "roots must be a list of 1"),
        (lambda p: p.update(dest="/tmp/./x"), "must be an absolute path"),
        (lambda p: p.update(dest="/tmp/x/"), "must be an absolute path"),
        (lambda p: p.update(dest="//tmp/x"), "must be an absolute path"),
        (lambda p: p.update(dest="/tmp/\x00x"), "must be an absolute path"),
        (lambda p: p.update(unsorted=" misc"), "plain folder name"),
        (lambda p: p.update(unsorted="misc "), "plain folder name"),
        (lambda p: p.update(unsorted="m" * 256), "plain folder name"),
        (lambda p: p["labels"]["names"].append({"name": "x", "folder": [" x"]}), "plain folder names"),
        (lambda p: p["labels"]["names"].append({"name": "x", "folder": ["x "]}), "plain folder names"),
        (lambda p: p["labels"]["names"].append({"name": "x", "folder": "abc"}), "list of folder names"),
        (lambda p: p["labels"]["names"].append({"name": "x", "folder": [1]}), "list of folder names"),
        (lambda p: p["labels"]["names"].append({"name": "x", "folder": []}), "list of folder names"),
        (lambda p: p["labels"]["names"].append({"name": "", "folder": ["x"]}), "non-empty string"),
        (lambda p: p["photos"][0].update(fingerprint=""), "non-empty string"),
        (lambda p: p["photos"][0].update(size=-1), "whole number"),
        (lambda p: p["photos"][0].update(size=True), "whole number"),
        (lambda p: p["photos"][0].update(mtime_ns="1" * 25), "string of digits"),
        (lambda p: p["photos"][0].update(partners="x"), "partners must be a list"),
        (
            lambda p: p["photos"][0].update(partners=[dict(p["photos"][0], photo=f"/r/{n}.nef") for n in range(17)]),
            "partners must be a list of at most 16",
        ),
    ],
)
def test_a_foreign_plan_is_checked_where_it_enters(library, change, message):
    root, dest, (a, b, c) = library
    plan = make_plan(root, dest, {a: "red"})
    change(plan)
    with pytest.raises(PlanError, match=None) as info:
        parse_plan(json.loads(json.dumps(plan)), "plan.json")
    assert message in str(info.value)


def test_what_a_plan_may_hold_at_the_edges_is_read(library):
    """The edges of what is allowed are allowed: no photo at all, a photo of 0 bytes, 16 RAW
    partners, an unsorted folder name of 255 bytes."""
    root, dest, (a, b, c) = library
    plan = make_plan(root, dest, {a: "red"}, unsorted="m" * 255)
    plan["photos"][0]["size"] = 0
    plan["photos"][0]["partners"] = [dict(plan["photos"][0], photo=f"/r/{n}.nef") for n in range(16)]
    parsed = parse_plan(plan)
    assert len(parsed.photos[0].partners) == 16 and parsed.photos[0].file.size == 0
    assert parse_plan(make_plan(root, dest, {})).photos == ()
    one = make_plan(root, dest, {a: "red"})
    one["labels"]["names"] = one["labels"]["names"][:1]
    assert [label.name for label in parse_plan(one).labels] == ["red"]
    many = make_plan(root, dest, {a: "red"})
    many["labels"]["names"] = [{"name": f"l{n}", "folder": [f"l{n}"]} for n in range(MAX_LABELS - 1)] + [
        {"name": "red", "folder": ["red"]}
    ]
    assert len(parse_plan(many).labels) == MAX_LABELS  # as many labels as a label file may hold, no more
    many["labels"]["names"].append({"name": "one more", "folder": ["one more"]})
    with pytest.raises(PlanError, match="names must be a list of 1 to"):
        parse_plan(many)


def test_a_plan_round_trips_and_travels_as_ascii(tmp_path, library):
    """What the page embeds: every field a script reads, the exact name of a photo whose name is
    not UTF-8 (escaped, so that the page itself is valid UTF-8)."""
    root, dest, (a, b, c) = library
    odd = photo(Path(os.fsdecode(bytes(root) + b"/caf\xe9.jpg")))
    raw = photo(root / "caf.nef")
    record = make_plan(root, dest, {odd: "blue", a: "red"})
    record["photos"][0]["partners"] = [plan_file(raw).to_json()]
    plan = parse_plan(record)
    entry = replace(plan.photos[0], destination=dest / "blue" / odd.name, action="moved", scores={"blue": 0.9})
    text = replace(plan, photos=(entry, *plan.photos[1:])).dumps()
    assert text.isascii()
    again = json.loads(text)
    assert os.fsencode(again["photos"][0]["photo"]) == bytes(root) + b"/caf\xe9.jpg"
    assert again["photos"][0]["destination"] == os.fsdecode(dest / "blue" / odd.name)
    assert again["photos"][0]["action"] == "moved" and again["photos"][0]["scores"] == {"blue": 0.9}
    assert again["photos"][0]["partners"][0]["photo"] == str(raw)
    assert "destination" not in again["photos"][1] and "action" not in again["photos"][1]
    assert parse_plan(again) == plan


def test_each_photo_goes_to_the_folder_of_its_own_label(library, tmp_path):
    root, dest, (a, b, c) = library
    plan = make_plan(root, dest, {a: "red", b: "blue", c: "zebra"})
    plan["labels"]["names"] = [
        {"name": "blue", "folder": ["cold", "blue"]},
        {"name": "red", "folder": ["warm"]},
        {"name": "zebra", "folder": ["stripes"]},
    ]
    report = apply_plan(parse_plan(plan), "plan.json")
    assert report.exit_code == 0
    assert (dest / "warm" / "a.jpg").is_file()
    assert (dest / "cold" / "blue" / "b.jpg").is_file()
    assert (dest / "stripes" / "c.jpg").is_file()


def test_a_plan_file_that_is_not_one_is_refused(tmp_path, monkeypatch):
    with pytest.raises(PlanError) as info:
        read_plan(tmp_path / "absent.json")
    assert str(info.value) == f"cannot read the plan {tmp_path / 'absent.json'}: No such file or directory"
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(PlanError, match="not JSON"):
        read_plan(tmp_path / "p.json")
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(PlanError, match="FIFO|not a regular"):
        read_plan(tmp_path / "fifo.json")
    (tmp_path / "big.json").write_text(" " * 2048)
    monkeypatch.setattr(sort_plan, "PLAN_LIMIT", 1024)
    with pytest.raises(PlanError, match="more than"):
        read_plan(tmp_path / "big.json")
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.json").write_text(deep)
    monkeypatch.setattr(sort_plan, "PLAN_LIMIT", 1 << 20)
    with pytest.raises(PlanError):
        read_plan(tmp_path / "deep.json")


def test_a_plan_allows_no_other_sort_option(library, tmp_path, capsys):
    root, dest, (a, b, c) = library
    plan = save(make_plan(root, dest, {a: "red"}), tmp_path / "plan.json")
    code, _, err = run_cli(capsys, "sort", "--plan", str(plan), "--dest", str(tmp_path / "x"), "--mode", "copy")
    assert code == 2 and "drop --dest, --mode" in err
    code, _, err = run_cli(capsys, "sort", str(root))
    assert code == 2 and "--labels are needed" in err
    assert a.is_file()


def test_leave_unsorted_and_the_pattern_come_from_the_plan(library, tmp_path, capsys):
    root, dest, (a, b, c) = library
    plan = make_plan(root, dest, {a: "_unsorted", b: "blue"}, leave_unsorted=True, pattern="{ext}/{label}")
    report = apply_plan(parse_plan(plan), "plan.json")
    assert report.exit_code == 0 and report.written_to == f"into {dest} by {{ext}}/{{label}}"
    assert a.is_file()  # none of these, left where it is
    assert (dest / "jpg" / "blue" / "b.jpg").is_file()
    plan = make_plan(root, dest, {a: "_unsorted"}, unsorted="misc")
    apply_plan(parse_plan(plan), "plan.json")
    assert (dest / "misc" / "a.jpg").is_file()


def test_a_dry_run_of_a_plan_changes_nothing(library, tmp_path, capsys):
    root, dest, (a, b, c) = library
    plan = save(make_plan(root, dest, {a: "red", b: "blue"}), tmp_path / "plan.json")
    before = tree(tmp_path)
    code, out, err = run_cli(capsys, "sort", "--plan", str(plan), "--dry-run")
    assert code == 0, err
    assert f"would move: {a} -> {dest / 'red' / 'a.jpg'}" in out
    assert f"would go into {dest}\n" in err
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_a_plan_killed_at_any_moment_leaves_every_photo_in_one_place_and_undo_restores_all(tmp_path):
    """sort --plan killed at random moments: every photo (and its sidecar) is in exactly one place,
    whole; the next command settles the killed run and undo puts everything back."""
    import random
    import signal
    import subprocess
    import sys

    root, dest = tmp_path / "inbox", tmp_path / "sorted"
    decisions = {}
    for i in range(600):
        path = photo(root / f"{i // 100}" / f"p{i:03d}.jpg", ["red", "blue"][i % 2])
        if i % 5 == 0:
            (root / f"{i // 100}" / f"p{i:03d}.jpg.xmp").write_text(f"<x>{i}</x>")
        decisions[path] = ["red", "blue", "_unsorted"][i % 3]
    before = tree(root)
    plan = save(make_plan(root, dest, decisions), tmp_path / "plan.json")
    env = dict(os.environ)
    rng = random.Random(27)
    interrupted = 0
    for _ in range(4):
        process = subprocess.Popen(
            [sys.executable, "-m", "clipsort", "sort", "--plan", str(plan)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not any(dest.rglob("*.jpg")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)  # until it has begun to move photos
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        finished = process.wait() == 0
        now = {**{f"in/{k}": v for k, v in tree(root).items()}, **{f"out/{k}": v for k, v in tree(dest).items()}}
        for name, data in before.items():
            places = [key for key in now if key.endswith("/" + Path(name).name)]
            assert len(places) == 1, (name, places)  # never lost, never twice
            assert now[places[0]] == data
        moved = sum(1 for key in now if key.startswith("out/"))
        interrupted += 0 < moved < len(before) and not finished
        done = subprocess.run([sys.executable, "-m", "clipsort", "undo"], env=env, capture_output=True, text=True)
        assert done.returncode == 0 or "nothing to undo" in done.stderr, done.stderr
        assert tree(root) == before
        assert not [p for p in dest.rglob("*") if p.is_file()] if dest.exists() else True
    assert interrupted, "no run was killed while it moved photos: lengthen the library or the waits"


def test_every_way_a_photo_can_have_changed_is_named(tmp_path, capsys):
    """Grown, shrunk, touched back in time, replaced by a FIFO, behind a folder link loop, content
    changed either way (its fingerprint now lower, or higher, than the plan's): each named as such."""
    root, dest = tmp_path / "inbox", tmp_path / "sorted"
    files = {name: photo(root / f"{name}.jpg") for name in ("grown", "shrunk", "older", "fifo", "lower", "higher")}
    loop = root / "loop"
    loop.symlink_to(loop)
    plan = make_plan(root, dest, dict.fromkeys(files.values(), "red"))
    plan["photos"].append({**plan["photos"][0], "photo": str(loop / "x.jpg")})
    planned = {Path(p["photo"]).stem: p["fingerprint"] for p in plan["photos"]}

    def keep_time(path: Path, data: bytes) -> None:
        st = os.stat(path)
        path.write_bytes(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    keep_time(files["grown"], files["grown"].read_bytes() + b"\0")
    keep_time(files["shrunk"], files["shrunk"].read_bytes()[:-1])
    st = os.stat(files["older"])
    os.utime(files["older"], ns=(st.st_atime_ns, st.st_mtime_ns - 1_000_000_000))
    files["fifo"].unlink()
    os.mkfifo(files["fifo"])
    for name, lower in (("lower", True), ("higher", False)):
        data = files[name].read_bytes()
        for n in range(len(data) - 3, 0, -1):  # a changed byte that moves the fingerprint the way wanted
            changed = bytearray(data)
            changed[n] ^= 0x01
            digest = file_fingerprint_of(bytes(changed))
            if (digest < planned[name]) == lower:
                keep_time(files[name], bytes(changed))
                break
    save(plan, tmp_path / "plan.json")
    code, _, err = run_cli(capsys, "sort", "--plan", str(tmp_path / "plan.json"))
    assert code == 2
    assert f"{files['grown']}: changed since the plan was made (size or modification time)" in err
    assert f"{files['shrunk']}: changed since the plan was made (size or modification time)" in err
    assert f"{files['older']}: changed since the plan was made (size or modification time)" in err
    assert f"{files['fifo']}: not a regular file any more" in err
    assert f"{files['lower']}: changed since the plan was made (its content)" in err
    assert f"{files['higher']}: changed since the plan was made (its content)" in err
    assert f"{loop / 'x.jpg'}: cannot be read: Too many levels of symbolic links\n" in err
    assert "(7 problems)" in err and not dest.exists()


def file_fingerprint_of(data: bytes) -> str:
    from clipsort.photos.location import file_fingerprint

    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"clipsort-fp-{os.getpid()}"
    scratch.write_bytes(data)
    try:
        return file_fingerprint(scratch).hex()
    finally:
        scratch.unlink()


def test_problems_are_counted_and_the_first_twenty_named(tmp_path, capsys):
    root, dest = tmp_path / "inbox", tmp_path / "sorted"
    photos = [photo(root / f"p{n:02d}.jpg") for n in range(25)]
    plan = make_plan(root, dest, dict.fromkeys(photos, "red"))
    for count, shown, more in ((1, 1, None), (20, 20, None), (21, 20, 1), (25, 20, 5)):
        for path in photos[:count]:
            path.rename(path.with_suffix(".moved"))
        code, _, err = run_cli(capsys, "sort", "--plan", str(save(plan, tmp_path / "plan.json")))
        assert code == 2
        assert f"({count} problem{'s' if count > 1 else ''})" in err
        assert err.count("moved or deleted since the plan was made") == shown
        assert (f"... and {more} more" in err) if more else ("more" not in err)
        for path in photos[:count]:
            path.with_suffix(".moved").rename(path)


def test_labels_are_told_apart_from_the_decisions_that_are_not_labels(tmp_path, capsys):
    """Labels whose names sort before and after "_leave" and "_unsorted" (capitals, lower case),
    decisions read from a file as JSON: each photo where its decision says."""
    root, dest = tmp_path / "inbox", tmp_path / "sorted"
    names = {"Beach": photo(root / "a.jpg"), "zoo": photo(root / "b.jpg"), "_unsorted": photo(root / "c.jpg")}
    names["_leave"] = photo(root / "d.jpg")
    plan = make_plan(root, dest, {path: name for name, path in names.items()})
    plan["labels"]["names"] = [{"name": "Beach", "folder": ["Beach"]}, {"name": "zoo", "folder": ["zoo"]}]
    code, out, err = run_cli(capsys, "sort", "--plan", str(save(plan, tmp_path / "plan.json")))
    assert code == 0, err
    assert (dest / "Beach" / "a.jpg").is_file() and (dest / "zoo" / "b.jpg").is_file()
    assert (dest / "_unsorted" / "c.jpg").is_file() and names["_leave"].is_file()
    assert "labels: Beach 1, zoo 1, none of these 1, left where it is 1" in err
    plan = make_plan(root, dest, {names["_leave"]: "_unsorted"}, leave_unsorted=True)
    report = apply_plan(parse_plan(json.loads(json.dumps(plan))), "plan.json")
    assert dict(report.per_label) == {"none of these": 1} and names["_leave"].is_file()


def test_a_photo_that_cannot_be_placed_fails_alone_with_its_raw_and_the_rest_go_on(tmp_path, capsys):
    root, dest = tmp_path / "inbox", tmp_path / "sorted"
    jpeg, raw, other = photo(root / "a.jpg"), photo(root / "a.nef"), photo(root / "b.jpg")
    plan = make_plan(root, dest, {jpeg: "red", other: "blue"})
    plan["photos"][0]["partners"] = [plan_file(raw).to_json()]
    dest.mkdir()
    (dest / "red").write_text("a file where the red folder would be")
    code, _, err = run_cli(capsys, "sort", "--plan", str(save(plan, tmp_path / "plan.json")))
    assert code == 3, err
    assert f"{jpeg}:" in err and f"{raw}: not moved: it goes with a.jpg, which failed" in err
    assert jpeg.is_file() and raw.is_file() and (dest / "blue" / "b.jpg").is_file()


def test_a_full_disk_stops_the_plan_with_every_photo_in_one_place(tmp_path, capsys, monkeypatch):
    """No space left while placing the second photo (injected): the run stops, says why, the first
    photo is placed, the others are where they were, and undo restores all."""
    import errno

    from clipsort.writes import mover

    root, dest = tmp_path / "inbox", tmp_path / "sorted"
    photos = [photo(root / f"p{n}.jpg") for n in range(4)]
    plan = save(make_plan(root, dest, dict.fromkeys(photos, "red"), mode="copy"), tmp_path / "plan.json")
    before = tree(root)
    calls = []
    real_place = mover.place

    def place(source, target, action):  # noqa: ANN001, ANN202
        calls.append(source)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_place(source, target, action)

    monkeypatch.setattr(mover, "place", place)
    code, _, err = run_cli(capsys, "sort", "--plan", str(plan))
    assert code == 1, err
    assert "no space left; stopped moving" in err
    assert len(calls) == 2  # stopped: the photos after it were not tried
    assert sorted(p.name for p in (dest / "red").iterdir()) == ["p0.jpg"]
    assert tree(root) == before
    monkeypatch.setattr(mover, "place", real_place)
    assert run_cli(capsys, "undo")[0] == 0
    assert not (dest / "red").exists() or not list((dest / "red").iterdir())  # undo removes the folders it made


@pytest.mark.permissions
def test_a_photo_that_cannot_be_read_is_named(library, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root reads every file (.ci/run runs this again as nobody)")
    root, dest, (a, b, c) = library
    plan = save(make_plan(root, dest, {a: "red", b: "blue"}), tmp_path / "plan.json")
    a.chmod(0)
    code, _, err = run_cli(capsys, "sort", "--plan", str(plan))
    a.chmod(0o644)
    assert code == 2 and f"{a}: cannot be read: Permission denied\n" in err
    assert b.is_file() and not dest.exists()
