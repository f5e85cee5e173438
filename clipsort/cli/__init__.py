"""The ``clipsort`` command: parses options, calls the library, renders. No logic lives here.

One module per command or command group; the options they share are declared once
in :mod:`clipsort.cli.options`. torch and open_clip are imported only by commands
that need a model, so ``clipsort --help`` answers at once.

May import: commands, review, run, model, writes, store, labels, photos, console, render.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys

import typer

from clipsort.cli.app import app
from clipsort.errors import ClipsortError, ExitCode

__all__ = ["app", "main", "run"]

# Each module registers its commands when imported; --help lists them in this order.
for _module in ("tag", "sort", "index", "search", "labelled", "labels", "cache", "journal", "show", "models"):
    importlib.import_module(f"clipsort.cli.{_module}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app, maps clipsort errors to one-line messages and exit codes.

    Usage errors of the command line itself are Typer's (exit 2).
    """
    try:
        app(args=argv, prog_name="clipsort")
    except ClipsortError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        typer.echo("\ninterrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as exc:  # noqa: BLE001 - last resort: a message, not a traceback
        if os.environ.get("CLIPSORT_DEBUG"):
            raise
        typer.echo(
            f"error: internal error: {type(exc).__name__}: {exc} (set CLIPSORT_DEBUG=1 for the traceback)", err=True
        )
        sys.exit(int(ExitCode.ERROR))


def run(argv: list[str] | None = None) -> None:
    """The ``clipsort`` program (console script and ``python -m clipsort``): :func:`main`, then an exit
    without the interpreter's last garbage collection.

    At exit the interpreter walks every object left and frees the ones in cycles, ONNX Runtime's
    sessions among them: 0.1-0.2 s of every command on a 2-core CPU, measured, to free memory the
    operating system takes back anyway. Frozen objects are left alone; files are closed and sidecars,
    journals and the cache written before this point, and exit handlers (atexit) still run.
    """
    _own_stderr()
    try:
        main(argv)
    finally:
        gc.freeze()


def _own_stderr() -> None:
    """clipsort's own lines go to a copy of file descriptor 2, which C libraries print on: what they
    say while decoding a file becomes part of that file's message, not raw lines among clipsort's
    (:func:`clipsort.photos.decode.capture_library_output`)."""
    try:
        sys.stderr.flush()
        own = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors=sys.stderr.errors)
    except (OSError, ValueError, AttributeError):  # no stderr at all (a service without one): nothing to keep apart
        return
    sys.stderr = own
    from clipsort.photos.decode import capture_library_output

    capture_library_output()
