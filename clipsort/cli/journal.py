"""``clipsort undo`` and ``clipsort history``: the journals of sort runs."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from clipsort.cli.app import app
from clipsort.cli.options import ClipsortCommand
from clipsort.errors import ExitCode


@app.command(cls=ClipsortCommand)
def undo(
    journal: Annotated[
        str | None,
        typer.Argument(
            help="Journal file or name from 'clipsort history'. [default: the last sort or tag run]", show_default=False
        ),
    ] = None,
) -> None:
    """Undo a sort run, or the keywords a tag --into photo run wrote.

    Puts back every photo (and its sidecars) that a sort run moved, copied or linked, or the
    keywords a tag --into photo run wrote inside photos.

    Refuses, photo by photo, where a file has changed or its old name is taken
    since; run it again after fixing that. An interrupted run is completed or
    rolled back first. Works from any folder: journals name files by absolute
    path. A journal this clipsort did not write, one changed since, one of a
    clipsort before journal version 2, or one naming files outside its run's
    folders is refused as a whole, touching nothing (docs/sorting.md).

    Examples:

      clipsort undo

      clipsort undo 20261122-173000-4242.jsonl
    """
    from clipsort.console import Ui
    from clipsort.writes.recovery import undo as undo_run

    ui = Ui()
    path, result = undo_run(journal, ui.warn)
    refused = result.refused or []
    for failure in refused:
        ui.error(f"{failure.path}: {failure.reason}")
    ui.info(f"undid {result.undone} photos of {path}" + (f"; {len(refused)} refused" if refused else ""))
    if refused:
        raise typer.Exit(int(ExitCode.PARTIAL))


@app.command(cls=ClipsortCommand)
def history() -> None:
    """List past sort and tag --into photo runs, for 'clipsort undo'.

    Newest last, each with its journal's name, what it did and whether it was undone.

    Example:

      clipsort history
    """
    from clipsort.render import printable
    from clipsort.store.journal_read import history as past_runs

    runs = past_runs()
    if not runs:
        typer.echo("no sort runs yet", err=True)
    for path, view, problem in runs:
        if view is None:
            typer.echo(printable(f"?                    {path.name}  [cannot be read or undone: {problem}]"))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(view.started))
        counts = view.counts()
        state = "undone" if view.undone else ("complete" if view.ended else "running or interrupted")
        if view.interrupted and not view.undone:
            state = "interrupted, recovered"
        if view.legacy:
            state += "; older clipsort: undo by hand"
        moved = view.placed()  # what the run did, also after an undo put it back
        put_back = counts.get("undone", 0)
        if put_back and not view.undone:
            state += f"; {put_back} put back"
        if view.run.get("command") == "tag":
            roots = ", ".join(str(r) for r in view.run.get("roots", []))
            line = f"{when}  {view.path.name}  tag {moved} photos (keywords inside) in {roots}  [{state}]"
        else:
            line = (
                f"{when}  {view.path.name}  {view.run.get('mode', 'move')} {moved} photos"
                f" -> {view.run.get('dest', '?')}  [{state}]"
            )
        typer.echo(printable(line))
