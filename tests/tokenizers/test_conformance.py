"""Every registered tokenizer honours the same contract."""

from __future__ import annotations

import numpy as np
import pytest

from sidrec.config import TokenizerConfig, load_config
from sidrec.errors import SidrecError
from sidrec.tokenizers import Tokenizer, available_tokenizers, build_tokenizer, get_tokenizer

from ..conftest import REPO
from .conftest import DIM, K, clustered, make_tokenizer

METHODS = available_tokenizers()


@pytest.fixture(scope="module")
def fitted() -> dict[str, Tokenizer]:
    """One fitted tokenizer per method (fit once, shared by the read-only tests)."""
    x = clustered()[0]
    out = {}
    for method in METHODS:
        tok = make_tokenizer(method)
        assert tok.fit(x) is tok  # fit returns self
        out[method] = tok
    return out


def test_registry_lists_the_methods():
    assert {"rkmeans", "rkmeans-balanced", "kmeans", "opq"} <= set(METHODS)
    with pytest.raises(SidrecError, match="unknown tokenizer 'nope'; available: .*rkmeans"):
        get_tokenizer("nope")


@pytest.mark.parametrize("method", METHODS)
def test_fit_returns_self_and_codes_are_in_range(method, fitted, data):
    tok = fitted[method]
    codes = tok.encode(data)
    assert codes.dtype == np.int64 and codes.shape == (len(data), len(tok.codebook_sizes))
    assert (codes >= 0).all() and (codes < np.asarray(tok.codebook_sizes)).all()
    rec = tok.decode(codes)
    assert rec.dtype == np.float32 and rec.shape == data.shape and np.isfinite(rec).all()
    # on clustered data the codes must carry information: more than one SID is used
    assert len(np.unique(codes, axis=0)) > 1


@pytest.mark.parametrize("method", METHODS)
def test_use_before_fit_is_a_clear_error(method, data, tmp_path):
    tok = make_tokenizer(method)
    for call in (lambda: tok.encode(data), lambda: tok.decode(np.zeros((2, 2), dtype=np.int64)), lambda: tok.save(tmp_path)):
        with pytest.raises(SidrecError, match="is not fitted: call fit"):
            call()


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_codes(method, fitted, data):
    a = fitted[method].encode(data)
    b = make_tokenizer(method).fit(data).encode(data)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip_is_bit_identical(method, fitted, data, tmp_path):
    tok = fitted[method]
    tok.save(tmp_path / "tok")
    loaded = Tokenizer.load(tmp_path / "tok")
    assert type(loaded) is type(tok) and loaded.get_params() == tok.get_params()
    codes = tok.encode(data)
    np.testing.assert_array_equal(loaded.encode(data), codes)
    np.testing.assert_array_equal(loaded.decode(codes), tok.decode(codes))


@pytest.mark.parametrize("method", METHODS)
def test_bad_input_is_a_clear_error(method, fitted, data):
    tok = make_tokenizer(method)
    bad = data.copy()
    bad[5, 2] = np.nan
    with pytest.raises(SidrecError, match="must be finite, got NaN/inf in row 5"):
        tok.fit(bad)
    bad[5, 2] = np.inf
    with pytest.raises(SidrecError, match="must be finite"):
        tok.fit(bad)
    with pytest.raises(SidrecError, match=r"must be a 2-D array \(n_items, dim\), got shape \(300,\)"):
        tok.fit(data[:, 0])
    with pytest.raises(SidrecError, match=f"needs at least {K} items to fit {K} codes per level, got {K - 1}"):
        tok.fit(data[: K - 1])
    tok = fitted[method]
    with pytest.raises(SidrecError, match=f"must have dimension {DIM} \\(as at fit\\), got {DIM + 1}"):
        tok.encode(np.zeros((3, DIM + 1), dtype=np.float32))
    with pytest.raises(SidrecError, match="must be finite"):
        tok.encode(bad)
    with pytest.raises(SidrecError, match="codes must lie in"):
        tok.decode(np.full((1, len(tok.codebook_sizes)), K, dtype=np.int64))
    with pytest.raises(SidrecError, match="codes must be an int array of shape"):
        tok.decode(np.zeros((1, len(tok.codebook_sizes) + 1), dtype=np.int64))


@pytest.mark.parametrize("method", METHODS)
def test_bad_hyper_parameter_is_a_clear_error(method, data):
    tok = make_tokenizer(method)
    tok.codebook_size = 1
    with pytest.raises(SidrecError, match=f"`codebook_size` of {type(tok).__name__} must be an int >= 2, got 1."):
        tok.fit(data)


def test_build_tokenizer_checks_params_against_the_constructor():
    tok = build_tokenizer(TokenizerConfig(method="rkmeans", n_levels=2, codebook_size=16, seed=4, params={"normalize_residuals": False}))
    assert (tok.n_levels, tok.codebook_size, tok.seed, tok.normalize_residuals) == (2, 16, 4, False)
    tok = build_tokenizer(TokenizerConfig(method="rqvae", params={"lr": "1e-4", "dims": [16, 4]}))  # YAML reads 1e-4 as str
    assert tok.lr == 1e-4 and tok.dims == (16, 4)
    with pytest.raises(SidrecError, match=r"`lr` of RQVAE must be a float in \(0.0, inf\], got 'fast'."):
        build_tokenizer(TokenizerConfig(method="rqvae", params={"lr": "fast"})).fit(clustered()[0])
    with pytest.raises(SidrecError, match="unknown key 'tokenizer.params.normalise' for rkmeans; valid keys: normalize_residuals, niter"):
        build_tokenizer(TokenizerConfig(method="rkmeans", params={"normalise": True}))
    with pytest.raises(SidrecError, match=r"set tokenizer.seed instead"):
        build_tokenizer(TokenizerConfig(method="rkmeans", params={"seed": 1}))
    with pytest.raises(SidrecError, match="unknown tokenizer 'rq'"):
        build_tokenizer(TokenizerConfig(method="rq"))


@pytest.mark.parametrize("path", sorted(REPO.joinpath("configs", "tokenizers").glob("*.yaml")), ids=lambda p: p.stem)
def test_tokenizer_configs_build(path):
    tok = build_tokenizer(load_config(path).tokenizer)
    tok._check_params()  # every value has the type the method expects
    assert tok.name == path.stem
