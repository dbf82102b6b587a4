import torch

from sidrec.generation.batching import make_history_batch
from sidrec.generation.beam import beam_search, ranked_items
from sidrec.generation.exact import exact_topk, overlap_at_k
from sidrec.generation.trie import SIDTrie


def test_wide_beam_equals_exact_topk(small_setup):
    model, sids, hists = small_setup
    trie = SIDTrie.build(sids.codes, sids.vocab_sizes, sids.representative)
    # a beam at least as wide as every level's number of distinct prefixes never prunes
    width = max(trie.n_nodes(t) for t in range(1, sids.n_tokens + 1))
    batch = make_history_batch(hists[:6], sids)
    with torch.inference_mode():
        beam_items, beam_scores = ranked_items(beam_search(model, batch, trie, beam_size=width))
    exact_items, exact_scores = exact_topk(model, batch, sids, k=10, batch_size=7)
    assert beam_items[:, :10].tolist() == exact_items.tolist()
    torch.testing.assert_close(beam_scores[:, :10], exact_scores, rtol=1e-4, atol=1e-4)
    assert overlap_at_k(beam_items, exact_items, 10).tolist() == [1.0] * 6


def test_narrow_beam_overlap_is_a_fraction(small_setup):
    model, sids, hists = small_setup
    trie = SIDTrie.build(sids.codes, sids.vocab_sizes, sids.representative)
    batch = make_history_batch(hists[:6], sids)
    with torch.inference_mode():
        beam_items, _ = ranked_items(beam_search(model, batch, trie, beam_size=2))
    exact_items, _ = exact_topk(model, batch, sids, k=2, batch_size=64)
    ov = overlap_at_k(beam_items, exact_items, 2)
    assert ((ov >= 0) & (ov <= 1)).all()
    # the beam's best item is never scored above the exact best
    assert (beam_items[:, 0] >= 0).all()


def test_overlap_hand_case():
    a = torch.tensor([[1, 2, 3], [4, -1, 6]])
    b = torch.tensor([[3, 2, 9], [7, 8, -1]])
    assert overlap_at_k(a, b, 3).tolist() == [2 / 3, 0.0]
