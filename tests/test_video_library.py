"""Videos in the library, through the installed ``clipsort`` command and the tiny trained models:
clips made here with PyAV (coloured shapes, H.264 in MP4 and MOV, one turned by its display matrix)
are tagged, sorted by their creation time with their sidecars, found by search (by their best
frame), grouped with a re-encoded copy by dupes, taught by learn; undo restores the tree; a Live
Photo's video stays its photo's companion; bad clips are named and the run goes on."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, make_colour_photos

av = pytest.importorskip("av", reason="PyAV reads videos (a dependency: installed by the README's commands)")

from clips import shape_clip, write_clip  # noqa: E402
from PIL import Image  # noqa: E402
from shapes import make_picture  # noqa: E402

pytestmark = pytest.mark.slow

CLIPSORT = Path(sys.executable).with_name("clipsort")
COLOURS = ["--model", f"local-dir:{COLOUR_MODEL}"]
SHAPES = ["--model", f"local-dir:{COLOUR_MODEL.parent / 'tiny-shapes'}"]
EXIFTOOL = shutil.which("exiftool")


def clipsort(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLIPSORT), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def keywords(sidecar: Path) -> set[str]:
    from clipsort.writes.sidecar import read_keywords

    return set(read_keywords(sidecar)["clipsort"].get("subject", []))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Clips of one colour each (name -> colour), a photo, a Live Photo (JPEG + MOV)."""
    folder = tmp_path_factory.mktemp("clips")
    colours = {
        "red.mp4": "red",
        "green.mov": "green",
        "blue turned.mp4": "blue",
        "holiday/red again.mov": "red",
        "holiday/blue.mp4": "blue",
        "holiday/green.mp4": "green",
    }
    for i, (name, colour) in enumerate(colours.items()):
        shape_clip(folder / name, colour, seed=10 + i, rotation=90 if "turned" in name else 0)
    make_colour_photos(folder / "photos", ["green"], 1, seed=3, max_px=600)
    live = make_picture("blue", (400, 300), random.Random(5))
    live.save(folder / "IMG_0001.JPG", quality=90)
    write_clip(folder / "IMG_0001.MOV", lambda t: live, seconds=1.5)
    return folder, colours


