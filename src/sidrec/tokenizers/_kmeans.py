"""k-means building blocks shared by the clustering tokenizers (faiss + NumPy)."""

from __future__ import annotations

import math

import faiss
import numpy as np

#: Rows per block when computing distances, to bound memory at (block, K).
BLOCK = 8192


def kmeans(x: np.ndarray, k: int, seed: int, niter: int = 20, max_points_per_centroid: int = 256,
           spherical: bool = False) -> np.ndarray:
    """Centroids (k, d) float32 of ``x`` (N, d) by faiss k-means (Lloyd, k-means++-free random init).

    ``max_points_per_centroid`` is faiss' own subsampling cap (default 256, so
    N > 256 k is sub-sampled with ``seed``). ``spherical``: faiss re-normalises the
    centroids to unit norm after every iteration (spherical k-means on unit-norm ``x``).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    assert x.shape[0] >= k, (x.shape, k)
    km = faiss.Kmeans(
        x.shape[1], k, niter=niter, seed=int(seed), verbose=False,
        max_points_per_centroid=max_points_per_centroid, min_points_per_centroid=1, spherical=spherical,
    )
    km.train(x)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def sq_distances(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared L2 distances (N, K) between rows of x (N, d) and c (K, d)."""
    d = (x * x).sum(1, keepdims=True) - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def nearest(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Index (N,) int64 of the nearest centroid of each row (ties -> lowest index)."""
    out = np.empty(x.shape[0], dtype=np.int64)
    for s in range(0, x.shape[0], BLOCK):
        out[s : s + BLOCK] = sq_distances(x[s : s + BLOCK], c).argmin(1)
    return out


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit L2 norm (zero rows stay zero), and the norms (N,)."""
    norms = np.linalg.norm(x, axis=1)
    return (x / np.maximum(norms, eps)[:, None]).astype(np.float32), norms.astype(np.float32)


def balanced_assign(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Assign rows to centroids with at most ``ceil(N/K)`` rows per centroid.

    Greedy by distance, in rounds: every unassigned row proposes to its nearest
    centroid that still has room; each centroid accepts its closest proposers up
    to its remaining capacity. Deterministic (stable sorts), at most K rounds.

    Returns:
        (N,) int64 centroid index per row.
    """
    n, k = x.shape[0], c.shape[0]
    cap = np.full(k, math.ceil(n / k), dtype=np.int64)
    dist = sq_distances(x, c)  # (N, K)
    assign = np.full(n, -1, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:
        d = dist[todo]
        d[:, cap == 0] = np.inf
        choice = d.argmin(1)  # (U,)
        dchoice = d[np.arange(todo.size), choice]
        order = np.lexsort((dchoice, choice))  # by centroid, then distance
        ch_sorted = choice[order]
        starts = np.searchsorted(ch_sorted, np.arange(k))
        rank = np.arange(todo.size) - starts[ch_sorted]
        accept = rank < cap[ch_sorted]
        rows = todo[order[accept]]
        assign[rows] = ch_sorted[accept]
        np.subtract.at(cap, ch_sorted[accept], 1)
        todo = np.sort(todo[order[~accept]])
    return assign


def balanced_kmeans(x: np.ndarray, k: int, seed: int, niter: int = 20, balance_iters: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Equal-size k-means: faiss k-means init, then capacity-constrained Lloyd steps.

    Returns:
        centroids (k, d) float32 and the balanced assignment (N,) int64 of ``x``.
    """
    c = kmeans(x, k, seed, niter)
    assign = balanced_assign(x, c)
    for _ in range(balance_iters):
        sums = np.zeros_like(c, dtype=np.float64)
        np.add.at(sums, assign, x)
        counts = np.bincount(assign, minlength=k)
        nonempty = counts > 0
        c = c.copy()
        c[nonempty] = (sums[nonempty] / counts[nonempty, None]).astype(np.float32)
        new = balanced_assign(x, c)
        if np.array_equal(new, assign):
            break
        assign = new
    return np.ascontiguousarray(c, dtype=np.float32), assign
