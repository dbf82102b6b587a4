"""R³-VAE's Table 8 ablation switches (``tokenizer.params.ablate``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidrec.bench.suite import load_suite
from sidrec.config import Config, apply_overrides
from sidrec.errors import SidrecError
from sidrec.tokenizers import Tokenizer, build_tokenizer
from sidrec.tokenizers._torch import sq_dist
from sidrec.tokenizers.r3vae import R3VAE, preference_discrimination_loss, semantic_cohesion_loss, vq_loss

from ..conftest import REPO
from .conftest import K, clustered, make_tokenizer

X = clustered(n=120)[0]  # 120 items, 16 dims; make_tokenizer: 2 levels x 8 codes, 3 epochs
XT = torch.from_numpy(X)
VARIANTS = [(), ("reference",), ("rating",), ("sc",), ("pd",)]


@pytest.fixture(scope="module")
def fitted() -> dict[tuple[str, ...], R3VAE]:
    """One fitted tokenizer per Table 8 row (the full model under ``()``)."""
    return {ab: make_tokenizer("r3vae", ablate=ab).fit(X) for ab in VARIANTS}


def _forward(tok: R3VAE) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The training forward pass of the fitted module on X (with autograd)."""
    return tok.module_(XT)


def test_default_is_the_full_model(fitted):
    full = fitted[()]
    assert R3VAE().ablate == () and full.ablate == ()
    codes = full.encode(X)
    for same in ([], "", None):
        tok = make_tokenizer("r3vae") if same is None else make_tokenizer("r3vae", ablate=same)
        np.testing.assert_array_equal(tok.fit(X).encode(X), codes)
    assert "vq" not in full.history_[0]
    # the refactored loss is eq. 12 term for term: -SC + PD, both with gradients
    _, c, inputs = _forward(full)
    metric, sc, pd = full._metric_loss(c, inputs)
    sc_ref = torch.stack([semantic_cohesion_loss(e, c[:, l], K) for l, e in enumerate(inputs)]).mean()
    pd_ref = torch.stack([preference_discrimination_loss(cb) for cb in full.module_.codebooks]).mean()
    assert torch.equal(metric, -sc_ref + pd_ref) and sc.requires_grad and pd.requires_grad


@pytest.mark.parametrize("ablate", VARIANTS[1:], ids=lambda a: a[0])
def test_ablation_changes_training_and_is_deterministic(ablate, fitted):
    tok = fitted[ablate]
    assert not torch.equal(tok.module_.codebooks, fitted[()].module_.codebooks)
    np.testing.assert_array_equal(make_tokenizer("r3vae", ablate=list(ablate)).fit(X).encode(X), tok.encode(X))


def test_without_reference_alpha_is_zero_and_e0_is_x(fitted):
    m = fitted[("reference",)].module_
    alpha, e0 = m.project(XT)
    assert torch.equal(alpha, torch.zeros(len(X))) and torch.equal(e0, XT)
    assert torch.equal(m.ref, torch.zeros(X.shape[1])) and not m.ref.requires_grad and float(m.alpha_mean) == 0.0
    np.testing.assert_array_equal(fitted[("reference",)].encode(X)[:, 0], m.rate(XT, 0)[1].numpy())  # rating on raw x
    assert float(fitted[()].module_.project(XT)[0].detach().abs().max()) > 0  # the full model does use r


def test_without_rating_codes_are_nearest_codewords_with_ste(fitted):
    tok = fitted[("rating",)]
    m = tok.module_
    with torch.no_grad():
        alpha, e = m.project(XT)
        expected = []
        for cb in m.codebooks:  # plain residual VQ on e0 = x - alpha r
            expected.append(sq_dist(e, cb).argmin(1))
            e = e - cb[expected[-1]]
    np.testing.assert_array_equal(tok.encode(X), torch.stack(expected, 1).numpy())
    assert "vq" in tok.history_[0]
    x_hat, codes, inputs = _forward(tok)
    chosen = sum(cb[codes[:, l]] for l, cb in enumerate(m.codebooks))
    torch.testing.assert_close(x_hat, alpha[:, None] * m.ref + chosen)  # forward value: the codewords
    # STE: the reconstruction does not reach the codebooks; the codebook loss does
    assert torch.autograd.grad(x_hat.sum(), m.codebooks, allow_unused=True) == (None,)
    assert torch.autograd.grad(vq_loss(inputs, codes, m.codebooks), m.codebooks)[0].abs().sum() > 0
    full = fitted[()].module_
    assert torch.autograd.grad(full(XT)[0].sum(), full.codebooks)[0].abs().sum() > 0  # the rating does


