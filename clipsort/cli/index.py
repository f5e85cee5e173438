"""``clipsort index``: fill the embedding cache."""

from __future__ import annotations

from clipsort.cli.app import app
from clipsort.cli.options import ClipsortCommand, PathsArg, RunSettings, run_options
from clipsort.cli.runner import run_command


@app.command(cls=ClipsortCommand)
@run_options(omit=("no_cache",))
def index(paths: PathsArg, common: RunSettings = RunSettings()) -> None:
    """Fill the embedding cache, without tagging or moving anything.

    Later tag and sort runs (with any label file) then decode nothing.

    Examples:

      clipsort index ~/Photos

      clipsort index ~/Photos --cache ~/Photos/.clipsort.sqlite3 --quiet
    """
    from clipsort.run.pipeline import run_index

    run_command("index", common, paths, None, lambda _labels, embedder, run, ui: run_index(paths, embedder, run, ui))
