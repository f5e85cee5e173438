"""``clipsort learn``: a label file fitted to example photos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clipsort.cli.app import app
from clipsort.cli.options import ClipsortCommand, RunSettings, run_options
from clipsort.cli.runner import run_command


@app.command(cls=ClipsortCommand)
@run_options(omit=("json_out", "no_pairs"))
def learn(
    examples: Annotated[
        Path,
        typer.Argument(
            help="Folder with one subfolder of example photos per label (nested folders: animals/dog).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The learned label file to write (JSON; use it as --labels)."),
    ],
    common: RunSettings = RunSettings(),
) -> None:
    """Learn labels from example photos you already sorted, one subfolder per label.

    Combines each folder name's zero-shot prompts with its photos (works from one
    example per label; more is better), and sets each label's threshold from
    held-out examples. The file works wherever --labels does, with the model it
    was learned with.

    Examples:

      clipsort learn ~/Examples -o mine.labels.json

      clipsort sort ~/Inbox --labels mine.labels.json --dest ~/Sorted --dry-run

      clipsort eval ~/Checked --labels mine.labels.json
    """
    from clipsort.labelled import run_learn

    def work(_labels, embedder, run, ui):  # noqa: ANN001, ANN202
        report, outcome = run_learn(examples, output, embedder, run, ui)
        ui.stop()
        if outcome is not None:
            ui.learned(outcome)
        return report

    run_command("learn", common, [examples], None, work)
