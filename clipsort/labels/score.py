"""Zero-shot embeddings of labels: each label's embedding is the normalised mean of its prompts'
normalised embeddings (prompt ensembling, as in the CLIP paper). Pure numpy. How embeddings
become scores and decisions: :mod:`clipsort.labels.decide` (docs/scoring.md)."""

from __future__ import annotations

import numpy as np


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def label_embedding(prompt_embeddings: np.ndarray) -> np.ndarray:
    """One label's embedding from its prompts' embeddings: mean of normalised, normalised again."""
    return normalise(normalise(prompt_embeddings).mean(axis=0, keepdims=True))[0]
