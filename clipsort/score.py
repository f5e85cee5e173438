"""Zero-shot scoring: image embeddings x label embeddings -> probabilities -> kept labels.

Pure numpy. The rule (docs/scoring.md): the probability of label *j* for an image
is ``softmax_j(logit_scale * cos(image, label_j))`` over the label set, where each
label's embedding is the normalised mean of its prompts' normalised embeddings.
"""

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


def probabilities(image_embeddings: np.ndarray, label_embeddings: np.ndarray, logit_scale: float) -> np.ndarray:
    """(images x labels) matrix of probabilities; each row sums to 1."""
    logits = logit_scale * (normalise(image_embeddings) @ normalise(label_embeddings).T)
    logits = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float64)
