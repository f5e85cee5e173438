"""What the person asked the walk to leave out: ``--exclude PATTERN`` and ``.clipsortignore`` files.

Both follow git's ``.gitignore`` rules (through the ``pathspec`` library, which implements them):
``*.tmp.jpg`` anywhere, ``/drafts/`` only at the top, ``raw/**/*.nef``, ``!keep.jpg`` to take one back.
``--exclude`` patterns are relative to each folder given on the command line; a ``.clipsortignore``
file's patterns are relative to the folder that holds it and apply below it, the deeper file's word
last, as in git. A folder left out is not entered, so what is inside it cannot be taken back (git's
rule too). What is left out is not walked, counted or reported: it is not there for the run.

A ``.clipsortignore`` file is the person's own (it lies in their folder) but is read with care: a
regular file, not through a link, at most :data:`IGNORE_FILE_LIMIT`. One that cannot be read or
holds a pattern git would not take raises :class:`IgnoreFileError`: the walk then leaves that folder
out and says so, rather than walk files its owner meant to keep away from clipsort.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from clipsort.errors import UsageError
from clipsort.safe_files import open_regular

#: The name of the file whose patterns leave files out of every walk below its folder.
IGNORE_FILE = ".clipsortignore"
#: The largest .clipsortignore read (some thousand patterns); a larger one is refused.
IGNORE_FILE_LIMIT = 256 * 1024


class IgnoreFileError(Exception):
    """A .clipsortignore file that cannot be used (its folder is then left out, and named)."""


def compile_patterns(lines: Iterable[str]) -> Any:
    """The gitignore-style patterns as one matcher; ValueError names a pattern git would not take."""
    import pathspec  # only runs that exclude something pay for the import

    try:
        return pathspec.GitIgnoreSpec.from_lines(list(lines))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None


@lru_cache(maxsize=8)
def _compiled(excludes: tuple[str, ...]) -> Any:
    """``--exclude``'s patterns compiled once for every root of a walk (a shell's glob names thousands)."""
    return compile_patterns(excludes)


def check_excludes(patterns: Sequence[str]) -> None:
    """Refuse (a usage error) ``--exclude`` patterns that git would not take, before anything is walked."""
    for pattern in patterns:
        if "\n" in pattern or "\r" in pattern or "\0" in pattern:
            raise UsageError(f"--exclude {pattern!r}: one pattern per --exclude, without line breaks")
        try:
            compile_patterns([pattern])
        except ValueError as exc:
            raise UsageError(f"--exclude {pattern!r} is not a gitignore pattern: {exc}") from None


def read_ignore_file(path: Path) -> Any:
    """The patterns of one .clipsortignore file; :class:`IgnoreFileError` when it cannot be used."""
    try:
        handle = open_regular(path, follow=False)
    except OSError as exc:
        raise IgnoreFileError(f"{IGNORE_FILE} cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(handle, "rb") as stream:
        data = stream.read(IGNORE_FILE_LIMIT + 1)
    if len(data) > IGNORE_FILE_LIMIT:
        raise IgnoreFileError(f"{IGNORE_FILE} is larger than {IGNORE_FILE_LIMIT // 1024} KiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IgnoreFileError(f"{IGNORE_FILE} is not UTF-8 text") from None
    try:
        return compile_patterns(text.splitlines())
    except ValueError as exc:
        raise IgnoreFileError(f"{IGNORE_FILE} holds a pattern git would not take: {exc}") from None


@dataclass(frozen=True)
class Rules:
    """The patterns that apply within one folder of a walk: (folder they are relative to, matcher), outermost first."""

    chain: tuple[tuple[Path, Any], ...] = ()

    @classmethod
    def for_root(cls, root: Path, excludes: tuple[str, ...]) -> Rules:
        return cls(((root, _compiled(excludes)),)) if excludes else cls()

    def __bool__(self) -> bool:
        return bool(self.chain)

    def entering(self, folder: Path, names: set[str]) -> Rules:
        """The rules inside ``folder``, whose entries are ``names``: these and its .clipsortignore's."""
        if IGNORE_FILE not in names:
            return self
        return Rules((*self.chain, (folder, read_ignore_file(folder / IGNORE_FILE))))

    def excludes(self, path: Path, is_folder: bool) -> bool:
        """Whether ``path`` (below every folder of the chain) is left out: the last pattern that matches
        it decides, the deeper file's after the outer one's."""
        verdict = False
        for base, spec in self.chain:
            relative = path.relative_to(base).as_posix() + ("/" if is_folder else "")
            result = spec.check_file(relative)
            if result.include is not None:
                verdict = bool(result.include)
        return verdict
