"""Prompt ensembling: a label's embedding from its prompts'."""

from __future__ import annotations

import numpy as np

from clipsort.labels import score


def test_label_embedding_is_the_normalised_mean_of_normalised_prompts():
    prompts = np.array([[3.0, 0.0], [0.0, 0.5]])
    np.testing.assert_allclose(score.label_embedding(prompts), [np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-6)
