"""Decisions people can trust: none of these, independent labels, few-shot learning, eval.

Runs the real pipeline on photos made in tmp_path, with the trained tiny colour model.
"""

from __future__ import annotations

import json
import os
import random
import re
import stat
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, save_photo
from shapes import make_picture

from clipsort.cli import main
from clipsort.commands.sorting import SortOptions, run_sort
from clipsort.commands.tagging import TagOptions, run_tag
from clipsort.labels.label_file import load_labels
from clipsort.labels.label_set import parse_labels
from clipsort.run.events import SilentEvents

MODEL = ["--model", f"local-dir:{COLOUR_MODEL}"]


class Collect(SilentEvents):
    def __init__(self) -> None:
        self.results = []

    def photo(self, result) -> None:  # noqa: ANN001
        self.results.append(result)


def make_photos(folder: Path, colours: list[str], per_colour: int, seed: int) -> dict[Path, str]:
    """``per_colour`` photos of each colour in ``folder/<colour>/`` (JPEG, 200-700 px, any shape)."""
    rng = random.Random(seed)
    made = {}
    for colour in colours:
        for i in range(per_colour):
            picture = make_picture(colour, (rng.randint(200, 700), rng.randint(200, 700)), rng)
            made[save_photo(picture, folder / colour / f"{colour}-{i:02d}.jpg")] = colour
    return made


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_photos_of_absent_classes_go_to_unsorted(tmp_path: Path, colour_embedder):
    present = ["red", "green", "blue"]
    absent = ["yellow", "purple", "pink"]
    photos = make_photos(tmp_path / "in", present + absent, 12, seed=3)
    labels = parse_labels("\n".join(present) + "\n", "labels.txt")
    dest = tmp_path / "out"
    report = run_sort([tmp_path / "in"], labels, colour_embedder, SortOptions(dest=dest, mode="copy"))
    assert not report.failures
    placed = {p.name: p.parent.name for p in dest.rglob("*.jpg")}
    right = sum(placed[p.name] == colour for p, colour in photos.items() if colour in present)
    unsorted = sum(placed[p.name] == "_unsorted" for p, colour in photos.items() if colour in absent)
    assert right >= 0.9 * 36, placed
    assert unsorted >= 0.8 * 36, placed


def test_an_unrelated_label_leaves_the_kept_labels_unchanged(tmp_path: Path, colour_embedder):
    make_photos(tmp_path / "in", ["red", "green", "blue", "yellow", "purple"], 8, seed=4)
    kept = []
    for text in ("red\ngreen\nblue\nyellow\n", "red\ngreen\nblue\nyellow\nkitchen table\n"):
        events = Collect()
        run_tag([tmp_path / "in"], parse_labels(text), colour_embedder, TagOptions(dry_run=True), events=events)
        kept.append({r.path: set(r.labels) - {"kitchen table"} for r in events.results})
    assert len(kept[0]) == 40
    same = sum(kept[0][p] == kept[1][p] for p in kept[0])
    assert same == 40  # each label is judged on its own: the other labels never change a verdict
    assert sum(bool(k) for k in kept[0].values()) >= 30  # and the test is not vacuous: most photos keep a label


