"""Sequential predictability of SID prefixes against a hand-computed case."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sidrec.errors import SidrecError
from sidrec.metrics.sequential import sequential_predictability


def test_bigram_over_prefixes_with_witten_bell_smoothing():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])  # level-1 prefixes 0, 0, 1, 1; four 2-level ones
    pairs = np.array([[0, 2], [1, 3], [2, 0]])  # level 1: 0->1, 0->1, 1->0
    held = np.array([[0, 3], [2, 1]])  # level 1: 0->1, 1->0
    lv1, lv2 = sequential_predictability(codes, pairs, held)
    # add-one unigram over the 2 prefixes from the successors (1, 1, 0): P(0) = 2/5, P(1) = 3/5
    h_uni = (-math.log2(3 / 5) - math.log2(2 / 5)) / 2
    # Witten-Bell: P(1|0) = (2 + 1 * 3/5) / (2 + 1), P(0|1) = (1 + 1 * 2/5) / (1 + 1)
    h_bi = (-math.log2(2.6 / 3) - math.log2(1.4 / 2)) / 2
    assert lv1["prefixes"] == 2 and lv1["h_uni"] == pytest.approx(h_uni) and lv1["h_bi"] == pytest.approx(h_bi)
    assert lv1["gain"] == pytest.approx(h_uni - h_bi) and lv1["hit1"] == 1.0
    # level 2 (prefix = item): successors 2, 3, 0 once each, unigram (count + 1) / 7; neither held
    # pair was seen (0 went to 2, 2 went to 0, which are their argmaxes), so both back off
    assert lv2["prefixes"] == 4 and lv2["hit1"] == 0.0
    p_03 = (0 + 1 * 2 / 7) / (1 + 1)
    p_21 = (0 + 1 * 1 / 7) / (1 + 1)
    assert lv2["h_bi"] == pytest.approx((-math.log2(p_03) - math.log2(p_21)) / 2)


def test_one_shared_code_carries_no_information_and_shapes_are_checked():
    codes = np.zeros((5, 1), dtype=int)
    (lv1,) = sequential_predictability(codes, np.array([[0, 1], [1, 2], [3, 4]]), np.array([[2, 3]]))
    assert lv1["h_uni"] == pytest.approx(0.0) and lv1["gain"] == pytest.approx(0.0) and lv1["hit1"] == 1.0
    with pytest.raises(SidrecError, match="pairs"):
        sequential_predictability(codes, np.array([0, 1]), np.array([[2, 3]]))
