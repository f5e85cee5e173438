"""The decision rules with hand-made scores (docs/scoring.md): boundaries, ties, exclusions,
top-k, the margin. No model: each case is a few numbers and the verdict the docs promise."""

from __future__ import annotations

import numpy as np
import pytest

from clipsort.labels import decide

T = (0.5, 0.5, 0.5)
NO = (False, False, False)


def test_a_score_equal_to_its_threshold_is_kept_and_one_just_below_is_not():
    scores = np.array([0.5, np.nextafter(0.5, 0), 0.9])
    kept, judgements = decide.multi_label(scores, T, NO)
    assert kept == [2, 0]
    assert [j.kept for j in judgements] == [True, False, True]
    assert judgements[1].why == "below threshold"
    assert decide.kept_labels(scores, T, NO) == kept


def test_each_label_is_held_to_its_own_threshold():
    scores = np.array([0.6, 0.6, 0.6])
    assert decide.kept_labels(scores, (0.7, 0.6, 0.59), NO) == [1, 2]


def test_kept_labels_come_best_first_and_ties_keep_the_files_order():
    scores = np.array([0.7, 0.9, 0.7, 0.9])
    thresholds = (0.5,) * 4
    assert decide.kept_labels(scores, thresholds, (False,) * 4) == [1, 3, 0, 2]


def test_top_k_keeps_only_the_best():
    scores = np.array([0.6, 0.9, 0.8])
    kept, judgements = decide.multi_label(scores, T, NO, top_k=2)
    assert kept == [1, 2]
    assert judgements[0].why == "beyond --top-k 2" and not judgements[0].kept


def test_an_excluded_label_that_is_the_best_passing_one_takes_the_photo():
    scores = np.array([0.95, 0.8, 0.2])  # label 0: "screenshot", excluded
    kept, judgements = decide.multi_label(scores, T, (True, False, False))
    assert kept == []
    assert judgements[0].why == "excluded label: never written, takes the photo"
    assert judgements[1].why == "the photo was taken by an excluded label"


def test_an_excluded_label_that_is_not_the_best_is_never_written_but_takes_nothing():
    scores = np.array([0.7, 0.8, 0.2])
    kept, judgements = decide.multi_label(scores, T, (True, False, False))
    assert kept == [1]
    assert judgements[0].why == "excluded label: never written" and not judgements[0].kept


def _single(scores, thresholds=T, margin=1.0, exclude=NO):
    scores = np.asarray(scores, dtype=float)
    return decide.single_label(scores, np.log(scores / (1 - scores)), thresholds, margin, exclude)


def test_sort_takes_the_best_label_when_it_passes_and_leads_by_the_margin():
    best, judgements = _single([0.9, 0.3, 0.1])
    assert best == 0 and judgements[0].kept and judgements[0].why.startswith("chosen (")


def test_a_lead_equal_to_the_margin_is_enough_and_a_smaller_one_is_none_of_these():
    logits = np.array([2.0, 1.0, -3.0])
    scores = decide.sigmoid(logits)
    best, _ = decide.single_label(scores, logits, T, 1.0, NO)
    assert best == 0
    best, judgements = decide.single_label(scores, logits, T, np.nextafter(1.0, 2.0), NO)
    assert best is None and "(0.88), but just short of the 0.88 the margin asks" in judgements[0].why
    assert judgements[0].why.endswith("none of these")


def test_a_best_label_below_its_threshold_is_none_of_these_even_far_ahead():
    best, judgements = _single([0.45, 0.01, 0.01])
    assert best is None and judgements[0].why == "best label, but below its threshold: none of these"


def test_an_excluded_best_label_leaves_the_photo_unsorted():
    best, judgements = _single([0.9, 0.1, 0.1], exclude=(True, False, False))
    assert best is None and judgements[0].why == "best label, excluded: the photo is left unsorted"


def test_the_runner_up_that_passes_is_said_so_and_is_not_kept():
    best, judgements = _single([0.99, 0.6, 0.1])
    assert best == 0 and judgements[1].why == "passes, but not the best" and not judgements[1].kept
    assert judgements[2].why == "below threshold"


def test_a_single_label_has_no_runner_up_to_lead():
    best, judgements = decide.single_label(np.array([0.7]), np.array([0.85]), (0.5,), 1.0, (False,))
    assert best == 0 and judgements[0].why == "chosen"


def test_ties_between_best_labels_go_to_the_first_in_the_file_and_fail_any_margin():
    logits = np.array([1.5, 1.5, -2.0])
    best, judgements = decide.single_label(decide.sigmoid(logits), logits, T, 0.0, NO)
    assert best == 0  # a margin of 0 accepts a tie: the file's order decides
    best, _ = decide.single_label(decide.sigmoid(logits), logits, T, 0.01, NO)
    assert best is None


def test_the_zero_shot_scale_puts_half_at_the_documented_offset_above_unrelated():
    directions = np.eye(3)[:2]
    scorer = decide.Scorer.zero_shot(directions, logit_scale=100.0, unrelated=0.2)
    at_half = 0.2 + 5.5 / 100.0  # docs/scoring.md: 5.5 logits above the unrelated level score 0.5
    photo = np.array([[at_half, np.sqrt(1 - at_half**2), 0.0]])
    assert scorer.scores(photo)[0, 0] == pytest.approx(0.5)
    assert scorer.scores(photo)[0, 1] > 0.99  # the other direction is far above it


