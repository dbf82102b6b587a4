"""The contract between sequence models, training and decoding.

CHANGES (models developer, for the decoding side): no method signature changed.
Added: attribute ``user_tokens`` (0 = off) on every model, and :func:`user_bins`
to fill ``HistoryBatch.user_bins`` from external user ids when it is > 0.

Histories are given at the item level as padded SID codes; how a model turns
them into tokens (one token per SID position, or one per item) is its own
business. Decoding is incremental: the context is encoded once per user, then
one SID position is generated per step with a KV cache that beam search
reorders.

Shapes: B users, H history items, T tokens per SID (de-dup digit included),
K beams, V_t vocabulary size of position t.
"""

from __future__ import annotations

from dataclasses import dataclass
import zlib
from collections.abc import Sequence
from typing import Any, Protocol

import torch


@dataclass
class HistoryBatch:
    """Padded item histories, most recent item last.

    Attributes:
        codes: (B, H, T) long, SID tokens of each history item; padding rows are 0.
        mask: (B, H) bool, True for real items. Padding is on the left, so the most
            recent item is always at index H-1.
        user_bins: (B,) long hashed user token in [0, n_user_bins), or None when off.
    """

    codes: torch.Tensor
    mask: torch.Tensor
    user_bins: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> HistoryBatch:
        ub = None if self.user_bins is None else self.user_bins.to(device)
        return HistoryBatch(self.codes.to(device), self.mask.to(device), ub)


def user_bins(user_ids: Sequence[str], n_bins: int) -> torch.Tensor | None:
    """TIGER's hashed user tokens: crc32(external user id) mod ``n_bins``; None when ``n_bins`` is 0.

    Stable across processes and runs (unlike Python's ``hash``). Returns (B,) long.
    """
    if n_bins <= 0:
        return None
    return torch.tensor([zlib.crc32(u.encode("utf-8")) % n_bins for u in user_ids], dtype=torch.long)


class DecodeCache(Protocol):
    """Model-specific incremental state (self-attention KV per layer, encoder output)."""


class SIDGenerator(Protocol):
    """What beam search and exact scoring need from a model.

    Attributes:
        vocab_sizes: vocabulary size of each SID position (length T).
        user_tokens: number of hashed user-token bins (0 = off); when > 0, histories need
            ``user_bins`` (see :func:`user_bins`).
    """

    vocab_sizes: list[int]
    user_tokens: int

    def start(self, history: HistoryBatch, beam_size: int) -> DecodeCache:
        """Encode each user's context once; return a cache for ``beam_size`` beams per user.

        The encoder output (encoder-decoder) must be shared by a user's beams, not copied.
        """

    def step(self, cache: DecodeCache, tokens: torch.Tensor | None) -> torch.Tensor:
        """Feed the previous SID token of each beam, return next-position log-probs.

        Args:
            cache: from :meth:`start`; updated in place.
            tokens: (B, K) long, the token chosen at the previous position, or None
                at position 0 (the BOS step).

        Returns:
            (B, K, V_t) float log-probabilities for position t = number of steps taken.
        """

    def reorder(self, cache: DecodeCache, parents: torch.Tensor) -> None:
        """Keep, for beam k of user b, the cache of beam ``parents[b, k]`` (in place)."""

    def score(self, history: HistoryBatch, candidates: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-likelihood of full candidate SIDs.

        Args:
            history: B users.
            candidates: (B, C, T) long SIDs to score for each user.

        Returns:
            (B, C) float, sum over positions of log p(token_t | context, tokens_<t).
        """

    def loss(self, history: HistoryBatch, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-SID cross-entropy over the batch; targets (B, T) long."""

    def config(self) -> dict[str, Any]:
        """Constructor arguments, to rebuild the model from a checkpoint."""
