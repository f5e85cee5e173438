"""The ``clipsort`` command: parses options, calls the library, renders. No logic lives here.

torch and open_clip are imported only by commands that need a model, so
``clipsort --help`` answers at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clipsort import __version__
from clipsort.errors import ClipsortError, ExitCode

if TYPE_CHECKING:
    from clipsort.labels import LabelSet
    from clipsort.report import Report

app = typer.Typer(
    name="clipsort",
    help=(
        "Tag and sort photos with CLIP.\n\n"
        "Examples:\n\n"
        "  clipsort tag ~/Photos --labels labels.txt\n\n"
        "  clipsort sort ~/Inbox --labels labels.txt --dest ~/Sorted --dry-run\n\n"
        "  clipsort labels check labels.txt\n\n"
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


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    int8 = "int8"


class SidecarFormat(str, Enum):
    xmp = "xmp"
    json = "json"


class XmpName(str, Enum):
    full = "full"
    stem = "stem"


class Mode(str, Enum):
    move = "move"
    copy = "copy"
    link = "link"


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


# Options shared by tag and sort.
PathsArg = Annotated[
    list[Path], typer.Argument(help="Photos and folders (walked recursively).", show_default=False, metavar="PATH")
]
LabelsOpt = Annotated[
    Path, typer.Option("--labels", "-l", help="Label file: one label per line (see 'clipsort labels check').")
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="open_clip architecture (ViT-B-32), hf-hub:ORG/REPO, local-dir:FOLDER or a model folder. "
        "[env CLIPSORT_MODEL; default ViT-B-32]",
        show_default=False,
    ),
]
PretrainedOpt = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        help="Pretrained tag or checkpoint file for an architecture; 'none' for random weights. "
        "[env CLIPSORT_PRETRAINED; default laion2b_s34b_b79k for ViT-B-32]",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    Device | None,
    typer.Option(
        "--device", help="Compute device; auto prefers cuda, then mps, then cpu. [default auto]", show_default=False
    ),
]
PrecisionOpt = Annotated[
    Precision | None,
    typer.Option(
        "--precision",
        help="auto: fp16 on GPUs, bf16 on CPUs with native bf16 (AVX-512 BF16, AMX), else fp32. "
        "int8 (CPUs, opt-in): image encoder quantized, on ONNX Runtime (pip install 'clipsort[int8]'). "
        "[env CLIPSORT_PRECISION; default auto]",
        show_default=False,
    ),
]
BatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch-size", min=1, help="Images per model call. [default: 32 on CPUs, 256 on GPUs]", show_default=False
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers", min=1, help="Decode threads. [default: from the CPU count, at most 4]", show_default=False
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="torch CPU threads for the model. [env CLIPSORT_THREADS; default: the CPU count]",
        show_default=False,
    ),
]
ThresholdOpt = Annotated[
    float,
    typer.Option("--threshold", "-t", min=0.0, max=1.0, help="Keep a label only if its probability is at least this."),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", "-n", help="Print the plan on stdout; change nothing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per photo on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")]


CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        help="Embedding cache file. [env CLIPSORT_CACHE; default: embeddings.sqlite3 in the cache dir]",
        show_default=False,
    ),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the embedding cache.")]
NoWaitOpt = Annotated[
    bool, typer.Option("--no-wait", help="If another run is using the cache, exit with code 75 instead of waiting.")
]
MaxPixelsOpt = Annotated[
    float | None,
    typer.Option(
        "--max-megapixels",
        min=1,
        help="Refuse images larger than this (decompression bombs). [default: from the available memory]",
        show_default=False,
    ),
]
LogOpt = Annotated[Path | None, typer.Option("--log", help="Append a plain-text log of the run to this file.")]


def _setup_quiet_libraries() -> None:
    # open_clip logs through the root logger and torch warns freely; users see our messages only.
    logging.getLogger().addHandler(logging.NullHandler())
    warnings.filterwarnings("ignore")


@dataclass
class _RunSettings:
    """The options tag, sort and index share."""

    model: str | None
    pretrained: str | None
    device: Device | None
    precision: Precision | None
    batch_size: int | None
    workers: int | None
    threads: int | None
    max_megapixels: float | None
    cache: Path | None
    no_cache: bool
    no_wait: bool
    log: Path | None
    json_out: bool
    quiet: bool


def _run(
    command: str,
    common: _RunSettings,
    paths: list[Path],
    labels_file: Path | None,
    work: Callable[..., Report],
    check: Callable[[LabelSet], object] | None = None,
) -> None:
    """Cheap checks first (they fail in milliseconds), then the cache lock, then the run.

    The model loads only if something must be embedded.
    """
    from clipsort import settings
    from clipsort.cache import CacheLock, EmbeddingCache
    from clipsort.console import Ui
    from clipsort.embed import Embedder
    from clipsort.labels import load_labels
    from clipsort.model import RANDOM, load_model, parse_spec
    from clipsort.pipeline import RunOptions, check_roots

    ui = Ui(quiet=common.quiet, json_lines=common.json_out)
    with contextlib.ExitStack() as stack:
        if common.log is not None:
            stack.enter_context(ui.logging_to(common.log, ["clipsort", command, *map(str, paths)]))
        choice = settings.resolve_model_choice(
            common.model,
            common.pretrained,
            common.device.value if common.device else None,
            common.batch_size,
            precision=common.precision.value if common.precision else None,
            threads=common.threads,
            workers=common.workers,
        )
        label_set = load_labels(labels_file) if labels_file is not None else None
        check_roots(paths)
        if check is not None and label_set is not None:
            check(label_set)
        spec = parse_spec(choice.model, choice.pretrained)
        cache = None
        if not common.no_cache:
            cache_path = settings.cache_file(common.cache)
            stack.enter_context(CacheLock(cache_path, wait=not common.no_wait, on_wait=ui.warn))
            cache = stack.enter_context(EmbeddingCache(cache_path, warn=ui.warn))
        _setup_quiet_libraries()

        def loader(spec, device, precision):  # noqa: ANN001, ANN202
            with ui.status(f"loading model {spec.display}..."):
                return load_model(spec, device, precision, choice.threads, on_step=ui.info)

        def loaded(model) -> None:  # noqa: ANN001
            ui.info(f"model {model.name} on {model.describe()}")

        embedder = Embedder(spec, choice.device, cache, choice.precision, on_load=loaded, loader=loader)
        if spec.pretrained == RANDOM:
            ui.warn("random weights (--pretrained none): the labels will be meaningless")
        run_options = RunOptions(choice.batch_size, choice.workers, common.max_megapixels)
        try:
            report = work(paths, label_set, embedder, run_options, ui)
        except KeyboardInterrupt:
            ui.stop()
            ui.error("interrupted; files already written or moved stay as they are")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        finally:
            ui.stop()
        ui.summary(report)
    if report.exit_code:
        raise typer.Exit(int(report.exit_code))


@app.command()
def tag(
    paths: PathsArg,
    labels: LabelsOpt,
    threshold: ThresholdOpt = 0.3,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Keep at most this many labels per photo.")] = 3,
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
        str, typer.Option("--tag-root", help="Parent of hierarchical keywords (clipsort|animals|dog); '' for none.")
    ] = "clipsort",
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    batch_size: BatchOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    max_megapixels: MaxPixelsOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    no_wait: NoWaitOpt = False,
    log: LogOpt = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write the labels that fit each photo to its XMP (or JSON) sidecar.

    Sidecars are merged: keywords of other tools are kept, and a re-run replaces
    only clipsort's own keywords. Vectors are cached: a re-run over unchanged
    photos, or with a new label file, decodes nothing.

    Examples:

      clipsort tag ~/Photos --labels labels.txt

      clipsort tag photo.jpg -l labels.txt --top-k 1 --json

      clipsort tag ~/Raw -l labels.txt --xmp-name stem --tag-root auto
    """
    from clipsort.pipeline import TagOptions, run_tag

    common = _RunSettings(
        model,
        pretrained,
        device,
        precision,
        batch_size,
        workers,
        threads,
        max_megapixels,
        cache,
        no_cache,
        no_wait,
        log,
        json_out,
        quiet,
    )
    options = TagOptions(
        threshold=threshold,
        top_k=top_k,
        sidecar=sidecar.value,
        xmp_name=xmp_name.value,
        tag_root=tag_root.strip().strip("|/"),
        dry_run=dry_run,
    )
    _run(
        "tag",
        common,
        paths,
        labels,
        lambda paths, label_set, embedder, run, ui: run_tag(paths, label_set, embedder, options, run, ui),
    )


