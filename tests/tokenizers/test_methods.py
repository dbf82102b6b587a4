"""Method-specific behaviour beyond the shared contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sidrec.errors import SidrecError
from sidrec.metrics.sid_quality import preference_discrimination, semantic_cohesion
from sidrec.tokenizers import get_tokenizer
from sidrec.tokenizers._kmeans import balanced_assign
from sidrec.tokenizers.r3vae import R3VAEModule, preference_discrimination_loss, semantic_cohesion_loss
from sidrec.tokenizers._torch import recon_loss, reset_dead_codes_
from sidrec.tokenizers.soft_rqvae import SoftRQVAEModule, codeword_uniformity_loss

from .conftest import K, clustered, make_tokenizer


def _purity(pred: np.ndarray, label: np.ndarray) -> float:
    """Fraction of items whose code is the majority code of their true cluster."""
    return sum(np.bincount(pred[label == c]).max() for c in np.unique(label)) / len(label)


@pytest.mark.parametrize("method", ["rkmeans", "rkmeans-balanced", "kmeans", "rvq"])
def test_first_level_recovers_well_separated_clusters(method):
    x, label = clustered(spread=0.02)
    codes = make_tokenizer(method).fit(x).encode(x)
    # Lloyd from a random init may merge two true clusters (a local optimum), never more here
    assert _purity(codes[:, 0], label) >= 1 - 2 / K


def test_balanced_assignment_respects_capacity_and_prefers_near_centroids():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    c = np.zeros((3, 4), dtype=np.float32)
    c[0] = 10  # every point is nearest to centroid 1/2 (ties) but capacity forces a spread
    a = balanced_assign(x, c)
    assert np.bincount(a, minlength=3).max() <= math.ceil(50 / 3)
    codes = make_tokenizer("rkmeans-balanced").fit(clustered()[0]).encode(clustered()[0])
    for level in range(codes.shape[1]):
        assert np.bincount(codes[:, level]).max() <= math.ceil(len(codes) / K)


def test_rkmeans_normalisation_switch_changes_codes():
    x = clustered(spread=0.3)[0] * np.linspace(0.5, 3, 300, dtype=np.float32)[:, None]
    a = make_tokenizer("rkmeans", normalize_residuals=True).fit(x).encode(x)
    b = make_tokenizer("rkmeans", normalize_residuals=False).fit(x).encode(x)
    assert not np.array_equal(a, b)


def test_hierarchical_kmeans_leaves_decode_to_their_item_when_parents_are_small():
    x = clustered()[0]
    tok = make_tokenizer("kmeans", n_levels=2, codebook_size=64)
    codes = tok.fit(x).encode(x)
    assert len(np.unique(codes, axis=0)) == len(x)  # < 64 items per top cluster -> one leaf per item
    np.testing.assert_allclose(tok.decode(codes), x, atol=1e-6)


def test_vqvae_is_single_level():
    with pytest.raises(SidrecError, match=r"`n_levels` of VQVAE must be 1 \(single codebook; set tokenizer.n_levels=1\), got 3."):
        make_tokenizer("vqvae", n_levels=3).fit(clustered()[0])


def test_r3vae_projection_and_rating_follow_the_equations():
    torch.manual_seed(0)
    m = R3VAEModule(dim=5, n_levels=2, codebook_size=6, top_k=6, temperature=1.0)
    x = torch.randn(7, 5)
    alpha, e0 = m.project(x)
    torch.testing.assert_close(e0 @ m.ref, torch.zeros(7), atol=1e-5, rtol=0)  # e0 is orthogonal to r
    e_hat, code = m.rate(e0, 0)
    cb = m.codebooks[0]
    s = torch.nn.functional.cosine_similarity(e0[:, None, :], cb[None], dim=2)
    torch.testing.assert_close(e_hat, torch.softmax(s, 1) @ cb)  # top_k = M: plain softmax-weighted sum
    assert torch.equal(code, s.argmax(1))
    x_hat, codes, _ = m(x)
    e1 = e0 - e_hat
    torch.testing.assert_close(x_hat, alpha[:, None] * m.ref + e_hat + m.rate(e1, 1)[0])  # eq. 11


def test_r3vae_regularisers_match_the_evaluation_metrics():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(12, 4))
    code = np.array([0, 0, 1, 1, 1, 2, 3, 3, 0, 2, 2, 1])
    sc = semantic_cohesion_loss(torch.tensor(e), torch.tensor(code), 5)
    assert float(sc) == pytest.approx(semantic_cohesion(e, code[:, None]))
    cb = rng.normal(size=(5, 4))
    pd = preference_discrimination_loss(torch.tensor(cb))
    assert float(pd) == pytest.approx(preference_discrimination(cb, np.arange(5)[:, None]))


def test_soft_rqvae_probabilities_are_differentiable_and_hard_ids_are_their_argmax():
    x = clustered()[0]
    tok = make_tokenizer("soft-rqvae").fit(x)
    xt = torch.from_numpy(x[:20])
    probs = tok.probabilities(xt)
    assert probs.shape == (20, 2, K)
    torch.testing.assert_close(probs.sum(2), torch.ones(20, 2))
    codeword_uniformity_loss(probs).backward()
    assert tok.module_.codebooks.grad is not None and tok.module_.encoder[0].weight.grad.abs().sum() > 0
    # first level: the hard ID is the argmax of the soft assignment (same residual)
    np.testing.assert_array_equal(tok.encode(x[:20])[:, 0], probs[:, 0].argmax(1).numpy())
    assert tok.tau(0, 10) == tok.tau_max and tok.tau(9, 10) == pytest.approx(tok.tau_min)


def test_soft_rqvae_module_works_inside_a_larger_model():
    inner = SoftRQVAEModule(dim=6, dims=(8, 4), n_levels=2, codebook_size=5)
    outer = torch.nn.Sequential(torch.nn.Linear(3, 6), inner.encoder)
    assert sum(p.numel() for p in outer.parameters()) > 0
    x_hat, probs = inner(torch.randn(4, 6), tau=0.5)
    assert x_hat.shape == (4, 6) and probs.shape == (4, 2, 5)
    # eq. 17 per level, averaged over the levels as the authors' code does (uniform usage: -ln K)
    assert codeword_uniformity_loss(torch.full((3, 2, 4), 0.25)) == pytest.approx(math.log(0.25))


def test_opq_with_fewer_items_than_dimensions_is_a_clear_error():
    # faiss' OPQMatrix corrupts the heap on n < d; the tokenizer must refuse before calling it
    x = np.random.default_rng(0).standard_normal((40, 48)).astype(np.float32)
    with pytest.raises(SidrecError, match=r"`opq` needs at least 48 items to learn a 48-d rotation, got 40"):
        get_tokenizer("opq")(n_levels=3, codebook_size=4).fit(x)


def test_soft_rqvae_recon_loss_is_the_squared_norm_per_item():
    # eq. 7: ||x_hat - x||^2 summed over dimensions, averaged over items (not over dimensions)
    x_hat = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    x = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    assert recon_loss(x_hat, x).item() == pytest.approx((1 + 4 + 9) / 2)


def test_gradient_trained_tokenizers_fit_with_deterministic_kernels_and_restore_the_mode(monkeypatch):
    # codebook lookups back-propagate through index_put_(accumulate=True), whose threaded CPU
    # kernel is order-dependent: two 2-thread RQ-VAE fits on Beauty shared 0% of codes without this
    tok = make_tokenizer("rqvae")
    seen = []
    original = type(tok)._train

    def spy(self, x, progress):
        seen.append(torch.are_deterministic_algorithms_enabled())
        original(self, x, progress)

    monkeypatch.setattr(type(tok), "_train", spy)
    assert not torch.are_deterministic_algorithms_enabled()
    x, _ = clustered()
    tok.fit(x)
    assert seen == [True] and not torch.are_deterministic_algorithms_enabled()


def test_dead_code_reset_moves_only_unused_codewords_onto_item_residuals():
    torch.manual_seed(0)
    cb = torch.randn(2, 4, 3)  # (L, K, D)
    before = cb.clone()
    r = torch.randn(6, 3)
    used = torch.tensor([[True, False, True, True], [False, True, True, True]])
    reset_dead_codes_(cb, r, used)
    torch.testing.assert_close(cb[used], before[used])  # used codewords are untouched
    assert any(torch.equal(cb[0, 1], row) for row in r)  # level 1: a latent itself
    r1 = r - cb[0][torch.cdist(r, cb[0]).argmin(1)]
    assert any(torch.allclose(cb[1, 0], row) for row in r1)  # level 2: a level-1 residual


def test_soft_rqvae_dead_code_reset_is_a_switch_that_changes_the_fit():
    x, _ = clustered()
    # on the raw (clustered) input, so that some codewords go unused
    off = make_tokenizer("soft-rqvae", codebook_size=64, epochs=3, whiten=False).fit(x)
    on = make_tokenizer("soft-rqvae", codebook_size=64, epochs=3, dead_code_reset=True, whiten=False).fit(x)
    assert min(off.history_[0]["usage"]) < 1  # some codewords went unused, so a reset had work to do
    assert not np.array_equal(off.encode(x), on.encode(x))
    with pytest.raises(SidrecError, match="dead_code_reset"):
        make_tokenizer("soft-rqvae", dead_code_reset="yes").fit(x)


def test_soft_rqvae_stage1_follows_the_authors_optimisation():
    from sidrec.tokenizers.soft_rqvae import warmup_linear_decay

    # linear warm-up over 3 steps, then linear decay to 0 at the last step (transformers' linear schedule)
    assert [round(warmup_linear_decay(i, 8, 3), 3) for i in range(8)] == [0.333, 0.667, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2]
    assert warmup_linear_decay(7, 8, 0) == pytest.approx(1 / 8)
    # the authors' loss scale: per-element mean reconstruction
    x_hat, x = torch.tensor([[1.0, 2.0, 0.0]]), torch.zeros(1, 3)
    assert recon_loss(x_hat, x, "mean").item() == pytest.approx(5 / 3)
    with pytest.raises(SidrecError, match="recon_reduction"):
        make_tokenizer("soft-rqvae", recon_reduction="max").fit(clustered()[0])


def test_soft_rqvae_keeps_the_best_loss_epoch_and_its_tau():
    x, _ = clustered()
    best = make_tokenizer("soft-rqvae", epochs=6, tau_max=0.5, tau_min=0.01).fit(x)
    losses = [h["loss"] for h in best.history_]
    assert best.best_epoch_ == int(np.argmin(losses))
    assert best.tau_final_ == pytest.approx(best.tau((best.best_epoch_ + 1) * math.ceil(len(x) / best.batch_size) - 1, 6 * math.ceil(len(x) / best.batch_size)))
    last = make_tokenizer("soft-rqvae", epochs=6, tau_max=0.5, tau_min=0.01, keep_best=False).fit(x)
    assert last.best_epoch_ == 5 and last.tau_final_ == pytest.approx(0.01)
    # one code chain: the SIDs are the argmax of the soft chain at the kept tau
    xt = torch.from_numpy(x)
    np.testing.assert_array_equal(best.encode(x), best.probabilities(xt).argmax(2).numpy())
    xm = best.model_input(xt)  # the module's input: whitened (soft-rqvae's default)
    assert best.whiten and not torch.allclose(xm, xt)
    hard = best.module_.nearest_codes(xm)
    share = float((best.module_.hard_codes(xm, best.tau_final_) != hard).any(1).float().mean())
    assert best.chain_disagreement_ == pytest.approx(share, abs=1e-6)


def test_rqvae_whitening_is_part_of_the_fitted_state(tmp_path):
    from sidrec.tokenizers.base import Tokenizer

    x, _ = clustered()
    x = x * np.linspace(0.1, 3.0, x.shape[1], dtype=np.float32)  # anisotropic, so whitening matters
    tok = make_tokenizer("rqvae", whiten=True, optimizer="adagrad").fit(x)
    xt = torch.from_numpy(x)
    z = tok.model_input(xt)
    torch.testing.assert_close(z.mean(0), torch.zeros(x.shape[1]), atol=1e-4, rtol=0)
    cov = (z.T @ z / (len(z) - 1)).numpy()
    np.testing.assert_allclose(np.diag(cov), np.ones(x.shape[1]), atol=0.05)  # unit variance per direction
    tok.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    np.testing.assert_array_equal(again.encode(x), tok.encode(x))
    # decode returns raw-space vectors: the inverse transform is applied
    back = (z @ torch.from_numpy(tok.white_w_inv_) + torch.from_numpy(tok.white_mean_)).numpy()
    np.testing.assert_allclose(back, x, atol=1e-4)
    assert not np.array_equal(tok.encode(x), make_tokenizer("rqvae", whiten=False, optimizer="adagrad").fit(x).encode(x))
    torch.testing.assert_close(tok.model_output(z), xt, atol=1e-4, rtol=0)
    # the quantised space is the encoder latent of the whitened input
    with torch.no_grad():
        np.testing.assert_allclose(tok.latent(x), tok.module_.encoder(z).numpy(), atol=1e-5)
    with pytest.raises(SidrecError, match="optimizer"):
        make_tokenizer("rqvae", optimizer="sgd").fit(x)
    # a refit without whitening does not keep the previous fit's transform (Tokenizer.fit clears learned state)
    tok.whiten = False
    assert tok.fit(x).model_input(xt) is xt
