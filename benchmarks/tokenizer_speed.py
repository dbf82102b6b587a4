"""Fit time of ``rkmeans`` next to the same residual k-means written directly on faiss.

    OMP_NUM_THREADS=1 python benchmarks/tokenizer_speed.py \
        [--embeddings /tmp/runs/beauty/embeddings/embeddings.npy] [--repeats 3] [--levels 3] [--k 256]

Both sides run the same work in the same process: for each level, L2-normalise
the residuals (GRID's setting, rkmeans' default), ``faiss.Kmeans(niter=20)``,
assign every item to its nearest centroid, subtract. The direct side is the
bare loop with faiss' own index search for the assignment; the rkmeans side is
``ResidualKMeans(...).fit(x)`` including its input validation. Runs alternate
(direct, rkmeans, direct, ...) and the median of ``--repeats`` is reported with
the ratio rkmeans / direct. Also prints one single-level ``faiss.Kmeans`` for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

import faiss
import numpy as np

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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--embeddings", default="/tmp/runs/beauty/embeddings/embeddings.npy")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--k", type=int, default=256)
    args = p.parse_args()
    x = np.ascontiguousarray(np.load(args.embeddings), dtype=np.float32)

    direct, ours = [], []
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        a = direct_residual_kmeans(x, args.levels, args.k, seed=rep)
        direct.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tok = ResidualKMeans(n_levels=args.levels, codebook_size=args.k, seed=rep).fit(x)
        ours.append(time.perf_counter() - t0)
        b = tok.encode(x)
        agree = float((a == b).all(1).mean())
    t0 = time.perf_counter()
    faiss.Kmeans(x.shape[1], args.k, niter=20, seed=0, verbose=False).train(x)
    single = time.perf_counter() - t0

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    record = {
        "items": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "levels": args.levels,
        "k": args.k,
        "faiss_threads": faiss.omp_get_max_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "direct_faiss_seconds": [round(t, 3) for t in direct],
        "rkmeans_seconds": [round(t, 3) for t in ours],
        "ratio_median": round(statistics.median(ours) / statistics.median(direct), 3),
        "single_level_faiss_kmeans_seconds": round(single, 3),
        "same_codes_fraction_last_repeat": agree,
        "commit": commit,
        "machine": _cpu_model(),
    }
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