@app.command()
def sort(
    paths: PathsArg,
    labels: LabelsOpt,
    dest: Annotated[
        Path | None,
        typer.Option("--dest", "-d", help="Where label folders go. [default: the folder sorted]", show_default=False),
    ] = None,
    threshold: ThresholdOpt = 0.3,
    mode: Annotated[Mode, typer.Option("--mode", help="move, copy, or hard-link photos into place.")] = Mode.move,
    unsorted_name: Annotated[
        str, typer.Option("--unsorted-name", help="Folder for photos with no label above the threshold.")
    ] = "_unsorted",
    leave_unsorted: Annotated[
        bool, typer.Option("--leave-unsorted", help="Leave photos with no label where they are.")
    ] = False,
    dedupe: Annotated[
        bool,
        typer.Option("--dedupe", help="Remove a photo whose identical copy already has its name at the destination."),
    ] = False,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    batch_size: BatchOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    max_megapixels: MaxPixelsOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    no_wait: NoWaitOpt = False,
    log: LogOpt = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Move each photo into DEST/<its best label>/, sidecars with it.

    Never overwrites: a name clash gets a numbered suffix (photo_1.jpg). A photo
    whose best label is below --threshold goes to DEST/_unsorted/ (or stays put
    with --leave-unsorted). Photos already in their label folder are not touched.
    Every run is journaled: 'clipsort undo' puts everything back.

    Examples:

      clipsort sort ~/Inbox --labels labels.txt --dest ~/Sorted --dry-run

      clipsort sort ~/Inbox -l labels.txt -d ~/Sorted --mode copy --threshold 0.6
    """
    from clipsort.pipeline import SortOptions, check_sort_options, run_sort

    common = _RunSettings(
        model,
        pretrained,
        device,
        precision,
        batch_size,
        workers,
        threads,
        max_megapixels,
        cache,
        no_cache,
        no_wait,
        log,
        json_out,
        quiet,
    )
    options = SortOptions(
        dest=dest,
        threshold=threshold,
        mode=mode.value,
        unsorted=unsorted_name,
        leave_unsorted=leave_unsorted,
        dedupe=dedupe,
        dry_run=dry_run,
    )
    _run(
        "sort",
        common,
        paths,
        labels,
        lambda paths, label_set, embedder, run, ui: run_sort(paths, label_set, embedder, options, run, ui),
        check=lambda label_set: check_sort_options(paths, label_set, options),
    )


@app.command()
def index(
    paths: PathsArg,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    batch_size: BatchOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    max_megapixels: MaxPixelsOpt = None,
    cache: CacheOpt = None,
    no_wait: NoWaitOpt = False,
    log: LogOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fill the embedding cache for the photos under PATH, without tagging or moving anything.

    Later tag and sort runs (with any label file) then decode nothing.

    Examples:

      clipsort index ~/Photos

      clipsort index ~/Photos --cache ~/Photos/.clipsort.sqlite3 --quiet
    """
    from clipsort.pipeline import run_index

    common = _RunSettings(
        model,
        pretrained,
        device,
        precision,
        batch_size,
        workers,
        threads,
        max_megapixels,
        cache,
        False,
        no_wait,
        log,
        json_out,
        quiet,
    )
    _run("index", common, paths, None, lambda paths, _labels, embedder, run, ui: run_index(paths, embedder, run, ui))


@cache_app.command("info")
def cache_info(cache: CacheOpt = None) -> None:
    """Show where the embedding cache is, its size, and the models and vectors it holds.

    Example:

      clipsort cache info
    """
    from clipsort import settings
    from clipsort.cache import EmbeddingCache

    path = settings.cache_file(cache)
    typer.echo(f"cache   {path}")
    if not path.exists():
        typer.echo("(empty: no run has used it yet)")
        return
    with EmbeddingCache(path, warn=lambda m: typer.echo(f"warning: {m}", err=True)) as db:
        typer.echo(f"size    {_human(db.size_on_disk())}")
        for info in db.models():
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.used_ns / 1e9))
            typer.echo(f"model   {info.name}: {info.images} photos, {info.texts} prompts, last used {when}")
            typer.echo(f"        identity {info.identity}")


