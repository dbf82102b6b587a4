"""Contract tests of the SID generators: incremental decoding, scoring, padding, user tokens."""

from __future__ import annotations

import pytest
import torch

from sidrec.config import ModelConfig
from sidrec.errors import SidrecError
from sidrec.models import build_from_config, build_model
from sidrec.models.base import HistoryBatch

VOCAB = [6, 5, 7, 3]
SMALL = dict(n_enc_layers=2, n_dec_layers=2, n_heads=2, d_model=16, head_dim=8, d_ff=32, dropout=0.0)
VARIANTS = [("encdec", "item"), ("encdec", "sid"), ("deconly", "item")]


def make_model(arch: str, history_tokens: str = "item", user_tokens: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, history_tokens=history_tokens, user_tokens=user_tokens, **SMALL)
    return build_model(cfg, VOCAB, max_history=6).eval()


def random_sids(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, v, shape, generator=g) for v in VOCAB], dim=-1)


def history(B: int = 3, H: int = 5, seed: int = 0) -> HistoryBatch:
    codes = random_sids(B, H, seed=seed)
    mask = torch.ones(B, H, dtype=torch.bool)
    mask[0, :2] = False  # user 0 has 3 items, left-padded
    codes[0, :2] = 0
    return HistoryBatch(codes, mask)


@pytest.mark.parametrize("arch,ht", VARIANTS)
def test_incremental_decoding_with_reorder_matches_teacher_forcing(arch, ht):
    model = make_model(arch, ht)
    hb = history()
    B, K = 3, 4
    cand = random_sids(B, K, seed=1)
    with torch.no_grad():
        expected = model.score(hb, cand)  # (B, K)
        cache = model.start(hb, K)
        # decode the candidates in a scrambled beam order, reordering back each step
        perm = torch.stack([torch.randperm(K, generator=torch.Generator().manual_seed(b)) for b in range(B)])
        got = torch.zeros(B, K)
        beams = cand.gather(1, perm[..., None].expand(-1, -1, len(VOCAB)))  # beam k holds candidate perm[b, k]
        for t in range(len(VOCAB)):
            logp = model.step(cache, None if t == 0 else beams[:, :, t - 1])
            assert logp.shape == (B, K, VOCAB[t])
            step_lp = logp.gather(-1, beams[:, :, t : t + 1]).squeeze(-1)  # (B, K) in beam order
            got.scatter_add_(1, perm, step_lp)
            # rotate beams: new beam k continues old beam (k+1) % K
            parents = (torch.arange(K) + 1).remainder(K).expand(B, K)
            model.reorder(cache, parents)
            beams, perm = beams.gather(1, parents[..., None].expand(-1, -1, len(VOCAB))), perm.gather(1, parents)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch,ht", VARIANTS)
def test_extra_left_padding_changes_nothing(arch, ht):
    model = make_model(arch, ht)
    hb = history()
    padded = HistoryBatch(torch.cat([torch.zeros(3, 1, len(VOCAB), dtype=torch.long), hb.codes], 1), torch.cat([torch.zeros(3, 1, dtype=torch.bool), hb.mask], 1))
    cand = random_sids(3, 2, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model.score(padded, cand), model.score(hb, cand), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch,ht", VARIANTS)
def test_loss_is_mean_negative_log_likelihood_per_position(arch, ht):
    model = make_model(arch, ht)
    hb, tgt = history(), random_sids(3, seed=3)
    with torch.no_grad():
        nll = -model.score(hb, tgt[:, None])[:, 0]
        torch.testing.assert_close(model.loss(hb, tgt), nll.mean() / len(VOCAB), atol=1e-5, rtol=1e-5)


def test_encdec_beams_share_the_encoder_memory():
    model = make_model("encdec")
    cache = model.start(history(), beam_size=5)
    assert all(k.shape[0] == 3 and v.shape[0] == 3 for k, v in cache.memory)  # (B, ...), not (B*K, ...)
    model.step(cache, None)
    assert cache.past[0][0].shape[:2] == (3, 5)


def test_deconly_one_pass_equals_per_prefix_losses():
    model = make_model("deconly")
    seq = random_sids(1, 5, seed=4)  # one user window of 5 items
    with torch.no_grad():
        total, n = model.sequence_loss(seq, torch.tensor([5]))
        per_prefix = [model.loss(HistoryBatch(seq[:, :p], torch.ones(1, p, dtype=torch.bool)), seq[:, p]) for p in range(1, 5)]
    assert n == 4
    torch.testing.assert_close(total, torch.stack(per_prefix).sum(), atol=1e-4, rtol=1e-4)


def test_deconly_right_padding_is_ignored():
    model = make_model("deconly")
    seq = random_sids(2, 5, seed=5)
    seq[1, 3:] = 0
    with torch.no_grad():
        total, n = model.sequence_loss(seq, torch.tensor([5, 3]))
        a, _ = model.sequence_loss(seq[:1], torch.tensor([5]))
        b, _ = model.sequence_loss(seq[1:, :3], torch.tensor([3]))
    assert n == 4 + 2
    torch.testing.assert_close(total, a + b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["encdec", "deconly"])
def test_user_tokens_are_used_and_required(arch):
    model = make_model(arch, user_tokens=4)
    hb, cand = history(), random_sids(3, 2, seed=6)
    with pytest.raises(SidrecError, match="user_bins"):
        model.score(hb, cand)
    with torch.no_grad():
        a = model.score(HistoryBatch(hb.codes, hb.mask, torch.tensor([0, 1, 2])), cand)
        b = model.score(HistoryBatch(hb.codes, hb.mask, torch.tensor([3, 1, 2])), cand)
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1:], b[1:])


@pytest.mark.parametrize("arch,ht", VARIANTS)
def test_config_rebuilds_the_same_model(arch, ht):
    model = make_model(arch, ht)
    clone = build_from_config(model.arch, model.config()).eval()
    clone.load_state_dict(model.state_dict())
    hb, cand = history(), random_sids(3, 2, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(clone.score(hb, cand), model.score(hb, cand))


def test_unknown_architecture_and_history_tokens_are_user_errors():
    with pytest.raises(SidrecError, match="model.arch must be one of"):
        build_model(ModelConfig(arch="rnn"), VOCAB)
    with pytest.raises(SidrecError, match="history_tokens"):
        build_model(ModelConfig(history_tokens="chars"), VOCAB)
