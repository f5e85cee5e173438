"""``clipsort learn``: a label file fitted to example photos."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clipsort.cli.app import app
from clipsort.cli.options import ClipsortCommand, RunSettings, run_options
from clipsort.cli.runner import run_command

if TYPE_CHECKING:
    from clipsort.commands.labelled import LearnOutcome
    from clipsort.console import Ui


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
    from clipsort.commands.labelled import run_learn

    def work(_labels, embedder, run, ui):  # noqa: ANN001, ANN202
        report, outcome = run_learn(examples, output, embedder, run, ui)
        ui.stop()
        if outcome is not None:
            show_learned(ui, outcome)
        return report

    run_command("learn", common, [examples], None, work)


def show_learned(ui: Ui, outcome: LearnOutcome) -> None:
    """What ``learn`` fitted: examples per label, thresholds, held-out figures (stdout)."""
    from rich.table import Table

    from clipsort.console import percent, printable

    learned = outcome.learned
    table = Table(title=f"learned {len(outcome.labels)} labels -> {outcome.output}", title_justify="left")
    for column in ("label", "examples", "threshold", "held-out precision", "held-out recall"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, stats in zip(outcome.labels.labels, learned.stats, strict=True):
        table.add_row(
            label.name, str(stats.examples), f"{stats.threshold:.3f}", percent(stats.precision), percent(stats.recall)
        )
    ui.table(table)
    held = (
        f"held-out accuracy {learned.held_out_accuracy:.1%}"
        if learned.held_out_accuracy is not None
        else "no held-out estimate (a label has a single example)"
    )
    zero_shot = f"zero-shot on the same photos {learned.zero_shot_accuracy:.1%}; pull {learned.strength:g}"
    ui.out(printable(f"{held}; {zero_shot}") + "\n")
