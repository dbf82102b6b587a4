"""Exact top-K by scoring every item's SID (the reference that beam search approximates)."""

from __future__ import annotations

import numpy as np
import torch

from sidrec.errors import SidrecError
from sidrec.generation.beam import model_device
from sidrec.models.base import HistoryBatch, SIDGenerator
from sidrec.tokenizers.sid_table import SIDTable


def exact_topk(
    model: SIDGenerator,
    history: HistoryBatch,
    sids: SIDTable,
    k: int,
    batch_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items per user by the teacher-forced log-likelihood of their full SID.

    Every distinct SID is scored once (through its representative item under
    ``collision="random"``), ``batch_size`` candidates per ``model.score`` call.
    Cost is B x n_items sequences, so use it on a sample of users.

    Args:
        model: a :class:`~sidrec.models.base.SIDGenerator` in eval mode.
        history: B users.
        sids: the SID table.
        k: list length.
        batch_size: candidates scored per call.

    Returns:
        items (B, k) long item indices and their scores (B, k), best first.
    """
    if k < 1 or batch_size < 1:
        raise SidrecError(f"exact top-k needs k >= 1 and batch_size >= 1, got k={k}, batch_size={batch_size}")
    cand_items = np.flatnonzero(sids.representative)
    codes = torch.from_numpy(sids.codes[cand_items])  # (N, T)
    device = model_device(model)
    history = history.to(device)
    B = history.codes.shape[0]
    chunks = []
    with torch.inference_mode():
        for lo in range(0, len(cand_items), batch_size):
            c = codes[lo : lo + batch_size].to(device)  # (C, T)
            chunks.append(model.score(history, c[None].expand(B, -1, -1)).float().cpu())  # (B, C)
    scores = torch.cat(chunks, dim=1)  # (B, N)
    top, idx = scores.topk(min(k, scores.shape[1]), dim=1)
    return torch.from_numpy(cand_items)[idx], top


def overlap_at_k(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user |top-k of a ∩ top-k of b| / k for ranked item lists (B, L); -1 entries never count."""
    a, b = a[:, :k], b[:, :k]
    both = ((a[:, :, None] == b[:, None, :]) & (a >= 0)[:, :, None]).any(dim=2)  # (B, k)
    return both.sum(dim=1).double() / k
