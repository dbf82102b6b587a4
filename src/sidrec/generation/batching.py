"""Item histories -> :class:`~sidrec.models.base.HistoryBatch` (shared by training and decoding)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sidrec.models.base import HistoryBatch
from sidrec.tokenizers.sid_table import SIDTable


def hash_user_bins(user_idx: np.ndarray, n_user_bins: int) -> np.ndarray:
    """TIGER-style hashed user token: a fixed mixing hash of user_idx into [0, n_user_bins).

    Deterministic across runs and processes (no Python ``hash`` salt).
    """
    x = np.asarray(user_idx, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):  # splitmix64 finaliser, wrapping arithmetic
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(n_user_bins)).astype(np.int64)


def make_history_batch(
    histories: Sequence[np.ndarray],
    sids: SIDTable,
    user_idx: np.ndarray | Sequence[int] | None = None,
    n_user_bins: int | None = None,
) -> HistoryBatch:
    """Left-pad item histories (most recent last) and look up their SID codes.

    Args:
        histories: B arrays of item_idx, chronological (oldest first).
        sids: the SID table; ``sids.codes[item_idx]`` are an item's tokens.
        user_idx: (B,) user indices, hashed into user bins; None = all users in bin 0.
        n_user_bins: number of user-token bins; None or 0 = no user tokens.

    Returns:
        codes (B, H, T) with H the longest history (at least 1), mask (B, H), user_bins (B,) or None.
    """
    B = len(histories)
    H = max([len(h) for h in histories] + [1])
    T = sids.n_tokens
    items = np.full((B, H), -1, dtype=np.int64)
    for b, h in enumerate(histories):
        if len(h):
            items[b, H - len(h) :] = h
    mask = items >= 0
    codes = np.where(mask[..., None], sids.codes[np.maximum(items, 0)], 0)  # (B, H, T)
    bins = None
    if n_user_bins:
        if user_idx is None:
            bins = torch.zeros(B, dtype=torch.long)
        else:
            bins = torch.from_numpy(hash_user_bins(np.asarray(user_idx), n_user_bins))
    assert codes.shape == (B, H, T)
    return HistoryBatch(torch.from_numpy(codes), torch.from_numpy(mask), bins)
