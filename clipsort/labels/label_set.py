"""Label files: the user's vocabulary, turned into prompts for the text encoder.

Format (UTF-8, one label per line)::

    # a comment
    dog
    animals/cat                       # hierarchical: folder animals/cat, keyword animals|cat
    beach: a sandy beach | people swimming in the sea

A label without its own prompts is embedded with every template of
:data:`DEFAULT_TEMPLATES` and the normalised embeddings are averaged, as in the
CLIP paper's prompt ensembling (Radford et al. 2021, section 3.1.4).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from clipsort.errors import LabelFileError
from clipsort.labels.names import UNSAFE_IN_NAMES, control_characters
from clipsort.safe_files import MAX_LABELS

#: Photo prompt templates ensembled for labels without prompts of their own.
#: A subset of the CLIP paper's ImageNet templates that suits personal photos.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
    "a cropped photo of a {}.",
    "a good photo of a {}.",
    "a blurry photo of a {}.",
    "a low resolution photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a picture of a {}.",
)

#: Characters a label segment may not contain: path separators, the keyword
#: separators of XMP hierarchies, and characters that Windows or macOS forbid in
#: folder names (labels become folder names in ``clipsort sort``).
_FORBIDDEN = set(UNSAFE_IN_NAMES) - {"/"}  # "/" separates a label's parts
_MAX_SEGMENT = 100


@dataclass(frozen=True)
class Label:
    """One label: a path of one or more segments, the prompts that describe it, and how it is decided."""

    path: tuple[str, ...]
    prompts: tuple[str, ...]
    #: True when the label file gave the prompts; False when they come from templates.
    custom_prompts: bool
    line: int | None
    #: The label's own threshold (label file or learned), and where it came from.
    threshold: float | None = None
    threshold_source: str = ""
    #: Where ``sort`` puts it, relative to DEST; None: the label's own path.
    folder: tuple[str, ...] | None = None
    #: Other names of the same thing: they join the prompt ensemble.
    aliases: tuple[str, ...] = ()
    #: A label that takes photos (so that they are not given another) but is never written or sorted to.
    exclude: bool = False
    #: A learned classifier direction (``clipsort learn``), used instead of the prompts' embedding,
    #: and its calibration (a, b): score = sigmoid(a * cos + b).
    vector: tuple[float, ...] | None = None
    calibration: tuple[float, float] | None = None
    #: What a learned label was learned from (shown by ``labels check``).
    learned: str = ""

    @functools.cached_property  # asked for per photo and label; a frozen dataclass may still cache it
    def name(self) -> str:
        """The label as written, segments joined by ``/`` (``animals/dog``)."""
        return "/".join(self.path)

    @property
    def leaf(self) -> str:
        """The last segment (``dog``): the flat keyword."""
        return self.path[-1]

    @property
    def folder_path(self) -> tuple[str, ...]:
        """The folder ``sort`` moves its photos into, relative to DEST."""
        return self.folder if self.folder is not None else self.path


@dataclass(frozen=True)
class ModelRecord:
    """The model a learned label file was learned with."""

    display: str
    identity: str


@dataclass(frozen=True)
class LabelSet:
    """The labels of one label file, in file order, with the file's own defaults."""

    labels: tuple[Label, ...]
    source: Path
    #: ``threshold`` and ``margin`` of the file (None: the built-in defaults), with their lines.
    threshold: float | None = None
    threshold_line: int | None = None
    margin: float | None = None
    tag_root: str | None = None
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    #: "text", "toml" or "learned".
    kind: str = "text"
    #: Learned files only: the model they belong to.
    model: ModelRecord | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]


def check_dimension(labels: LabelSet, dim: int | None, model: str) -> None:
    """Refuse learned labels whose vectors do not have the ``dim`` numbers of ``model``'s vectors
    (None: unknown, not checked)."""
    for label in labels.labels:
        if label.vector is not None and dim is not None and len(label.vector) != dim:
            raise LabelFileError(
                labels.source,
                f"label {label.name!r} was learned for vectors of {len(label.vector)} numbers, but {model} "
                f"gives {dim}: learn again with this model",
                label.line,
            )


def _fold(name: str) -> str:
    # Labels become folder names, and folders that differ only in case or Unicode
    # normalisation collide on macOS and Windows: treat them as the same label.
    return unicodedata.normalize("NFC", name).casefold()


