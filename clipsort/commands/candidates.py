"""Pairs of photos that may be copies of each other, found without comparing every pair in Python.

* :func:`neighbour_pairs`: the photos whose CLIP vectors are closest, by blocked matrix
  products (numpy, float32 blocks of the float16 vectors): the upper triangle of the
  similarity matrix, a block at a time, so memory stays at a few blocks whatever the size.
* :func:`hash_pairs`: photos whose perceptual hashes share one of four 16-bit quarters
  (two hashes at most 3 bits apart always do): found whatever the model thinks of them.
"""

from __future__ import annotations

import numpy as np

#: Rows of a block: 4096 x 4096 float32 similarities are 64 MB.
BLOCK = 4096
#: A bucket of more photos than this shares a quarter by chance (flat pictures): left to CLIP.
BUCKET = 32


def neighbour_pairs(
    vectors: np.ndarray, threshold: float, per_photo: int, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, cosine) with i < j for the pairs whose cosine is at least ``threshold``; in a block
    where they are many (a model that finds every photo alike), each photo's ``per_photo`` best."""
    firsts, seconds, cosines = [], [], []
    count = len(vectors)
    for a in range(0, count, block):
        rows = vectors[a : a + block].astype(np.float32)
        for b in range(a, count, block):
            similar = rows @ vectors[b : b + block].astype(np.float32).T
            if a == b:  # each pair once, no photo with itself
                similar[np.triu(np.ones(similar.shape, dtype=bool)) == 0] = -np.inf
                np.fill_diagonal(similar, -np.inf)
            hit = np.flatnonzero(similar.max(axis=1) >= threshold)  # the rows with any pair: few, usually
            if len(hit) == 0:
                continue
            part = similar[hit]
            above = part >= threshold
            if int(above.sum()) > per_photo * len(hit):
                best = np.argpartition(-part, min(per_photo, part.shape[1] - 1), axis=1)[:, :per_photo]
                keep = np.zeros_like(above)
                np.put_along_axis(keep, best, True, axis=1)
                above &= keep
            i, j = np.nonzero(above)
            firsts.append(hit[i] + a)
            seconds.append(j + b)
            cosines.append(part[i, j])
    if not firsts:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(cosines)


def hash_pairs(hashes: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) with i < j, each pair once, for photos whose known hashes agree on a whole 16-bit quarter.

    Buckets of more than :data:`BUCKET` photos are skipped, so the pairs stay under
    ``4 * BUCKET / 2`` a photo whatever the hashes.
    """
    indices = np.flatnonzero(known)
    unsigned = hashes[indices].view(np.uint64)
    firsts, seconds = [], []
    for quarter in range(4):
        parts = (unsigned >> np.uint64(16 * quarter)) & np.uint64(0xFFFF)
        order = np.argsort(parts, kind="stable")
        ordered = parts[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        sizes = np.diff(np.r_[starts, len(ordered)])
        for size in np.unique(sizes[(sizes >= 2) & (sizes <= BUCKET)]).tolist():
            a, b = np.triu_indices(size, 1)
            at = starts[sizes == size][:, None]  # every bucket of this size, each pair of its members
            x, y = indices[order[at + a]].ravel(), indices[order[at + b]].ravel()
            firsts.append(np.minimum(x, y))
            seconds.append(np.maximum(x, y))
    if not firsts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return unique_pairs(np.concatenate(firsts), np.concatenate(seconds))


def turned_hash_pairs(hashes: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`hash_pairs`, with each photo's hash also as it would be turned by 90, 180 and 270 degrees
    (:func:`clipsort.photos.phash.turned`): copies whose pixels were turned in an editor too."""
    from clipsort.photos.phash import turned

    count = len(hashes)
    every = np.concatenate([hashes, *(turned(hashes, turns) for turns in (1, 2, 3))])
    first, second = hash_pairs(every, np.tile(known, 4))
    first, second = first % count, second % count
    apart = first != second
    return unique_pairs(np.minimum(first, second)[apart], np.maximum(first, second)[apart])


def unique_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (first, second) pairs, in order (first, then second)."""
    if len(first) == 0:
        return first.astype(np.int64), second.astype(np.int64)
    both = np.unique(np.stack([first, second], axis=1).astype(np.int64), axis=0)
    return both[:, 0], both[:, 1]


def cosines(vectors: np.ndarray, first: np.ndarray, second: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """The cosine of each pair (float16 vectors as stored, so about 1e-3 off)."""
    out = np.empty(len(first), dtype=np.float32)
    for start in range(0, len(first), chunk):
        a = vectors[first[start : start + chunk]].astype(np.float32)
        b = vectors[second[start : start + chunk]].astype(np.float32)
        out[start : start + chunk] = np.einsum("ij,ij->i", a, b)
    return out
