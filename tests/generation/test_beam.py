import numpy as np
import pytest
import torch

from sidrec.errors import SidrecError
from sidrec.generation.batching import make_history_batch
from sidrec.generation.beam import BeamResult, beam_search, ranked_items
from sidrec.generation.trie import SIDTrie
from tests.generation.toy_generator import ToyGRUGenerator, toy_sid_table, train_toy


def _trie(sids):
    return SIDTrie.build(sids.codes, sids.vocab_sizes, sids.representative)


def test_constrained_beams_are_valid_sorted_and_scored_like_teacher_forcing(small_setup):
    model, sids, hists = small_setup
    batch = make_history_batch(hists[:8], sids)
    n_start = model.n_start
    with torch.inference_mode():
        res = beam_search(model, batch, _trie(sids), beam_size=6, constrained=True)
        assert model.n_start == n_start + 1  # context encoded once per batch
        rescored = model.score(batch, res.sids)
    assert res.sids.shape == (8, 6, 3) and res.scores.shape == (8, 6)
    assert torch.isfinite(res.scores).all()
    assert (res.scores[:, :-1] >= res.scores[:, 1:]).all()
    # every beam is an item's SID, and its score is the KV-cached sum of log-probs
    assert (torch.from_numpy(sids.codes)[res.items] == res.sids).all()
    torch.testing.assert_close(res.scores, rescored, rtol=1e-4, atol=1e-4)
    # distinct SIDs per user
    for b in range(8):
        assert len({tuple(s) for s in res.sids[b].tolist()}) == 6


def test_fewer_valid_sids_than_beams_leaves_no_fake_results():
    sids = toy_sid_table(3, [4, 5], "digit")  # 3 items, two colliding -> 3 valid SIDs
    model = ToyGRUGenerator(sids.vocab_sizes, d=8)
    model.eval()
    batch = make_history_batch([np.array([0]), np.array([1, 2])], sids)
    with torch.inference_mode():
        res = beam_search(model, batch, _trie(sids), beam_size=10, constrained=True)
    assert torch.isfinite(res.scores).sum(dim=1).tolist() == [3, 3]
    assert (res.items[:, 3:] == -1).all() and torch.isinf(res.scores[:, 3:]).all()
    assert sorted(res.items[0, :3].tolist()) == [0, 1, 2]
    items, scores = ranked_items(res)
    assert sorted(items[1, :3].tolist()) == [0, 1, 2] and (items[:, 3:] == -1).all()


def test_beam_wider_than_first_vocabulary():
    sids = toy_sid_table(20, [3, 4], "random")
    model = ToyGRUGenerator(sids.vocab_sizes, d=8)
    model.eval()
    batch = make_history_batch([np.array([4, 5])], sids)
    with torch.inference_mode():
        res = beam_search(model, batch, _trie(sids), beam_size=7, constrained=True)
    n_valid = int(sids.representative.sum())
    assert torch.isfinite(res.scores).sum().item() == min(7, n_valid)
    ok = res.items[0] >= 0
    assert sids.representative[res.items[0][ok].numpy()].all()


def test_free_mode_misses_keep_their_rank_and_match_no_item(small_setup):
    model, sids, hists = small_setup
    trie = _trie(sids)
    batch = make_history_batch(hists[:4], sids)
    n_all = int(np.prod(sids.vocab_sizes))  # beam as wide as the whole SID space: exact search
    with torch.inference_mode():
        free = beam_search(model, batch, trie, beam_size=n_all, constrained=False)
        cons = beam_search(model, batch, trie, beam_size=10, constrained=True)
    assert torch.isfinite(free.scores).all()
    valid = {tuple(r) for r in sids.codes.tolist()}
    for b in range(4):
        for s, item in zip(free.sids[b].tolist(), free.items[b].tolist()):
            assert (item >= 0) == (tuple(s) in valid)
            if item >= 0:
                assert sids.codes[item].tolist() == s
    assert (free.items == -1).any()  # 4*5*3=60 SIDs for 40 items: some generated SIDs are misses
    # exact free search restricted to valid SIDs is the constrained ranking
    items, _ = ranked_items(free)
    for b in range(4):
        kept = [i for i in items[b].tolist() if i >= 0][:10]
        assert kept == cons.items[b].tolist()
    # a miss occupies its rank: ranked_items leaves it in place
    first_miss = int((free.items[0] == -1).nonzero()[0])
    assert items[0, first_miss] == -1 and torch.isfinite(ranked_items(free)[1][0, first_miss])


def test_ranked_items_dedups_and_excludes():
    res = BeamResult(
        sids=torch.zeros(2, 5, 2, dtype=torch.long),
        scores=torch.tensor([[-1.0, -2.0, -3.0, -4.0, float("-inf")], [-1.0, -2.0, -3.0, -4.0, -5.0]]),
        items=torch.tensor([[7, 3, 7, -1, -1], [4, 5, 6, 4, 8]]),
    )
    items, scores = ranked_items(res)
    assert items.tolist() == [[7, 3, -1, -1, -1], [4, 5, 6, 8, -1]]
    assert scores.tolist() == [[-1.0, -2.0, -4.0, float("-inf"), float("-inf")], [-1.0, -2.0, -3.0, -5.0, float("-inf")]]
    items, _ = ranked_items(res, exclude=torch.tensor([[3, -1], [4, 6]]))
    assert items.tolist() == [[7, -1, -1, -1, -1], [5, 8, -1, -1, -1]]


def test_vocabulary_mismatch_is_a_user_error(small_setup):
    model, sids, hists = small_setup
    other = toy_sid_table(40, [4, 6], "digit")
    with pytest.raises(SidrecError, match="vocabulary sizes"):
        beam_search(model, make_history_batch(hists[:2], sids), _trie(other), beam_size=3)
    with pytest.raises(SidrecError, match="beam size"):
        beam_search(model, make_history_batch(hists[:2], sids), _trie(sids), beam_size=0)


def test_training_the_toy_model_makes_beam_search_useful():
    sids = toy_sid_table(40, [4, 5], "digit")
    model = ToyGRUGenerator(sids.vocab_sizes, d=32)
    hists = train_toy(model, sids, n_users=32, steps=150)
    batch = make_history_batch(hists, sids)
    with torch.inference_mode():
        res = beam_search(model, batch, _trie(sids), beam_size=5)
    targets = torch.tensor([h[-1] + 1 for h in hists])
    hit = (res.items == targets[:, None]).any(dim=1).float().mean().item()
    assert hit > 5 / 40  # clearly better than a random 5 of 40 items on the training users