def test_sigmoid_is_the_logistic_function_without_overflow():
    values = decide.sigmoid(np.array([-1e4, -2.0, 0.0, 2.0, 1e4]))
    assert values[0] == 0.0 and values[-1] == 1.0 and values[2] == 0.5
    assert values[3] == pytest.approx(1 / (1 + np.exp(-2.0))) and values[1] == pytest.approx(1 - values[3])


def test_a_label_at_its_threshold_left_out_by_top_k_says_so_not_below_threshold():
    scores = np.array([0.9, 0.5, 0.2])
    kept, judgements = decide.multi_label(scores, T, NO, top_k=1)
    assert kept == [0] and judgements[1].why == "beyond --top-k 1"


def test_an_excluded_label_exactly_at_its_threshold_is_judged_excluded():
    scores = np.array([0.5, 0.9, 0.2])
    _, judgements = decide.multi_label(scores, T, (True, False, False))
    assert judgements[0].why == "excluded label: never written"


def test_with_two_labels_the_margin_still_applies_and_the_lead_is_said_on_the_scores_scale():
    logits = np.array([1.2, 0.8])  # scores 0.77 and 0.69; a lead of 1 logit over 0.69 asks 0.86
    best, judgements = decide.single_label(decide.sigmoid(logits), logits, (0.5, 0.5), 1.0, (False, False))
    assert best is None
    assert judgements[0].why == (
        "best label (0.77), but short of the 0.86 the margin asks over the runner-up's 0.69: none of these"
    )
    logits = np.array([3.0, -1.0])
    best, judgements = decide.single_label(decide.sigmoid(logits), logits, (0.5, 0.5), 1.0, (False, False))
    assert best == 0 and judgements[0].why == "chosen (0.95; the margin asks 0.50 over the runner-up's 0.27)"
    # near 1, where two decimals would read 1.00 for all three, four are told
    logits = np.array([9.0, 8.5])
    best, judgements = decide.single_label(decide.sigmoid(logits), logits, (0.5, 0.5), 1.0, (False, False))
    assert best is None and "(0.9999), but just short of the 0.9999 the margin asks over the runner-up's 0.9998" in (
        judgements[0].why
    )


def test_the_margin_on_the_scores_scale_is_the_score_that_leads_by_the_margin_in_logits():
    for runner_up, margin in ((0.0, 1.0), (-2.0, 0.5), (3.0, 2.0)):
        needed = decide.needed_score(runner_up, margin)
        assert needed == pytest.approx(float(decide.sigmoid(np.float64(runner_up + margin))))
        # a best label just above the score asked is chosen, one just below is not
        for delta, chosen in ((1e-6, 0), (-1e-6, None)):
            logits = np.array([runner_up + margin + delta, runner_up])
            best, _ = decide.single_label(decide.sigmoid(logits), logits, (0.0, 0.0), margin, (False, False))
            assert best == chosen and (decide.sigmoid(logits)[0] >= needed) == (chosen == 0)


def test_a_best_label_exactly_at_its_threshold_is_chosen():
    logits = np.array([0.0, -5.0, -6.0])  # the best scores exactly 0.5
    best, judgements = decide.single_label(decide.sigmoid(logits), logits, T, 1.0, NO)
    assert best == 0 and judgements[0].kept


def test_only_the_best_label_carries_the_decision_whatever_its_place_in_the_file():
    logits = np.array([0.0, 4.0, -3.0])  # the best is the second label; the first scores exactly 0.5
    best, judgements = decide.single_label(decide.sigmoid(logits), logits, T, 1.0, NO)
    assert best == 1 and judgements[1].why == "chosen (0.98; the margin asks 0.73 over the runner-up's 0.50)"
    assert judgements[0].why == "passes, but not the best" and judgements[2].why == "below threshold"
    assert [j.kept for j in judgements] == [False, True, False]


def test_decisions_hold_for_label_files_of_hundreds_of_labels():
    """Label numbers past 256 (Python keeps small integers as one object each: a comparison by
    identity instead of value would only go wrong there)."""
    n = 300
    thresholds, exclude = (0.5,) * n, tuple(i == 280 for i in range(n))
    scores = np.full(n, 0.1)
    scores[280], scores[290] = 0.99, 0.9
    kept, judgements = decide.multi_label(scores, thresholds, exclude)
    assert kept == [] and judgements[280].why == "excluded label: never written, takes the photo"
    logits = np.full(n, -5.0)
    logits[270], logits[260] = 4.0, 1.0
    best, judgements = decide.single_label(decide.sigmoid(logits), logits, thresholds, 1.0, (False,) * n)
    assert best == 270 and judgements[270].kept and judgements[270].why.startswith("chosen (0.98; the margin asks 0.88")
    assert judgements[260].why == "passes, but not the best" and not judgements[260].kept


def test_reasons_tell_scores_with_two_decimals_and_four_near_0_and_1():
    told = decide._told  # how every score in a reason is written
    assert [told(s) for s in (0.01, 0.5, 0.99)] == ["0.01", "0.50", "0.99"]
    assert [told(s) for s in (0.005, 0.0, 0.995, 1.0)] == ["0.0050", "0.0000", "0.9950", "1.0000"]
