"""Ranking metrics over the full item set with one held-out target per user.

Each user contributes a ranked list of item indices (best first; -1 marks a
slot that matches no item, e.g. a free-decoded SID that is not in the catalogue)
and one target. With ``rank`` the 1-based position of the target in the list
(absent = not found):

- Recall@K (= hit rate with one target): 1 if rank <= K.
- NDCG@K: 1 / log2(rank + 1) if rank <= K (the ideal DCG is 1 with one target).
- MRR: 1 / rank if the target is anywhere in the list, else 0 (so it is MRR
  truncated at the list length, i.e. the beam width).

A list shorter than K counts as is: Recall@K on a 20-long list is Recall@20.
The accumulator keeps sums and a count, so sharded evaluation is exact after
:func:`all_reduce_` sums them across processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sidrec.errors import SidrecError


def target_ranks(ranked: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each user's target in its list, 0 when absent.

    Args:
        ranked: (U, L) long item indices, best first; -1 never matches.
        targets: (U,) long item indices (>= 0).

    Returns:
        (U,) long ranks in [0, L].
    """
    if ranked.dim() != 2 or targets.shape != ranked.shape[:1]:
        raise SidrecError(f"expected ranked lists (U, L) and targets (U,), got {tuple(ranked.shape)} and {tuple(targets.shape)}")
    hit = (ranked == targets[:, None]) & (ranked >= 0)  # (U, L)
    first = hit.int().argmax(dim=1) + 1  # first hit position, 1-based
    return torch.where(hit.any(dim=1), first, torch.zeros_like(first)).long()


class RankingAccumulator:
    """Running sums of Recall@K, NDCG@K and MRR.

    Attributes:
        ks: cut-offs K.
        sums: (2 * len(ks) + 1,) float64: recall@k..., ndcg@k..., mrr.
        count: number of users added.
    """

    def __init__(self, ks: Sequence[int] = (5, 10, 20, 30)):
        ks = tuple(int(k) for k in ks)
        if not ks or any(k < 1 for k in ks):
            raise SidrecError(f"ranking cut-offs must be positive integers, got {list(ks)}")
        self.ks = ks
        self.sums = torch.zeros(2 * len(ks) + 1, dtype=torch.float64)
        self.count = 0

    def add_ranks(self, ranks: torch.Tensor) -> None:
        """Add users by their target ranks (1-based, 0 = not found)."""
        r = ranks.to(torch.float64).cpu()
        found = r > 0
        gain = torch.where(found, 1.0 / torch.log2(r.clamp(min=1) + 1), torch.zeros_like(r))  # (U,)
        parts = [((r <= k) & found).sum() for k in self.ks]
        parts += [torch.where(r <= k, gain, torch.zeros_like(r)).sum() for k in self.ks]
        parts.append(torch.where(found, 1.0 / r.clamp(min=1), torch.zeros_like(r)).sum())
        self.sums += torch.stack([p.to(torch.float64) for p in parts])
        self.count += int(r.numel())

    def add(self, ranked: torch.Tensor, targets: torch.Tensor) -> None:
        """Add users by their ranked lists (U, L) and targets (U,)."""
        self.add_ranks(target_ranks(ranked, targets))

    def result(self) -> dict[str, float]:
        """Means over all users added: ``recall@k``, ``ndcg@k``, ``mrr`` and ``n_users``."""
        n = max(self.count, 1)
        means = (self.sums / n).tolist()
        out: dict[str, float] = {}
        for i, k in enumerate(self.ks):
            out[f"recall@{k}"] = means[i]
        for i, k in enumerate(self.ks):
            out[f"ndcg@{k}"] = means[len(self.ks) + i]
        out["mrr"] = means[-1]
        out["n_users"] = self.count
        return out


def all_reduce_(acc: RankingAccumulator, group: object | None = None) -> RankingAccumulator:
    """Sum ``acc``'s sums and count over all processes of ``torch.distributed`` (in place).

    A no-op when torch.distributed is not initialised. Call it once, after every
    process has added its shard of users, then read :meth:`RankingAccumulator.result`.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return acc
    buf = torch.cat([acc.sums, torch.tensor([float(acc.count)], dtype=torch.float64)])
    if dist.get_backend(group) == "nccl":
        buf = buf.cuda()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
    buf = buf.cpu()
    acc.sums = buf[:-1].clone()
    acc.count = int(round(buf[-1].item()))
    return acc

