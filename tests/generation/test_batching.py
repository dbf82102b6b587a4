import numpy as np
import torch

from sidrec.generation.batching import hash_user_bins, make_history_batch
from tests.generation.toy_generator import toy_sid_table


def test_left_padding_most_recent_last():
    sids = toy_sid_table(10, [3, 3], "digit")
    batch = make_history_batch([np.array([4, 5, 6]), np.array([9])], sids)
    assert batch.codes.shape == (2, 3, 3)
    assert batch.mask.tolist() == [[True, True, True], [False, False, True]]
    assert batch.codes[0].tolist() == sids.codes[[4, 5, 6]].tolist()
    assert batch.codes[1, 2].tolist() == sids.codes[9].tolist()
    assert (batch.codes[1, :2] == 0).all()
    assert batch.user_bins is None
    assert batch.codes.dtype == torch.long


def test_user_bins_are_deterministic_hashes_in_range():
    users = np.arange(1000)
    bins = hash_user_bins(users, 37)
    assert bins.min() >= 0 and bins.max() < 37
    assert (hash_user_bins(users, 37) == bins).all()
    assert len(np.unique(bins)) == 37  # spread over all bins
    sids = toy_sid_table(10, [3, 3], "digit")
    batch = make_history_batch([np.array([1]), np.array([2])], sids, user_idx=[5, 6], n_user_bins=37)
    assert batch.user_bins.tolist() == bins[[5, 6]].tolist()
    anon = make_history_batch([np.array([1])], sids, user_idx=None, n_user_bins=37)
    assert anon.user_bins.tolist() == [0]
