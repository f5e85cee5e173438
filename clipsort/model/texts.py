"""Prompts without torch: CLIP's tokenizer, then the fast runtime's text tower.

**The tokenizer.** CLIP's byte-level BPE tokenizer, without torch.

open_clip's ``SimpleTokenizer`` (OpenAI's CLIP tokenizer) imports torch, which costs seconds
of start-up for a few prompts. This is the same algorithm on the same vocabulary file (the
one open_clip ships, named in the runtime artifact's manifest), returning numpy arrays.
It is used only for models whose open_clip tokenizer is a plain ``SimpleTokenizer``, and
only after :mod:`clipsort.model.prepare.export` has checked, when the artifact was built, that it gives
open_clip's tokens on a set of sample texts (see ``SAMPLES``).

The steps, as open_clip runs them for ``clean="lower"`` (the default): fix mojibake with
ftfy, unescape HTML twice, collapse whitespace, lowercase; split into words, numbers and
punctuation runs; map each word's UTF-8 bytes to printable characters; merge adjacent
symbols by rank until no known merge is left; then ``<start_of_text>`` + tokens +
``<end_of_text>``, cut to the context length (the last token is always end of text).

**The text tower.** Prompts to vectors on the fast runtime's text tower, each shared beginning computed once.

A label file's prompts come from templates ("a photo of a {}.", "a blurry photo of a {}.",
...), so most of their tokens are the same from label to label. The text tower has a
causal mask, so a token's state depends only on the tokens before it: the tower built by
:func:`clipsort.model.prepare.towers.prefix_text_encoder` computes each distinct beginning once, then the
rest of every prompt against the beginning's keys and values. For ten labels and twelve
templates that is about half the tokens. Prompts are also cut to their own length (the
positions after the end token cannot change a prompt's vector), so a prompt of eight
tokens costs eight positions, not the 77 of the context.

Models whose text tower does not allow it (no causal mask, pooling elsewhere than the end
token) run whole rows of the context length.
"""

from __future__ import annotations

import gzip
import html
import itertools
import re
from collections.abc import Callable, Sequence
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


# ----------------------------------------------------------------------------- the text tower

#: Feeds (input name -> array) -> the tower's outputs, in order (an ONNX Runtime session's run).
Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
#: Below this many tokens saved, prompts are run without shared prefixes (one call instead of two).
MIN_SAVING = 48


def end_positions(tokens: np.ndarray, end: int) -> np.ndarray:
    """Each row's number of tokens up to and including its end token (token 0 is a real token: "!")."""
    return (tokens == end).argmax(axis=1) + 1