def test_clips_are_tagged_sorted_by_their_date_found_and_undone(tmp_path: Path, clips, labels_file: Path):
    source, colours = clips
    inbox = tmp_path / "Inbox"
    shutil.copytree(source, inbox)

    tagged = clipsort("tag", str(inbox), "--labels", str(labels_file), *COLOURS)
    assert tagged.returncode == 0, tagged.stderr
    assert "| 2 photos and 6 videos in " in tagged.stderr  # the summary counts clips apart
    for name, colour in colours.items():
        assert keywords(inbox / f"{name}.xmp") == {colour}, name  # video.mp4.xmp, as digiKam and Immich read
    assert "Live Photo video" in tagged.stderr and not (inbox / "IMG_0001.MOV.xmp").exists()

    # creation time 2024-05-01 10:00 UTC: in New York that is 06:00 the same day; in Auckland,
    # 22:00 (NZST, +12). A clip made at 23:30 UTC on 30 April is 1 May in Auckland.
    late = write_clip(inbox / "late.mp4", lambda t: make_picture("red", (320, 240), random.Random(9)),
                      created="2024-04-30T23:30:00.000000Z")  # fmt: skip
    before = tree(inbox)
    sorted_to = tmp_path / "Sorted"
    env = {"TZ": "Pacific/Auckland"}
    moved = clipsort(
        "sort", str(inbox), "--labels", str(labels_file), "-d", str(sorted_to), "--pattern", "{label}/{year}-{month}",
        *COLOURS, env=env,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    for name, colour in colours.items():
        target = sorted_to / colour / "2024-05" / Path(name).name
        assert target.is_file() and Path(f"{target}.xmp").is_file(), name
    assert (sorted_to / "red" / "2024-05" / late.name).is_file()  # 1 May in Auckland, not 30 April
    live = next(sorted_to.rglob("IMG_0001.JPG"))
    assert live.with_suffix(".MOV").is_file()  # the Live Photo's video moved with its photo
    assert not [p for p in inbox.rglob("*") if p.is_file() and p.suffix.lower() in (".mp4", ".mov")]

    found = clipsort("search", "red", str(sorted_to), "--json", *COLOURS)
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    reds = {Path(n).name for n, c in colours.items() if c == "red"} | {late.name}
    assert {Path(h["path"]).name for h in hits[: len(reds)]} == reds
    assert all("frame_time" in h for h in hits if Path(h["path"]).suffix.lower() in (".mp4", ".mov"))

    undone = clipsort("undo")
    assert undone.returncode == 0, undone.stderr
    assert tree(inbox) == before


def test_a_clip_red_only_in_its_last_second_is_found_above_clips_without(tmp_path: Path):
    """The clip's own vector (the mean of four frames, one of them red) says little of red; its best
    frame says it all: search ranks clips by their best frame and says when it comes."""
    grey = Image.new("RGB", (320, 240), (128, 128, 128))
    circle = make_picture("red", (320, 240), random.Random(7), shape="circle")
    square = make_picture("blue", (320, 240), random.Random(8), shape="square")
    write_clip(tmp_path / "late red.mp4", lambda t: circle if t >= 7 else grey, seconds=8)
    write_clip(tmp_path / "blue square.mp4", lambda t: square, seconds=8)
    write_clip(tmp_path / "grey.mov", lambda t: grey, seconds=8)
    write_clip(tmp_path / "circle then grey.mp4", lambda t: square if t < 7 else grey, seconds=8)
    found = clipsort("search", "red circle", str(tmp_path), "--json", *SHAPES)
    assert found.returncode == 0, found.stderr
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert Path(hits[0]["path"]).name == "late red.mp4" and hits[0]["frame_time"] >= 7
    assert hits[0]["score"] > hits[1]["score"] + 0.2

    plain = clipsort("search", "red circle", str(tmp_path), "--top", "1", *SHAPES)
    assert "late red.mp4" in plain.stdout and "best frame at 0:07" in plain.stdout

    labels = tmp_path / "shapes.txt"
    labels.write_text("red circle\nblue square\n", encoding="utf-8")
    shown = clipsort("show", str(tmp_path / "late red.mp4"), "--labels", str(labels), "--json", *SHAPES)
    record = json.loads(shown.stdout)
    assert record["format"] == "MP4 video" and record["taken_source"] == "CreateDate"
    assert record["best_frames"]["red circle"]["time"] >= 7 and record["best_frames"]["red circle"]["score"] > 0.5


def test_a_re_encoded_copy_is_grouped_by_dupes(tmp_path: Path):
    """The same scene written again at half the size and a low bitrate (as a phone's share sheet
    does) is a copy; a clip of another scene is not."""
    scene = make_picture("green", (640, 480), random.Random(21))
    other = make_picture("green", (640, 480), random.Random(22))
    write_clip(tmp_path / "original.mp4", lambda t: scene, size=(640, 480))
    write_clip(tmp_path / "shared.mov", lambda t: scene, size=(320, 240), bit_rate=150_000, keyint=12)
    write_clip(tmp_path / "another.mp4", lambda t: other, size=(640, 480))
    found = clipsort("dupes", str(tmp_path), "--json", *COLOURS)
    assert found.returncode == 0, found.stderr
    groups = [json.loads(line) for line in found.stdout.splitlines()]
    assert len(groups) == 1
    group = groups[0]
    names = sorted(Path(member["path"]).name for member in group["photos"])
    assert group["kind"] == "copies" and names == ["original.mp4", "shared.mov"]
    assert Path(group["keep"]).name == "original.mp4"  # the larger frames are kept


def test_bad_clips_are_named_each_in_one_line_and_the_run_goes_on(tmp_path: Path, labels_file: Path):
    library = tmp_path / "lib"
    shape_clip(library / "good.mp4", "red", seed=1)
    whole = shape_clip(tmp_path / "whole.mp4", "blue", seed=2).read_bytes()
    (library / "cut.mp4").write_bytes(whole[:1500])
    (library / "empty.mov").write_bytes(b"")
    (library / "text.mkv").write_text("not a video\n" * 50)
    audio = av.open(str(library / "voice memo.mp4"), "w")
    stream = audio.add_stream("aac", rate=44100)
    import numpy as np

    for i in range(10):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, i * 1024
        for packet in stream.encode(frame):
            audio.mux(packet)
    audio.close()
    ran = clipsort("tag", str(library), "--labels", str(labels_file), *COLOURS)
    assert ran.returncode == 3, ran.stderr  # some files failed; the others were tagged
    assert keywords(library / "good.mp4.xmp") == {"red"}
    for name, said in (("cut.mp4", ""), ("empty.mov", "empty"), ("text.mkv", "not a video"),
                       ("voice memo.mp4", "no video stream")):  # fmt: skip
        lines = [line for line in ran.stderr.splitlines() if name in line]
        assert len(lines) == 1 and said in lines[0], (name, ran.stderr)
    assert "Traceback" not in ran.stderr


def test_a_ten_hour_clip_costs_a_few_frames(tmp_path: Path, labels_file: Path):
    """Ten hours (one frame a minute, as a time-lapse camera writes): still judged by its few frames."""
    from fractions import Fraction

    picture = make_picture("blue", (160, 120), random.Random(4))
    write_clip(tmp_path / "timelapse.mp4", lambda t: picture, seconds=10 * 3600, size=(160, 120),
               rate=Fraction(1, 60), keyint=100_000)  # type: ignore[arg-type]  # fmt: skip
    shown = clipsort("show", str(tmp_path / "timelapse.mp4"), "--labels", str(labels_file), "--json", *COLOURS)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["tag"] == ["blue"]
    assert max(best["time"] for best in record["best_frames"].values()) > 5 * 3600


def test_a_folder_of_example_clips_teaches_a_label(tmp_path: Path):
    examples = tmp_path / "examples"
    for i, colour in enumerate(["red", "green", "blue"] * 2):
        shape_clip(examples / colour / f"clip {i}.mp4", colour, seed=40 + i)
    learned = tmp_path / "mine.labels.json"
    ran = clipsort("learn", str(examples), "-o", str(learned), *COLOURS)
    assert ran.returncode == 0, ran.stderr
    checked = tmp_path / "checked"
    for i, colour in enumerate(["red", "green", "blue"]):
        shape_clip(checked / colour / f"new {i}.mov", colour, seed=60 + i)
    measured = clipsort("eval", str(checked), "--labels", str(learned), "--json", *COLOURS)
    assert measured.returncode == 0, measured.stderr
    result = json.loads(measured.stdout.splitlines()[-1])
    assert result["accuracy"] == 1.0, result


@pytest.mark.skipif(EXIFTOOL is None, reason="exiftool writes XMP in MP4 and MOV (apt install libimage-exiftool-perl)")
def test_tags_inside_mp4_and_mov_keep_the_streams_and_the_frames(tmp_path: Path, labels_file: Path):
    library = tmp_path / "lib"
    shape_clip(library / "red.mp4", "red", seed=1)
    shape_clip(library / "blue.mov", "blue", seed=2)
    before = {p.name: p.read_bytes() for p in library.iterdir()}
    ran = clipsort("tag", str(library), "--labels", str(labels_file), "--into", "photo", *COLOURS)
    assert ran.returncode == 0, ran.stderr
    read = subprocess.run(
        [EXIFTOOL, "-j", "-XMP-dc:Subject", str(library / "red.mp4"), str(library / "blue.mov")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    subjects = {Path(r["SourceFile"]).name: r.get("Subject") for r in json.loads(read.stdout)}
    assert subjects == {"red.mp4": "red", "blue.mov": "blue"}
    assert not list(library.glob("*.xmp"))
    from clipsort.photos.video import streams_digest

    for name, data in before.items():
        original = tmp_path / f"original-{name}"
        original.write_bytes(data)
        assert streams_digest(original) == streams_digest(library / name)  # only the metadata changed
    tagged = {p.name: p.read_bytes() for p in library.iterdir()}
    again = clipsort("tag", str(library), "--labels", str(labels_file), "--into", "photo", *COLOURS)
    assert again.returncode == 0, again.stderr  # a second run: the clips hold their keywords already
    assert "photos unchanged 2" in again.stderr and {p.name: p.read_bytes() for p in library.iterdir()} == tagged
    shown = json.loads(clipsort("show", str(library / "blue.mov"), "--json").stdout)
    assert shown["in_file"]["clipsort"]["subject"] == ["blue"]  # read back from the clip's XMP
    found = clipsort("search", "red", str(library), "--json", *COLOURS)  # frames kept through the rewrite
    assert "frame_time" in json.loads(found.stdout.splitlines()[0]) and "embedded 0" in found.stderr
    undone = clipsort("undo")  # the keyword fields as they were; the streams as they are
    assert undone.returncode == 0, undone.stderr
    read = subprocess.run([EXIFTOOL, "-j", "-XMP-dc:Subject", *map(str, library.iterdir())],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert [r.get("Subject") for r in json.loads(read.stdout)] == [None, None]
    for name in before:
        assert streams_digest(tmp_path / f"original-{name}") == streams_digest(library / name)


@pytest.mark.skipif(EXIFTOOL is None, reason="exiftool writes XMP in MP4 and MOV (apt install libimage-exiftool-perl)")
def test_a_linked_clip_is_never_rewritten_through_its_link(tmp_path: Path, labels_file: Path):
    """A symbolic link where a clip was expected: `tag --into photo` does not rewrite the file it
    points to (elsewhere, someone else's); the keywords go to a sidecar beside the link."""
    elsewhere = shape_clip(tmp_path / "elsewhere" / "theirs.mp4", "red", seed=1)
    before = elsewhere.read_bytes()
    library = tmp_path / "lib"
    library.mkdir()
    (library / "link.mp4").symlink_to(elsewhere)
    ran = clipsort("tag", str(library), "--labels", str(labels_file), "--into", "photo", *COLOURS)
    assert ran.returncode == 0 and "it is a symbolic link" in ran.stderr, ran.stderr
    assert elsewhere.read_bytes() == before and (library / "link.mp4").is_symlink()
    assert not list((tmp_path / "elsewhere").glob("*.xmp"))
    assert keywords(library / "link.mp4.xmp") == {"red"}
