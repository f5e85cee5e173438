"""``clipsort sort``: photos into label folders."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from clipsort.cli.app import app
from clipsort.cli.options import (
    ClipsortCommand,
    DryRunOpt,
    ExplainOpt,
    LabelsOpt,
    PathsArg,
    RunSettings,
    ThresholdOpt,
    run_options,
)
from clipsort.cli.runner import required, run_command


class Mode(str, Enum):
    move = "move"
    copy = "copy"
    link = "link"


MarginOpt = Annotated[
    float | None,
    typer.Option(
        "--margin",
        min=0.0,
        help="The best label must lead the runner-up by this many logits (1.0: 2.7 times as likely) "
        "to be sorted to. [default: the label file's margin, else 1.0]",
        show_default=False,
    ),
]


@app.command(cls=ClipsortCommand)
@run_options(omit=("include_managed",))
def sort(
    paths: PathsArg,
    labels: LabelsOpt,
    dest: Annotated[
        Path | None,
        typer.Option("--dest", "-d", help="Where label folders go. [default: the folder sorted]", show_default=False),
    ] = None,
    threshold: ThresholdOpt = None,
    margin: MarginOpt = None,
    mode: Annotated[Mode, typer.Option("--mode", help="move, copy, or hard-link photos into place.")] = Mode.move,
    unsorted_name: Annotated[
        str, typer.Option("--unsorted-name", help="Folder for photos that fit none of the labels.")
    ] = "_unsorted",
    leave_unsorted: Annotated[
        bool, typer.Option("--leave-unsorted", help="Leave photos that fit none of the labels where they are.")
    ] = False,
    dedupe: Annotated[
        bool,
        typer.Option("--dedupe", help="Remove a photo whose identical copy already has its name at the destination."),
    ] = False,
    pattern: Annotated[
        str | None,
        typer.Option(
            "--pattern",
            "-p",
            help="Folders under DEST from {label} {year} {month} {day} {camera} {ext}; the date is when the "
            "photo was taken (EXIF), a missing field is 'unknown'. [default: {label}]",
            show_default=False,
        ),
    ] = None,
    explain: ExplainOpt = False,
    dry_run: DryRunOpt = False,
    common: RunSettings = RunSettings(),
) -> None:
    """Move each photo into DEST/<its best label>/, sidecars and RAW+JPEG partners with it.

    The best label is used only if it passes its own threshold and leads the
    runner-up by --margin; otherwise the photo fits "none of these" and goes to
    DEST/_unsorted/ (or stays put with --leave-unsorted). Never overwrites: a
    name clash gets a numbered suffix (photo_1.jpg). Photos already in their
    label folder are not touched. Every run is journaled: 'clipsort undo' puts
    everything back.

    Examples:

      clipsort sort ~/Inbox --labels labels.txt --dest ~/Sorted --dry-run

      clipsort sort ~/Inbox -l labels.toml -d ~/Sorted --mode copy --explain

      clipsort sort ~/Inbox -l mine.labels.json -d ~/Sorted --leave-unsorted

      clipsort sort ~/Inbox -l labels.txt -d ~/Sorted --pattern "{label}/{year}/{month}"
    """
    from clipsort.commands.sorting import SortOptions, check_sort_options, run_sort
    from clipsort.writes.pattern import parse_pattern

    options = SortOptions(
        dest=dest,
        threshold=threshold,
        margin=margin,
        mode=mode.value,
        unsorted=unsorted_name,
        leave_unsorted=leave_unsorted,
        dedupe=dedupe,
        dry_run=dry_run,
        pattern=parse_pattern(pattern) if pattern is not None else None,
    )
    run_command(
        "sort",
        common,
        paths,
        labels,
        lambda label_set, embedder, run, ui: run_sort(
            paths, required(label_set), embedder, options, run, ui.explaining(explain)
        ),
        check=lambda label_set: check_sort_options(paths, label_set, options),
    )
