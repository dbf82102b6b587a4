"""SIDTable: TIGER's de-dup digit, GRID's random representative, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from sidrec.errors import SidrecError
from sidrec.tokenizers import SIDTable

IDS = ["a", "b", "c", "d", "e"]
CODES = np.array([[1, 2], [1, 2], [0, 0], [1, 2], [3, 1]])


def test_digit_appends_rank_inside_each_colliding_group():
    t = SIDTable.build(IDS, CODES, [4, 4], "digit")
    np.testing.assert_array_equal(t.codes[:, 2], [0, 1, 0, 2, 0])
    assert t.vocab_sizes == [4, 4, 3] and t.n_tokens == 3
    assert len(np.unique(t.codes, axis=0)) == len(IDS) and t.representative.all()


def test_random_keeps_codes_and_picks_one_seeded_representative_per_sid():
    picks = set()
    for seed in range(20):
        t = SIDTable.build(IDS, CODES, [4, 4], "random", seed=seed)
        np.testing.assert_array_equal(t.codes, CODES)
        assert t.vocab_sizes == [4, 4] and t.representative.sum() == 3  # one per unique SID
        assert t.representative[[2, 4]].all()  # singletons always represent themselves
        picks.add(int(np.flatnonzero(t.representative[[0, 1, 3]])[0]))
        again = SIDTable.build(IDS, CODES, [4, 4], "random", seed=seed)
        np.testing.assert_array_equal(again.representative, t.representative)
    assert len(picks) > 1  # the seed decides which colliding item wins


@pytest.mark.parametrize("policy", ["digit", "random"])
def test_save_load_round_trip(policy, tmp_path):
    t = SIDTable.build(IDS, CODES, [4, 4], policy, seed=1)
    t.save(tmp_path)
    u = SIDTable.load(tmp_path)
    assert u.item_ids == t.item_ids and u.vocab_sizes == t.vocab_sizes and u.collision == policy
    np.testing.assert_array_equal(u.codes, t.codes)
    np.testing.assert_array_equal(u.representative, t.representative)
    assert u.codes.dtype == np.int64


def test_bad_policy_and_shape_are_clear_errors():
    with pytest.raises(SidrecError, match="tokenizer.collision must be one of digit, random, got 'drop'"):
        SIDTable.build(IDS, CODES, [4, 4], "drop")
    with pytest.raises(SidrecError, match=r"codes must have shape \(5, n_levels\), got \(4, 2\)"):
        SIDTable.build(IDS, CODES[:4], [4, 4], "digit")
