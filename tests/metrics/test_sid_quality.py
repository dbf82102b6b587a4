"""SID quality metrics against small hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sidrec.errors import SidrecError
from sidrec.metrics.sid_quality import (
    codebook_usage,
    collision_rate,
    gini,
    preference_discrimination,
    reconstruction_error,
    semantic_cohesion,
    sid_quality,
)


def test_semantic_cohesion_averages_pairwise_cosine_over_multi_item_clusters():
    q = np.array([[1, 0], [0, 1], [2, 0], [1, 1], [5, 5]], dtype=float)
    codes = np.array([[0, 0], [0, 0], [1, 0], [1, 0], [2, 2]])  # clusters {0,1}, {2,3}, singleton {4}
    # SC({0,1}) = cos = 0; SC({2,3}) = 1/sqrt(2); the singleton has no pairs and is skipped
    assert semantic_cohesion(q, codes) == pytest.approx((0 + 1 / math.sqrt(2)) / 2)
    q3 = np.array([[1, 0], [3, 0], [0, 1]], dtype=float)
    assert semantic_cohesion(q3, np.zeros((3, 1), dtype=int)) == pytest.approx((1 + 0 + 0) / 3)
    # prefix clusters: level 0 merges nothing new here but level=0 of [[0,0],[0,1]] does
    assert semantic_cohesion(q[:2], np.array([[0, 0], [0, 1]]), level=0) == pytest.approx(0.0)
    assert math.isnan(semantic_cohesion(q[:2], np.array([[0], [1]])))


def test_preference_discrimination_is_log_mean_pairwise_exp():
    q = np.array([[1, 0], [3, 0], [0, 2], [-1, 0]], dtype=float)
    codes = np.array([[0], [0], [1], [2]])  # centroids (2,0), (0,2), (-1,0): cosines 0, -1, 0
    expected = math.log((math.exp(-2) + math.exp(-4) + math.exp(-2)) / 3)
    assert preference_discrimination(q, codes) == pytest.approx(expected)
    assert preference_discrimination(q, codes, t=1.0) == pytest.approx(math.log((2 * math.exp(-1) + math.exp(-2)) / 3))


def test_collision_rate_both_forms():
    c = collision_rate(np.array([[0, 0], [0, 0], [0, 1], [1, 1]]))
    assert c == {"collision_rate": 0.25, "items_per_sid": pytest.approx(4 / 3), "max_items_per_sid": 2}


def test_gini_hand_values():
    assert gini(np.array([1, 1, 1, 1])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    assert gini(np.array([3, 1])) == pytest.approx(0.25)  # mean |xi - xj| / (2 mean) = (2*2/4) / (2*2)
    with pytest.raises(SidrecError, match="non-zero count vector"):
        gini(np.zeros(3))


def test_codebook_usage_and_perplexity_per_level():
    codes = np.array([[0, 1], [0, 2], [1, 3], [1, 0]])
    lv0, lv1 = codebook_usage(codes, [4, 4])
    assert lv0["usage"] == 0.5 and lv0["perplexity"] == pytest.approx(2.0) and lv0["gini"] == pytest.approx(0.5)
    assert lv1["usage"] == 1.0 and lv1["perplexity"] == pytest.approx(4.0) and lv1["gini"] == pytest.approx(0.0)
    with pytest.raises(SidrecError, match=r"codes of level 1 must lie in \[0, 3\)"):
        codebook_usage(codes, [4, 3])


def test_reconstruction_error():
    r = reconstruction_error(np.array([[1.0, 0.0], [0.0, 2.0]]), np.zeros((2, 2)))
    assert r == {"recon_mse": pytest.approx(2.5), "recon_rel": pytest.approx(1.0)}
    with pytest.raises(SidrecError, match=r"reconstructed must have shape \(2, 2\)"):
        reconstruction_error(np.zeros((2, 2)), np.zeros((2, 3)))


def test_report_collects_everything_and_maps_nan_to_none():
    q = np.array([[1, 0], [0, 1]], dtype=float)
    rep = sid_quality(q, np.array([[0], [1]]), [2], reconstructed=q)
    assert rep["semantic_cohesion"] is None  # no cluster has two items
    assert rep["preference_discrimination"] == pytest.approx(-2.0)  # one pair, cosine 0
    assert rep["usage"] == [1.0] and rep["collision_rate"] == 0.0 and rep["recon_mse"] == 0.0
    with pytest.raises(SidrecError, match=r"embeddings must have shape \(2, d\)"):
        sid_quality(q[:1], np.array([[0], [1]]), [2])
