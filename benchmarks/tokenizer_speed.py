"""Fit time of ``rkmeans`` next to the same residual k-means written directly on faiss.

    OMP_NUM_THREADS=1 python benchmarks/tokenizer_speed.py [--seed 0] [--quick] [-w RUN] \
        [--embeddings RUN/embeddings/embeddings.npy] [--repeats 3] [--levels 3] [--k 256]

Both sides run the same work in the same process: for each level, L2-normalise
the residuals (GRID's setting, rkmeans' default), ``faiss.Kmeans(niter=20)``,
assign every item to its nearest centroid, subtract. The direct side is the
bare loop with faiss' own index search for the assignment; the rkmeans side is
``ResidualKMeans(...).fit(x)`` including its input validation. Runs alternate
(direct, rkmeans, direct, ...) and the median of ``--repeats`` is reported with
the ratio rkmeans / direct. Also times one single-level ``faiss.Kmeans`` for scale.

Input: the item embeddings of a prepared run (``-w``, else ``$SIDREC_BENCH_RUN``, else
``runs/beauty``); ``--quick`` uses seeded random vectors (2,000 x 64, k = 16) instead.
The last stdout line is a flat JSON dict of numbers (``sidrec bench speed``).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import faiss
import numpy as np

from sidrec.bench.script import emit, require, run_dir, run_script, script_parser
from sidrec.tokenizers.kmeans import ResidualKMeans


def direct_residual_kmeans(x: np.ndarray, levels: int, k: int, seed: int) -> np.ndarray:
    """Residual k-means straight on faiss: codes (N, levels)."""
    r = x
    codes = np.empty((len(x), levels), dtype=np.int64)
    for level in range(levels):
        r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
        km = faiss.Kmeans(r.shape[1], k, niter=20, seed=seed + level, verbose=False)
        km.train(r)
        _, idx = km.index.search(r, 1)
        codes[:, level] = idx[:, 0]
        r = r - km.centroids[idx[:, 0]]
    return codes


def _cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")]
    return f"{names[0] if names else platform.machine()}, {os.cpu_count()} cores"


def main() -> None:
    p = script_parser(__doc__)
    p.add_argument("--embeddings", type=Path, default=None, help="(N, d) .npy (default: RUN/embeddings/embeddings.npy)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per side (default 3; 2 with --quick)")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--k", type=int, default=None, help="centroids per level (default 256; 16 with --quick)")
    args = p.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)
    k = args.k or (16 if args.quick else 256)
    if args.quick:  # no dataset: seeded Gaussian vectors, enough points per centroid for faiss
        x = np.random.default_rng(args.seed).normal(size=(2000, 64)).astype(np.float32)
        source = "random 2000 x 64 (--quick)"
    else:
        path = args.embeddings or run_dir(args) / "embeddings" / "embeddings.npy"
        require(path, what="item embeddings (.npy) of a prepared run")
        x = np.ascontiguousarray(np.load(path), dtype=np.float32)
        source = str(path)

    direct, ours = [], []
    agree = 0.0
    for rep in range(repeats):
        seed = args.seed + rep
        t0 = time.perf_counter()
        a = direct_residual_kmeans(x, args.levels, k, seed=seed)
        direct.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tok = ResidualKMeans(n_levels=args.levels, codebook_size=k, seed=seed).fit(x)
        ours.append(time.perf_counter() - t0)
        agree = float((a == tok.encode(x)).all(1).mean())  # same seeds: same codes expected
    t0 = time.perf_counter()
    faiss.Kmeans(x.shape[1], k, niter=20, seed=args.seed, verbose=False).train(x)
    single = time.perf_counter() - t0

    rk, fa = statistics.median(ours), statistics.median(direct)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"input: {source}; {x.shape[0]} items x {x.shape[1]} dims; {args.levels} levels x {k}; {repeats} repeats")
    print(f"direct faiss: {[round(t, 3) for t in direct]} s; rkmeans: {[round(t, 3) for t in ours]} s; "
          f"ratio of medians {rk / fa:.3f}; one faiss.Kmeans level {single:.3f} s; same codes {agree:.1%}")  # fmt: skip
    print(f"faiss threads {faiss.omp_get_max_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
          f"{_cpu_model()}; commit {commit}")  # fmt: skip
    emit({
        "items": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "levels": args.levels,
        "k": k,
        "repeats": repeats,
        "faiss_threads": faiss.omp_get_max_threads(),
        "rkmeans_seconds": round(rk, 4),
        "faiss_seconds": round(fa, 4),
        "ratio": round(rk / fa, 4),
        "single_level_faiss_seconds": round(single, 4),
        "same_codes_fraction": agree,
    })


if __name__ == "__main__":
    run_script(main)
