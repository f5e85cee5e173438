"""Options shared by several commands, declared once.

The model and run options of ``tag``, ``sort``, ``index``, ``learn`` and ``eval`` are
added to a command's signature by :func:`run_options`, which hands the command one
:class:`RunSettings` instead of fourteen parameters.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from clipsort.cli.app import ClipsortCommand

__all__ = ["ClipsortCommand"]  # declared with the app (how commands parse and show their help)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Engine(str, Enum):
    local = "local"
    ray = "ray"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    int8 = "int8"


def location_argument(argument: str) -> Any:
    from clipsort.photos.location import location

    return location(argument)


# Each a Path or a clipsort.photos.remote.RemotePath (a URL), as location_argument returns it. Declared Any:
# Typer before 0.29 turns a value of a parameter declared Path that is not a Path into one.
PathsArg = Annotated[
    list[Any],
    typer.Argument(
        help="Photos and folders, walked recursively (URLs with --engine ray).",
        show_default=False,
        metavar="PATH",
        parser=location_argument,
    ),
]
LabelsOpt = Annotated[
    Path,
    typer.Option(
        "--labels",
        "-l",
        help="Label file: labels.txt (one label per line), labels.toml, or a file made by 'clipsort learn'.",
    ),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        "-t",
        min=0.0,
        max=1.0,
        help="Keep labels scoring at least this; a label's own wins. [default: the label file's, else 0.5]",
        show_default=False,
    ),
]
ExplainOpt = Annotated[
    bool,
    typer.Option("--explain", help="Print every label's score and threshold per photo, and why it was kept or not."),
]
ReviewOpt = Annotated[
    Path | None,
    typer.Option(
        "--review",
        help="Also write every decision as a page of thumbnails that opens from disk (docs/review.md).",
        metavar="PAGE.html",
        show_default=False,
    ),
]
OpenOpt = Annotated[bool, typer.Option("--open", help="Open the --review page in the default browser when written.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", "-n", help="Print the plan on stdout; change nothing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per photo on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        help="Embedding cache file. [default: embeddings.sqlite3 in the cache dir; env CLIPSORT_CACHE]",
        show_default=False,
    ),
]
NoWaitOpt = Annotated[
    bool, typer.Option("--no-wait", help="If another run is using the cache, exit with code 75 instead of waiting.")
]


@dataclass
class RunSettings:
    """The model, cache and output options of the commands that embed photos."""

    model: str | None = None
    pretrained: str | None = None
    device: Device | None = None
    precision: Precision | None = None
    batch_size: int | None = None
    workers: int | None = None
    gpu_decode: bool | None = None
    engine: Engine = Engine.local
    address: str | None = None
    threads: int | None = None
    max_megapixels: float | None = None
    no_pairs: bool = False
    follow_links: bool = False
    include_managed: bool = False
    exclude: list[str] | None = None
    cache: Path | None = None
    no_cache: bool = False
    no_wait: bool = False
    log: Path | None = None
    json_out: bool = False
    quiet: bool = False
    verbose: bool = False


#: The shared options, in the order ``--help`` lists them (after each command's own).
_SHARED: dict[str, tuple[Any, Any]] = {
    "model": (
        Annotated[
            str | None,
            typer.Option(
                "--model",
                "-m",
                help="open_clip architecture (ViT-B-32), hf-hub:ORG/REPO, local-dir:FOLDER or a model folder. "
                "[default: ViT-B-32; env CLIPSORT_MODEL]",
                show_default=False,
            ),
        ],
        None,
    ),
    "pretrained": (
        Annotated[
            str | None,
            typer.Option(
                "--pretrained",
                help="Pretrained tag or checkpoint file for an architecture; 'none' for random weights. "
                "[default: laion2b_s34b_b79k for ViT-B-32; env CLIPSORT_PRETRAINED]",
                show_default=False,
            ),
        ],
        None,
    ),
    "device": (
        Annotated[
            Device | None,
            typer.Option(
                "--device",
                help="Compute device; auto prefers cuda, then mps, then cpu. [default: auto]",
                show_default=False,
            ),
        ],
        None,
    ),
    "precision": (
        Annotated[
            Precision | None,
            typer.Option(
                "--precision",
                help="auto: fp16 on GPUs; int8 on CPUs (image tower quantized, on ONNX Runtime), or fp32 "
                "where the cache already holds float vectors. fp32 on CPUs: open_clip's numbers on ONNX Runtime. "
                "bf16: open_clip on torch (CPUs with AVX-512 BF16 or AMX). "
                "[default: auto; env CLIPSORT_PRECISION]",
                show_default=False,
            ),
        ],
        None,
    ),
    "batch_size": (
        Annotated[
            int | None,
            typer.Option(
                "--batch-size",
                min=1,
                help="Images per model call. [default: 32 on CPUs, 256 on GPUs]",
                show_default=False,
            ),
        ],
        None,
    ),
    "workers": (
        Annotated[
            int | None,
            typer.Option(
                "--workers",
                min=1,
                help="Decode threads. [default: from the CPU count: at most 4 on CPUs, all but two beside a GPU]",
                show_default=False,
            ),
        ],
        None,
    ),
    "gpu_decode": (
        Annotated[
            bool | None,
            typer.Option(
                "--gpu-decode/--no-gpu-decode",
                help="On CUDA, decode JPEGs on the GPU too (nvJPEG), beside the CPU threads. "
                "[default: on when the model runs on CUDA]",
                show_default=False,
            ),
        ],
        None,
    ),
    "engine": (
        Annotated[
            Engine,
            typer.Option(
                "--engine",
                help="local: this machine's threads. ray: a Ray cluster (pip install 'clipsort[ray]'; "
                "docs/scale-out.md); vectors still go to this machine's cache.",
                case_sensitive=False,
            ),
        ],
        Engine.local,
    ),
    "address": (
        Annotated[
            str | None,
            typer.Option(
                "--address",
                help="With --engine ray: the cluster to join (auto, or ray://HOST:10001). "
                "[default: start Ray on this machine]",
                show_default=False,
            ),
        ],
        None,
    ),
    "threads": (
        Annotated[
            int | None,
            typer.Option(
                "--threads",
                min=1,
                help="CPU threads the model runs on (ONNX Runtime or torch). "
                "[default: the CPU count; env CLIPSORT_THREADS]",
                show_default=False,
            ),
        ],
        None,
    ),
    "max_megapixels": (
        Annotated[
            float | None,
            typer.Option(
                "--max-megapixels",
                min=1,
                help="Refuse images larger than this (decompression bombs). [default: from the available memory]",
                show_default=False,
            ),
        ],
        None,
    ),
    "no_pairs": (
        Annotated[
            bool,
            typer.Option(
                "--no-pairs",
                help="Treat the RAW and JPEG of a RAW+JPEG pair as two photos. Without it a pair is judged once, "
                "through the JPEG; the RAW shares its labels and moves with it.",
            ),
        ],
        False,
    ),
    "follow_links": (
        Annotated[
            bool,
            typer.Option(
                "--follow-links",
                help="Walk into symbolic links to folders. Without it they are not followed, as find and fd do "
                "(PATHs named on the command line always are).",
            ),
        ],
        False,
    ),
    "include_managed": (
        Annotated[
            bool,
            typer.Option(
                "--include-managed",
                help="Also read photos inside folders another application manages (an Apple Photos library, "
                "Immich's or PhotoPrism's storage: docs/security.md); tag and sort never enter them.",
            ),
        ],
        False,
    ),
    "exclude": (
        Annotated[
            list[str] | None,
            typer.Option(
                "--exclude",
                "-x",
                metavar="PATTERN",
                help="Leave out files and folders that match this gitignore-style pattern (repeatable; "
                "'*.tmp.jpg', 'drafts/', '/2019/**/*.png'); a .clipsortignore file in any folder does the same "
                "below it (docs/cron.md).",
                show_default=False,
            ),
        ],
        None,
    ),
    "cache": (CacheOpt, None),
    "no_cache": (
        Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the embedding cache.")],
        False,
    ),
    "no_wait": (NoWaitOpt, False),
    "log": (
        Annotated[Path | None, typer.Option("--log", help="Append a plain-text log of the run to this file.")],
        None,
    ),
    "json_out": (JsonOpt, False),
    "quiet": (QuietOpt, False),
    "verbose": (
        Annotated[
            bool,
            typer.Option("--verbose", "-v", help="Name every file left out in the summary (not photos, links...)."),
        ],
        False,
    ),
}
assert set(_SHARED) == {f.name for f in fields(RunSettings)}


def _told(annotation: Any, help_text: str | None) -> Any:
    """``annotation`` (an ``Annotated`` option) with another help text."""
    if help_text is None:
        return annotation
    import copy
    from typing import get_args

    kind, info = get_args(annotation)[:2]
    info = copy.copy(info)
    info.help = help_text
    return Annotated[kind, info]


def run_options(
    *, omit: tuple[str, ...] = (), helps: dict[str, str] | None = None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Add the shared run options to a command whose last parameter is ``common: RunSettings``.

    ``omit`` leaves options out of the command (``index`` has no ``--no-cache``); ``helps`` gives
    options a text of the command's own (what ``--json`` prints differs by command).
    """

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "common"]
        shared = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=_told(annotation, (helps or {}).get(name)),
            )
            for name, (annotation, default) in _SHARED.items()
            if name not in omit
        ]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            common = RunSettings(**{name: kwargs.pop(name) for name in _SHARED if name in kwargs})
            command(**kwargs, common=common)

        wrapper.__signature__ = signature.replace(parameters=own + shared)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in own + shared}
        return wrapper

    return decorate