@cache_app.command("prune")
def cache_prune(cache: CacheOpt = None, no_wait: NoWaitOpt = False) -> None:
    """Drop the cached vectors of files that no longer exist.

    Example:

      clipsort cache prune
    """
    from clipsort import settings
    from clipsort.cache import CacheLock, EmbeddingCache

    path = settings.cache_file(cache)
    warn = lambda m: typer.echo(f"warning: {m}", err=True)  # noqa: E731
    with CacheLock(path, wait=not no_wait, on_wait=warn), EmbeddingCache(path, warn=warn) as db:
        dropped = db.prune()
        typer.echo(f"dropped {dropped} entries of missing files; {db.image_count()} left", err=True)


@cache_app.command("clear")
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
    from clipsort.cache import CacheLock, EmbeddingCache

    path = settings.cache_file(cache)
    warn = lambda m: typer.echo(f"warning: {m}", err=True)  # noqa: E731
    with CacheLock(path, wait=not no_wait, on_wait=warn), EmbeddingCache(path, warn=warn) as db:
        dropped = db.clear(model)
        typer.echo(f"dropped the vectors of {dropped} model(s)", err=True)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@app.command()
def undo(
    journal: Annotated[
        str | None,
        typer.Argument(
            help="Journal file or name from 'clipsort history'. [default: the last sort run]", show_default=False
        ),
    ] = None,
) -> None:
    """Put back every photo (and its sidecars) that a sort run moved, copied or linked.

    Refuses, photo by photo, where a file has changed or its old name is taken
    since; run it again after fixing that. An interrupted run is completed or
    rolled back first.

    Examples:

      clipsort undo

      clipsort undo 20261122-173000-4242.jsonl
    """
    from clipsort.console import Ui
    from clipsort.journal import undo as undo_run

    ui = Ui()
    path, result = undo_run(journal, ui.warn)
    refused = result.refused or []
    for failure in refused:
        ui.error(f"{failure.path}: {failure.reason}")
    ui.info(f"undid {result.undone} photos of {path}" + (f"; {len(refused)} refused" if refused else ""))
    if refused:
        raise typer.Exit(int(ExitCode.PARTIAL))


