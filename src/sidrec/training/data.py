"""Training samples, pre-tensorised and bucketed by length (no per-sample Python in the hot path).

Two units of training data:

- ``"sample"`` (sliding window, GRID §3.1 / [71]): every prefix of a user's train part
  predicts its next item, history truncated to ``max_history``. With
  ``sliding_window=False`` only the full train part predicts its last item. With
  ``sub_windows=True`` each target is also learnt from every shorter contiguous
  history ending just before it (every window start, as GRID's reference collate
  ``collate_with_sid_causal_duplicate`` draws them): an augmentation with ~h/2 times
  more, shorter samples per epoch.
- ``"sequence"`` (decoder-only): windows of up to ``max_history + 1`` consecutive items;
  one causal pass trains every item after the first. Windows start at 0, M, 2M, ...
  (M = max_history), so each train target is learnt exactly once; a target in a later
  window sees the items since its window start (fewer than M for early ones).

Batches are length-bucketed: each epoch shuffles units with ``(seed, epoch)``, sorts
them by length inside chunks of ``CHUNK_BATCHES`` batches, cuts batches and shuffles
the batch order, so batches are nearly padding-free yet the order is random. The
order is a pure function of ``(seed, epoch)``: resuming only needs ``(epoch, index)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sidrec.models.base import HistoryBatch

CHUNK_BATCHES = 50
UNITS = ("sample", "sequence")


@dataclass
class Batch:
    """One rank's part of a global batch.

    Attributes:
        history, targets: sample unit — left-padded histories (B, H, T) and next SIDs (B, T).
        codes, lengths: sequence unit — right-padded windows (B, L, T) and real items per window.
        user_bins: (B,) hashed user tokens or None.
        n_targets: next-item targets in this part; n_global: in the whole global batch.
    """

    history: HistoryBatch | None
    targets: torch.Tensor | None
    codes: torch.Tensor | None
    lengths: torch.Tensor | None
    user_bins: torch.Tensor | None
    n_targets: int
    n_global: int


class TrainData:
    """All training units of one run, as flat index arrays over a concatenated item array.

    Args:
        sequences: per user, the chronological train-part item_idx array.
        item_codes: (n_items, T) SID codes per item_idx.
        max_history: most recent items a sample's history keeps.
        unit: "sample" or "sequence" (see module docstring).
        sliding_window: all prefixes (True) or only the last target per user (False).
        batch_size: targets per global batch (sequence unit: at least this many, greedy).
        seed: seeds the per-epoch order.
        user_bins: (n_users,) hashed user token per user, or None.
        sub_windows: sample unit only — every history length 1..max_history per target.
    """

    def __init__(
        self,
        sequences: list[np.ndarray],
        item_codes: np.ndarray,
        max_history: int,
        unit: str,
        sliding_window: bool,
        batch_size: int,
        seed: int,
        user_bins: np.ndarray | None = None,
        sub_windows: bool = False,
    ):
        assert unit in UNITS, unit
        assert unit == "sample" or sliding_window, "the sequence unit is sliding-window training by construction"
        assert unit == "sample" or not sub_windows, "sub-windows are a sample-unit augmentation"
        self.unit, self.batch_size, self.seed, self.max_history = unit, batch_size, seed, max_history
        lens = np.array([len(s) for s in sequences], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        self.flat = torch.from_numpy(np.concatenate(sequences).astype(np.int64) if len(sequences) else np.zeros(0, np.int64))
        self.codes = torch.from_numpy(np.asarray(item_codes, dtype=np.int64))
        self.user_bins = None if user_bins is None else torch.from_numpy(np.asarray(user_bins, dtype=np.int64))
        users, first, size = [], [], []  # per unit: user, first flat index, items (history+target or window)
        M = max_history
        for u, (n, s0) in enumerate(zip(lens.tolist(), starts.tolist())):
            if n < 2:
                continue
            if unit == "sample":
                targets = range(1, n) if sliding_window else [n - 1]
                for p in targets:
                    for h in range(1 if sub_windows else min(p, M), min(p, M) + 1):
                        users.append(u), first.append(s0 + p - h), size.append(h + 1)
            else:
                k = 0
                while k * M + 1 < n:
                    lo = k * M
                    users.append(u), first.append(s0 + lo), size.append(min(n, lo + M + 1) - lo)
                    k += 1
        self.unit_user = np.array(users, dtype=np.int64)
        self.unit_first = np.array(first, dtype=np.int64)
        self.unit_size = np.array(size, dtype=np.int64)
        self.n_targets_total = self._targets(np.arange(len(self.unit_size)))
        self._epoch_cache: tuple[int, list[np.ndarray]] | None = None

    def __len__(self) -> int:
        return len(self.unit_size)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Global batches (unit indices) of ``epoch``; a pure function of (seed, epoch)."""
        if self._epoch_cache is not None and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        perm = rng.permutation(len(self))
        chunk = self.batch_size * CHUNK_BATCHES
        batches: list[np.ndarray] = []
        for c in range(0, len(perm), chunk):
            part = perm[c : c + chunk]
            part = part[np.argsort(self.unit_size[part], kind="stable")]
            if self.unit == "sample":
                batches.extend(part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size))
            else:  # greedy: windows until the batch holds >= batch_size targets
                cum = np.cumsum(self.unit_size[part] - 1)
                cuts = [0]
                while cuts[-1] < len(part):
                    base = cum[cuts[-1] - 1] if cuts[-1] else 0
                    cuts.append(int(np.searchsorted(cum, base + self.batch_size, side="left")) + 1)
                    cuts[-1] = min(cuts[-1], len(part))
                batches.extend(part[a:b] for a, b in zip(cuts[:-1], cuts[1:]))
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
        self._epoch_cache = (epoch, batches)
        return batches

    def _targets(self, units: np.ndarray) -> int:
        """Next-item targets in ``units``: one per sample, window length - 1 per sequence."""
        return len(units) if self.unit == "sample" else int((self.unit_size[units] - 1).sum())

    def make_batch(self, units: np.ndarray, rank: int = 0, world: int = 1) -> Batch:
        """Tensors for this rank's contiguous share of a global batch of ``units``."""
        n_global = self._targets(units)
        units = np.array_split(units, world)[rank]
        size = torch.from_numpy(self.unit_size[units])
        first = torch.from_numpy(self.unit_first[units])
        ub = None if self.user_bins is None else self.user_bins[torch.from_numpy(self.unit_user[units])]
        L = int(size.max())
        j = torch.arange(L)
        n_targets = self._targets(units)
        if self.unit == "sample":
            H = L - 1
            hist_len = size - 1
            pos = first[:, None] + (hist_len[:, None] - H) + j[None, :H]  # (B, H) left-padded
            mask = j[None, :H] >= (H - hist_len)[:, None]
            items = self.flat[pos.clamp(min=0)]
            codes = self.codes[items] * mask[..., None]  # (B, H, T); padding rows are 0
            targets = self.codes[self.flat[first + hist_len]]  # (B, T)
            return Batch(HistoryBatch(codes, mask, ub), targets, None, None, ub, n_targets, n_global)
        mask = j[None] < size[:, None]  # (B, L) right-padded
        items = self.flat[(first[:, None] + j[None]).clamp(max=len(self.flat) - 1)]
        codes = self.codes[items] * mask[..., None]
        return Batch(None, None, codes, size, ub, n_targets, n_global)
