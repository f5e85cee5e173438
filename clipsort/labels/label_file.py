"""Reading a label file in whichever form it takes: text (:func:`clipsort.labels.label_set.parse_labels`),
TOML (:mod:`clipsort.labels.labels_toml`) or made by ``clipsort learn`` (:mod:`clipsort.labels.learn`)."""

from __future__ import annotations

from pathlib import Path

from clipsort.errors import LabelFileError
from clipsort.labels.label_set import LabelSet, parse_labels
from clipsort.labels.labels_toml import parse_toml_labels
from clipsort.labels.learn import parse_learned
from clipsort.safe_files import LABEL_FILE_LIMIT, UnsafeFile, read_regular


def load_labels(path: Path | str) -> LabelSet:
    """Read a label file: ``.toml`` (rich form), a file made by ``clipsort learn`` (JSON), or text.

    Every form gives one :class:`LabelSet`; errors name the file and, where known, the line.
    """
    path = Path(path)
    try:
        data = read_regular(path, LABEL_FILE_LIMIT, "label file")
    except FileNotFoundError:
        raise LabelFileError(path, "label file not found") from None
    except UnsafeFile as exc:
        raise LabelFileError(path, f"{exc.reason}; not read as a label file") from None
    except OSError as exc:
        raise LabelFileError(path, f"cannot read label file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LabelFileError(path, f"not valid UTF-8 (byte {exc.start}); save the file as UTF-8", line) from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return parse_learned(text, path)
    if path.suffix.lower() == ".toml":
        return parse_toml_labels(text, path)
    return parse_labels(text, path)
