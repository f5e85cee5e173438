"""What a person sees in a terminal (issue 28): the progress bar and the plan lines on stdout
never share a line, under a real pseudo terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from conftest import COLOUR_MODEL, make_colour_photos

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_terminal(args: list[str], columns: int = 120) -> str:
    """Run ``clipsort ARGS`` with stdout and stderr on one pseudo terminal; everything it drew."""
    leader, follower = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(columns))
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "clipsort", *args], stdin=follower, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal is gone with the process
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


def screen_lines(output: str) -> list[str]:
    """Each line as it ends up, escape sequences removed; a carriage return starts it again."""
    lines = []
    for line in ANSI.sub("", output).split("\n"):
        lines.append(line.rstrip("\r").split("\r")[-1])  # the terminal ends each line with \r\n
    return lines


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
