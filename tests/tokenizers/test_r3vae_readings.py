"""R³-VAE's readings of eq. 4-7 and §3.3.1 (issue 14): each pinned against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sidrec.errors import SidrecError
from sidrec.metrics.sid_quality import preference_discrimination, semantic_cohesion, sid_quality
from sidrec.tokenizers.r3vae import R3VAE, R3VAEModule, spherical_init_

from .conftest import K, clustered, make_tokenizer

X = clustered(n=120)[0]  # 120 items, 16 dims; make_tokenizer: 2 levels x 8 codes
XT = torch.from_numpy(X)


def _module(top_k: int, temperature: float) -> R3VAEModule:
    torch.manual_seed(0)
    return R3VAEModule(X.shape[1], 2, K, top_k, temperature)


def test_full_softmax_mix_is_the_weighted_sum_over_all_codewords():
    """Eq. 4-5 read literally (K = M, no temperature): e_hat = sum_k softmax(cos)_k c_k."""
    m = _module(top_k=K, temperature=1.0)
    e = XT[:5]
    e_hat, code = m.rate(e, 0)
    cb = m.codebooks[0]
    for i in range(len(e)):
        s = torch.stack([F.cosine_similarity(e[i], c, dim=0) for c in cb])  # eq. 3
        w = torch.exp(s) / torch.exp(s).sum()  # eq. 4
        want = sum(w[k] * cb[k] for k in range(K))  # eq. 5
        torch.testing.assert_close(e_hat[i], want, rtol=1e-5, atol=1e-6)
        assert int(code[i]) == int(s.argmax())  # eq. 7


def test_top_k_mix_renormalises_the_k_largest_weights():
    m = _module(top_k=3, temperature=0.05)
    e = XT[:4]
    e_hat, _ = m.rate(e, 1)
    cb = m.codebooks[1]
    w = torch.softmax(F.normalize(e, dim=1) @ F.normalize(cb, dim=1).T / 0.05, dim=1)
    for i in range(len(e)):
        top = w[i].topk(3)
        want = (top.values[:, None] * cb[top.indices]).sum(0) / top.values.sum()
        torch.testing.assert_close(e_hat[i], want, rtol=1e-5, atol=1e-6)


def test_top1_soft_and_hard_chains_coincide_and_top4_chains_can_differ():
    m1 = _module(top_k=1, temperature=0.05)
    with torch.no_grad():
        assert torch.equal(m1(XT)[1], m1.hard_codes(XT))
    tok = make_tokenizer("r3vae", top_k=1).fit(X)
    assert tok.hard_chain_disagreement(X) == 0.0
    tok4 = make_tokenizer("r3vae", top_k=4, temperature=1.0, chain="soft").fit(X)
    with torch.no_grad():
        hard = tok4.module_.hard_codes(XT).numpy()
    assert tok4.hard_chain_disagreement(X) == pytest.approx(float((hard != tok4.encode(X)).any(1).mean()))


def test_latent_is_the_reference_projected_residual_e0():
    tok = make_tokenizer("r3vae").fit(X)
    r = tok.module_.ref.detach().numpy().astype(np.float64)
    alpha = X @ r / (r @ r)  # eq. 1
    np.testing.assert_allclose(tok.latent(X), X - alpha[:, None] * r, rtol=1e-4, atol=1e-5)  # eq. 2
    assert not np.allclose(tok.latent(X), X)
    no_ref = make_tokenizer("r3vae", ablate=["reference"]).fit(X)
    np.testing.assert_allclose(no_ref.latent(X), X)  # e0 = x without the reference vector


def test_latent_of_other_tokenizers():
    rq = make_tokenizer("rqvae").fit(X)
    with torch.no_grad():
        want = rq.module_.encoder(rq.model_input(XT)).numpy()  # of the whitened input (rqvae's default)
    np.testing.assert_allclose(rq.latent(X), want, rtol=1e-5, atol=1e-6)
    rk = make_tokenizer("rkmeans").fit(X)
    np.testing.assert_array_equal(rk.latent(X), X)  # no mapping: the raw input is its space


def test_sid_quality_reports_both_spaces():
    tok = make_tokenizer("r3vae").fit(X)
    codes, z = tok.encode(X), tok.latent(X)
    q = sid_quality(X, codes, tok.codebook_sizes, latent=z)
    assert q["semantic_cohesion"] == pytest.approx(semantic_cohesion(X, codes))
    assert q["sc_latent"] == pytest.approx(semantic_cohesion(z, codes))
    assert q["pd_latent"] == pytest.approx(preference_discrimination(z, codes))
    assert q["pd_prefix_latent"][0] == pytest.approx(preference_discrimination(z, codes, level=0))
    assert q["sc_latent"] != pytest.approx(q["semantic_cohesion"])
    assert "sc_latent" not in sid_quality(X, codes, tok.codebook_sizes)
    with pytest.raises(SidrecError, match="latent must have shape"):
        sid_quality(X, codes, tok.codebook_sizes, latent=z[:-1])


def test_spherical_init_sets_codewords_to_member_means_of_cosine_clusters():
    e = torch.from_numpy(X) * torch.linspace(0.5, 2.0, len(X))[:, None]  # norms vary, directions cluster
    cb = torch.zeros(K, X.shape[1])
    spherical_init_(cb, e, seed=0)
    assign = (F.normalize(e, dim=1) @ F.normalize(cb, dim=1).T).argmax(1)
    for k in assign.unique():
        torch.testing.assert_close(cb[k], e[assign == k].mean(0), rtol=1e-4, atol=1e-5)


def test_init_switch():
    """A vanishing lr freezes the init: "none" keeps the seeded random codebooks (Fig. 4's w/o k-means)."""
    fits = {init: make_tokenizer("r3vae", init=init, epochs=1, lr=1e-12).fit(X) for init in ("spherical", "l2", "none")}
    cbs = {k: t.module_.codebooks.detach() for k, t in fits.items()}
    assert R3VAE().init == "spherical"
    torch.manual_seed(0)  # the tokenizer's seed, as TorchTokenizer._fit seeds _build
    random = R3VAEModule(X.shape[1], 2, K, 4, 0.05).codebooks.detach()
    torch.testing.assert_close(cbs["none"], random)
    assert not torch.allclose(cbs["l2"], random) and not torch.allclose(cbs["spherical"], cbs["l2"])
    with pytest.raises(SidrecError, match="`init` of R3VAE must be one of spherical, l2, none"):
        make_tokenizer("r3vae", init="kmeans++").fit(X)


def test_hard_chain_trains_the_chain_the_sid_describes():
    tok = make_tokenizer("r3vae", top_k=4, temperature=1.0, chain="hard").fit(X)
    assert tok.hard_chain_disagreement(X) == 0.0
    m = tok.module_
    x_hat, codes, _ = m(XT)
    alpha, _ = m.project(XT)
    want = alpha[:, None] * m.ref + sum(m.codebooks[l][codes[:, l]] for l in range(codes.shape[1]))
    torch.testing.assert_close(x_hat, want)  # eq. 11's x_hat takes the codes' value ...
    m(XT[:1])[0].pow(2).sum().backward()  # one item: level 0 gets the gradient of its rating mix
    g = m.codebooks.grad[0].norm(dim=1)  # (M,)
    assert int((g > 0.1 * g.max()).sum()) >= 2  # ... and the mix's gradient, not a one-codeword STE's
    with pytest.raises(SidrecError, match="`chain` of R3VAE must be one of soft, hard"):
        make_tokenizer("r3vae", chain="straight").fit(X)


def test_sid_quality_in_the_input_space_repeats_the_raw_metrics():
    tok = make_tokenizer("rkmeans").fit(X)
    codes = tok.encode(X)
    q = sid_quality(X, codes, tok.codebook_sizes, latent=tok.latent(X))
    assert (q["sc_latent"], q["pd_latent"]) == (q["semantic_cohesion"], q["preference_discrimination"])
    assert q["pd_prefix_latent"] == q["pd_prefix"]
