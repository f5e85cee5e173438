"""``clipsort tag``: keywords in sidecars, or inside the photos (``--into``)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from clipsort.cli.app import app
from clipsort.cli.options import (
    ClipsortCommand,
    DryRunOpt,
    ExplainOpt,
    LabelsOpt,
    OpenOpt,
    PathsArg,
    ReviewOpt,
    RunSettings,
    ThresholdOpt,
    run_options,
)
from clipsort.cli.runner import check_review, open_review, required, run_command


class SidecarFormat(str, Enum):
    xmp = "xmp"
    json = "json"


class XmpName(str, Enum):
    full = "full"
    stem = "stem"


class Into(str, Enum):
    sidecar = "sidecar"
    photo = "photo"
    both = "both"


class TagMode(str, Enum):
    replace = "replace"  # type: ignore[assignment]
    append = "append"


@app.command(cls=ClipsortCommand)
@run_options(omit=("include_managed",))
def tag(
    paths: PathsArg,
    labels: LabelsOpt,
    threshold: ThresholdOpt = None,
    top_k: Annotated[
        int | None,
        typer.Option(
            "--top-k",
            "-k",
            min=1,
            help="Keep at most this many labels per photo. [default: no limit]",
            show_default=False,
        ),
    ] = None,
    sidecar: Annotated[
        SidecarFormat,
        typer.Option(
            "--sidecar", help="xmp: keywords for photo managers; json: photo.jpg.clipsort.json with every score."
        ),
    ] = SidecarFormat.xmp,
    xmp_name: Annotated[
        XmpName,
        typer.Option("--xmp-name", help="full: photo.jpg.xmp (digiKam, darktable); stem: photo.xmp (Lightroom)."),
    ] = XmpName.full,
    tag_root: Annotated[
        str | None,
        typer.Option(
            "--tag-root",
            help="Parent of hierarchical keywords (clipsort|animals|dog); '' for none. "
            "[default: the label file's tag_root, else clipsort]",
            show_default=False,
        ),
    ] = None,
    mode: Annotated[
        TagMode,
        typer.Option(
            "--mode",
            help="replace: clipsort's earlier keywords give way to this run's; append: add this run's to them. "
            "Keywords clipsort did not write are always kept.",
        ),
    ] = TagMode.replace,
    into: Annotated[
        Into | None,
        typer.Option(
            "--into",
            help="Keywords in sidecars, inside the photos (needs exiftool; RAW files get sidecars) or both. "
            "[default: the config file's into, else sidecar]",
            show_default=False,
        ),
    ] = None,
    into_dng: Annotated[
        bool,
        typer.Option("--into-dng", help="With --into photo or both: write inside DNG files too (never other RAW)."),
    ] = False,
    only_untagged: Annotated[
        bool,
        typer.Option("--only-untagged", help="Skip photos whose sidecar already holds clipsort keywords."),
    ] = False,
    explain: ExplainOpt = False,
    review: ReviewOpt = None,
    open_page: OpenOpt = False,
    dry_run: DryRunOpt = False,
    common: RunSettings = RunSettings(),
) -> None:
    """Write each photo's labels as keywords, beside or in it.

    Keywords go to an XMP (or JSON) sidecar, or with --into photo into the photo itself.

    Each label is judged on its own (multi-label): a photo of a red circle gets
    both "red" and "circle", and adding a label to the file never changes
    whether another is kept. See docs/scoring.md for the scale and thresholds.

    Sidecars are merged: keywords of other tools are kept, and a re-run replaces
    only clipsort's own keywords. Vectors are cached: a re-run over unchanged
    photos, or with a new label file, decodes nothing; a sidecar whose keywords
    and file are unchanged since clipsort wrote it is not even read.

    Examples:

      clipsort tag ~/Photos --labels labels.txt

      clipsort tag photo.jpg -l labels.toml --explain

      clipsort tag ~/Raw -l labels.txt --xmp-name stem --threshold 0.6 --json

      clipsort tag ~/Photos -l more-labels.txt --mode append --only-untagged

      clipsort tag ~/Photos -l labels.txt --into photo

      clipsort tag ~/Photos -l labels.txt --dry-run --review tags.html --open
    """
    from clipsort.commands.tagging import TagOptions, run_tag, tag_root_of
    from clipsort.settings import resolve_into

    options = TagOptions(
        threshold=threshold,
        top_k=top_k,
        sidecar=sidecar.value,
        xmp_name=xmp_name.value,
        tag_root=tag_root.strip().strip("|/") if tag_root is not None else None,
        dry_run=dry_run,
        mode=mode.value,
        only_untagged=only_untagged,
        into=resolve_into(into.value if into is not None else None),
        into_dng=into_dng,
    )

    def work(label_set, embedder, run, ui):  # noqa: ANN001, ANN202
        events = ui.explaining(explain)
        if review is None:
            return run_tag(paths, required(label_set), embedder, options, run, events)
        from clipsort.commands.review_run import ReviewRequest, reviewed_run, tag_with_review

        run = reviewed_run(run)
        return tag_with_review(
            ReviewRequest(review),
            required(label_set),
            embedder,
            events,
            lambda collecting: run_tag(paths, required(label_set), embedder, options, run, collecting),
            dry_run,
            run.workers or 2,
        )

    def check(label_set) -> None:  # noqa: ANN001
        tag_root_of(label_set, options)
        check_review(review)

    run_command("tag", common, paths, labels, work, check=check, after=lambda report: open_review(report, open_page))
