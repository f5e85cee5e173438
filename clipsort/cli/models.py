"""``clipsort models``, ``clipsort formats`` and ``clipsort paths``: what is installed where."""

from __future__ import annotations

from typing import Annotated

import typer

from clipsort.cli.app import app
from clipsort.cli.options import ClipsortCommand
from clipsort.cli.runner import setup_quiet_libraries


@app.command(cls=ClipsortCommand)
def models(
    cached: Annotated[bool, typer.Option("--cached", help="Only models whose weights are cached here.")] = False,
) -> None:
    """List open_clip models and their tags; cached ones marked '*'.

    Examples:

      clipsort models

      clipsort models --cached
    """
    from clipsort.model.model_files import cached_folders, list_models
    from clipsort.settings import DEFAULT_MODEL, DEFAULT_PRETRAINED, cache_dir

    setup_quiet_libraries()
    rows = list_models()
    width = max(len(r.architecture) for r in rows)
    shown = 0
    for row in rows:
        if cached and not row.cached_tags:
            continue
        tags = [
            t + ("*" if t in row.cached_tags else "") + (" (default)" if default(row.architecture, t) else "")
            for t in row.tags
            if not cached or t in row.cached_tags
        ]
        typer.echo(f"{row.architecture.ljust(width)}  {', '.join(tags) if tags else '(no pretrained tags)'}")
        shown += 1
    folders = cached_folders()
    if folders:
        typer.echo("\ncached model folders:")
        for folder in folders:
            typer.echo(f"  {folder}")
    elif cached and not shown:
        typer.echo(
            f"no model is cached in {cache_dir()} yet: a model's first run downloads it "
            f"(the default: {DEFAULT_MODEL} {DEFAULT_PRETRAINED})",
            err=True,
        )


def default(architecture: str, tag: str) -> bool:
    """Whether this is the model clipsort uses when none is asked for."""
    from clipsort.settings import DEFAULT_MODEL, DEFAULT_PRETRAINED

    return architecture == DEFAULT_MODEL and tag == DEFAULT_PRETRAINED


@app.command(cls=ClipsortCommand)
def paths() -> None:
    """Print where clipsort keeps its cache, models and config."""
    from clipsort import settings

    config = settings.config_file()
    rows = [
        ("cache", settings.cache_dir(), "[CLIPSORT_CACHE_DIR]"),
        ("models", settings.models_dir(), "model folders in the local-dir layout, found by name (offline use)"),
        ("downloads", settings.hf_cache_dir(), "weights downloaded by open_clip / Hugging Face"),
        ("config", config, "[CLIPSORT_CONFIG_DIR]" + ("" if config.is_file() else " (not present)")),
    ]
    for name, path, note in rows:
        typer.echo(f"{name:<10} {path}  {note}")


@app.command(cls=ClipsortCommand)
def formats(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per format.")] = False,
) -> None:
    """List the photo and video formats this installation reads.

    And which it tags inside the file (tag --into photo), and what the rest need.

    Files of a format marked 'no' are found, counted and named in every run's summary,
    never skipped silently.

    Examples:

      clipsort formats

      clipsort formats --json
    """
    import json

    from clipsort.photos.formats import status
    from clipsort.writes.in_photo import in_file_support

    rows = status()
    inside = in_file_support()
    for row in rows:
        row["tags_inside"] = not inside[str(row["format"])]
        row["tags_inside_note"] = inside[str(row["format"])]
    if json_out:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    width = max(len(str(r["format"])) for r in rows)
    for row in rows:
        readable = "yes" if row["readable"] else "no "
        extensions = " ".join(map(str, row["extensions"]))  # type: ignore[call-overload]
        line = f"{str(row['format']).ljust(width)}  {readable}  {row['reader']}  ({extensions})"
        if not row["readable"]:
            line += f"  -> {row['install']}"
        typer.echo(line)
        typer.echo(" " * (width + 2) + f"tag --into photo: {row['tags_inside_note'] or 'inside the file'}")
