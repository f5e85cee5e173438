"""``clipsort show``: what clipsort knows of each photo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clipsort.cli.app import app
from clipsort.cli.options import ClipsortCommand, RunSettings, run_options
from clipsort.cli.runner import run_command


@app.command(cls=ClipsortCommand)
#: One photo at a time: no walk, no batches, no cluster (the options that do nothing here are not offered).
@run_options(
    omit=(
        "no_pairs", "quiet", "follow_links", "include_managed", "exclude", "engine", "address", "gpu_decode",
        "batch_size", "workers",
    )
)  # fmt: skip
def show(
    photos: Annotated[list[Path], typer.Argument(help="Photos to describe.", show_default=False)],
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels", "-l", help="Also score the photos against this label file and show what tag and sort decide."
        ),
    ] = None,
    common: RunSettings = RunSettings(),
) -> None:
    """Print what clipsort knows of each photo.

    Sidecar keywords (clipsort's and others'), date taken and where it came from, camera, GPS,
    the models whose vectors are cached, and with --labels every label's score and the
    decisions of tag and sort.

    Examples:

      clipsort show IMG_0001.JPG

      clipsort show *.HEIC --labels labels.toml

      clipsort show photo.jpg --json
    """
    from clipsort.commands.show import run_show
    from clipsort.render import json_text

    def work(label_set, embedder, run, ui):  # noqa: ANN001, ANN202
        report, described = run_show(photos, label_set, embedder, run, ui)
        ui.stop()
        for record in described:
            typer.echo(json_text(record) if common.json_out else _text(record))
        return report

    run_command("show", RunSettings(**{**common.__dict__, "quiet": True}), photos, labels, work)


def _keyword_lines(found: dict) -> list[str]:
    """One line per writer (clipsort, others): flat keywords, then the hierarchical ones."""
    lines = []
    for owner in ("clipsort", "others"):
        fields = found.get(owner) or {}
        words = list(dict.fromkeys(fields.get("subject", [])))
        tree = list(dict.fromkeys(fields.get("hierarchicalSubject", []) + fields.get("TagsList", [])))
        if words or tree:
            lines.append(f"    {owner:<9} {', '.join(words)}" + (f"  [{', '.join(tree)}]" if tree else ""))
    return lines


def _text(record: dict) -> str:
    lines = [str(record["path"])]
    readable = "readable" if record["readable"] else "not readable by this installation (see 'clipsort formats')"
    lines.append(f"  format   {record['format'] or 'unknown'} ({readable})")
    zone = record.get("taken_offset") or ""
    lines.append(f"  taken    {record['taken']}{zone} (from {record['taken_source']})")
    lines.append(f"  camera   {record['camera'] or 'unknown'}; GPS: {'yes' if record['gps'] else 'no'}")
    in_file = record["in_file"]
    keywords = _keyword_lines(in_file) + ([f"    IPTC      {', '.join(in_file['iptc'])}"] if in_file["iptc"] else [])
    lines.append("  in file  " + ("" if keywords else "no keywords"))
    lines += [f"    error     {in_file['error']}"] if "error" in in_file else keywords
    if not record["sidecars"]:
        lines.append("  sidecar  none")
    for sidecar in record["sidecars"]:
        lines.append(f"  sidecar  {sidecar['path']}")
        if "error" in sidecar:
            lines.append(f"    error     {sidecar['error']}")
            continue
        lines += _keyword_lines(sidecar)
    models = record["cached_models"]
    cached = ", ".join(m["model"] + ("" if m["current"] else " (stale: the file changed)") for m in models)
    lines.append(f"  cached   {cached or 'no vectors'}")
    if "scores" in record:
        ranked = sorted(record["scores"].items(), key=lambda kv: -kv[1])
        lines.append("  scores   " + ", ".join(f"{name} {score:.3f}" for name, score in ranked))
        lines.append(f"  tag      {', '.join(record['tag']) or '(no label)'}")
        lines.append(f"  sort     {record['sort'] or '(none of these)'}")
    if record.get("best_frames"):
        from clipsort.render import clock

        ranked = sorted(record["best_frames"].items(), key=lambda kv: -kv[1]["score"])
        frames = ", ".join(f"{name} at {clock(best['time'])} ({best['score']:.3f})" for name, best in ranked)
        lines.append(f"  frames   {frames}")
    return "\n".join(lines)
