"""Item histories -> :class:`~sidrec.models.base.HistoryBatch` (shared by training and decoding)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sidrec.models.base import HistoryBatch, user_bins
from sidrec.tokenizers.sid_table import SIDTable


def make_history_batch(
    histories: Sequence[np.ndarray],
    sids: SIDTable,
    user_ids: Sequence[str] | None = None,
    n_user_bins: int = 0,
) -> HistoryBatch:
    """Left-pad item histories (most recent last) and look up their SID codes.

    Args:
        histories: B arrays of item_idx, chronological (oldest first).
        sids: the SID table; ``sids.codes[item_idx]`` are an item's tokens.
        user_ids: B external user ids, hashed into user bins by
            :func:`sidrec.models.base.user_bins`; None = an anonymous history (bin 0).
        n_user_bins: number of user-token bins (the model's ``user_tokens``); 0 = none.

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
    if n_user_bins > 0:
        bins = torch.zeros(B, dtype=torch.long) if user_ids is None else user_bins(list(user_ids), n_user_bins)
        assert bins is not None and bins.shape == (B,)
    assert codes.shape == (B, H, T)
    return HistoryBatch(torch.from_numpy(codes), torch.from_numpy(mask), bins)