def prompts_for(leaf: str, templates: tuple[str, ...] = DEFAULT_TEMPLATES) -> tuple[str, ...]:
    """The ensemble of prompts used for a label that has none of its own."""
    return tuple(template.replace("{label}", "{}").format(leaf) for template in templates)


_ARTICLE = re.compile(r"(?i)^(?:a|an|the)\s+(?=\S)")


def query_prompts(text: str, templates: tuple[str, ...] = DEFAULT_TEMPLATES) -> tuple[str, ...]:
    """The prompt ensemble of a search query: the label templates around it, its own leading
    article dropped, since every template has one ("a dog on a beach" -> "a photo of a dog on a beach.")."""
    return prompts_for(_ARTICLE.sub("", " ".join(text.split())), templates)


def parse_label_path(raw: str, source: Path | str, line_no: int | None = None) -> tuple[str, ...]:
    """A label's path (``animals/dog``) as its parts, each checked as a folder name (LabelFileError)."""
    if not raw:
        raise LabelFileError(source, "empty label name before ':'", line_no)
    segments = tuple(segment.strip() for segment in raw.split("/"))
    for segment in segments:
        if not segment:
            raise LabelFileError(source, f"label {raw!r} has an empty part (leading, trailing or double '/')", line_no)
        if segment in (".", ".."):
            raise LabelFileError(source, f"label {raw!r}: '{segment}' cannot be a label or folder name", line_no)
        bad = sorted({ch for ch in segment if ch in _FORBIDDEN} | set(control_characters(segment)))
        if bad:
            shown = " ".join(repr(ch) for ch in bad)
            raise LabelFileError(source, f"label {raw!r} contains characters not allowed in labels: {shown}", line_no)
        if len(segment) > _MAX_SEGMENT:
            raise LabelFileError(
                source, f"label part {segment[:20]!r}... is longer than {_MAX_SEGMENT} characters", line_no
            )
    return segments


_SPACES = re.compile(r"\s+")
#: A comment starts at a '#' that begins the line or follows whitespace, so a
#: label such as ``C#`` stays intact.
_COMMENT = re.compile(r"(?:^|\s)#.*$")


def parse_labels(text: str, source: Path | str = "<labels>") -> LabelSet:
    """Parse label-file text. Raises :class:`LabelFileError` naming the offending line."""
    source = Path(source)
    labels: list[Label] = []
    for line_no, raw_line in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw_line).strip()
        if not line:
            continue
        if ":" in line:
            raw_name, _, raw_prompts = line.partition(":")
            prompts = tuple(_SPACES.sub(" ", p.strip()) for p in raw_prompts.split("|"))
            if not any(prompts):
                raise LabelFileError(source, f"label {raw_name.strip()!r} has ':' but no prompts after it", line_no)
            if not all(prompts):
                raise LabelFileError(source, f"label {raw_name.strip()!r} has an empty prompt between '|'", line_no)
            custom = True
        else:
            raw_name, prompts, custom = line, (), False
        if "|" in raw_name:
            raise LabelFileError(source, f"{line!r}: '|' separates prompts and needs a 'label:' before them", line_no)
        path = parse_label_path(_SPACES.sub(" ", raw_name.strip()), source, line_no)
        if not custom:
            prompts = prompts_for(path[-1])
        labels.append(Label(path=path, prompts=prompts, custom_prompts=custom, line=line_no))
        refuse_too_many(len(labels), source, line_no)
    return LabelSet(
        labels=checked(labels, source, "no labels: the file is empty or holds only comments"),
        source=source,
        kind="text",
    )


def refuse_too_many(count: int, source: Path, line: int | None = None) -> None:
    """Stop reading a label file as soon as it holds more labels than any run can use."""
    if count > MAX_LABELS:
        raise LabelFileError(source, f"more than {MAX_LABELS} labels: a label file may hold at most {MAX_LABELS}", line)


def checked(labels: list[Label], source: Path, when_empty: str) -> tuple[Label, ...]:
    """The labels of a file, refused when there are none or two would share a folder."""
    if not labels:
        raise LabelFileError(source, when_empty)
    seen: dict[str, int | None] = {}
    for label in labels:
        key = _fold(label.name)
        if key in seen:
            raise LabelFileError(source, f"duplicate label {label.name!r} (first on line {seen[key]})", label.line)
        seen[key] = label.line
    return tuple(labels)


#: Built-in defaults of the decision rules (docs/scoring.md).
DEFAULT_THRESHOLD = 0.5
DEFAULT_MARGIN = 1.0
