"""Sequential predictability of SID prefixes: does an item's prefix tell the next item's?

A generative recommender names the next item's first code from the history before anything
else, so a tokenizer whose level-1 codes carry sequential signal gives it an easier first
step. On Beauty its level-1 hit rate orders the four 3-level tokenizers with downstream records
as their Recall@10 does, and the two 1-level ones too (BENCHMARKS.md, issue 13, sixth session;
one fit each: a hint, not a validated metric).
No model is trained: a bigram over prefixes, counted on training pairs and scored on held-out
pairs.
"""

from __future__ import annotations

import numpy as np

from sidrec.errors import SidrecError


def _prefix_ids(codes: np.ndarray, level: int) -> np.ndarray:
    """(N,) dense id of each item's first ``level`` codes."""
    _, inv = np.unique(codes[:, :level], axis=0, return_inverse=True)
    return inv.reshape(-1)


def sequential_predictability(codes: np.ndarray, pairs: np.ndarray, held: np.ndarray) -> list[dict]:
    """How well the SID prefix of one item predicts the next item's, per prefix length.

    Args:
        codes: (N, L) SID codes per item.
        pairs: (P, 2) item indices (previous, next) to count the bigram on (training pairs).
        held: (H, 2) item indices (previous, next) to score it on (e.g. last history item ->
            validation target).

    Returns:
        Per level l = 1..L: ``prefixes`` (distinct l-prefixes), ``h_uni`` / ``h_bi`` (bits):
        cross-entropy of the held-out next prefix under the add-one unigram and under the
        bigram P(next | previous) smoothed by Witten-Bell interpolation with that unigram,
        ``gain = h_uni - h_bi``, and ``hit1``: share of held-out next prefixes that are the
        bigram's argmax for their previous prefix (the unigram's argmax for an unseen one).
    """
    codes, pairs, held = np.asarray(codes), np.asarray(pairs), np.asarray(held)
    if codes.ndim != 2 or pairs.ndim != 2 or pairs.shape[1] != 2 or held.ndim != 2 or held.shape[1] != 2:
        raise SidrecError(f"expected codes (N, L), pairs (P, 2), held (H, 2); got {codes.shape}, {pairs.shape}, {held.shape}")
    out = []
    for level in range(1, codes.shape[1] + 1):
        p = _prefix_ids(codes, level)
        n = int(p.max()) + 1
        a, b = p[pairs[:, 0]], p[pairs[:, 1]]
        uni = (np.bincount(b, minlength=n) + 1.0) / (len(b) + n)  # add-one unigram over prefixes
        key = a.astype(np.int64) * n + b
        uniq, cnt = np.unique(key, return_counts=True)
        row_tot = np.bincount(a, minlength=n).astype(float)
        row_types = np.bincount(uniq // n, minlength=n).astype(float)  # distinct successors of each prefix
        ha, hb = p[held[:, 0]], p[held[:, 1]]
        hk = ha.astype(np.int64) * n + hb
        pos = np.searchsorted(uniq, hk)
        found = (pos < len(uniq)) & (uniq[np.minimum(pos, len(uniq) - 1)] == hk)
        c = np.where(found, cnt[np.minimum(pos, len(uniq) - 1)], 0)
        # Witten-Bell: P(b | a) = (c(a, b) + T(a) P(b)) / (N(a) + T(a)); unseen a -> the unigram
        t = np.maximum(row_types[ha], 1.0)
        prob = (c + t * uni[hb]) / (row_tot[ha] + t)
        # the bigram's argmax per source prefix (ties -> the lowest id)
        order = np.lexsort((-cnt, uniq // n))
        src = uniq[order] // n
        first = np.r_[True, src[1:] != src[:-1]]
        best = np.full(n, int(np.argmax(uni)))
        best[src[first]] = uniq[order][first] % n
        out.append({"level": level, "prefixes": n, "h_uni": float(-np.log2(uni[hb]).mean()),
                    "h_bi": float(-np.log2(prob).mean()), "gain": float((-np.log2(uni[hb]) + np.log2(prob)).mean()),
                    "hit1": float((best[ha] == hb).mean())})
    return out
