"""``clipsort cache info|prune|clear``."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from clipsort.cli.app import cache_app
from clipsort.cli.options import CacheOpt, ClipsortCommand, NoWaitOpt
from clipsort.errors import ExitCode


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
    """Drop the vectors of files that no longer exist.

    Models left with no photo's vector are dropped too.

    Example:

      clipsort cache prune
    """
    from clipsort import settings
    from clipsort.render import printable
    from clipsort.store.cache import EmbeddingCache
    from clipsort.store.cache_lock import CacheLock

    path = settings.cache_file(cache)
    warn = lambda m: typer.echo(f"warning: {m}", err=True)  # noqa: E731
    with CacheLock(path, wait=not no_wait, on_wait=warn), EmbeddingCache(path, warn=warn) as db:
        dropped = db.prune()
        models = db.prune_models()
        typer.echo(f"dropped {dropped} entries of missing files; {db.image_count()} left", err=True)
        if models:
            names = ", ".join(printable(name) for name in models)
            typer.echo(f"dropped {len(models)} model(s) with no photo's vector: {names}", err=True)


@cache_app.command("clear", cls=ClipsortCommand)
def cache_clear(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only the models whose name or identity contains this.")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask first (at a terminal, clear asks; scripts are not asked).")
    ] = False,
    cache: CacheOpt = None,
    no_wait: NoWaitOpt = False,
) -> None:
    """Drop cached vectors: all of them, or one model's. Asks first.

    At a terminal it asks (--yes does not); scripts are not asked.

    The next run decodes and embeds those photos again (minutes to hours on a large library).

    Examples:

      clipsort cache clear

      clipsort cache clear --model ViT-L-14 --yes
    """
    import sys

    from clipsort import settings
    from clipsort.render import printable
    from clipsort.store.cache import EmbeddingCache
    from clipsort.store.cache_lock import CacheLock

    path = settings.cache_file(cache)
    if not path.exists():
        typer.echo(f"the cache {path} is empty: nothing to clear", err=True)
        return
    warn = lambda m: typer.echo(f"warning: {m}", err=True)  # noqa: E731
    with EmbeddingCache(path, warn=warn) as db:  # asked before the lock: a run waits on no one's answer
        doomed = db.matching(model)
    if not doomed:
        typer.echo(f"no cached model's name or identity contains {printable(model or '')!r}: nothing dropped", err=True)
        return
    if not yes and sys.stdin.isatty():
        photos = sum(info.images for info in doomed)
        names = ", ".join(printable(info.name) for info in doomed)
        question = f"drop the vectors of {photos} photos of {len(doomed)} model(s) ({names}) from {path}?"
        if not typer.confirm(question, default=False, err=True):
            typer.echo("nothing dropped", err=True)
            raise typer.Exit(int(ExitCode.OK))
    with CacheLock(path, wait=not no_wait, on_wait=warn), EmbeddingCache(path, warn=warn) as db:
        dropped = db.clear(model)
        typer.echo(f"dropped the vectors of {dropped} model(s)", err=True)
