"""SASRec: shapes, causality, learning a deterministic pattern, determinism, resume, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sidrec.config import DataConfig
from sidrec.data import PreparedData, RawDataset, prepare
from sidrec.errors import SidrecError
from sidrec.models.sasrec import SASRec, pad_histories
from sidrec.training import sasrec as sasrec_training
from sidrec.training.sasrec import SASRecConfig, evaluate_sasrec, export_item_embeddings, full_ranks, train_sasrec, train_windows

N_ITEMS = 30
FAST = SASRecConfig(d_model=32, n_layers=1, n_heads=2, dropout=0.1, lr=5e-3, batch_size=64, max_epochs=8, patience=3)


@pytest.fixture(scope="module")
def cyclic_data(tmp_path_factory) -> PreparedData:
    """120 users walking the cycle 0 -> 1 -> ... -> 29 -> 0 from a random start: the next item is always i+1."""
    rng = np.random.default_rng(0)
    seqs = {}
    for u in range(120):
        start, length = int(rng.integers(N_ITEMS)), int(rng.integers(5, 12))
        seqs[f"u{u}"] = [f"i{(start + t) % N_ITEMS}" for t in range(length)]
    items = {f"i{n}": {"title": f"item {n}"} for n in range(N_ITEMS)}
    root = tmp_path_factory.mktemp("cyclic")
    prepare(RawDataset("cyclic", items, seqs), DataConfig(min_count=0, max_history=6), root)
    return PreparedData(root)


def test_shapes_and_item_embeddings():
    model = SASRec(n_items=10, max_history=5, d_model=16, n_layers=2, n_heads=2).eval()
    items = torch.tensor([[1, 2, 3, 10, 10], [4, 5, 6, 7, 8]])  # 10 = padding
    assert model(items).shape == (2, 5, 16)
    assert model.scores(items).shape == (2, 10)
    emb = model.item_embeddings()
    assert emb.shape == (10, 16)
    # scores are the last real position's hidden state dotted with the exported embeddings
    last = model(items)[torch.tensor([0, 1]), torch.tensor([2, 4])]
    torch.testing.assert_close(model.scores(items), last @ emb.T)


def test_causal_and_padding_invariant():
    torch.manual_seed(0)
    model = SASRec(n_items=10, max_history=6, d_model=16, n_layers=2, n_heads=2).eval()
    a = torch.tensor([[1, 2, 3, 4, 5, 6]])
    b = a.clone()
    b[0, 4] = 9  # change a later item
    ha, hb = model(a), model(b)
    torch.testing.assert_close(ha[:, :4], hb[:, :4])
    assert not torch.allclose(ha[:, 4:], hb[:, 4:])
    # trailing padding changes nothing for the real positions
    padded = torch.tensor([[1, 2, 3, 10, 10, 10]])
    torch.testing.assert_close(model(padded)[:, :3], model(a[:, :3]))


def test_bad_histories_raise_one_line_errors():
    model = SASRec(n_items=10, max_history=4, d_model=8, n_layers=1, n_heads=1)
    with pytest.raises(SidrecError, match="non-empty history"):
        model.scores(torch.tensor([[1, 2], [10, 10]]))
    with pytest.raises(SidrecError, match=r"item indices in \[0, 10\)"):
        model.scores(torch.tensor([[1, 11]]))
    with pytest.raises(SidrecError, match=r"item indices in \[0, 10\)"):
        model.scores(torch.tensor([[-1, 2]]))
    with pytest.raises(SidrecError, match="at most 4 items"):
        model.scores(torch.tensor([[1, 2, 3, 4, 5]]))
    with pytest.raises(SidrecError, match="right-padded"):
        model.scores(torch.tensor([[10, 2]]))
    with pytest.raises(SidrecError, match="divisible"):
        SASRec(n_items=10, max_history=4, d_model=10, n_heads=3)


def test_pad_histories_keeps_most_recent():
    x = pad_histories([[1, 2, 3, 4], [5]], pad_idx=9, max_len=3)
    assert x.tolist() == [[2, 3, 4], [5, 9, 9]]


def test_train_windows_cover_each_target_once():
    seq = np.arange(12)
    windows = train_windows([seq, np.arange(1)], max_history=4)
    targets = sorted(t for w in windows for t in w[1:].tolist())
    assert targets == list(range(1, 12))
    assert all(len(w) <= 5 for w in windows)


def test_full_ranks_count_ties_against_the_target():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]])
    assert full_ranks(scores, torch.tensor([2, 0])).tolist() == [3, 4]
    assert full_ranks(scores, torch.tensor([1, 3])).tolist() == [1, 4]


def test_learns_successor_pattern_deterministically_and_exports(cyclic_data, tmp_path):
    torch.set_num_threads(1)
    r1 = train_sasrec(cyclic_data, tmp_path / "a", FAST, seed=0, progress=False)
    assert r1["valid"]["recall@5"] > 0.9  # chance level is 5/30
    r2 = train_sasrec(cyclic_data, tmp_path / "b", FAST, seed=0, progress=False)
    assert r1["history"] == r2["history"]
    test = evaluate_sasrec(tmp_path / "a", cyclic_data, "test")
    assert test["recall@10"] > 0.9 and test["n_users"] == cyclic_data.n_users
    assert set(test) >= {"recall@5", "recall@30", "ndcg@5", "ndcg@30", "mrr"}
    emb = export_item_embeddings(tmp_path / "a")
    assert emb.shape == (N_ITEMS, FAST.d_model)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "item_embeddings.npy"), emb)
    # filtering seen items can only drop the targets that were already seen
    assert evaluate_sasrec(tmp_path / "a", cyclic_data, "test", filter_seen=True)["n_users"] == cyclic_data.n_users


def test_resume_after_interruption_matches_uninterrupted_run(cyclic_data, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    cfg = SASRecConfig(d_model=16, n_layers=1, n_heads=1, dropout=0.3, lr=5e-3, batch_size=64, max_epochs=4, patience=10)
    full = train_sasrec(cyclic_data, tmp_path / "full", cfg, seed=3, progress=False)

    real_epoch, calls = sasrec_training._run_epoch, []

    def crashing_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed during the third epoch
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(sasrec_training, "_run_epoch", crashing_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_sasrec(cyclic_data, tmp_path / "cut", cfg, seed=3, progress=False)
    monkeypatch.setattr(sasrec_training, "_run_epoch", real_epoch)
    resumed = train_sasrec(cyclic_data, tmp_path / "cut", cfg, seed=3, resume=True, progress=False)

    assert resumed["history"] == full["history"]
    for name in ("model.safetensors", "checkpoint.safetensors"):
        a, b = load_file(str(tmp_path / "full" / name)), load_file(str(tmp_path / "cut" / name))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    with pytest.raises(SidrecError, match="cannot resume"):
        train_sasrec(cyclic_data, tmp_path / "cut", cfg, seed=4, resume=True, progress=False)