def test_explain_and_json_carry_every_score_threshold_and_verdict(tmp_path: Path, capsys):
    make_photos(tmp_path / "in", ["red"], 2, seed=5)
    toml = tmp_path / "labels.toml"
    toml.write_text("threshold = 0.4\n[labels.red]\n[labels.blue]\nthreshold = 0.9\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "tag", str(tmp_path / "in"), "-l", str(toml), *MODEL, "--explain", "--dry-run")
    assert code == 0
    assert out.count("red ") >= 2 and "0.400  kept" in out and "0.900  below threshold" in out
    code, out, _ = run_cli(capsys, "tag", str(tmp_path / "in"), "-l", str(toml), *MODEL, "--json", "--dry-run")
    record = json.loads(out.splitlines()[0])
    assert record["thresholds"] == {"red": 0.4, "blue": 0.9}
    assert record["why"] == {"red": "kept", "blue": "below threshold"} and record["labels"] == ["red"]


WORDS = {"red": "zorbl", "green": "quiffet", "blue": "maptor", "yellow": "brindle"}


def test_learn_from_five_examples_beats_zero_shot_on_arbitrary_names(tmp_path: Path, capsys):
    colours = list(WORDS)
    examples = make_photos(tmp_path / "ex", colours, 5, seed=6)
    for path, colour in examples.items():  # folders named by words the model never saw
        target = tmp_path / "examples" / WORDS[colour] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    checked = make_photos(tmp_path / "check", colours, 10, seed=7)
    for path, colour in checked.items():
        target = tmp_path / "checked" / WORDS[colour] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    learned = tmp_path / "mine.labels.json"
    code, out, err = run_cli(capsys, "learn", str(tmp_path / "examples"), "-o", str(learned), *MODEL)
    assert code == 0, err
    assert "zorbl" in out and "held-out accuracy" in out
    document = json.loads(learned.read_text(encoding="utf-8"))
    assert {r["name"]: r["examples"] for r in document["labels"]} == dict.fromkeys(WORDS.values(), 5)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(learned.stat().st_mode) == 0o666 & ~umask  # a file to share, as any the person writes
    zero_shot = tmp_path / "words.txt"
    zero_shot.write_text("\n".join(WORDS.values()) + "\n", encoding="utf-8")
    accuracy = {}
    for name, labels in (("learned", learned), ("zero-shot", zero_shot)):
        code, out, err = run_cli(capsys, "eval", str(tmp_path / "checked"), "-l", str(labels), *MODEL, "--json")
        assert code == 0, err
        accuracy[name] = json.loads(out)["accuracy"]
    assert accuracy["learned"] >= 0.9 and accuracy["learned"] > accuracy["zero-shot"], accuracy


def test_eval_accuracy_is_a_hand_count_of_sort(tmp_path: Path, capsys):
    photos = make_photos(tmp_path / "checked", ["red", "green", "blue", "purple"], 6, seed=8)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "eval", str(tmp_path / "checked"), "-l", str(labels), *MODEL, "--json")
    assert code == 0 and "count as 'none of these': purple" in err
    accuracy = json.loads(out)["accuracy"]
    code, _, _ = run_cli(
        capsys,
        "sort",
        str(tmp_path / "checked"),
        "-l",
        str(labels),
        *MODEL,
        "-d",
        str(tmp_path / "out"),
        "--mode",
        "copy",
    )
    assert code == 0
    where = {p.name: p.parent.name for p in (tmp_path / "out").rglob("*.jpg")}
    right = sum(where[p.name] == (c if c != "purple" else "_unsorted") for p, c in photos.items())
    assert accuracy == right / len(photos)

    # the table has "none of these" as a row (the purple photos: no label's) and a column (sort's unsorted)
    code, out, err = run_cli(capsys, "eval", str(tmp_path / "checked"), "-l", str(labels), *MODEL)
    matrix = out[out.index("confusion") :].splitlines()
    header = next(line for line in matrix if "none of these" in line)
    columns = [cell.strip() for cell in re.split(r"[│┃|]", header) if cell.strip()]
    assert columns == ["red", "green", "blue", "none of these"], header
    rows = {}
    for line in matrix:
        cells = [cell.strip() for cell in re.split(r"[│┃|]", line) if cell.strip()]
        if len(cells) == 5 and cells[0] in ("red", "green", "blue", "none of these"):
            rows[cells[0]] = [0 if c == "." else int(c) for c in cells[1:]]
    assert sum(rows["none of these"]) == sum(c == "purple" for c in photos.values())
    unsorted = sum(row[3] for row in rows.values())
    assert unsorted == sum(folder == "_unsorted" for folder in where.values()) and unsorted > 0


