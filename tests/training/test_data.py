"""Training units: sliding windows, decoder-only windows, bucketed deterministic order."""

from __future__ import annotations

import numpy as np
import pytest

from sidrec.training.data import TrainData
from tests.training.helpers import toy_codes, toy_sequences


def test_sliding_window_has_one_sample_per_prefix_with_truncated_left_padded_history():
    seqs = toy_sequences()
    data = TrainData(seqs, toy_codes(), 5, "sample", True, 8, 0)
    assert len(data) == data.n_targets_total == sum(len(s) - 1 for s in seqs)
    codes = toy_codes()
    seen = 0
    for units in data.epoch_batches(0):
        b = data.make_batch(units)
        for r, u in enumerate(units):
            user, size, first = data.unit_user[u], data.unit_size[u], data.unit_first[u]
            seq = np.concatenate(seqs)[first : first + size]
            hist, target = seq[:-1], seq[-1]
            assert len(hist) <= 5
            H = b.history.codes.shape[1]
            np.testing.assert_array_equal(b.history.mask[r].numpy(), np.arange(H) >= H - len(hist))
            np.testing.assert_array_equal(b.history.codes[r, H - len(hist) :].numpy(), codes[hist])
            assert (b.history.codes[r, : H - len(hist)] == 0).all()
            np.testing.assert_array_equal(b.targets[r].numpy(), codes[target])
            assert user >= 0
            seen += 1
    assert seen == len(data)


def test_without_sliding_window_each_user_predicts_its_last_train_item_once():
    seqs = toy_sequences()
    data = TrainData(seqs, toy_codes(), 5, "sample", False, 8, 0)
    assert len(data) == len(seqs)
    ends = data.unit_first + data.unit_size - 1
    np.testing.assert_array_equal(np.concatenate(seqs)[ends], [s[-1] for s in seqs])


def test_sub_windows_give_every_contiguous_history_of_each_target():
    seqs = [np.arange(n) + 10 * k for k, n in enumerate((2, 4, 8))]
    data = TrainData(seqs, toy_codes(30), 5, "sample", True, 8, 0, sub_windows=True)
    flat = np.concatenate(seqs)
    windows = {tuple(flat[f : f + n]) for f, n in zip(data.unit_first, data.unit_size)}
    expected = {tuple(s[a : b + 1]) for s in seqs for b in range(1, len(s)) for a in range(max(0, b - 5), b)}
    assert windows == expected and len(data) == len(expected)  # each (history, target) once, histories <= 5


def test_sub_windows_are_rejected_for_the_decoder_only_model(tmp_path):
    from sidrec.config import load_config
    from sidrec.errors import SidrecError
    from sidrec.training.stage import build_train_data

    cfg = load_config(None, [f"workdir={tmp_path}", "model.arch=deconly", "train.sub_windows=true"])
    with pytest.raises(SidrecError, match="train.sub_windows"):
        build_train_data(cfg, None, None, "sequence")


def test_sequence_windows_cover_every_target_exactly_once():
    seqs = [np.arange(n) for n in (2, 5, 6, 7, 12, 13)]
    data = TrainData(seqs, np.zeros((13, 3), dtype=np.int64), 5, "sequence", True, 8, 0)
    assert data.n_targets_total == sum(n - 1 for n in (2, 5, 6, 7, 12, 13))
    assert data.unit_size.max() <= 6
    for units in data.epoch_batches(0):
        b = data.make_batch(units)
        assert b.n_targets == int((b.lengths - 1).sum()) == b.n_global


def test_epoch_order_is_a_seeded_length_bucketed_permutation():
    data = TrainData(toy_sequences(200), toy_codes(), 5, "sample", True, 16, 0)
    e0 = data.epoch_batches(0)
    again = TrainData(toy_sequences(200), toy_codes(), 5, "sample", True, 16, 0).epoch_batches(0)
    assert all((a == b).all() for a, b in zip(e0, again))
    assert sorted(np.concatenate(e0).tolist()) == list(range(len(data)))
    assert any((a != b).any() for a, b in zip(e0, data.epoch_batches(1)))
    # bucketing: far less padding than random batches
    pad_bucketed = sum(data.unit_size[u].max() * len(u) - data.unit_size[u].sum() for u in e0)
    perm = np.random.default_rng(0).permutation(len(data))
    pad_random = sum(data.unit_size[u].max() * len(u) - data.unit_size[u].sum() for u in np.array_split(perm, len(e0)))
    assert pad_bucketed < 0.25 * pad_random


def test_rank_shares_partition_the_global_batch():
    data = TrainData(toy_sequences(), toy_codes(), 5, "sample", True, 9, 0)
    units = data.epoch_batches(0)[0]
    parts = [data.make_batch(units, r, 2) for r in range(2)]
    assert sum(p.n_targets for p in parts) == parts[0].n_global == parts[1].n_global == len(units)
