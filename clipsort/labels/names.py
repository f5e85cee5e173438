"""The names clipsort writes into files and paths (labels, the tag root, the unsorted folder's
name, folders built by ``--pattern``): one rule for the characters they may hold, and the file
system's limits on their length.

* **No control characters** (Unicode category C: ``\\n``, escape sequences, ``\\x00``, format
  characters): in a folder name they hide what a listing shows, in a terminal they can move the
  cursor, and in XMP most of them make the file not well-formed.
* **Lengths**: a file or folder name may hold at most ``NAME_MAX`` bytes (255 on common file
  systems), a whole path ``PATH_MAX`` (4096 on Linux); the limits are read from the file system
  the names go to (:class:`NameLimits`).
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

#: Characters that path separators, XMP hierarchies, Windows or macOS forbid in folder names.
UNSAFE_IN_NAMES = '/\\|<>:"?*'


def control_characters(text: str) -> list[str]:
    """The control (and other Unicode category C) characters in ``text``, each once, in order."""
    return sorted({ch for ch in text if unicodedata.category(ch).startswith("C")})


def shown(chars: list[str]) -> str:
    return " ".join(repr(ch) for ch in chars)


def control_problem(text: str, what: str) -> str | None:
    """Why ``text`` may not be a name clipsort writes (``what`` names it), or None."""
    bad = control_characters(text)
    if bad:
        return f"{what} {text!r} holds control characters ({shown(bad)}), not allowed in names clipsort writes"
    return None


#: Characters XML 1.0 cannot hold at all (XMP is XML): C0 controls but tab, newline and carriage
#: return, lone surrogates (names that are not UTF-8), and U+FFFE/U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` with every character XML cannot hold replaced by U+FFFD (a model's name from a
    folder path, say)."""
    return _NOT_XML.sub("\ufffd", text)


class NameLimits:
    """The longest file name and path the file system under a folder takes."""

    def __init__(self, folder: Path | str) -> None:
        existing = os.fspath(folder) or "."
        while not os.path.isdir(existing):
            parent = os.path.dirname(existing)
            if parent == existing or not parent:
                existing = "."
                break
            existing = parent
        self.name_max = _pathconf(existing, "PC_NAME_MAX", 255)
        self.path_max = _pathconf(existing, "PC_PATH_MAX", 4096)

    def problem(self, path: Path | str) -> str | None:
        """Why ``path`` cannot be created there (a name or the whole path too long), or None."""
        text = os.fsencode(os.path.abspath(path))
        if len(text) >= self.path_max:
            return f"the path would be {len(text)} bytes long, more than the file system allows ({self.path_max - 1})"
        for part in text.split(b"/"):
            if len(part) > self.name_max:
                name = os.fsdecode(part)
                return (
                    f"the name {name[:40]!r}... would be {len(part)} bytes long, more than the file system "
                    f"allows ({self.name_max})"
                )
        return None


def _pathconf(folder: str, name: str, default: int) -> int:
    try:
        value = os.pathconf(folder, name)
    except (OSError, ValueError, AttributeError):
        return default
    return value if value and value > 0 else default
