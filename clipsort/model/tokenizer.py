"""CLIP's byte-level BPE tokenizer, without torch.

open_clip's ``SimpleTokenizer`` (OpenAI's CLIP tokenizer) imports torch, which costs seconds
of start-up for a few prompts. This is the same algorithm on the same vocabulary file (the
one open_clip ships, named in the runtime artifact's manifest), returning numpy arrays.
It is used only for models whose open_clip tokenizer is a plain ``SimpleTokenizer``, and
only after :mod:`clipsort.model.export` has checked, when the artifact was built, that it gives
open_clip's tokens on a set of sample texts (see ``SAMPLES``).

The steps, as open_clip runs them for ``clean="lower"`` (the default): fix mojibake with
ftfy, unescape HTML twice, collapse whitespace, lowercase; split into words, numbers and
punctuation runs; map each word's UTF-8 bytes to printable characters; merge adjacent
symbols by rank until no known merge is left; then ``<start_of_text>`` + tokens +
``<end_of_text>``, cut to the context length (the last token is always end of text).
"""

from __future__ import annotations

import gzip
import html
import itertools
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

#: Text that ftfy.fix_text returns unchanged: printable ASCII and spaces, tabs and line feeds
#: (a carriage return becomes a line feed there: whitespace either way), no "&".
_PLAIN = re.compile(r"[ -%'-~\t\n]*")
#: Merges in the vocabulary file that open_clip uses (the file holds a few more).
_MERGES = 49152 - 256 - 2
#: Texts whose tokens the build compares with open_clip's before trusting this tokenizer.
SAMPLES = (
    "a photo of a dog.",
    "A PHOTO of the  Eiffel   Tower at night!",
    "itap of a cat's toy",
    "café crème, naïve façade — 東京 2024",
    "&amp;quot;quoted&amp;quot; <b>html</b> it's we'll they've",
    "emoji 🐕🌊 and numbers 12345 6.5mm f/2.8",
    "word " * 100,
    "",
)


#: open_clip's pattern for ASCII text (see ClipTokenizer._split).
_ASCII_WORDS = re.compile(
    r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[a-zA-Z]+|[0-9]|[^\sa-zA-Z0-9]+", re.IGNORECASE
)


def _read_merges(vocabulary: Path) -> list[str]:
    """The first :data:`_MERGES` merge lines of the vocabulary file (it holds five times more, unused)."""
    wanted = _MERGES + 1  # after the version line
    text = ""
    with gzip.open(vocabulary, "rt", encoding="utf-8") as handle:
        while text.count("\n") < wanted:
            chunk = handle.read(1 << 18)
            if not chunk:
                break
            text += chunk
    return text.split("\n", wanted)[1:wanted]


@lru_cache(maxsize=1)
def _byte_symbols() -> dict[int, str]:
    """Each byte's printable stand-in: printable Latin-1 bytes are themselves, the rest are
    shifted above 255 (so no symbol is whitespace or a control character)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + shifted)
            shifted += 1
    return symbols  # in this order: the vocabulary numbers them so


class ClipTokenizer:
    """Tokens of texts for a CLIP text encoder: ``tokenizer(["a dog"])`` -> int64 array (N, context_length)."""

    def __init__(self, vocabulary: Path, context_length: int = 77, clean: str = "lower") -> None:
        if clean not in ("lower", "whitespace"):
            raise ValueError(f"unsupported clean step {clean!r}")
        merges = _read_merges(vocabulary)
        # Merges are keyed as the file writes them, "first second" (no symbol holds a space); the
        # vocabulary is the bytes, the bytes ending a word, the merged symbols, then two markers.
        self._ranks = {line: rank for rank, line in enumerate(merges)}
        symbols = list(_byte_symbols().values())
        self._ids = {token: i for i, token in enumerate(symbols + [s + "</w>" for s in symbols])}
        first = len(self._ids)
        self._ids.update((line.replace(" ", ""), first + rank) for rank, line in enumerate(merges))
        self._ids.update((("<start_of_text>", len(self._ids)), ("<end_of_text>", len(self._ids) + 1)))
        self._words: dict[str, list[int]] = {}
        self.start = self._ids["<start_of_text>"]
        self.end = self._ids["<end_of_text>"]
        self.context_length = context_length
        self._lower = clean == "lower"
        self._pattern: Any = None

    def _split(self, text: str) -> list[str]:
        """Words, numbers and punctuation runs, as open_clip's pattern splits them."""
        if text.isascii():
            # The same pattern for ASCII text, where \p{L} is [a-zA-Z] and \p{N} is [0-9], on the
            # standard library's re: importing regex costs 0.09 s.
            return _ASCII_WORDS.findall(text)
        if self._pattern is None:
            import regex

            self._pattern = regex.compile(
                r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
                regex.IGNORECASE,
            )
        return list(self._pattern.findall(text))

    def _clean(self, text: str) -> str:
        if self._lower:
            if not _PLAIN.fullmatch(text):
                # ftfy (0.13 s to import) only changes text beyond printable ASCII, HTML
                # entities and control characters: a plain prompt skips it.
                import ftfy

                text = ftfy.fix_text(text)
            text = html.unescape(html.unescape(text)).strip()
        text = " ".join(text.split())
        return text.lower() if self._lower else text

    def _word(self, word: str) -> list[int]:
        """Ids of one pre-split word, merged by rank (lowest rank first)."""
        known = self._words.get(word)
        if known is not None:
            return known
        if word in ("<start_of_text>", "<end_of_text>"):
            parts = [word]
        else:
            table = _byte_symbols()
            chars = "".join(table[b] for b in word.encode("utf-8"))
            parts = [*chars[:-1], chars[-1] + "</w>"]
            while len(parts) > 1:
                # The known merge of lowest rank, then every non-overlapping occurrence of it, left to right.
                best, at = min(
                    (self._ranks.get(f"{a} {b}", _MERGES), i) for i, (a, b) in enumerate(itertools.pairwise(parts))
                )
                if best == _MERGES:
                    break
                first, second = parts[at], parts[at + 1]
                merged: list[str] = []
                i = 0
                while i < len(parts):
                    if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                        merged.append(first + second)
                        i += 2
                    else:
                        merged.append(parts[i])
                        i += 1
                parts = merged
        ids = [self._ids[p] for p in parts]
        self._words[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """The tokens of ``text`` alone (no start, no end, no cut)."""
        return [i for word in self._split(self._clean(text)) for i in self._word(word)]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            tokens = [self.start, *self.encode(text), self.end]
            if len(tokens) > self.context_length:
                tokens = tokens[: self.context_length]
                tokens[-1] = self.end
            rows[row, : len(tokens)] = tokens
        return rows