def shared_prefixes(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For each row, the length of the longest beginning it shares with another row (0: none).

    Rows sorted in token order put the rows that begin alike next to each other, so each row's
    longest shared beginning is the longer of its common beginnings with its two neighbours.
    At least the end token is left to each row, and a beginning of one token (the start token,
    which every prompt has) is not worth a call: it counts as none.
    """
    count = len(tokens)
    shared = np.zeros(count, dtype=np.int64)
    if count < 2:
        return shared
    order = np.lexsort(tokens.T[::-1])
    ordered = tokens[order]
    same = ordered[1:] == ordered[:-1]
    common = np.where(same.all(axis=1), tokens.shape[1], same.argmin(axis=1))
    np.maximum.at(shared, order[1:], common)
    np.maximum.at(shared, order[:-1], common)
    shared = np.minimum(shared, lengths - 1)
    shared[shared < 2] = 0
    return shared


class TextTower:
    """Raw (unnormalised) text vectors of token rows, through a text tower of either layout.

    ``prefix``: (layers, heads, head width) of a tower that takes shared prefixes, or None for
    a tower of whole rows (input ``input``, output ``output``).
    """

    def __init__(self, run: Run, dim: int, end: int, prefix: tuple[int, int, int] | None) -> None:
        self._run = run
        self.dim = dim
        self.end = end
        self.prefix = prefix

    def __call__(self, tokens: np.ndarray, batch_size: int = 64, share: bool = True) -> np.ndarray:
        vectors = np.empty((len(tokens), self.dim), dtype=np.float32)
        if self.prefix is None:
            for start in range(0, len(tokens), batch_size):
                vectors[start : start + batch_size] = self._run({"input": tokens[start : start + batch_size]})[0]
            return vectors
        lengths = end_positions(tokens, self.end)
        prefixes = shared_prefixes(tokens, lengths) if share else np.zeros(len(tokens), dtype=np.int64)
        keys: dict[bytes, int] = {}
        which = np.full(len(tokens), -1, dtype=np.int64)
        for row in np.flatnonzero(prefixes):
            which[row] = keys.setdefault(tokens[row, : prefixes[row]].tobytes(), len(keys))
        distinct = sum(len(key) for key in keys) // tokens.itemsize
        if int(prefixes.sum()) - distinct < MIN_SAVING:
            prefixes[:], which[:], keys = 0, -1, {}
        past = self._prefix_states(keys, tokens.dtype, batch_size)
        rest = lengths - prefixes
        order = np.argsort(rest * 128 + prefixes, kind="stable")  # similar lengths together: less padding
        for start in range(0, len(tokens), batch_size):
            rows = order[start : start + batch_size]
            vectors[rows] = self._rest(tokens[rows], prefixes[rows], rest[rows], which[rows], past)
        return vectors

    def _empty_past(self, batch: int) -> np.ndarray:
        assert self.prefix is not None
        layers, heads, width = self.prefix
        return np.zeros((layers, 2, batch, heads, 0, width), dtype=np.float32)

    def _prefix_states(self, keys: dict[bytes, int], dtype: Any, batch_size: int) -> np.ndarray | None:
        """Keys and values of each distinct prefix (layers, 2, prefixes, heads, longest, width)."""
        if not keys:
            return None
        beginnings = [np.frombuffer(key, dtype=dtype) for key in keys]
        longest = max(len(b) for b in beginnings)
        tokens = np.zeros((len(beginnings), longest), dtype=dtype)
        for i, beginning in enumerate(beginnings):
            tokens[i, : len(beginning)] = beginning
        parts = []
        for start in range(0, len(tokens), batch_size):
            chunk = tokens[start : start + batch_size]
            positions = np.broadcast_to(np.arange(longest, dtype=np.int64), chunk.shape).copy()
            feeds = {
                "input": chunk,
                "positions": positions,
                "past": self._empty_past(len(chunk)),
                "past_mask": np.zeros((len(chunk), 0), dtype=np.float32),
            }
            parts.append(self._run(feeds)[1])
        return np.concatenate(parts, axis=2)

    def _rest(
        self,
        tokens: np.ndarray,
        prefixes: np.ndarray,
        rest: np.ndarray,
        which: np.ndarray,
        past: np.ndarray | None,
    ) -> np.ndarray:
        """Vectors of rows whose first ``prefixes`` tokens are in ``past`` (at ``which``; -1: none)."""
        batch, context = len(tokens), tokens.shape[1]
        length = int(rest.max())
        columns = np.minimum(prefixes[:, None] + np.arange(length), context - 1)
        ahead = prefixes[:, None] + np.arange(length) < context
        chunk = np.where(ahead, np.take_along_axis(tokens, columns, axis=1), 0)
        # Positions past a row's end token only pad it (the causal mask keeps them out of its vector).
        positions = columns.astype(np.int64)
        longest = int(prefixes.max())
        if past is None or longest == 0:
            states = self._empty_past(batch)
            mask = np.zeros((batch, 0), dtype=np.float32)
        else:
            states = np.ascontiguousarray(past[:, :, np.maximum(which, 0), :, :longest])
            mask = np.where(np.arange(longest) < prefixes[:, None], 0.0, -np.inf).astype(np.float32)
        feeds = {"input": chunk, "positions": positions, "past": states, "past_mask": mask}
        return self._run(feeds)[0]
