"""Clustering tokenizers: residual k-means (GRID / OneRec) and hierarchical k-means.

- ``rkmeans``: level l clusters the residuals left by levels < l with faiss
  k-means (GRID §3.1 "RK-Means"). With ``normalize_residuals`` (GRID §4 setup:
  "Residuals are normalized (RK-Means, R-VQ) ... to prevent collapse") each
  level's input is L2-normalised before clustering:
  ``u_l = r_l / ||r_l||``, ``c_l = argmin_k ||u_l - C_l[k]||``, ``r_{l+1} = u_l - C_l[c_l]``.
- ``rkmeans-balanced``: the same, but every level's clusters hold at most
  ``ceil(N/K)`` items (OneRec's balanced residual k-means). Encoding applies
  the capacity constraint to the batch being encoded, so an item's code
  depends on what it is encoded with; encode the whole catalogue at once.
- ``kmeans``: hierarchical k-means baseline: cluster, then cluster within each
  cluster (``min(K, n)`` clusters for a parent of n items), on the raw vectors.

Decoding normalised residuals needs the norms the codes drop; we use the mean
norm of each level's input on the training data (``level_norms_``), so
``decode`` is approximate there: ``x ~ n_0 (C_0[c_0] + n_1 (C_1[c_1] + ...))``.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from sidrec.tokenizers._kmeans import balanced_assign, balanced_kmeans, kmeans, l2_normalize, nearest
from sidrec.tokenizers.base import Tokenizer, check_bool, check_int, register


@register("rkmeans")
class ResidualKMeans(Tokenizer):
    """Residual k-means on faiss.

    Args:
        n_levels: number of residual levels (SID length before de-dup).
        codebook_size: centroids per level.
        seed: faiss k-means seed (level l uses ``seed + l``).
        normalize_residuals: L2-normalise each level's input (GRID's default).
        niter: Lloyd iterations per level.
    """

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0,
                 normalize_residuals: bool = True, niter: int = 20):
        super().__init__(n_levels, codebook_size, seed)
        self.normalize_residuals = normalize_residuals
        self.niter = niter

    def _check_params(self) -> None:
        super()._check_params()
        owner = type(self).__name__
        check_bool(owner, "normalize_residuals", self.normalize_residuals)
        check_int(owner, "niter", self.niter, 1)

    def _cluster(self, r: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Centroids (K, d) and codes (N,) of one level's input."""
        c = kmeans(r, self.codebook_size, self.seed + level, self.niter)
        return c, nearest(r, c)

    def _assign(self, r: np.ndarray, level: int) -> np.ndarray:
        return nearest(r, self.centroids_[level])

    def _fit(self, x: np.ndarray, progress: bool) -> None:
        self.centroids_: list[np.ndarray] = []
        norms = []
        r = x
        for level in tqdm(range(self.n_levels), desc=self.name, disable=not progress):
            if self.normalize_residuals:
                r, n = l2_normalize(r)
                norms.append(float(n.mean()))
            c, codes = self._cluster(r, level)
            self.centroids_.append(c)
            r = r - c[codes]  # (N, d)
        self.level_norms_ = norms if self.normalize_residuals else [1.0] * self.n_levels

    def _encode(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], self.n_levels), dtype=np.int64)
        r = x
        for level in range(self.n_levels):
            if self.normalize_residuals:
                r, _ = l2_normalize(r)
            out[:, level] = self._assign(r, level)
            r = r - self.centroids_[level][out[:, level]]
        return out

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        v = np.zeros((codes.shape[0], self.dim_), dtype=np.float32)
        for level in reversed(range(self.n_levels)):  # x ~ n_0 (C_0 + n_1 (C_1 + ...))
            v = self.level_norms_[level] * (self.centroids_[level][codes[:, level]] + v)
        return v


