"""Beam search and exact scoring against the project's own architectures (sidrec.models)."""

import numpy as np
import pytest
import torch

from sidrec.config import ModelConfig
from sidrec.generation.batching import make_history_batch
from sidrec.generation.beam import beam_search, ranked_items
from sidrec.generation.exact import exact_topk
from sidrec.generation.trie import SIDTrie
from sidrec.models import available_models, build_model
from tests.generation.toy_generator import toy_sid_table


@pytest.mark.parametrize("arch", available_models())
@pytest.mark.parametrize("user_tokens", [0, 5])
def test_wide_beam_is_exact_and_scores_match_teacher_forcing(arch, user_tokens):
    sids = toy_sid_table(40, [4, 5], "digit", seed=2)
    cfg = ModelConfig(arch=arch, n_enc_layers=1, n_dec_layers=2, n_heads=2, d_model=16, head_dim=8, d_ff=32, dropout=0.0, user_tokens=user_tokens)
    torch.manual_seed(0)
    model = build_model(cfg, sids.vocab_sizes, max_history=6).eval()
    rng = np.random.default_rng(0)
    hists = [rng.choice(40, size=rng.integers(1, 7), replace=False) for _ in range(5)]
    batch = make_history_batch(hists, sids, [f"u{n}" for n in range(5)], user_tokens)
    trie = SIDTrie.build(sids.codes, sids.vocab_sizes, sids.representative)
    width = max(trie.n_nodes(t) for t in range(1, sids.n_tokens + 1))
    with torch.inference_mode():
        res = beam_search(model, batch, trie, beam_size=width, constrained=True)
        rescored = model.score(batch, res.sids)
        free = beam_search(model, batch, trie, beam_size=7, constrained=False)
        free_rescored = model.score(batch, free.sids)
    torch.testing.assert_close(res.scores, rescored, rtol=1e-4, atol=1e-4)  # KV cache + reorder are consistent
    torch.testing.assert_close(free.scores, free_rescored, rtol=1e-4, atol=1e-4)
    items, scores = ranked_items(res)
    exact_items, exact_scores = exact_topk(model, batch, sids, k=10, batch_size=16)
    torch.testing.assert_close(scores[:, :10], exact_scores, rtol=1e-4, atol=1e-4)
    assert (items[:, :10] == exact_items).float().mean() > 0.9  # equal up to near-ties in score
