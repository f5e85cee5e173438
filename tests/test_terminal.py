"""What a person sees in a terminal (issue 28): the progress bar and the plan lines on stdout
never share a line, under a real pseudo terminal."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import COLOUR_MODEL, make_colour_photos
from terminal import ANSI, run_in_terminal, screen_lines


def test_the_progress_bar_and_plan_lines_never_share_a_line(tmp_path):
    inbox = tmp_path / "inbox"
    make_colour_photos(inbox, ["red", "green", "blue"], 60, seed=28, min_px=200, max_px=1600)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n", encoding="utf-8")
    args = ["sort", str(inbox), "-l", str(labels), "-d", str(tmp_path / "s"), "--dry-run"]
    output = run_in_terminal([*args, "--model", f"local-dir:{COLOUR_MODEL}", "--workers", "1", "--batch-size", "4"])
    drawn = ANSI.sub("", output)
    assert "ETA" in drawn, "the progress bar was never drawn: the test shows nothing"
    plan = [line for line in screen_lines(output) if "would move: " in line]
    assert len(plan) == 60, output[-3000:]
    for line in plan:
        assert "ETA" not in line and "photos" not in line.split("would ")[0], line
        assert line.startswith("would "), line
    summary = [line for line in screen_lines(output) if " photos in " in line]
    rate = float(re.search(r"([0-9.]+) images/s", summary[-1]).group(1))
    shown = [float(r) for r in re.findall(r"([0-9.]+) img/s", drawn)]
    assert all(r < rate * 3 + 5 for r in shown), (shown, rate)  # the bar's rate is the run's, not a burst's
    assert not any(Path(tmp_path / "s").rglob("*"))


def test_stderr_says_the_model_then_each_photo_in_order_then_the_summary_every_run(tmp_path):
    """The model loads in a thread of its own while photos are read (when the labels' prompts are
    cached, nothing else needs it first): its line came before, between or after the photos'
    errors, another place each run (issue 28). Now: a fixed order."""
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\n", encoding="utf-8")
    model = ["--model", f"local-dir:{COLOUR_MODEL}", "--cache", str(tmp_path / "cache.sqlite3")]
    broken = [f"0-broken-{n:02d}.jpg" for n in range(40)] + ["m-middle.png", "z-last.jpg"]
    seen = set()
    for run in range(4):
        inbox = tmp_path / f"inbox{run}"  # new photos each run: the model is needed, the prompts cached
        make_colour_photos(inbox, ["red", "green"], 12, seed=run, min_px=600, max_px=1600)
        for name in broken:  # forty first: read (and refused) while the model is still loading
            (inbox / name).write_bytes(b"\xff\xd8\xff\xe0 not a picture")
        output = run_in_terminal(["tag", str(inbox), "-l", str(labels), *model, "--dry-run", "--workers", "2"])
        if run == 0:
            continue  # the prompts' vectors are cached by this run
        lines = [line for line in screen_lines(output) if line.strip() and not line.startswith("would tag: ")]
        said = [
            "model"
            if line.startswith("model ")
            else f"error {next(n for n in broken if n in line)}"
            if line.startswith("error:")
            else "summary"
            if " photos in " in line
            else None
            for line in lines
        ]
        said = [s for s in said if s is not None]
        assert said == ["model", *(f"error {name}" for name in broken), "summary"], lines
        seen.add(tuple(said))
    assert len(seen) == 1