@register("rkmeans-balanced")
class BalancedResidualKMeans(ResidualKMeans):
    """Residual k-means with equal-size clusters per level (OneRec).

    Args:
        n_levels: number of residual levels.
        codebook_size: centroids per level; each holds at most ``ceil(N/K)`` items.
        seed: k-means seed (level l uses ``seed + l``).
        normalize_residuals: L2-normalise each level's input.
        niter: Lloyd iterations of the unconstrained k-means that initialises a level.
        balance_iters: capacity-constrained assignment/update rounds per level.
    """

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0,
                 normalize_residuals: bool = True, niter: int = 20, balance_iters: int = 10):
        super().__init__(n_levels, codebook_size, seed, normalize_residuals, niter)
        self.balance_iters = balance_iters

    def _check_params(self) -> None:
        super()._check_params()
        check_int(type(self).__name__, "balance_iters", self.balance_iters, 0)

    def _cluster(self, r: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        return balanced_kmeans(r, self.codebook_size, self.seed + level, self.niter, self.balance_iters)

    def _assign(self, r: np.ndarray, level: int) -> np.ndarray:
        return balanced_assign(r, self.centroids_[level])


@register("kmeans")
class HierarchicalKMeans(Tokenizer):
    """Hierarchical k-means: k-means, then k-means inside every cluster, per level.

    The tree is stored flat per level: ``centroids_[l]`` (nodes_l, d),
    ``parents_[l]`` (nodes_l,) the parent node at level l-1 (all 0 at level 0)
    and ``starts_[l]`` (nodes_{l-1}+1,) where each parent's children begin, so
    child ``c`` of parent ``p`` is node ``starts_[l][p] + c``. A parent with
    n <= K items gets one child per item (no clustering needed).

    Args:
        n_levels: depth of the tree.
        codebook_size: children per node (at most).
        seed: k-means seed.
        niter: Lloyd iterations per k-means.
    """

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0, niter: int = 20):
        super().__init__(n_levels, codebook_size, seed)
        self.niter = niter

    def _check_params(self) -> None:
        super()._check_params()
        check_int(type(self).__name__, "niter", self.niter, 1)

    def _fit(self, x: np.ndarray, progress: bool) -> None:
        k = self.codebook_size
        self.centroids_, self.parents_, self.starts_ = [], [], []
        node = np.zeros(x.shape[0], dtype=np.int64)  # node of each item at the level above
        n_parents = 1
        for level in tqdm(range(self.n_levels), desc=self.name, disable=not progress):
            cents, parents, new_node = [], [], np.empty_like(node)
            starts = np.zeros(n_parents + 1, dtype=np.int64)
            order = np.argsort(node, kind="stable")
            bounds = np.searchsorted(node[order], np.arange(n_parents + 1))
            total = 0
            for p in range(n_parents):
                members = order[bounds[p] : bounds[p + 1]]
                starts[p] = total
                if members.size == 0:
                    continue
                if members.size <= k:  # one leaf per item
                    c, codes = x[members], np.arange(members.size)
                else:
                    c = kmeans(x[members], k, self.seed + 7919 * level + p, self.niter)
                    codes = nearest(x[members], c)
                cents.append(c)
                parents.append(np.full(c.shape[0], p, dtype=np.int64))
                new_node[members] = total + codes
                total += c.shape[0]
            starts[n_parents] = total
            self.centroids_.append(np.ascontiguousarray(np.concatenate(cents), dtype=np.float32))
            self.parents_.append(np.concatenate(parents))
            self.starts_.append(starts)
            node, n_parents = new_node, total

    def _encode(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((x.shape[0], self.n_levels), dtype=np.int64)
        node = np.zeros(x.shape[0], dtype=np.int64)
        for level in range(self.n_levels):
            starts, cents = self.starts_[level], self.centroids_[level]
            new_node = np.empty_like(node)
            for p in np.unique(node):
                rows = np.flatnonzero(node == p)
                lo, hi = starts[p], starts[p + 1]
                if hi == lo:  # a parent without children cannot occur for fitted trees
                    raise AssertionError("empty tree node")
                code = nearest(x[rows], cents[lo:hi])
                out[rows, level] = code
                new_node[rows] = lo + code
            node = new_node
        return out

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        """Centroid of the deepest node that exists on each code path."""
        out = np.repeat(self.centroids_[0].mean(0, keepdims=True), codes.shape[0], axis=0)
        node = np.zeros(codes.shape[0], dtype=np.int64)
        valid = np.ones(codes.shape[0], dtype=bool)
        for level in range(self.n_levels):
            # node indices only grow with depth, so a stale index stays in range
            starts, cents = self.starts_[level], self.centroids_[level]
            valid &= codes[:, level] < starts[node + 1] - starts[node]
            node = np.where(valid, starts[node] + codes[:, level], node)
            out[valid] = cents[node[valid]]
        return out
