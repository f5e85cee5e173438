"""``clipsort cache info|prune|clear``."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from clipsort.cli.app import cache_app
from clipsort.cli.options import CacheOpt, ClipsortCommand, NoWaitOpt


@cache_app.command("info", cls=ClipsortCommand)
def cache_info(cache: CacheOpt = None) -> None:
    """Show where the embedding cache is, its size, and the models and vectors it holds.

    Example:

      clipsort cache info
    """
    from clipsort import settings
    from clipsort.safe_files import human_size
    from clipsort.store.cache import EmbeddingCache

    path = settings.cache_file(cache)
    typer.echo(f"cache   {path}")
    if not path.exists():
        typer.echo("(empty: no run has used it yet)")
        return
    with EmbeddingCache(path, warn=lambda m: typer.echo(f"warning: {m}", err=True)) as db:
        typer.echo(f"size    {human_size(db.size_on_disk())}")
        for info in db.models():
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.used_ns / 1e9))
            typer.echo(f"model   {info.name}: {info.images} photos, {info.texts} prompts, last used {when}")
            typer.echo(f"        identity {info.identity}")


@cache_app.command("prune", cls=ClipsortCommand)
def cache_prune(cache: CacheOpt = None, no_wait: NoWaitOpt = False) -> None:
    """Drop the cached vectors of files that no longer exist.

    Example:

      clipsort cache prune
    """
    from clipsort import settings
    from clipsort.store.cache import EmbeddingCache
    from clipsort.store.cache_lock import CacheLock

    path = settings.cache_file(cache)
    warn = lambda m: typer.echo(f"warning: {m}", err=True)  # noqa: E731
    with CacheLock(path, wait=not no_wait, on_wait=warn), EmbeddingCache(path, warn=warn) as db:
        dropped = db.prune()
        typer.echo(f"dropped {dropped} entries of missing files; {db.image_count()} left", err=True)


@cache_app.command("clear", cls=ClipsortCommand)
def cache_clear(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only the models whose name or identity contains this.")
    ] = None,
    cache: CacheOpt = None,
    no_wait: NoWaitOpt = False,
) -> None:
    """Drop cached vectors: all of them, or those of one model.

    Examples:

      clipsort cache clear

      clipsort cache clear --model ViT-L-14
    """
    from clipsort import settings
    from clipsort.store.cache import EmbeddingCache
    from clipsort.store.cache_lock import CacheLock

    path = settings.cache_file(cache)
    warn = lambda m: typer.echo(f"warning: {m}", err=True)  # noqa: E731
    with CacheLock(path, wait=not no_wait, on_wait=warn), EmbeddingCache(path, warn=warn) as db:
        dropped = db.clear(model)
        typer.echo(f"dropped the vectors of {dropped} model(s)", err=True)
