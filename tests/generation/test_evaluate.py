import math

import numpy as np
import pytest
import torch

from sidrec.errors import SidrecError
from sidrec.generation.batching import make_history_batch
from sidrec.generation.evaluate import align_sids, decode_split, evaluate_split, pick_users
from sidrec.generation.exact import exact_topk
from sidrec.generation.trie import SIDTrie
from sidrec.tokenizers.sid_table import SIDTable
from tests.generation.toy_generator import ToyGRUGenerator, toy_sids_for

KEYS = ["recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr", "n_users", "users_per_second"]


def test_wide_beam_metrics_equal_a_brute_force_reference(prepared_setup):
    model, data, sids = prepared_setup
    trie = SIDTrie.build(sids.codes, sids.vocab_sizes, sids.representative)
    width = max(trie.n_nodes(t) for t in range(1, sids.n_tokens + 1))  # never prunes
    got = evaluate_split(model, data, sids, "test", beam_size=width, constrained=True, ks=(5, 10), batch_size=7)
    assert sorted(got) == sorted(KEYS)
    # reference: score every item for every user, rank, and average by hand
    ex = data.eval_examples("test")
    batch = make_history_batch(ex.histories, sids)
    ranked, _ = exact_topk(model, batch, sids, k=data.n_items, batch_size=100)
    ref = {"recall@5": 0.0, "recall@10": 0.0, "ndcg@5": 0.0, "ndcg@10": 0.0, "mrr": 0.0}
    for row, target in zip(ranked.tolist(), ex.targets.tolist()):
        if target not in row:  # a non-representative item of a colliding SID is never recommended
            continue
        rank = row.index(target) + 1
        for k in (5, 10):
            ref[f"recall@{k}"] += (rank <= k) / len(ex.targets)
            ref[f"ndcg@{k}"] += (rank <= k) / math.log2(rank + 1) / len(ex.targets)
        ref["mrr"] += 1 / rank / len(ex.targets)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value), key
    assert got["n_users"] == data.n_users


def test_metrics_do_not_depend_on_batching_or_mode_switches(prepared_setup):
    model, data, sids = prepared_setup
    a = evaluate_split(model, data, sids, "valid", beam_size=10, ks=(5, 10), batch_size=4)
    model.train()
    b = evaluate_split(model, data, sids, "valid", beam_size=10, ks=(5, 10), batch_size=64)
    assert model.training  # restored
    for key in KEYS[:-1]:
        assert a[key] == pytest.approx(b[key])


def test_max_users_is_a_fixed_seeded_subset(prepared_setup):
    model, data, sids = prepared_setup
    assert (pick_users(40, 10, seed=3) == pick_users(40, 10, seed=3)).all()
    assert len(set(pick_users(40, 10, seed=3).tolist())) == 10
    assert (pick_users(40, 100, seed=3) == np.arange(40)).all()
    got = evaluate_split(model, data, sids, "test", beam_size=5, ks=(5,), batch_size=8, max_users=10, seed=3)
    assert got["n_users"] == 10


def test_filter_seen_and_free_mode(prepared_setup):
    model, data, sids = prepared_setup
    free = evaluate_split(model, data, sids, "test", beam_size=8, constrained=False, ks=(5,), batch_size=16)
    seen = evaluate_split(model, data, sids, "test", beam_size=8, ks=(5,), batch_size=16, filter_seen=True)
    for r in (free, seen):
        assert 0.0 <= r["recall@5"] <= 1.0 and r["ndcg@5"] <= r["recall@5"] + 1e-12


def test_user_tokens_reach_the_model(prepared_setup):
    _, data, sids = prepared_setup

    class NeedsUserBins(ToyGRUGenerator):
        def start(self, history, beam_size):
            assert history.user_bins is not None and history.user_bins.max() < self.user_tokens
            return super().start(history, beam_size)

    model = NeedsUserBins(sids.vocab_sizes, d=8, user_tokens=7)
    got = evaluate_split(model, data, sids, "test", beam_size=3, ks=(3,), batch_size=16)
    assert got["n_users"] == data.n_users


def test_sid_table_in_another_row_order_gives_the_same_metrics(prepared_setup):
    model, data, sids = prepared_setup
    perm = np.random.default_rng(0).permutation(data.n_items)
    shuffled = SIDTable([sids.item_ids[p] for p in perm], sids.codes[perm], sids.vocab_sizes, sids.collision, sids.representative[perm])
    a = evaluate_split(model, data, sids, "test", beam_size=6, ks=(5,), batch_size=16)
    b = evaluate_split(model, data, shuffled, "test", beam_size=6, ks=(5,), batch_size=16)
    for key in KEYS[:-1]:
        if key in a:
            assert a[key] == pytest.approx(b[key])
    assert align_sids(data, shuffled).item_ids == data.item_ids


def test_mismatched_sid_table_and_bad_split(prepared_setup):
    model, data, sids = prepared_setup
    other = toy_sids_for(data, [4, 4], "digit")
    other.item_ids = other.item_ids[:-1] + ["not-prepared"]
    with pytest.raises(SidrecError, match=f"lacks 1 of the {data.n_items} prepared items"):
        evaluate_split(model, data, other, "test", beam_size=3, ks=(3,))
    with pytest.raises(SidrecError, match="unknown split"):
        evaluate_split(model, data, sids, "train", beam_size=3, ks=(3,))


def test_cutoffs_beyond_the_beam_warn_and_equal_the_beam_cutoff(prepared_setup):
    model, data, sids = prepared_setup
    with pytest.warns(UserWarning, match="exceed the beam size 5"):
        got = evaluate_split(model, data, sids, "test", beam_size=5, ks=(5, 10), batch_size=16)
    assert got["recall@10"] == got["recall@5"] and got["ndcg@10"] == got["ndcg@5"]


def test_random_collisions_recommend_only_representatives(prepared_setup):
    _, data, _ = prepared_setup
    sids = toy_sids_for(data, [4, 4], "random")  # items 0 and 1 share a SID; one of them represents it
    assert sids.representative.sum() < data.n_items
    model = ToyGRUGenerator(sids.vocab_sizes, d=8).eval()
    with torch.inference_mode():
        batches = list(decode_split(model, data, sids, "test", np.arange(data.n_users), 8, True, 16))
    for db in batches:
        listed = db.items[db.items >= 0].numpy()
        assert sids.representative[listed].all()  # a colliding SID maps to its representative item only