@app.command()
def history() -> None:
    """List past sort runs, newest last, with their journals (for 'clipsort undo').

    Example:

      clipsort history
    """
    from clipsort.journal import history as past_runs

    runs = past_runs()
    if not runs:
        typer.echo("no sort runs yet", err=True)
    for view in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(view.started))
        counts = view.counts()
        state = "undone" if view.undone else ("complete" if view.ended else "running or interrupted")
        if view.interrupted and not view.undone:
            state = "interrupted, recovered"
        moved = counts.get("done", 0)
        typer.echo(
            f"{when}  {view.path.name}  {view.run.get('mode', 'move')} {moved} photos"
            f" -> {view.run.get('dest', '?')}  [{state}]"
        )


@app.command()
def models(
    cached: Annotated[bool, typer.Option("--cached", help="Only models whose weights are cached here.")] = False,
) -> None:
    """List open_clip architectures with their pretrained tags; cached ones are marked '*'.

    Examples:

      clipsort models

      clipsort models --cached
    """
    from clipsort.model import cached_folders, list_models

    _setup_quiet_libraries()
    rows = list_models()
    width = max(len(r.architecture) for r in rows)
    for row in rows:
        if cached and not row.cached_tags:
            continue
        tags = [t + ("*" if t in row.cached_tags else "") for t in row.tags if not cached or t in row.cached_tags]
        typer.echo(f"{row.architecture.ljust(width)}  {', '.join(tags) if tags else '(no pretrained tags)'}")
    folders = cached_folders()
    if folders:
        typer.echo("\ncached model folders:")
        for folder in folders:
            typer.echo(f"  {folder}")


@app.command()
def paths() -> None:
    """Print where clipsort keeps its cache, model folders and config file."""
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


@labels_app.command("check")
def labels_check(file: Annotated[Path, typer.Argument(help="The label file to check.")]) -> None:
    """Validate a label file and show each label's folder, keywords and prompts.

    Example:

      clipsort labels check labels.txt
    """
    from clipsort.labels import load_labels

    label_set = load_labels(file)
    for label in label_set.labels:
        source = "own prompts" if label.custom_prompts else "templates"
        typer.echo(f"{label.name}  (line {label.line}; folder {label.name}/; keyword {label.leaf}; {source})")
        for prompt in label.prompts:
            typer.echo(f"    {prompt}")
    typer.echo(f"{len(label_set)} labels OK", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app, maps clipsort errors to one-line messages and exit codes.

    Usage errors of the command line itself are Typer's (exit 2).
    """
    try:
        app(args=argv, prog_name="clipsort")
    except ClipsortError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        typer.echo("\ninterrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as exc:  # noqa: BLE001 - last resort: a message, not a traceback
        if os.environ.get("CLIPSORT_DEBUG"):
            raise
        typer.echo(
            f"error: internal error: {type(exc).__name__}: {exc} (set CLIPSORT_DEBUG=1 for the traceback)", err=True
        )
        sys.exit(int(ExitCode.ERROR))
