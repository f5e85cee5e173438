"""``clipsort sort``: photos into label folders; ``sort --plan PLAN.json`` carries out a plan saved from a
review page, exactly; ``--open`` opens the review page."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from clipsort.cli.app import app
from clipsort.cli.options import (
    ClipsortCommand,
    DryRunOpt,
    ExplainOpt,
    OpenOpt,
    ReviewOpt,
    RunSettings,
    ThresholdOpt,
    location_argument,
    run_options,
)
from clipsort.cli.runner import open_review, required, run_command
from clipsort.errors import UsageError


class Mode(str, Enum):
    move = "move"
    copy = "copy"
    link = "link"


class Undated(str, Enum):
    unknown = "unknown"
    mtime = "mtime"


MarginOpt = Annotated[
    float | None,
    typer.Option(
        "--margin",
        min=0.0,
        help="How far the best label must lead the runner-up, in logits: 1.0 asks 0.73 of it over a runner-up "
        "at 0.50, 0.50 over 0.27 (docs/scoring.md). [default: the label file's margin, else 1.0]",
        show_default=False,
    ),
]


@app.command(cls=ClipsortCommand)
@run_options(omit=("include_managed",))
def sort(
    paths: Annotated[
        list[Any] | None,
        typer.Argument(
            help="Photos and folders (walked recursively). Not with --plan.",
            show_default=False,
            metavar="PATH",
            parser=location_argument,
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            "-l",
            help="Label file: labels.txt (one label per line), labels.toml, or a file made by 'clipsort learn'. "
            "Not with --plan.",
            show_default=False,
        ),
    ] = None,
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
    undated: Annotated[
        Undated,
        typer.Option(
            "--undated",
            help="Photos with no date taken, in a --pattern with a date: 'unknown' folders, or 'mtime': the "
            "file's time (when it was copied, often), marked as a guess in --json and the plan.",
        ),
    ] = Undated.unknown,
    explain: ExplainOpt = False,
    review: ReviewOpt = None,
    open_page: OpenOpt = False,
    plan: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            help="Carry out this plan (saved from a --review page) exactly, and nothing else: it names its "
            "photos, folders and settings. Checked whole before anything moves.",
            metavar="PLAN.json",
            show_default=False,
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    common: RunSettings = RunSettings(),
) -> None:
    """Move photos into a folder per label; undo puts them back.

    Each photo goes to DEST/<its best label>/, sidecars and RAW+JPEG partners with it.

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

      clipsort sort ~/Inbox -l labels.txt -d ~/Sorted --dry-run --review plan.html --open

      clipsort sort --plan plan.plan.json
    """
    if plan is not None:
        return run_plan_command(plan, dry_run, common, given_with_plan(locals()))
    if not paths or labels is None:
        raise typer.BadParameter("PATH and --labels are needed (or --plan PLAN.json)")
    from clipsort.commands.sorting import SortOptions, check_sort_options, run_sort, sort_reviewed
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
        pattern=parse_pattern(pattern, undated.value) if pattern is not None else None,
    )
    roots = list(paths)

    def work(label_set, embedder, run, ui):  # noqa: ANN001, ANN202
        events = ui.explaining(explain)
        if review is None:
            return run_sort(roots, required(label_set), embedder, options, run, events)
        return sort_reviewed(roots, required(label_set), embedder, options, run, events, review)

    run_command(
        "sort",
        common,
        roots,
        labels,
        work,
        check=lambda label_set: check_sort_options(roots, label_set, options, review),
        after=lambda report: open_review(report, open_page),
    )


#: sort's own options, with the values that mean "not given": --plan brings its own.
_SORT_DEFAULTS: dict[str, tuple[str, object]] = {
    "paths": ("PATH", None),
    "labels": ("--labels", None),
    "dest": ("--dest", None),
    "threshold": ("--threshold", None),
    "margin": ("--margin", None),
    "unsorted_name": ("--unsorted-name", "_unsorted"),
    "leave_unsorted": ("--leave-unsorted", False),
    "dedupe": ("--dedupe", False),
    "pattern": ("--pattern", None),
    "undated": ("--undated", "unknown"),
    "explain": ("--explain", False),
    "review": ("--review", None),
    "open_page": ("--open", False),
}


def given_with_plan(arguments: Mapping[str, Any]) -> list[str]:
    """The options given beside --plan that it would ignore (it carries its own)."""
    given = [
        flag
        for name, (flag, default) in _SORT_DEFAULTS.items()
        if getattr(arguments.get(name, default), "value", arguments.get(name, default)) != default
    ]
    mode = arguments.get("mode")
    if mode is not None and getattr(mode, "value", mode) != "move":
        given.append("--mode")
    return given


def run_plan_command(plan_file: Path, dry_run: bool, common: RunSettings, given: list[str]) -> None:
    from clipsort.commands.apply_plan import apply_plan
    from clipsort.console import Ui
    from clipsort.writes.sort_plan import read_plan

    if given:
        raise UsageError(
            f"--plan carries its own photos, folders and settings: drop {', '.join(given)} "
            "(to change a plan, correct it on its review page, or sort again with --review)"
        )
    ui = Ui(quiet=common.quiet, json_lines=common.json_out)
    with contextlib.ExitStack() as stack:
        if common.log is not None:
            stack.enter_context(ui.logging_to(common.log, ["clipsort", "sort", "--plan", str(plan_file)]))
        plan = read_plan(plan_file)
        roots = ", ".join(map(str, plan.roots))
        ui.info(f"plan {plan_file}: {len(plan.photos)} photos from {roots} to {plan.dest}")
        try:
            report = apply_plan(plan, str(plan_file), dry_run, ui)
        except KeyboardInterrupt:
            ui.stop()
            ui.error("interrupted; files already moved stay as they are ('clipsort undo' puts them back)")
            raise typer.Exit(130) from None
        finally:
            ui.stop()
        ui.summary(report)
    if report.exit_code:
        raise typer.Exit(int(report.exit_code))
