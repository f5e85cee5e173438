"""The Typer application and its command groups; the command modules register on these."""

from __future__ import annotations

from typing import Annotated

import typer

from clipsort import __version__

app = typer.Typer(
    name="clipsort",
    help=(
        "Tag and sort photos with CLIP.\n\n"
        "Examples:\n\n"
        "  clipsort tag ~/Photos --labels labels.txt\n\n"
        "  clipsort sort ~/Inbox --labels labels.txt --dest ~/Sorted --dry-run\n\n"
        "  clipsort labels check labels.toml\n\n"
        "  clipsort learn ~/Examples -o mine.labels.json && clipsort eval ~/Checked --labels mine.labels.json\n\n"
        "Exit codes: 0 done, 1 error, 2 usage or label-file error, 3 finished but some files failed."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
labels_app = typer.Typer(help="Work with label files.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")
cache_app = typer.Typer(help="Inspect and tidy the embedding cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"clipsort {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    pass
