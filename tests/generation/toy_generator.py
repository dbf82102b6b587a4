"""A tiny GRU model implementing the SIDGenerator protocol, and toy SID tables.

The model is deliberately independent of sidrec.models so that decoding is
tested against the protocol, not against one architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from sidrec.models.base import HistoryBatch
from sidrec.tokenizers.sid_table import SIDTable


@dataclass
class ToyCache:
    h: torch.Tensor  # (B, K, d) GRU state per beam
    t: int  # positions emitted so far


class ToyGRUGenerator(nn.Module):
    """Context = masked mean of history token embeddings; a GRU cell emits SID tokens."""

    def __init__(self, vocab_sizes: list[int], d: int = 32, user_tokens: int = 0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.vocab_sizes = list(vocab_sizes)
        self.user_tokens = user_tokens
        self.d = d
        self.emb = nn.ModuleList(nn.Embedding(v, d) for v in vocab_sizes)
        self.ctx = nn.Linear(d, d)
        self.bos = nn.Parameter(torch.randn(d))
        self.cell = nn.GRUCell(d, d)
        self.heads = nn.ModuleList(nn.Linear(d, v) for v in vocab_sizes)
        self.n_start = 0  # how many times start() ran (tests check the context is encoded once)

    def config(self) -> dict[str, Any]:
        return {"vocab_sizes": self.vocab_sizes, "d": self.d, "user_tokens": self.user_tokens}

    def _context(self, history: HistoryBatch) -> torch.Tensor:
        e = sum(self.emb[t](history.codes[..., t]) for t in range(len(self.vocab_sizes)))  # (B, H, d)
        m = history.mask[..., None].float()
        return torch.tanh(self.ctx((e * m).sum(1) / m.sum(1).clamp(min=1)))  # (B, d)

    def start(self, history: HistoryBatch, beam_size: int) -> ToyCache:
        self.n_start += 1
        h0 = self._context(history)
        return ToyCache(h0[:, None, :].expand(-1, beam_size, -1).contiguous(), 0)

    def step(self, cache: ToyCache, tokens: torch.Tensor | None) -> torch.Tensor:
        B, K, d = cache.h.shape
        t = cache.t
        x = self.bos.expand(B, K, d) if tokens is None else self.emb[t - 1](tokens)
        cache.h = self.cell(x.reshape(-1, d), cache.h.reshape(-1, d)).reshape(B, K, d)
        cache.t += 1
        return torch.log_softmax(self.heads[t](cache.h), dim=-1)  # (B, K, V_t)

    def reorder(self, cache: ToyCache, parents: torch.Tensor) -> None:
        cache.h = cache.h.gather(1, parents[:, :, None].expand(-1, -1, cache.h.shape[2]))

    def score(self, history: HistoryBatch, candidates: torch.Tensor) -> torch.Tensor:
        B, C, T = candidates.shape
        cache = self.start(history, C)
        total = torch.zeros(B, C)
        tokens = None
        for t in range(T):
            logp = self.step(cache, tokens)  # (B, C, V_t)
            tokens = candidates[..., t]
            total = total + logp.gather(2, tokens[..., None])[..., 0]
        return total

    def loss(self, history: HistoryBatch, targets: torch.Tensor) -> torch.Tensor:
        return -self.score(history, targets[:, None, :]).mean()


def toy_sid_table(n_items: int, codebook: list[int], collision: str = "digit", seed: int = 0) -> SIDTable:
    """Random codes with deliberate collisions (the first items repeat a SID)."""
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, v, n_items) for v in codebook], axis=1)
    codes[1] = codes[0]  # guaranteed collision
    codes[2] = codes[0]
    return SIDTable.build([f"i{n}" for n in range(n_items)], codes, codebook, collision, seed)


def train_toy(model: ToyGRUGenerator, sids: SIDTable, n_users: int = 64, steps: int = 30, seed: int = 0) -> list[np.ndarray]:
    """Fit a few steps on synthetic 'next item = item + 1' histories; returns the histories."""
    from sidrec.generation.batching import make_history_batch

    rng = np.random.default_rng(seed)
    n = len(sids.item_ids)
    hists = [np.sort(rng.choice(n - 1, size=rng.integers(1, 6), replace=False)) for _ in range(n_users)]
    targets = torch.from_numpy(sids.codes[[h[-1] + 1 for h in hists]])
    batch = make_history_batch(hists, sids)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model.loss(batch, targets).backward()
        opt.step()
    model.eval()
    return hists


def write_toy_prepared(root, n_items: int = 30, n_users: int = 40, seed: int = 0):  # noqa: ANN001, ANN201
    """Write a prepared dataset where users mostly walk item ids upwards; returns PreparedData."""
    from sidrec.config import DataConfig
    from sidrec.data import PreparedData, RawDataset, prepare

    rng = np.random.default_rng(seed)
    seqs = {}
    for u in range(n_users):
        start = int(rng.integers(0, n_items - 8))
        length = int(rng.integers(3, 8))
        seqs[f"u{u}"] = [f"i{start + j}" for j in range(length)]
    items = {f"i{n}": {"title": f"item {n}"} for n in range(n_items)}
    raw = RawDataset("toy", items, seqs)
    prepare(raw, DataConfig(min_count=0, max_history=5), root)
    return PreparedData(root)


def toy_sids_for(data, codebook: list[int], collision: str = "digit", seed: int = 0) -> SIDTable:  # noqa: ANN001
    """Random SIDs (with a guaranteed collision) for the prepared items, in their order."""
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, v, data.n_items) for v in codebook], axis=1)
    codes[1] = codes[0]
    return SIDTable.build(list(data.item_ids), codes, codebook, collision, seed)


def train_on_prepared(model: ToyGRUGenerator, data, sids: SIDTable, steps: int = 60) -> None:  # noqa: ANN001
    """A few full-batch steps of next-item prediction on every train prefix."""
    from sidrec.generation.batching import make_history_batch

    hists, targets = [], []
    for s in data.train_sequences():
        for j in range(1, len(s)):
            hists.append(s[max(0, j - data.max_history) : j])
            targets.append(s[j])
    batch = make_history_batch(hists, sids)
    tgt = torch.from_numpy(sids.codes[np.array(targets)])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model.loss(batch, tgt).backward()
        opt.step()
    model.eval()
