"""Running clipsort in a real pseudo terminal, as a person sees it (the tests of what is drawn and asked)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_terminal(args: list[str], columns: int = 120, typed: bytes = b"") -> str:
    """Run ``clipsort ARGS`` with stdin, stdout and stderr on one pseudo terminal, ``typed`` typed ahead
    on its keyboard; everything it drew."""
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
    if typed:
        os.write(leader, typed)  # typed ahead: the terminal holds it until the program reads
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
    """The lines as a terminal shows them at the end: text overwrites from the cursor on, ``\\r``
    goes back to the line's start, ``ESC[2K`` clears it and ``ESC[nA`` moves up (how a progress
    display erases itself); other escape sequences are dropped."""
    lines: list[list[str]] = [[]]
    row = column = 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r|\n|[^\x1b\r\n]+", output):
        if token == "\n":
            row, column = row + 1, 0
            while len(lines) <= row:
                lines.append([])
        elif token == "\r":
            column = 0
        elif token.startswith("\x1b["):
            if token.endswith("K") and token[2:-1] in ("2", ""):
                lines[row] = [] if token[2:-1] == "2" else lines[row][:column]
            elif token.endswith("A"):
                row = max(0, row - int(token[2:-1] or 1))
        elif not token.startswith("\x1b"):
            line = lines[row]
            line.extend(" " * (column - len(line)))
            line[column : column + len(token)] = list(token)
            column += len(token)
    return ["".join(line).rstrip() for line in lines]
