"""``clipsort learn`` and ``clipsort eval``: runs over folders of labelled photos, one subfolder
per label (:mod:`clipsort.commands.labelled`): a label file fitted to examples, and how right
sort is on photos whose label is known."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clipsort.cli.app import app
from clipsort.cli.options import ClipsortCommand, LabelsOpt, OpenOpt, ReviewOpt, RunSettings, ThresholdOpt, run_options
from clipsort.cli.runner import check_review, open_review, run_command
from clipsort.cli.sort import MarginOpt

if TYPE_CHECKING:
    from clipsort.commands.labelled import LearnOutcome
    from clipsort.console import Ui
    from clipsort.labels.evaluate import Evaluation


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
    """Learn labels from example photos sorted into folders.

    One subfolder per label, named as the label.

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

    from clipsort.render import percent, printable

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


@app.command("eval", cls=ClipsortCommand)
@run_options(
    omit=("no_pairs",), helps={"json_out": "One JSON object on stdout: every figure and the confusion matrix."}
)
def evaluate(
    labelled: Annotated[
        Path,
        typer.Argument(help="Folder with one subfolder of photos per label, as learn reads.", show_default=False),
    ],
    labels: LabelsOpt,
    threshold: ThresholdOpt = None,
    margin: MarginOpt = None,
    target_precision: Annotated[
        float,
        typer.Option("--target-precision", min=0.0, max=1.0, help="Suggest per-label thresholds for this precision."),
    ] = 0.9,
    save_thresholds: Annotated[
        Path | None,
        typer.Option(
            "--save-thresholds",
            help="Write the label file with the suggested thresholds to this new file (TOML).",
            show_default=False,
        ),
    ] = None,
    review: ReviewOpt = None,
    open_page: OpenOpt = False,
    common: RunSettings = RunSettings(),
) -> None:
    """Measure sort's decisions on photos sorted by hand.

    A photo's right label is its folder's name.

    Prints the accuracy (a photo counts as right when sort would put it in its
    own folder; photos in folders that are no label are right when sort leaves
    them unsorted), per-label precision and recall, the confusion matrix, and the
    threshold each label needs for --target-precision. Moves nothing.

    Examples:

      clipsort eval ~/Checked --labels labels.toml

      clipsort eval ~/Checked -l labels.toml --target-precision 0.95 --save-thresholds tuned.toml

      clipsort eval ~/Checked -l mine.labels.json --json

      clipsort eval ~/Checked -l labels.txt --review eval.html --open
    """
    from clipsort.commands.labelled import EvalOptions, run_eval
    from clipsort.commands.labelled import save_thresholds as save

    options = EvalOptions(threshold=threshold, margin=margin, target_precision=target_precision)

    def work(label_set, embedder, run, ui):  # noqa: ANN001, ANN202
        if review is None:
            report, evaluation = run_eval(labelled, label_set, embedder, options, run, ui)
        else:
            from clipsort.commands.review_run import ReviewRequest, eval_with_review, reviewed_run

            run = reviewed_run(run)
            report, evaluation = eval_with_review(
                ReviewRequest(review),
                label_set,
                embedder,
                ui,
                lambda events, rows: run_eval(labelled, label_set, embedder, options, run, events, rows),
                run.workers or 2,
            )
        ui.stop()
        show_evaluation(ui, evaluation)
        if save_thresholds is not None:
            count = save(label_set, evaluation, save_thresholds)
            ui.info(f"wrote {save_thresholds} with {count} suggested thresholds")
        return report

    run_command(
        "eval",
        common,
        [labelled],
        labels,
        work,
        check=lambda _labels: check_review(review),
        after=lambda report: open_review(report, open_page),
    )


def show_evaluation(ui: Ui, evaluation: Evaluation) -> None:
    """``eval``'s figures on stdout: one JSON object with ``--json``, else tables."""
    from rich.table import Table

    from clipsort.labels.evaluate import NONE
    from clipsort.render import json_text, percent

    if ui.json_lines:
        record = {
            "accuracy": evaluation.accuracy,
            "photos": evaluation.photos,
            "target_precision": evaluation.target_precision,
            "labels": {
                f.name: {
                    "photos": f.photos,
                    "precision": f.precision,
                    "recall": f.recall,
                    "threshold": f.threshold,
                    "suggested_threshold": f.suggested,
                }
                for f in evaluation.labels
            },
            "confusion": evaluation.confusion,
        }
        ui.out(json_text(record) + "\n")
        return
    right = round(evaluation.accuracy * evaluation.photos)
    ui.out(f"accuracy {evaluation.accuracy:.1%} ({right} of {evaluation.photos} photos)\n")
    table = Table(title="per label", title_justify="left")
    for column in ("label", "photos", "precision", "recall", "threshold", f"for {evaluation.target_precision:g}"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for f in evaluation.labels:
        suggested = f"{f.suggested:.3f}" if f.suggested is not None else "-"
        table.add_row(f.name, str(f.photos), percent(f.precision), percent(f.recall), f"{f.threshold:.3f}", suggested)
    ui.table(table)
    # "none of these" always has its row (photos of no label's folder) and column (photos sort leaves unsorted)
    names = [n for n in evaluation.confusion if n != NONE] + [NONE]
    shown = {name: "none of these" if name == NONE else name for name in names}
    matrix = Table(title="confusion: rows are the right label, columns sort's decision", title_justify="left")
    matrix.add_column("")
    for name in names:
        matrix.add_column(shown[name], justify="right")
    for name in names:
        matrix.add_row(shown[name], *(str(evaluation.confusion[name].get(other, 0) or ".") for other in names))
    ui.table(matrix)