@pytest.mark.parametrize("ablate", [("sc",), ("pd",), ("pd", "sc")])
def test_without_sc_or_pd_the_term_leaves_the_loss(ablate, fitted):
    tok = fitted[ablate] if ablate in fitted else make_tokenizer("r3vae", ablate=ablate).fit(X)
    _, codes, inputs = _forward(tok)
    metric, sc, pd = tok._metric_loss(codes, inputs)
    assert sc.requires_grad == ("sc" not in ablate) and pd.requires_grad == ("pd" not in ablate)
    expected = {("sc",): pd, ("pd",): -sc, ("pd", "sc"): torch.zeros(())}[ablate]
    assert torch.equal(metric, expected)
    assert {"sc", "pd"} <= set(tok.history_[0])  # still logged


def test_ablate_is_normalised_at_fit_and_unknown_values_fail():
    tok = make_tokenizer("r3vae", ablate=["sc", "reference", "sc"])
    assert tok.ablate == ["sc", "reference", "sc"]  # __init__ only stores
    tok._check_params()
    assert tok.ablate == ("reference", "sc") and tok.get_params()["ablate"] == ["reference", "sc"]
    tok = make_tokenizer("r3vae", ablate=" rating, pd")
    tok._check_params()
    assert tok.ablate == ("pd", "rating")
    with pytest.raises(SidrecError, match=r"^`ablate` of R3VAE must hold only reference, rating, sc, pd, got \['foo'\]\.$"):
        make_tokenizer("r3vae", ablate=("sc", "foo")).fit(X)
    with pytest.raises(SidrecError, match=r"^`ablate` of R3VAE must be a list of reference, rating, sc, pd, got 3\.$"):
        make_tokenizer("r3vae", ablate=3).fit(X)


@pytest.mark.parametrize("value, expected", [
    ("[reference]", ("reference",)),  # YAML list (the CLI form; suites pass lists as JSON)
    ('["sc", "pd"]', ("pd", "sc")),
    ("reference", ("reference",)),  # a bare string is a one-element list
    ("sc,pd", ("pd", "sc")),  # comma-separated, as suites formatted lists before
    ("[]", ()),
])
def test_config_override_reaches_the_tokenizer(value, expected):
    cfg = apply_overrides(Config(), ["tokenizer.method=r3vae", f"tokenizer.params.ablate={value}"])
    assert build_tokenizer(cfg.tokenizer)._ablations() == expected


def test_suite_runs_select_the_ablations(tmp_path):
    suite = load_suite("r3vae-ablation", REPO / "benchmarks")
    runs = {r.name: r for r in suite.runs}
    for name, expected in [("no-reference", ("reference",)), ("no-rating-quantization", ("rating",)),
                           ("no-sc", ("sc",)), ("no-pd", ("pd",)), ("lambda-0.01", ())]:
        for quick in (False, True):
            tok = build_tokenizer(suite.config(runs[name], 0, quick=quick, workdir=tmp_path).tokenizer)
            assert tok._ablations() == expected, name


def test_save_load_keeps_the_ablation(tmp_path):
    tok = make_tokenizer("r3vae", ablate=["rating", "reference"]).fit(X)
    tok.save(tmp_path / "tok")
    loaded = Tokenizer.load(tmp_path / "tok")
    assert loaded.ablate == ("rating", "reference")
    assert not loaded.module_.reference and not loaded.module_.rating
    codes = tok.encode(X)
    np.testing.assert_array_equal(loaded.encode(X), codes)
    np.testing.assert_array_equal(loaded.decode(codes), tok.decode(codes))
