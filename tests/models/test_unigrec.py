"""UniGRec model pieces: soft identifiers (eq. 14-15), embedded encoder/decoder paths, loss terms (eq. 18-22)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sidrec.models.encdec import EncoderDecoder
from sidrec.models import available_models
from sidrec.models.base import HistoryBatch
from sidrec.models.soft_history import SoftHistoryEncoderDecoder
from sidrec.models.unigrec import (
    SoftTokenizer,
    UniGRec,
    adapter,
    soft_token_embeddings,
    symmetric_kl,
)

L, K, D_SEM, N_ITEMS = 2, 6, 12, 30


def _rec(history_tokens: str = "item") -> EncoderDecoder:
    torch.manual_seed(0)
    return EncoderDecoder([K] * L + [3], max_history=5, n_enc_layers=1, n_dec_layers=1, n_heads=2, d_model=16,
                          head_dim=8, d_ff=32, dropout=0.0, history_tokens=history_tokens)


def _tok() -> SoftTokenizer:
    torch.manual_seed(1)
    enc = nn.Sequential(nn.Linear(D_SEM, 16), nn.ReLU(), nn.Linear(16, 4))
    dec = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, D_SEM))
    return SoftTokenizer(enc, dec, torch.randn(L, K, 4))


def _model(teacher: bool = True, train_adapters: bool = False) -> UniGRec:
    torch.manual_seed(2)
    items = torch.randn(N_ITEMS, D_SEM)
    tea = torch.randn(N_ITEMS, 8) if teacher else None
    return UniGRec(_rec(), _tok(), items, tea, tau=0.5, tau_prime=0.07, train_adapters=train_adapters)


def _batch(model: UniGRec):
    g = torch.Generator().manual_seed(3)
    hist = torch.randint(0, N_ITEMS, (6, 5), generator=g)
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[0, :2] = False
    target = torch.randint(0, N_ITEMS, (6,), generator=g)
    lv = model.tokenizer.hard_codes(model.items, model.tau)
    codes = torch.cat([lv, torch.randint(0, 3, (N_ITEMS, 1), generator=g)], 1)
    return hist, mask, target, codes


def test_soft_embeddings_equal_lookup_for_one_hot():
    rec = _rec()
    codes = torch.randint(0, K, (7, 3, L))
    one_hot = F.one_hot(codes, K).float()  # (7, 3, L, K)
    soft = soft_token_embeddings(one_hot, rec.tok.weight, rec.offsets[:L])
    hard = rec.tok(codes + rec.offsets[:L])
    assert torch.equal(soft, hard)
    # a non-degenerate distribution is the probability-weighted mean of the level's rows
    p = torch.softmax(torch.randn(L, K), -1)
    rows = rec.tok.weight[rec.offsets[:L, None] + torch.arange(K)]
    assert torch.allclose(soft_token_embeddings(p, rec.tok.weight, rec.offsets[:L]), (p[..., None] * rows).sum(1))


@pytest.mark.parametrize("history_tokens", ["item", "sid"])
def test_embedded_paths_match_the_encoder_decoder(history_tokens):
    rec = _rec(history_tokens).eval()
    codes = torch.randint(0, K, (4, 5, L + 1)).clamp(max=2)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1, :3] = False
    targets = torch.randint(0, 3, (4, L + 1))
    from sidrec.models.base import HistoryBatch

    hb = HistoryBatch(codes, mask)
    enc_ref, _ = rec.encode(hb)
    enc, kpm, _ = rec.encode_embedded(rec.tok(codes + rec.offsets), mask)
    assert torch.allclose(enc, enc_ref, atol=1e-6)
    # UniGRec's target input: one-hot soft embeddings for the L levels, the de-dup digit looked up
    one_hot = F.one_hot(targets[:, :L], K).float()
    e_tgt = torch.cat([soft_token_embeddings(one_hot, rec.tok.weight, rec.offsets[:L]), rec.tok(targets[:, L:] + rec.offsets[L:])], dim=1)
    h = rec.decode_embedded(enc, kpm, e_tgt[:, None])[:, 0]
    assert torch.allclose(h, rec._teacher_forced(hb, targets[:, None])[:, 0], atol=1e-6)


def test_soft_assignment_sharpens_to_hard_codes():
    tok = _tok()
    x = torch.randn(20, D_SEM)
    probs, _ = tok.assign(x, 1e-4)
    assert torch.allclose(probs.sum(-1), torch.ones(20, L))
    assert torch.equal(probs.argmax(-1), tok.hard_codes(x, None))  # sharp: both chains agree
    # one chain (issue 13 point 6): the hard IDs are the argmax of the soft chain at any tau
    probs, _ = tok.assign(x, 0.3)
    assert torch.equal(probs.argmax(-1), tok.hard_codes(x, 0.3))


def _grads(module: nn.Module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@pytest.mark.parametrize("term", ["rec", "recon", "cd_t", "cd_r"])
def test_each_term_is_finite_and_reaches_both_models(term):
    model = _model()
    hist, mask, target, codes = _batch(model)
    lambdas = {"rec": (0, 0, 0), "recon": (1, 0, 0), "cd_t": (0, 1, 0), "cd_r": (0, 0, 1)}[term]
    out = model.losses(hist, mask, target, codes, True, lambdas)
    assert torch.isfinite(out[term])
    out[term].backward()
    assert _grads(model.tokenizer)
    # reconstruction only involves the tokenizer
    assert _grads(model.rec) == (term != "recon")
    for head in (model.proj_enc, model.proj_tea, model.proj_dec):  # fixed random projections (authors)
        assert not _grads(head)


@pytest.mark.parametrize("train_adapters", [False, True])
def test_distillation_adapters_are_fixed_at_the_authors_init_unless_trained(train_adapters):
    model = _model(train_adapters=train_adapters)
    heads = (model.proj_enc, model.proj_tea, model.proj_dec)
    for head in heads:
        for m in head.modules():
            if isinstance(m, nn.Linear):  # N(0, 0.02), zero bias (the authors' MLPLayers)
                assert m.weight.std().item() == pytest.approx(0.02, rel=0.5) and not m.bias.any()
    hist, mask, target, codes = _batch(model)
    model.losses(hist, mask, target, codes, True, (0.0, 1.0, 1.0))["loss"].backward()
    assert all(_grads(h) == train_adapters for h in heads)
    assert all(p.requires_grad == train_adapters for h in heads for p in h.parameters())


def test_recon_of_whitened_items_is_taken_back_in_the_raw_space():
    model = _model()
    hist, mask, target, codes = _batch(model)
    plain = model.losses(hist, mask, target, codes, True, (1.0, 0.0, 0.0))["recon"]
    model.unwhiten = 2.0 * torch.eye(D_SEM)  # raw = 2 x whitened (the mean cancels in the difference)
    assert model.losses(hist, mask, target, codes, True, (1.0, 0.0, 0.0))["recon"].item() == pytest.approx(4 * plain.item(), rel=1e-5)


def test_disabled_terms_are_absent_and_give_no_gradient():
    model = _model()
    hist, mask, target, codes = _batch(model)
    out = model.losses(hist, mask, target, codes, True, (0.0, 0.0, 0.0))
    assert set(out) == {"rec", "loss"}
    out["loss"].backward()
    for head in (model.proj_enc, model.proj_tea, model.proj_dec):
        assert not _grads(head)
    # hard identifiers: no gradient reaches the tokenizer through the recommender
    model.zero_grad()
    out = model.losses(hist, mask, target, codes, False, (0.5, 0.0, 1.0))
    assert "recon" not in out and torch.isfinite(out["cd_r"])
    out["loss"].backward()
    assert not _grads(model.tokenizer) and _grads(model.rec)


def test_hard_inputs_give_the_recommender_loss():
    model = _model().eval()
    hist, mask, target, codes = _batch(model)
    from sidrec.models.base import HistoryBatch

    out = model.losses(hist, mask, target, codes, False, (0.0, 0.0, 0.0))
    ref = model.rec.loss(HistoryBatch(codes[hist] * mask[..., None], mask), codes[target])
    assert torch.allclose(out["rec"], ref, atol=1e-5)


def _unique_codes() -> torch.Tensor:
    """Distinct SIDs (N_ITEMS, L + 1) of the toy vocabulary (K x K x 3)."""
    n = torch.arange(N_ITEMS)
    return torch.stack([n % K, (n // K) % K, torch.zeros(N_ITEMS, dtype=torch.long)], 1)


def test_served_model_sees_the_soft_history_the_model_trains_on():
    # points 4 + 5: training feeds soft identifiers to the encoder and hard SIDs to the decoder;
    # the served model (validation, evaluate, recommend) must compute the very same loss
    model = _model().eval()
    hist, mask, target, _ = _batch(model)
    codes = _unique_codes()
    out = model.losses(hist, mask, target, codes, True, (0.0, 0.0, 0.0))
    served = model.serving_model(codes, True)
    assert isinstance(served, SoftHistoryEncoderDecoder)
    ref = served.loss(HistoryBatch(codes[hist] * mask[..., None], mask), codes[target])
    assert torch.allclose(out["rec"], ref, atol=1e-5)
    # the hard-ID recommender is a different model on these inputs
    assert not torch.allclose(model.rec.loss(HistoryBatch(codes[hist] * mask[..., None], mask), codes[target]), ref, atol=1e-3)
    assert model.serving_model(codes, False) is model.rec


def test_soft_history_model_round_trips_and_falls_back_to_lookup():
    from sidrec.models import build_from_config

    rec = _rec().eval()
    codes = _unique_codes()
    # one-hot soft inputs reproduce the plain encoder-decoder exactly
    one_hot = rec.tok(codes[:, :L] + rec.offsets[:L])
    served = SoftHistoryEncoderDecoder.wrap(rec, codes, one_hot).eval()
    hb = HistoryBatch(codes[torch.randint(0, N_ITEMS, (4, 5))], torch.ones(4, 5, dtype=torch.bool))
    assert torch.allclose(served.encode(hb)[0], rec.encode(hb)[0], atol=1e-6)
    # other soft inputs change the encoding; a checkpoint round trip keeps them
    served = SoftHistoryEncoderDecoder.wrap(rec, codes, torch.randn(N_ITEMS, L, 16)).eval()
    again = build_from_config(served.arch, served.config())
    again.load_state_dict(served.state_dict())
    again.eval()
    assert torch.equal(again.encode(hb)[0], served.encode(hb)[0])
    assert not torch.allclose(served.encode(hb)[0], rec.encode(hb)[0], atol=1e-3)
    # a SID that is no item's (here: every history row) is looked up like the plain model's
    unknown = HistoryBatch(torch.full((2, 5, L + 1), 2), torch.ones(2, 5, dtype=torch.bool))
    assert torch.allclose(served.encode(unknown)[0], rec.encode(unknown)[0], atol=1e-6)


def test_cd_t_scores_codewords_by_negative_distance_without_sharpening():
    tok = _tok()
    v = tok.codebooks[0, 3][None] + 1e-3  # next to codeword 3 of level 1
    logits = tok.code_logits(v, 1.0)
    assert logits.shape == (1, L, K) and int(logits[0, 0].argmax()) == 3  # the paper's sign: nearest = likeliest
    # no tau_min sharpening: logits are -d itself, so the distribution is far from one-hot
    assert float(torch.softmax(logits[0, 0], -1).max()) < 0.99
    assert torch.allclose(tok.code_logits(v, 0.5), 2 * logits)


def test_symmetric_kl_is_averaged_over_items_and_levels():
    p = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]))  # (U=1, L=2, K=2)
    q = torch.log(torch.tensor([[[0.5, 0.5], [0.5, 0.5]]]))
    kl = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5) + 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert float(symmetric_kl(p, q)) == pytest.approx(kl / 2)  # level 1 contributes 0; mean over 2 levels
    assert float(symmetric_kl(torch.cat([p, p]), torch.cat([q, q]))) == pytest.approx(kl / 2)


def test_distillation_counts_each_target_once():
    model = _model().eval()
    hist, mask, target, codes = _batch(model)
    one = model.losses(hist, mask, target, codes, True, (0.0, 1.0, 1.0))
    twice = model.losses(torch.cat([hist, hist]), torch.cat([mask, mask]), torch.cat([target, target]), codes, True, (0.0, 1.0, 1.0))
    # repeated targets are neither extra KL terms nor false in-batch negatives
    assert torch.allclose(one["cd_t"], twice["cd_t"], atol=1e-6) and torch.allclose(one["cd_r"], twice["cd_r"], atol=1e-5)


def test_adapters_map_into_codeword_space_by_halving_widths():
    widths = lambda m: [layer.in_features for layer in m if isinstance(layer, nn.Linear)] + [m[-1].out_features]  # noqa: E731
    assert widths(adapter(128, 32, 2)) == [128, 64, 32]  # encoder state -> codewords
    assert widths(adapter(256, 32, 3)) == [256, 128, 64, 32]  # d-256 teacher -> codewords
    assert widths(adapter(128, 256, 3)) == [128, 256]  # decoder state -> teacher width (L_CD^R in 256-d)
    model = _model()
    assert model.proj_dec[-1].out_features == model.teacher.shape[1]


def test_soft_history_model_decodes_consistently_with_its_scores():
    # beam search (KV cache, reorder) and teacher-forced scoring agree on the soft-history model
    from sidrec.generation.beam import beam_search, ranked_items
    from sidrec.generation.exact import exact_topk
    from sidrec.generation.trie import SIDTrie
    from sidrec.tokenizers.sid_table import SIDTable

    codes = _unique_codes()
    sids = SIDTable([f"i{n}" for n in range(N_ITEMS)], codes.numpy(), [K] * L + [3], "digit", torch.ones(N_ITEMS, dtype=torch.bool).numpy())
    served = SoftHistoryEncoderDecoder.wrap(_rec(), codes, torch.randn(N_ITEMS, L, 16)).eval()
    hist = HistoryBatch(codes[torch.randint(0, N_ITEMS, (3, 5))], torch.ones(3, 5, dtype=torch.bool))
    trie = SIDTrie.build(sids.codes, sids.vocab_sizes, sids.representative)
    with torch.inference_mode():
        res = beam_search(served, hist, trie, beam_size=N_ITEMS, constrained=True)
        torch.testing.assert_close(res.scores, served.score(hist, res.sids), rtol=1e-4, atol=1e-4)
        _, scores = ranked_items(res)
        _, exact = exact_topk(served, hist, sids, k=5, batch_size=8)
    torch.testing.assert_close(scores[:, :5], exact, rtol=1e-4, atol=1e-4)
    assert "encdec-soft" not in available_models()  # checkpoint-only: not a model.arch choice
