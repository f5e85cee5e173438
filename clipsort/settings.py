"""Where clipsort keeps things, and the one precedence rule for settings.

Precedence: command-line flag > ``CLIPSORT_*`` environment variable > config file
(``config.toml`` in the config dir) > built-in default.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipsort.errors import UsageError

APP_NAME = "clipsort"
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
DEFAULT_BATCH_SIZE = 32

#: Settings a config file may hold, with their types.
CONFIG_KEYS: dict[str, type] = {
    "model": str,
    "pretrained": str,
    "device": str,
    "precision": str,
    "batch_size": int,
    "threads": int,
    "workers": int,
    "into": str,
}

#: Where ``tag`` puts keywords (``--into``): the sidecar, the photo file itself, or both.
INTO_CHOICES = ("sidecar", "photo", "both")


def resolve_into(flag: str | None, config: dict[str, Any] | None = None) -> str:
    """``tag --into``: flag > ``CLIPSORT_INTO`` > the config file's ``into`` > ``sidecar``."""
    value = flag or os.environ.get("CLIPSORT_INTO") or (load_config() if config is None else config).get("into")
    value = value or "sidecar"
    if value not in INTO_CHOICES:
        raise UsageError(f"into must be one of {', '.join(INTO_CHOICES)}, not {value!r}")
    return value


#: ``--precision`` values; ``auto`` is resolved by ``devices.resolve_precision`` once the device is known.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def check_precision(precision: str, device: str) -> None:
    """Refuse unknown precisions and those the device cannot run (``auto`` devices are not judged)."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision == "fp16" and device == "cpu":
        raise UsageError("--precision fp16 is for GPUs; on the CPU use bf16, int8 or fp32")
    if precision == "int8" and device not in ("cpu", "auto"):
        raise UsageError("--precision int8 is for CPUs (ONNX Runtime); on GPUs use fp16")


def usable_cpus() -> int:
    """CPUs this process may run on (``taskset`` and container cpusets count), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def model_threads() -> int:
    """CPU threads for the model when the user did not choose: one per physical core this process
    may use (a second hardware thread of a core adds nothing to matrix work), at least 1."""
    cpus = usable_cpus()
    try:
        smt = Path("/sys/devices/system/cpu/smt/active").read_text(encoding="ascii").strip() == "1"
    except OSError:
        smt = False
    return max(1, cpus // 2 if smt and cpus > 1 else cpus)


def cache_dir() -> Path:
    """Root of clipsort's cache: ``CLIPSORT_CACHE_DIR`` or the platform's user cache dir."""
    override = os.environ.get("CLIPSORT_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def runtime_dir() -> Path:
    """Where the fast runtime's artifacts are built: ``CLIPSORT_RUNTIME_DIR`` or ``runtime`` in the cache dir.

    One folder per model and library versions; several users or containers may share it.
    """
    override = os.environ.get("CLIPSORT_RUNTIME_DIR")
    return Path(override).expanduser() if override else cache_dir() / "runtime"


def config_dir() -> Path:
    """Where ``config.toml`` lives: ``CLIPSORT_CONFIG_DIR`` or the platform's user config dir."""
    override = os.environ.get("CLIPSORT_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    """Where sort journals live: ``CLIPSORT_DATA_DIR`` or the platform's user data dir."""
    override = os.environ.get("CLIPSORT_DATA_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_file() -> Path:
    return config_dir() / "config.toml"


def models_dir() -> Path:
    """Folders in the ``local-dir`` layout that clipsort finds by model name (for offline use)."""
    return cache_dir() / "models"


def hf_cache_dir() -> Path:
    """Downloads of open_clip / Hugging Face weights (passed to open_clip as ``cache_dir``)."""
    return cache_dir() / "hf"


def cache_file(flag: Path | None = None) -> Path:
    """The embedding cache: ``--cache`` > ``CLIPSORT_CACHE`` > ``embeddings.sqlite3`` in the cache dir."""
    if flag is not None:
        return Path(flag).expanduser()
    override = os.environ.get("CLIPSORT_CACHE")
    if override:
        return Path(override).expanduser()
    return cache_dir() / "embeddings.sqlite3"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The config file's settings, or {} when there is none. Bad files are usage errors."""
    from clipsort.safe_files import CONFIG_LIMIT, UnsafeFile, read_regular

    path = path or config_file()
    try:
        raw = read_regular(path, CONFIG_LIMIT, "config file")
    except FileNotFoundError:
        return {}
    except UnsafeFile as exc:
        raise UsageError(f"{path}: config file {exc.reason}; not read") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read config file: {exc}") from None
    except RecursionError:
        raise UsageError(f"{path}: cannot read config file: nested too deeply") from None
    for key, value in data.items():
        expected = CONFIG_KEYS.get(key)
        if expected is None:
            known = ", ".join(sorted(CONFIG_KEYS))
            raise UsageError(f"{path}: unknown setting {key!r} (known: {known})")
        if not isinstance(value, expected) or isinstance(value, bool):
            raise UsageError(f"{path}: {key} must be a {expected.__name__}")
    return data


@dataclass(frozen=True)
class ModelChoice:
    """Which model to load, after applying the precedence rule."""

    model: str
    pretrained: str | None
    device: str
    #: None: chosen from the device once the model is loaded (see ``devices.default_batch_size``).
    batch_size: int | None = None
    precision: str = "auto"
    #: torch CPU threads and decode threads; None: chosen from the CPUs.
    threads: int | None = None
    workers: int | None = None


def resolve_model_choice(
    model: str | None = None,
    pretrained: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    config: dict[str, Any] | None = None,
    precision: str | None = None,
    threads: int | None = None,
    workers: int | None = None,
) -> ModelChoice:
    """Apply flag > env > config file > default to the model settings."""
    config = load_config() if config is None else config
    env = os.environ
    chosen_model = model or env.get("CLIPSORT_MODEL") or config.get("model") or DEFAULT_MODEL
    if pretrained is None:
        pretrained = env.get("CLIPSORT_PRETRAINED") or config.get("pretrained")
    if pretrained is None and chosen_model == DEFAULT_MODEL:
        pretrained = DEFAULT_PRETRAINED
    chosen_device = device or env.get("CLIPSORT_DEVICE") or config.get("device") or "auto"
    if chosen_device not in ("auto", "cpu", "cuda", "mps") and not chosen_device.startswith("cuda:"):
        raise UsageError(f"unknown device {chosen_device!r}: use auto, cpu, cuda, cuda:N or mps")
    size = batch_size or config.get("batch_size")
    if size is not None and size < 1:
        raise UsageError("batch size must be at least 1")
    env_threads = env.get("CLIPSORT_THREADS")
    if threads is None and env_threads:
        try:
            threads = int(env_threads)
        except ValueError:
            raise UsageError(f"CLIPSORT_THREADS={env_threads!r}: expected a whole number") from None
    threads = threads or config.get("threads")
    workers = workers or config.get("workers")
    for name, value in (("threads", threads), ("workers", workers)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1")
    chosen_precision = precision or env.get("CLIPSORT_PRECISION") or config.get("precision") or "auto"
    # Checked here, not only when the model loads: a fully cached run never loads it.
    check_precision(chosen_precision, chosen_device)
    return ModelChoice(
        model=chosen_model,
        pretrained=pretrained or None,
        device=chosen_device,
        batch_size=size,
        precision=chosen_precision,
        threads=threads,
        workers=workers,
    )
