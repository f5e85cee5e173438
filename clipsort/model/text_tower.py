"""Prompts to vectors on the fast runtime's text tower, each shared beginning computed once.

A label file's prompts come from templates ("a photo of a {}.", "a blurry photo of a {}.",
...), so most of their tokens are the same from label to label. The text tower has a
causal mask, so a token's state depends only on the tokens before it: the tower built by
:func:`clipsort.model.towers.prefix_text_encoder` computes each distinct beginning once, then the
rest of every prompt against the beginning's keys and values. For ten labels and twelve
templates that is about half the tokens. Prompts are also cut to their own length (the
positions after the end token cannot change a prompt's vector), so a prompt of eight
tokens costs eight positions, not the 77 of the context.

Models whose text tower does not allow it (no causal mask, pooling elsewhere than the end
token) run whole rows of the context length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

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
