"""``clipsort search`` and ``clipsort dupes``: find photos in the cache by description, by example, or as copies."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from clipsort.cli.app import app
from clipsort.cli.options import ClipsortCommand, OpenOpt, ReviewOpt, RunSettings, run_options
from clipsort.cli.runner import check_review, open_review, run_command

TopOpt = Annotated[int, typer.Option("--top", "-k", min=0, help="How many photos to print; 0 for all.")]
PathsOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--paths",
        help="Print bare paths, one a line (for scripts). A name holding a line break is not printed but named "
        "as a failure (exit 3): use -0 for such names.",
    ),
]
NulOpt = Annotated[
    bool, typer.Option("-0", "--null", help="Print paths separated by NUL characters (for xargs -0), nothing else.")
]
NoIndexOpt = Annotated[
    bool,
    typer.Option(
        "--no-index", help="Search only what the cache holds: do not walk the folders or embed new photos first."
    ),
]


LibraryArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Folders and photos to look through. [default: the current folder]", show_default=False, metavar="PATH"
    ),
]


def _roots(paths: list[Path] | None) -> list[Path]:
    return list(paths) if paths else [Path(".")]


def _emit_paths(ui, paths, null: bool, report) -> None:  # noqa: ANN001
    """One path a line (``--paths``), or NUL-separated (``-0``). A name holding a line break or
    another control character would read as two paths, or as none, to the next program: it is not
    printed by ``--paths`` but named as a failure (exit 3), and ``-0`` prints it."""
    from clipsort.errors import FileFailure

    for path in paths:
        if null:
            ui.out_bytes(os.fsencode(path) + b"\0")
        elif not str(path).isprintable() and any(ch < " " or ch == "\x7f" for ch in str(path)):
            failure = FileFailure(path, "its name holds a line break or control character: not printed; -0 prints it")
            report.fail(failure)
            ui.failed(failure)
        else:
            ui.out(f"{path}\n")


@app.command(cls=ClipsortCommand)
@run_options(omit=("no_cache",), helps={"json_out": "One JSON object per hit on stdout, best first."})
def search(
    query: Annotated[
        str | None,
        typer.Argument(
            help="What to find, in words ('a dog on a beach'); append :W to weigh it (beach:2).",
            show_default=False,
            metavar="QUERY",
        ),
    ] = None,
    paths: LibraryArg = None,
    like: Annotated[
        list[str] | None,
        typer.Option(
            "--like",
            metavar="PHOTO",
            help="Find photos like this one (in the library or not); repeatable; PHOTO:W weighs it.",
        ),
    ] = None,
    minus: Annotated[
        list[str] | None,
        typer.Option("--minus", metavar="TEXT", help="Push away from this description; repeatable; TEXT:W weighs it."),
    ] = None,
    minus_like: Annotated[
        list[str] | None,
        typer.Option("--minus-like", metavar="PHOTO", help="Push away from photos like this one; repeatable."),
    ] = None,
    top: TopOpt = 10,
    min_score: Annotated[
        float | None,
        typer.Option("--min-score", help="Print only photos whose score (a cosine, see docs/search.md) reaches this."),
    ] = None,
    paths_only: PathsOnlyOpt = False,
    null: NulOpt = False,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Embed the description as given, not in the label templates ('a photo of a ...')."),
    ] = False,
    no_index: NoIndexOpt = False,
    review: ReviewOpt = None,
    open_page: OpenOpt = False,
    common: RunSettings = RunSettings(),
) -> None:
    """Rank photos by a description, example photos, or both.

    Prints "score  path" lines, best first. Photos the cache lacks are indexed first (with
    progress). The score is the cosine between a photo's vector and the query's: see
    docs/search.md for how descriptions, examples and weights combine. A QUERY that names a
    folder, with no PATH after it, is the PATH (search --like photo.jpg ~/Photos).

    Examples:

      clipsort search "a dog on a beach" ~/Photos

      clipsort search "sunset" --top 50 --paths | xargs -d '\\n' cp -t ~/Sunsets

      clipsort search --like ~/Photos/IMG_0001.jpg ~/Photos

      clipsort search "beach:2" --minus "people" --like holiday.jpg -0 | xargs -0 ls -l

      clipsort search "red car" --json --no-index

      clipsort search "birthday cake" ~/Photos --top 100 --review cake.html --open
    """
    from clipsort.commands.search import SearchOptions, parse_query, run_search

    roots = _roots(paths)
    if query is not None and not paths and os.path.isdir(query):
        roots, query = [Path(query)], None  # `search --like photo.jpg FOLDER`: the folder is a PATH
    terms = parse_query(query, like or (), minus or (), minus_like or ())

    def work(_labels, embedder, run, ui):  # noqa: ANN001, ANN202
        if review is None:
            options = SearchOptions(top=top, min_score=min_score, raw=raw, index=not no_index, run=run)
            report, hits = run_search(roots, terms, embedder, options, ui)
        else:
            from clipsort.commands.review_run import ReviewRequest, reviewed_run, search_with_review

            options = SearchOptions(top, min_score, raw, not no_index, reviewed_run(run))
            report, hits = search_with_review(
                ReviewRequest(review),
                embedder,
                ui,
                " ".join(term.describe() for term in terms),
                lambda events: run_search(roots, terms, embedder, options, events),
                run.workers or 2,
            )
        ui.stop()
        if paths_only or null:
            _emit_paths(ui, [hit.path for hit in hits], null, report)
        elif common.json_out:
            from clipsort.render import json_text

            for rank, hit in enumerate(hits, 1):
                row: dict[str, object] = {"rank": rank, "score": hit.score, "path": str(hit.path)}
                if hit.at is not None:
                    row["frame_time"] = round(hit.at, 3)
                ui.out(json_text(row, ascii_only=True) + "\n")
        else:
            from clipsort.render import clock, printable

            for hit in hits:
                frame = f"  (best frame at {clock(hit.at)})" if hit.at is not None else ""
                ui.out(f"{hit.score:.4f}  {printable(str(hit.path))}{frame}\n")
        if not hits and min_score is not None:
            ui.info(f"no photo scored {min_score:g} or more")
        return report

    check_review(review)
    run_command("search", common, roots, None, work, after=lambda report: open_review(report, open_page))


@app.command(cls=ClipsortCommand)
@run_options(omit=("no_cache",), helps={"json_out": "One JSON object per group on stdout."})
def dupes(
    paths: LibraryArg = None,
    similar: Annotated[
        bool,
        typer.Option("--similar", help="Also group photos of the same scene (bursts, an HDR and its plain shot)."),
    ] = False,
    min_similarity: Annotated[
        float | None,
        typer.Option(
            "--min-similarity",
            min=0.0,
            max=1.0,
            help="With --similar: the CLIP cosine that makes two photos the same scene. [default: 0.92]",
            show_default=False,
        ),
    ] = None,
    paths_only: Annotated[
        bool,
        typer.Option(
            "--paths",
            help="Print only the photos that are not the suggested keeper, one a line (a name holding a line "
            "break is named as a failure instead: use -0 for such names).",
        ),
    ] = False,
    null: NulOpt = False,
    no_index: NoIndexOpt = False,
    review: ReviewOpt = None,
    open_page: OpenOpt = False,
    common: RunSettings = RunSettings(),
) -> None:
    """Group copies of the same picture; suggest which to keep.

    Deletes nothing.

    Exact copies, and resized, re-encoded, re-oriented or retouched copies, are found by
    CLIP and confirmed by the pictures themselves (docs/search.md); --similar widens the
    groups to photos of the same scene. The keeper is the largest picture, then the oldest.

    Examples:

      clipsort dupes ~/Photos

      clipsort dupes ~/Photos --similar --json

      clipsort dupes ~/Photos --paths > maybe-delete.txt

      clipsort dupes ~/Photos --similar --review dupes.html --open
    """
    from clipsort.commands.dupes import SIMILAR_COSINE, DupesOptions, run_dupes

    roots = _roots(paths)
    threshold = (min_similarity if min_similarity is not None else SIMILAR_COSINE) if similar else None

    def work(_labels, embedder, run, ui):  # noqa: ANN001, ANN202
        if review is None:
            report, groups = run_dupes(roots, embedder, DupesOptions(threshold, not no_index, run), ui)
        else:
            from clipsort.commands.review_run import ReviewRequest, dupes_with_review, reviewed_run

            options = DupesOptions(threshold, not no_index, reviewed_run(run))
            report, groups = dupes_with_review(
                ReviewRequest(review),
                embedder,
                ui,
                lambda events, on_picture: run_dupes(roots, embedder, options, events, on_picture),
                run.workers or 2,
            )
        ui.stop()
        if paths_only or null:
            _emit_paths(ui, [m.path for g in groups for m in g.members[1:]], null, report)
        elif common.json_out:
            from clipsort.render import json_text

            for number, group in enumerate(groups, 1):
                ui.out(json_text(group.to_json(number)) + "\n")
        else:
            for group in groups:
                ui.out(_group_text(group) + "\n")
        return report

    check_review(review)
    run_command("dupes", common, roots, None, work, after=lambda report: open_review(report, open_page))


def _group_text(group) -> str:  # noqa: ANN001
    from clipsort.render import printable
    from clipsort.safe_files import human_size

    what = "copies of one picture" if group.kind == "copies" else "photos of one scene"
    lines = [printable(f"{what}: {len(group.members)} photos; keep {group.keeper.path}")]
    for m in group.members:
        size = f"{m.width}x{m.height}" if m.width else "?"
        taken = m.taken.strftime("%Y-%m-%d") if m.taken else "-"
        how = "" if m.relation in ("keep", "exact") else f"  (similarity {m.similarity:.3f}"
        if how and m.distance is not None:
            how += f", hash distance {m.distance}"
        how += ")" if how else ""
        lines.append(printable(f"  {m.relation:<7} {size:>11}  {human_size(m.bytes):>9}  {taken}  {m.path}{how}"))
    return "\n".join(lines) + "\n"
