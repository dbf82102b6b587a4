import numpy as np
import torch

from sidrec.generation.batching import make_history_batch
from sidrec.models.base import user_bins
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


def test_user_bins_follow_the_models_hash():
    sids = toy_sid_table(10, [3, 3], "digit")
    ids = [f"u{n}" for n in range(200)]
    batch = make_history_batch([np.array([1])] * 200, sids, user_ids=ids, n_user_bins=37)
    assert batch.user_bins.tolist() == user_bins(ids, 37).tolist()
    assert batch.user_bins.min() >= 0 and batch.user_bins.max() < 37
    assert len(set(batch.user_bins.tolist())) > 30  # spread over the bins
    anon = make_history_batch([np.array([1])], sids, user_ids=None, n_user_bins=37)
    assert anon.user_bins.tolist() == [0]
    assert make_history_batch([np.array([1])], sids, user_ids=["a"], n_user_bins=0).user_bins is None
