"""What every command that embeds photos does around its own work: settings, label file,
cache lock, the model's loader, rendering and the exit code."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from clipsort.cli.options import RunSettings
from clipsort.errors import ExitCode

if TYPE_CHECKING:
    from clipsort.console import Ui
    from clipsort.labels.label_set import LabelSet
    from clipsort.model.embed import Embedder
    from clipsort.run.events import RunOptions
    from clipsort.run.report import Report

#: A command's own work: (label set or None, embedder, run options, ui) -> report.
Work = Callable[["LabelSet | None", "Embedder", "RunOptions", "Ui"], "Report"]


def setup_quiet_libraries() -> None:
    # open_clip logs through the root logger and torch warns freely; users see our messages only.
    logging.getLogger().addHandler(logging.NullHandler())
    warnings.filterwarnings("ignore")


def required(label_set: LabelSet | None) -> LabelSet:
    """The label set of a command whose ``--labels`` Typer requires."""
    assert label_set is not None
    return label_set


def run_command(
    command: str,
    common: RunSettings,
    paths: Sequence[Path],
    labels_file: Path | None,
    work: Work,
    check: Callable[[LabelSet], object] | None = None,
    ui: Ui | None = None,
    after: Callable[[Report], None] | None = None,
) -> Report:
    """Cheap checks first (they fail in milliseconds), then the cache lock, then the run.

    The model loads only if something must be embedded. Renders the summary and exits
    with the report's code when it is not 0; returns the report otherwise.
    """
    from clipsort import settings
    from clipsort.console import Ui
    from clipsort.labels.label_file import load_labels
    from clipsort.model.embed import Embedder
    from clipsort.model.loading import load_model
    from clipsort.model.model_files import check_known, check_learned_labels
    from clipsort.model.model_spec import RANDOM, parse_spec
    from clipsort.run.events import RunOptions
    from clipsort.run.pipeline import check_roots, check_run_options
    from clipsort.store.cache import EmbeddingCache
    from clipsort.store.cache_lock import CacheLock

    ui = ui or Ui(quiet=common.quiet, json_lines=common.json_out)
    ui.verbose = common.verbose
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
        check_known(spec, given=choice.model)  # a model that does not exist: refused now, nothing cached
        if label_set is not None:
            check_learned_labels(label_set, spec)
        cache = None
        if not common.no_cache:
            cache_path = settings.cache_file(common.cache)
            stack.enter_context(CacheLock(cache_path, wait=not common.no_wait, on_wait=ui.warn))
            cache = stack.enter_context(EmbeddingCache(cache_path, warn=ui.warn))
        setup_quiet_libraries()

        def loader(spec, device, precision):  # noqa: ANN001, ANN202
            with ui.status(f"loading model {spec.display}...") as status:
                return load_model(spec, device, precision, choice.threads, on_step=stepper(ui, status))

        def loaded(model) -> None:  # noqa: ANN001
            ui.release(f"model {model.name} on {model.describe()}")  # then the photos' messages held meanwhile

        device, precision = choice.device, choice.precision
        if common.engine.value == "ray":
            from clipsort.run.engine_ray import driver_choice

            with ui.status("starting Ray..." if common.address is None else f"joining Ray at {common.address}..."):
                device, precision = driver_choice(common.address, choice.device, choice.precision)
        embedder = Embedder(spec, device, cache, precision, on_load=loaded, loader=loader)
        if spec.pretrained == RANDOM:
            ui.warn("random weights (--pretrained none): the labels will be meaningless")
        run_options = RunOptions(
            choice.batch_size,
            choice.workers,
            common.max_megapixels,
            pairs=not common.no_pairs,
            gpu_decode=common.gpu_decode,
            engine=common.engine.value,
            address=common.address,
            ray_device=choice.device,
            follow_links=common.follow_links,
            include_managed=common.include_managed,
            exclude=tuple(common.exclude or ()),
        )
        check_run_options(run_options, embedder.device)
        ui.hold()
        try:
            report = work(label_set, embedder, run_options, ui)
        except KeyboardInterrupt:
            ui.stop()
            ui.error("interrupted; files already written or moved stay as they are")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        finally:
            ui.stop()
        ui.summary(report)
    if after is not None:
        after(report)
    if report.exit_code:
        raise typer.Exit(int(report.exit_code))
    return report


def check_review(page: Path | None) -> None:
    """``--review PAGE.html``: a page name clipsort may write, checked before any work."""
    if page is not None:
        from clipsort.review.page import check_page_path

        check_page_path(page)


def open_review(report: Report, open_page: bool) -> None:
    """Open the run's review page in the default browser (``--open``)."""
    if open_page and report.review is not None:
        import webbrowser

        webbrowser.open(report.review.resolve().as_uri())


def stepper(ui: Any, status: Any) -> Callable[[str], None]:
    """What a long step says (a model's first preparation): its first line stays, the later ones (how
    far along it is) replace each other on the status line (a terminal's), and all go to the --log."""
    from clipsort.render import printable

    said: list[str] = []

    def step(message: str) -> None:
        if not said:
            ui.info(message)
        else:
            ui.log(message)
            if callable(status):  # the progress bar's description
                status(message)
            elif hasattr(status, "update"):  # a spinner's line
                status.update(printable(message) + "...")
        said.append(message)

    return step
