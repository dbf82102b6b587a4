"""Tiny synthetic training setups shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sidrec.config import ModelConfig, TrainConfig
from sidrec.models import build_model
from sidrec.training.data import TrainData

VOCAB = [4, 4, 2]
TINY_MODEL = dict(n_enc_layers=1, n_dec_layers=1, n_heads=2, d_model=16, head_dim=8, d_ff=32)


def toy_sequences(n_users: int = 24, n_items: int = 16, seed: int = 0) -> list[np.ndarray]:
    """Users walk item ids upward (a learnable pattern), lengths 3..9."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        start, n = rng.integers(0, n_items), rng.integers(3, 10)
        seqs.append((start + np.arange(n)) % n_items)
    return seqs


def toy_codes(n_items: int = 16) -> np.ndarray:
    """(n_items, 3) unique SIDs over VOCAB."""
    i = np.arange(n_items)
    return np.stack([i // 4 % 4, i % 4, i // 16 % 2], axis=1)


def toy_data(arch: str = "encdec", batch_size: int = 16, seed: int = 0) -> TrainData:
    unit = "sequence" if arch == "deconly" else "sample"
    return TrainData(toy_sequences(), toy_codes(), 5, unit, True, batch_size, seed)


def toy_model(arch: str = "encdec", dropout: float = 0.1, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(arch=arch, dropout=dropout, **TINY_MODEL), VOCAB, max_history=5)


def stub_validator(model: torch.nn.Module) -> dict[str, float]:
    """Deterministic stand-in for beam-search validation: a function of the weights."""
    w = torch.cat([p.detach().flatten() for p in model.parameters()])
    x = float(w.abs().mean())
    return {"ndcg@10": x, "recall@10": 2 * x, "mrr": x / 2}


def train_cfg(**kw) -> TrainConfig:
    base = dict(lr=3e-3, batch_size=16, max_steps=12, warmup_steps=3, eval_every=4, patience=100)
    return TrainConfig(**{**base, **kw})


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
