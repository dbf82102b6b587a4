"""Beam-search evaluation of a model on a leave-one-out split."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sidrec.data.prepared import SPLITS, PreparedData
from sidrec.errors import SidrecError
from sidrec.generation.batching import make_history_batch
from sidrec.generation.beam import beam_search, ranked_items
from sidrec.generation.trie import SIDTrie
from sidrec.metrics.ranking import RankingAccumulator
from sidrec.models.base import HistoryBatch, SIDGenerator
from sidrec.tokenizers.sid_table import SIDTable


@dataclass
class DecodedBatch:
    """Ranked items of one batch of users.

    Attributes:
        users: (B,) user_idx.
        targets: (B,) held-out item_idx.
        items: (B, K) ranked item_idx, best first; -1 = miss (finite score) or empty slot (-inf).
        scores: (B, K) summed log-probabilities.
    """

    users: np.ndarray
    targets: np.ndarray
    items: torch.Tensor
    scores: torch.Tensor


def align_sids(data: PreparedData, sids: SIDTable) -> SIDTable:
    """The SID table with its rows in item_idx order of ``data`` (``sids`` itself if already so).

    Raises:
        SidrecError: if a prepared item has no SID.
    """
    if sids.item_ids == data.item_ids:
        return sids
    pos = {item: n for n, item in enumerate(sids.item_ids)}
    missing = [i for i in data.item_ids if i not in pos]
    if missing:
        raise SidrecError(
            f"SID table lacks {len(missing)} of the {data.n_items} prepared items (e.g. {missing[0]!r}); "
            "re-run `sidrec tokenize` after `sidrec prepare`"
        )
    rows = np.array([pos[i] for i in data.item_ids], dtype=np.int64)
    rep = sids.representative[rows].copy()
    codes = sids.codes[rows]
    # every SID keeps exactly one representative among the prepared items
    _, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    has_rep = np.zeros(len(first), dtype=bool)
    np.logical_or.at(has_rep, inverse.reshape(-1), rep)
    rep[first[~has_rep]] = True
    return SIDTable(list(data.item_ids), codes, list(sids.vocab_sizes), sids.collision, rep)


def n_user_bins(model: SIDGenerator) -> int:
    """Number of hashed user-token bins the model expects (0 = none)."""
    bins = getattr(model, "user_tokens", None)
    if bins is None:
        bins = model.config().get("user_tokens", 0)
    return int(bins or 0)


def history_batch(model: SIDGenerator, data: PreparedData, sids: SIDTable, users: np.ndarray, histories: Sequence[np.ndarray]) -> HistoryBatch:
    """HistoryBatch for prepared users, with user bins when the model uses user tokens."""
    bins = n_user_bins(model)
    ids = [data.user_ids[u] for u in users] if bins else None
    return make_history_batch(histories, sids, ids, bins)


def pick_users(n_users: int, max_users: int | None, seed: int) -> np.ndarray:
    """All user_idx, or a fixed seeded subset of ``max_users`` of them (sorted)."""
    if max_users is None or max_users >= n_users:
        return np.arange(n_users, dtype=np.int64)
    if max_users < 1:
        raise SidrecError(f"max_users must be >= 1, got {max_users}")
    return np.sort(np.random.default_rng(seed).choice(n_users, size=max_users, replace=False)).astype(np.int64)


def decode_split(
    model: SIDGenerator,
    data: PreparedData,
    sids: SIDTable,
    split: str,
    users: np.ndarray,
    beam_size: int,
    constrained: bool,
    batch_size: int,
    filter_seen: bool = False,
    trie: SIDTrie | None = None,
) -> Iterator[DecodedBatch]:
    """Beam-decode ``users`` of ``split`` batch by batch (users grouped by history length).

    Call under ``torch.inference_mode()`` with the model in eval mode.

    Args:
        model: a SIDGenerator.
        data: the prepared dataset.
        sids: the SID table (re-ordered to item_idx order if needed).
        split: "valid" or "test".
        users: user_idx to decode.
        beam_size: beams per user (= ranked list length).
        constrained: decode only valid SIDs.
        batch_size: users per beam-search batch.
        filter_seen: drop each user's history items from its ranking.
        trie: a prebuilt trie of ``sids`` (built here when None).

    Yields:
        One :class:`DecodedBatch` per batch, in history-length order.
    """
    if batch_size < 1:
        raise SidrecError(f"eval batch size must be >= 1, got {batch_size}")
    sids = align_sids(data, sids)
    ex = data.eval_examples(split)
    trie = trie or SIDTrie.build(sids.codes, sids.vocab_sizes, sids.representative)
    lengths = np.array([len(ex.histories[u]) for u in users])
    users = users[np.argsort(lengths, kind="stable")]  # similar lengths together: less padding
    for lo in range(0, len(users), batch_size):
        ub = users[lo : lo + batch_size]
        hists = [ex.histories[u] for u in ub]
        batch = history_batch(model, data, sids, ub, hists)
        res = beam_search(model, batch, trie, beam_size, constrained)
        exclude = None
        if filter_seen:
            exclude = torch.where(batch.mask, _padded_items(hists, batch.mask.shape[1]), -1)
        items, scores = ranked_items(res, exclude)
        yield DecodedBatch(ub, ex.targets[ub], items, scores)


def _padded_items(hists: Sequence[np.ndarray], H: int) -> torch.Tensor:
    out = np.full((len(hists), H), -1, dtype=np.int64)
    for b, h in enumerate(hists):
        if len(h):
            out[b, H - len(h) :] = h
    return torch.from_numpy(out)


def evaluate_split(
    model: SIDGenerator,
    data: PreparedData,
    sids: SIDTable,
    split: str,
    beam_size: int = 20,
    constrained: bool = True,
    ks: Sequence[int] = (5, 10, 20, 30),
    batch_size: int = 256,
    max_users: int | None = None,
    progress: bool = False,
    seed: int = 0,
    filter_seen: bool = False,
) -> dict[str, float]:
    """Recall@K, NDCG@K and MRR of beam search on ``split`` ("valid" or "test").

    Every user has one held-out target, ranked against the full item set. Cut-offs
    above ``beam_size`` are computed on the ``beam_size``-long list (so they equal
    the ``beam_size`` cut-off).

    Args:
        model: a SIDGenerator; put in eval mode here and restored afterwards.
        data: the prepared dataset.
        sids: the SID table (rows = prepared items).
        split: "valid" or "test".
        beam_size: beams per user (= ranked list length).
        constrained: decode only valid SIDs.
        ks: cut-offs.
        batch_size: users per beam-search batch.
        max_users: evaluate a fixed seeded subset of this many users; None = all.
        progress: show a progress bar.
        seed: seed of the user subset.
        filter_seen: drop the user's history items from the ranking.

    Returns:
        ``recall@k``/``ndcg@k`` per k, ``mrr``, ``n_users`` and ``users_per_second``
        (decoding wall time, batching included).
    """
    if split not in SPLITS:
        raise SidrecError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    users = pick_users(data.n_users, max_users, seed)
    acc = RankingAccumulator(ks)
    if max(acc.ks) > beam_size:
        warnings.warn(
            f"cut-offs {[k for k in acc.ks if k > beam_size]} exceed the beam size {beam_size}: "
            f"those metrics are computed on the {beam_size}-long list (they equal @{beam_size})",
            stacklevel=2,
        )
    sids = align_sids(data, sids)
    trie = SIDTrie.build(sids.codes, sids.vocab_sizes, sids.representative)
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    bar = _progress(len(users), progress, f"evaluate {split}")
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            for db in decode_split(model, data, sids, split, users, beam_size, constrained, batch_size, filter_seen, trie):
                acc.add(db.items, torch.from_numpy(db.targets))
                if bar is not None:
                    bar.update(len(db.users))
    finally:
        if bar is not None:
            bar.close()
        if was_training:
            model.train()
    seconds = time.perf_counter() - t0
    out = acc.result()
    out["users_per_second"] = round(len(users) / max(seconds, 1e-9), 1)
    return out


def _progress(total: int, enabled: bool, desc: str):  # noqa: ANN202 (tqdm or None)
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="user", leave=False)
