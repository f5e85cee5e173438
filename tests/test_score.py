"""Scoring rule: softmax of logit_scale x cosine, prompt ensembling, thresholds, top-k."""

from __future__ import annotations

import numpy as np

from clipsort import score


def test_probabilities_follow_the_documented_rule():
    images = np.array([[1.0, 0.0], [0.6, 0.8]])
    labels = np.array([[2.0, 0.0], [0.0, 3.0]])  # not normalised on purpose
    probs = score.probabilities(images, labels, logit_scale=10.0)
    cos = np.array([[1.0, 0.0], [0.6, 0.8]])
    expected = np.exp(10 * cos) / np.exp(10 * cos).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_large_logit_scale_does_not_overflow():
    probs = score.probabilities(np.array([[1.0, 0.0]]), np.eye(2), logit_scale=1e4)
    assert np.isfinite(probs).all() and probs[0, 0] == 1.0


def test_label_embedding_is_the_normalised_mean_of_normalised_prompts():
    prompts = np.array([[3.0, 0.0], [0.0, 0.5]])
    np.testing.assert_allclose(score.label_embedding(prompts), [np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-6)
