"""ExifTool, the writer of keywords inside photos: one process per run, in its batch mode
(``-stay_open``), given one command at a time as argument lines and answering each up to a
marker on stdout and on stderr.

Why ExifTool: it writes XMP and IPTC into every format clipsort tags in the file (JPEG, PNG,
TIFF, HEIC/HEIF, AVIF, JPEG XL; WebP with versions that write RIFF), leaves the image data and
every other block as it was, and is an external program, so its licence (Perl's) does not touch
clipsort's (MIT). It is looked up on ``PATH``; without it, photos are tagged in sidecars, and the
summary says so once.

Arguments travel as lines, so a value may hold no line break (labels never do: clipsort's names
hold no control characters) and every path is absolute (a name starting with ``-`` is never read
as an option).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

from clipsort.errors import ClipsortError

#: Seconds one command may take before the process is stopped (a photo of hundreds of MB on a
#: slow disk takes a few seconds).
COMMAND_TIMEOUT = 300.0


class ExifToolError(ClipsortError):
    """ExifTool is missing, stopped, or did not answer."""


def find_exiftool() -> str | None:
    """The ``exiftool`` program on ``PATH`` (``CLIPSORT_EXIFTOOL`` names another), or None."""
    named = os.environ.get("CLIPSORT_EXIFTOOL")
    if named:
        return named if os.path.isfile(named) and os.access(named, os.X_OK) else None
    return shutil.which("exiftool")


class ExifTool:
    """One ``exiftool -stay_open`` process. Thread-safe: one command at a time."""

    def __init__(self, executable: str | None = None) -> None:
        program = executable or find_exiftool()
        if program is None:
            raise ExifToolError("exiftool is not installed")
        try:
            self._process = subprocess.Popen(
                [program, "-stay_open", "True", "-@", "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(os.environ, LC_ALL="C"),
            )
        except OSError as exc:
            raise ExifToolError(f"cannot start exiftool: {exc.strerror or exc}") from None
        self._lock = threading.Lock()
        self._count = 0
        self.version = self.run(["-ver"])[0].strip()

    def run(self, args: Sequence[str | bytes]) -> tuple[str, str]:
        """(stdout, stderr) of one command; ``args`` one per line (bytes for paths)."""
        with self._lock:
            self._count += 1
            marker = f"{{ready{self._count}}}".encode()
            lines = [a if isinstance(a, bytes) else a.encode("utf-8") for a in args]
            if any(b"\n" in line or b"\r" in line for line in lines):
                raise ExifToolError("an argument holds a line break")
            lines += [b"-echo4", marker, b"-execute" + str(self._count).encode()]
            process = self._process
            assert process.stdin is not None
            try:
                process.stdin.write(b"\n".join(lines) + b"\n")
                process.stdin.flush()
            except OSError:
                raise ExifToolError("exiftool stopped") from None
            out, err = self._read_until(marker)
            return out.decode("utf-8", "surrogateescape"), err.decode("utf-8", "replace")

    def _read_until(self, marker: bytes) -> tuple[bytes, bytes]:
        """stdout up to ``{readyN}`` and stderr up to the same marker, read side by side (a full
        stderr pipe must not stall stdout)."""
        process = self._process
        assert process.stdout is not None and process.stderr is not None
        streams = (process.stdout.fileno(), process.stderr.fileno())
        buffers = {fd: bytearray() for fd in streams}
        end = marker + b"\n"
        waiting = set(streams)
        with selectors.DefaultSelector() as selector:
            for fd in streams:
                selector.register(fd, selectors.EVENT_READ)
            while waiting:
                ready = selector.select(COMMAND_TIMEOUT)
                if not ready:
                    self.close(kill=True)
                    raise ExifToolError(f"exiftool did not answer within {COMMAND_TIMEOUT:.0f} s")
                for key, _ in ready:
                    fd = key.fd
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        self.close(kill=True)
                        raise ExifToolError("exiftool stopped")
                    buffers[fd] += chunk
                    if buffers[fd].endswith(end):
                        waiting.discard(fd)
                        selector.unregister(fd)
        return bytes(buffers[streams[0]][: -len(end)]), bytes(buffers[streams[1]][: -len(end)])

    def read_json(self, args: Sequence[str | bytes]) -> list[dict[str, Any]]:
        """The records of ``-j`` output of one command (empty when exiftool read nothing)."""
        out, err = self.run(["-j", *args])
        if not out.strip():
            raise ExifToolError(err.strip() or "exiftool read nothing")
        try:
            records = json.loads(out)
        except ValueError:
            raise ExifToolError("exiftool gave output that is not JSON") from None
        return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []

    def writable_types(self) -> set[str]:
        """The file types (extensions, upper case) this ExifTool writes."""
        out, _ = self.run(["-listwf"])
        words = out.replace(":", " ").split()
        return {w for w in words if w.isupper() or w.isdigit()}

    def close(self, kill: bool = False) -> None:
        process = self._process
        if process.poll() is None:
            try:
                if kill:
                    process.kill()
                else:
                    assert process.stdin is not None
                    process.stdin.write(b"-stay_open\nFalse\n")
                    process.stdin.flush()
                    process.stdin.close()
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self) -> ExifTool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
