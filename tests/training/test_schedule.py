"""Learning-rate schedules of the training loops."""

import math

import pytest
import torch

from sidrec.config import TrainConfig
from sidrec.errors import SidrecError
from sidrec.training.loop import COSINE_FLOOR, lr_scheduler


def _lrs(cfg: TrainConfig, steps: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = lr_scheduler(opt, cfg)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant_after_linear_warmup():
    lrs = _lrs(TrainConfig(lr=1.0, warmup_steps=4, max_steps=20), 20)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4:] == pytest.approx([1.0] * 16)


def test_cosine_decays_from_peak_to_floor_at_max_steps():
    cfg = TrainConfig(lr=1.0, warmup_steps=1, max_steps=101, lr_schedule="cosine")
    lrs = _lrs(cfg, 102)
    assert lrs[0] == pytest.approx(1.0)
    # halfway through the decay the cosine is at the midpoint between peak and floor
    assert lrs[50] == pytest.approx(COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[100] == pytest.approx(COSINE_FLOOR)
    assert lrs[101] == pytest.approx(COSINE_FLOOR)  # held past max_steps (e.g. a fine-tune)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_cosine_with_decay_steps_holds_its_floor_until_max_steps():
    annealed = _lrs(TrainConfig(lr=1.0, warmup_steps=1, max_steps=41, lr_schedule="cosine"), 41)
    tail = _lrs(TrainConfig(lr=1.0, warmup_steps=1, max_steps=100, decay_steps=41, lr_schedule="cosine"), 100)
    assert tail[:41] == pytest.approx(annealed)  # the same schedule up to the horizon ...
    assert tail[40:] == pytest.approx([COSINE_FLOOR] * 60)  # ... then the floor, for training on to early stopping


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(SidrecError, match="lr_schedule must be one of constant, cosine, got 'linear'"):
        _lrs(TrainConfig(lr_schedule="linear"), 1)