def test_learned_file_is_refused_under_another_model_and_bad_examples_are_named(tmp_path: Path, capsys):
    make_photos(tmp_path / "ex", ["red", "blue"], 2, seed=9)
    (tmp_path / "ex" / "green").mkdir()
    code, _, err = run_cli(capsys, "learn", str(tmp_path / "ex"), "-o", str(tmp_path / "l.json"), *MODEL)
    assert code == 2 and "no photos for label 'green'" in err and err.count("\n") == 1
    (tmp_path / "ex" / "green").rmdir()
    (tmp_path / "ex" / "red" / "broken.jpg").write_bytes(b"not a jpeg")
    code, _, err = run_cli(capsys, "learn", str(tmp_path / "ex"), "-o", str(tmp_path / "l.json"), *MODEL)
    assert code == 3 and "broken.jpg" in err and (tmp_path / "l.json").exists()
    other = tmp_path / "other-model"
    from conftest import write_random_model

    write_random_model(other)
    code, _, err = run_cli(
        capsys, "tag", str(tmp_path / "ex"), "-l", str(tmp_path / "l.json"), "--model", f"local-dir:{other}"
    )
    assert code == 2 and "learned with model" in err and "l.json" in err


SHAPES_MODEL = Path(__file__).resolve().parent / "models" / "tiny-shapes"


@pytest.fixture(scope="module")
def shapes_embedder():
    from clipsort.model.embed import Embedder
    from clipsort.model.loading import load_model
    from clipsort.model.model_spec import parse_spec

    model = load_model(parse_spec(f"local-dir:{SHAPES_MODEL}"), "cpu", "fp32")
    return Embedder(model.spec, "cpu", cache=None, loader=lambda spec, device, precision: model)


def test_a_red_circle_is_tagged_red_and_circle_and_nothing_else(tmp_path: Path, shapes_embedder):
    rng = random.Random(12)
    shown = {}
    for i in range(30):
        picture = make_picture("red", (rng.randint(250, 700), rng.randint(250, 700)), rng, shape="circle")
        shown[save_photo(picture, tmp_path / "in" / f"red-circle-{i:02d}.jpg")] = {"red", "circle"}
    for i, (colour, shape) in enumerate([("blue", "square"), ("yellow", "triangle"), ("green", "circle")] * 6):
        picture = make_picture(colour, (rng.randint(250, 700), rng.randint(250, 700)), rng, shape=shape)
        shown[save_photo(picture, tmp_path / "in" / f"{colour}-{shape}-{i:02d}.jpg")] = {colour, shape}
    labels = parse_labels("red\ngreen\nblue\nyellow\ncircle\nsquare\ntriangle\n", "labels.txt")
    events = Collect()
    run_tag([tmp_path / "in"], labels, shapes_embedder, TagOptions(dry_run=True), events=events)
    kept = {r.path: set(r.labels) for r in events.results}
    red_circles = [p for p in shown if p.name.startswith("red-circle")]
    assert sum(kept[p] == {"red", "circle"} for p in red_circles) >= 0.9 * len(red_circles), kept
    assert sum(kept[p] == shown[p] for p in shown) >= 0.9 * len(shown)


def test_eval_writes_a_label_file_with_the_suggested_thresholds(tmp_path: Path, capsys):
    make_photos(tmp_path / "checked", ["red", "green", "blue", "orange"], 5, seed=13)
    labels = tmp_path / "labels.toml"
    labels.write_text('[labels.red]\naliases = ["crimson"]\n[labels.green]\n[labels.blue]\n', encoding="utf-8")
    tuned = tmp_path / "tuned.toml"
    args = ["eval", str(tmp_path / "checked"), "-l", str(labels), *MODEL, "--target-precision", "0.95"]
    code, out, err = run_cli(capsys, *args, "--save-thresholds", str(tuned))
    assert code == 0 and "accuracy" in out and "confusion" in out and f"wrote {tuned}" in err
    written = load_labels(tuned)
    assert written.names == ["red", "green", "blue"] and written.labels[0].aliases == ("crimson",)
    assert all(label.threshold is not None for label in written.labels)
    code, _, err = run_cli(capsys, *args, "--save-thresholds", str(tuned))
    assert code == 2 and "exists" in err  # never overwritten
