"""OPQ: a learned rotation, then product quantization (VQ-Rec's OPQ-KMeans).

faiss learns the rotation ``A`` (d_out, d) with ``OPQMatrix`` (Ge et al.,
TPAMI 2013) and one k-means codebook per sub-space with ``ProductQuantizer``.
Each of the ``n_levels`` codes picks a centroid in its own sub-space of the
rotated vector, so the levels are parallel, not coarse-to-fine. ``d_out`` is
``d`` rounded up to a multiple of ``n_levels`` (faiss pads the rotation).
Encoding/decoding use the stored arrays in NumPy, so a loaded tokenizer does
not depend on faiss' serialisation.
"""

from __future__ import annotations

import faiss
import numpy as np

from sidrec.errors import SidrecError
from sidrec.tokenizers._kmeans import nearest
from sidrec.tokenizers.base import Tokenizer, check_int, register


@register("opq")
class OPQ(Tokenizer):
    """Optimized product quantization on faiss.

    Args:
        n_levels: number of sub-spaces (one code each).
        codebook_size: centroids per sub-space; a power of two (faiss PQ uses bits).
        seed: seed of faiss' PQ k-means.
        niter: alternating rotation / PQ iterations of OPQ.
    """

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0, niter: int = 25):
        super().__init__(n_levels, codebook_size, seed)
        self.niter = niter

    def _check_params(self) -> None:
        super()._check_params()
        owner = type(self).__name__
        check_int(owner, "niter", self.niter, 1)
        k = self.codebook_size
        if isinstance(k, int) and k & (k - 1):
            raise SidrecError(f"`codebook_size` of {owner} must be a power of two (faiss PQ), got {k}.")

    def _fit(self, x: np.ndarray, progress: bool) -> None:
        d, m = x.shape[1], self.n_levels
        nbits = int(self.codebook_size).bit_length() - 1
        d_out = -(-d // m) * m
        if x.shape[0] < d_out:
            # faiss' OPQMatrix corrupts the heap (and kills the process) when trained on
            # fewer points than its output dimension; measured with faiss-cpu 1.15.
            raise SidrecError(f"`opq` needs at least {d_out} items to learn a {d_out}-d rotation, got {x.shape[0]}.")
        opq = faiss.OPQMatrix(d, m, d_out)
        opq.niter = self.niter
        opq.verbose = progress
        pq = faiss.ProductQuantizer(d_out, m, nbits)
        pq.cp.seed = int(self.seed)
        pq.cp.min_points_per_centroid = 1
        opq.pq = pq
        opq.train(x)
        y = opq.apply_py(x)  # (N, d_out)
        final = faiss.ProductQuantizer(d_out, m, nbits)
        final.cp.seed = int(self.seed)
        final.cp.min_points_per_centroid = 1
        final.train(y)
        self.rotation_ = faiss.vector_to_array(opq.A).reshape(d_out, d).astype(np.float32)  # y = x A^T
        self.centroids_ = faiss.vector_to_array(final.centroids).reshape(m, 2**nbits, d_out // m).astype(np.float32)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        m, _, dsub = self.centroids_.shape
        y = x @ self.rotation_.T  # (N, d_out)
        return np.stack([nearest(np.ascontiguousarray(y[:, i * dsub : (i + 1) * dsub]), self.centroids_[i]) for i in range(m)], axis=1)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        m = self.centroids_.shape[0]
        y = np.concatenate([self.centroids_[i][codes[:, i]] for i in range(m)], axis=1)  # (N, d_out)
        return y @ self.rotation_  # A has orthonormal rows: A^T undoes the rotation
