"""Everything clipsort shows a person, on stderr: progress, warnings, errors, the summary.

stdout is kept for results (``--json`` lines, dry-run plans, listings), so that
scripts can pipe it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from clipsort.errors import FileFailure
from clipsort.render import explanation, json_text, not_photos_line, plan_line, printable, summary_line
from clipsort.run.report import PhotoResult, Report

#: Paths left out on purpose that the summary names one by one (--log has them all; --verbose too).
_LEFT_OUT_SHOWN = 20


class Ui:
    """The CLI's renderer of pipeline events. Implements :class:`clipsort.run.events.Events`."""

    def __init__(self, quiet: bool = False, json_lines: bool = False, stdout: TextIO | None = None) -> None:
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.json_lines = json_lines
        self.stdout = stdout or sys.stdout
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._log: TextIO | None = None
        self.explain = False
        #: Name every file left out in the summary (``--verbose``), not only counts and the first few.
        self.verbose = False
        #: Per-photo messages held back until the model line is out (:meth:`hold`); None: not holding.
        self._held: list[tuple[Callable[[str], None], str]] | None = None
        self._held_lock = threading.Lock()
        self._model_line_out = False

    @property
    def wants_details(self) -> bool:
        """Whether :meth:`photo` shows scores and verdicts (see :class:`clipsort.run.events.SilentEvents`)."""
        return self.json_lines or self.explain

    def explaining(self, explain: bool) -> Ui:
        """Print every label's score, threshold and verdict per photo on stdout (``--explain``)."""
        self.explain = explain
        return self

    # -- plain-text log (--log) -------------------------------------------------------------
    @contextlib.contextmanager
    def logging_to(self, path: Path, argv: Sequence[str]) -> Iterator[None]:
        """Append what this run says (errors, warnings, the summary) to ``path``, one line each."""
        from clipsort.errors import UsageError
        from clipsort.safe_files import open_append

        try:
            handle = open_append(path)
        except OSError as exc:
            raise UsageError(f"--log {path}: {exc.strerror or exc}") from None
        self._log = open(handle, "a", encoding="utf-8", errors="backslashreplace", buffering=1)  # noqa: SIM115
        self._write_log(f"start (pid {os.getpid()}): {' '.join(argv)}")
        try:
            yield
        except BaseException as exc:
            self._write_log(f"stopped: {type(exc).__name__}: {exc}")
            raise
        finally:
            self._log.close()
            self._log = None

    def log(self, message: str) -> None:
        """Write ``message`` to the --log only (what a status line said)."""
        self._write_log(printable(message))

    def _write_log(self, line: str) -> None:
        if self._log is not None:
            self._log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    # -- messages ---------------------------------------------------------------------------
    def info(self, message: str) -> None:
        message = printable(message)
        self._write_log(message)
        if not self.quiet:
            self.err.print(Text(message))

    def warn(self, message: str) -> None:
        message = printable(message)
        self._write_log("warning: " + message)
        if not self.quiet:
            self.err.print(Text.assemble(("warning: ", "yellow"), message))

    def error(self, message: str) -> None:
        message = printable(message)
        self._write_log("error: " + message)
        self.err.print(Text.assemble(("error: ", "bold red"), message))

    def status(self, message: str):  # noqa: ANN201 - a rich Status or a context manager
        if self.quiet or not self.err.is_terminal:
            return contextlib.nullcontext()
        if self._progress is not None:
            # rich shows one live display at a time: the progress bar says it instead
            return self._progress_says(message)
        return self.err.status(message)

    @contextlib.contextmanager
    def _progress_says(self, message: str) -> Iterator[Callable[[str], None]]:
        progress, task = self._progress, self._task
        assert progress is not None and task is not None
        progress.update(task, description=f"photos ({message.rstrip('.')}...)")
        try:  # what it says next replaces it (how far a long step is)
            yield lambda said: progress.update(task, description=f"photos ({printable(said)}...)")
        finally:
            progress.update(task, description="photos")

    # -- pipeline events --------------------------------------------------------------------
    def discovering(self, count: int) -> None:
        if self._progress is None and self.err.is_terminal and not self.quiet:
            self.err.print(Text(f"found {count} photos so far..."), end="\r")

    def started(self, total: int) -> None:
        if self.quiet or not self.err.is_terminal:
            return
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("photos", total=total, rate="")

    def advanced(self, count: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, count)
            task = self._progress.tasks[0]
            elapsed = task.elapsed or 0.0
            if elapsed >= 1.0:  # the run's own rate so far, as its summary will say it (not a burst's)
                self._progress.update(self._task, rate=f"{task.completed / elapsed:.1f} img/s")

    def photo(self, result: PhotoResult) -> None:
        if self.json_lines:
            record = result.to_json()
            try:
                self._out(json_text(record) + "\n")
            except UnicodeEncodeError:  # a file name that is not valid UTF-8: JSON escapes it
                self._out(json_text(record, ascii_only=True) + "\n")
        else:
            if result.dry_run or self.explain:
                self._out(plan_line(result) + "\n")
            if self.explain:
                self._out(explanation(result))

    def out(self, text: str) -> None:
        """Write a result on stdout (file names that are not UTF-8 keep their bytes)."""
        self._out(text)

    def out_bytes(self, data: bytes) -> None:
        """Write raw bytes on stdout (NUL-separated names for ``xargs -0``)."""
        self.stdout.flush()
        buffer = getattr(self.stdout, "buffer", None)
        if buffer is None:
            self.stdout.write(data.decode("utf-8", "surrogateescape"))
        else:
            buffer.write(data)
            buffer.flush()

    def _out(self, text: str) -> None:
        if self._progress is not None and self._shares_terminal():
            # stdout and the progress bar are one terminal: the line goes above the bar, never onto it
            lines = text.rstrip("\n").split("\n")  # each already printable (names are escaped)
            self._progress.console.out("\n".join(printable(line) for line in lines), highlight=False)
            return
        try:
            self.stdout.write(text)
        except UnicodeEncodeError:
            buffer = getattr(self.stdout, "buffer", None)
            if buffer is None or self.json_lines:
                raise
            # Plan lines carry file names: give scripts the names' real bytes.
            self.stdout.flush()
            buffer.write(text.encode("utf-8", "surrogateescape"))
        self.stdout.flush()

    def _shares_terminal(self) -> bool:
        """Whether stdout is the terminal the progress bar is drawn on."""
        try:
            return os.isatty(self.stdout.fileno()) and self.err.is_terminal
        except (AttributeError, OSError, ValueError):  # a StringIO, a closed stream
            return False

    # -- a fixed order: the model line, then per-photo messages, then the summary ----------------
    def hold(self) -> None:
        """Hold per-photo messages until :meth:`release` (the model loads in its own thread while
        photos are read: its line fell among theirs, in another place each run)."""
        with self._held_lock:
            self._held = None if self._model_line_out else []

    def release(self, first: str | None = None) -> None:
        """Print ``first`` (the model line), then the messages held back, and stop holding."""
        with self._held_lock:
            held, self._held = self._held or [], None
            self._model_line_out |= first is not None
            for say, message in ([(self.info, first)] if first is not None else []) + held:
                say(message)

    def _say(self, say: Callable[[str], None], message: str) -> None:
        with self._held_lock:
            if self._held is not None:
                return self._held.append((say, message))
        say(message)

    def failed(self, failure: FileFailure) -> None:
        self._say(self.error, f"{failure.path}: {failure.reason}")

    def warned(self, message: str) -> None:
        self._say(self.warn, message)

    def stop(self) -> None:
        self.release()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def table(self, table: Table) -> None:
        """Print a rich table on stdout (a result, as ``learn`` and ``eval`` show theirs)."""
        console = Console(file=self.stdout, highlight=False, soft_wrap=False, width=max(100, self.err.width))
        console.print(table)

    # -- summary ----------------------------------------------------------------------------
    def summary(self, report: Report) -> None:
        self.stop()
        line = summary_line(report)
        for path, reason in report.left_out:
            self._write_log(printable(f"left out: {path}: {reason}"))
        for path in report.not_photo_paths:
            self._write_log(printable(f"left out: {path}: not a photo or video"))
        self._write_log("done: " + line + f" (exit {int(report.exit_code)})")
        if report.fatal:
            self.error(report.fatal)
        if self.quiet:
            return
        self.err.print(Text(line))
        if report.per_label:
            counts = ", ".join(f"{name} {n}" for name, n in report.per_label.most_common())
            self.err.print(Text(printable(f"labels: {counts}")))
        if report.written_to:
            self.err.print(Text(printable(report.written_to)))
        if report.review is not None:
            self.err.print(Text(printable(f"review page: {report.review}")))
        for name, (count, install) in report.unreadable.items():
            self.err.print(Text(f"not read: {count} {name} file(s); to read them: {install}"))
        for note in report.notes:
            self.err.print(Text(f"note: {note}"))
        shown = None if self.verbose else _LEFT_OUT_SHOWN
        for path, reason in report.left_out[:shown]:
            self.err.print(Text(printable(f"left out: {path}: {reason}")))
        if shown is not None and len(report.left_out) > shown:
            self.err.print(Text(f"left out: {len(report.left_out) - shown} more (--verbose or --log names all)"))
        if not_photos_line(report):
            hint = "" if self.verbose or self.json_lines else " (--verbose names them)"
            self.err.print(Text(not_photos_line(report) + hint))
        if self.verbose:
            for path in report.not_photo_paths:
                self.err.print(Text(printable(f"  {path}")))
        if report.dry_run:
            self.err.print(Text("dry run: nothing was changed"))
        elif report.journal is not None:
            self.err.print(Text(f"journal {report.journal} ('clipsort undo' puts everything back)"))
