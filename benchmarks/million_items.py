"""A 1,000,000-item catalogue: tokenize, build the SID table and trie, and recommend through the Recommender.

1. 1,000,000 item embeddings drawn directly (seeded: 2,000 Gaussian cluster centres in
   64 dimensions + noise; no text encoder);
2. rkmeans 3 x 256 fitted on a seeded 100,000-item sample, then ``encode`` (faiss nearest
   centroid per level) assigns all items; SID table with TIGER's de-dup digit;
3. the trie over every SID (built alone, timed, its tensor bytes and the resident-memory growth);
4. a run directory around them: 20,000 synthetic users whose sequences stay inside one
   cluster, a Beauty-sized encoder-decoder (configs/beauty.yaml's model) trained for
   ``--steps`` steps on them — only so that the latency is that of a real model over this
   catalogue; its quality is not the point;
5. ``Recommender.load`` (resident memory after loading) and ``recommend`` at beam 20,
   k=10: one history per call, and batches of 32 histories.

    python benchmarks/million_items.py -w /work/runs/million --seed 0
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sidrec.bench.script import emit, run_script, script_parser
from sidrec.rundir import commit_stage

N_ITEMS = 1_000_000
DIM = 64
N_CLUSTERS = 2000
SAMPLE = 100_000
N_USERS = 20_000
BEAM = 20


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_prepared(root: Path, item_ids: list[str], seqs: list[list[int]], max_history: int) -> None:
    """A prepared-data directory (items table without text, sequences, manifest) as `sidrec prepare` writes it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sidrec.io import sha256_file, write_json

    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"item_idx": np.arange(len(item_ids)), "item_id": item_ids}), root / "items.parquet")
    users = [f"u{n}" for n in range(len(seqs))]
    pq.write_table(pa.table({"user_idx": pa.array(range(len(users)), pa.int32()), "user_id": users,
                             "items": pa.array(seqs, pa.list_(pa.int32()))}), root / "sequences.parquet")  # fmt: skip
    write_json(root / "manifest.json", {
        "dataset": "million-synthetic", "params": {"max_history": max_history, "min_count": 0},
        "counts": {"users": len(users), "items": len(item_ids), "interactions": sum(map(len, seqs))},
        "outputs": {n: sha256_file(root / n) for n in ("items.parquet", "sequences.parquet")},
    })  # fmt: skip


def main() -> None:
    p = script_parser(__doc__)
    p.add_argument("--steps", type=int, default=200, help="training steps of the latency model")
    args = p.parse_args()
    n_items, n_users, sample, n_clusters = (N_ITEMS, N_USERS, SAMPLE, N_CLUSTERS) if not args.quick else (5_000, 300, 2_000, 100)
    if args.quick:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="sidrec-million-"))
        args.steps = min(args.steps, 4)
    else:
        root = args.workdir or Path("runs/million")
    import torch

    from sidrec.api import Recommender
    from sidrec.config import load_config
    from sidrec.generation.trie import SIDTrie
    from sidrec.threads import set_threads
    from sidrec.tokenizers.base import build_tokenizer
    from sidrec.tokenizers.sid_table import SIDTable

    here = Path(__file__).resolve().parent
    over = [f"workdir={root}", f"seed={args.seed}", "train.num_threads=1", f"train.max_steps={args.steps}",
            f"train.eval_every={args.steps}", "train.val_users=200", "train.warmup_steps=10", f"eval.beam_size={BEAM}"]  # fmt: skip
    if args.quick:  # a tiny model and codebook: the smoke check only shows the script runs
        from sidrec.bench.script import QUICK_OVERRIDES

        over = [*QUICK_OVERRIDES, *over, "train.val_users=20"]
    cfg = load_config(None if args.quick else str(here.parent / "configs" / "beauty.yaml"), over)
    set_threads(1)
    out: dict[str, float] = {"items": n_items}
    rss0 = rss_mb()

    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((n_clusters, DIM), dtype=np.float32)
    cluster = rng.integers(0, n_clusters, n_items)
    emb = centres[cluster] + 0.35 * rng.standard_normal((n_items, DIM), dtype=np.float32)
    item_ids = [f"item{n}" for n in range(n_items)]

    tok = build_tokenizer(cfg.tokenizer)
    t0 = time.perf_counter()
    c0 = time.process_time()
    tok.fit(emb[np.sort(rng.choice(n_items, size=sample, replace=False))])
    out["fit_cpu_seconds"] = round(time.process_time() - c0, 2)  # wall time misleads on a loaded machine
    out["fit_seconds"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    c0 = time.process_time()
    codes = tok.encode(emb)
    out["encode_cpu_seconds"] = round(time.process_time() - c0, 2)  # wall time misleads on a loaded machine
    out["encode_seconds"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    c0 = time.process_time()
    table = SIDTable.build(item_ids, codes, tok.codebook_sizes, "digit")
    out["sid_table_cpu_seconds"] = round(time.process_time() - c0, 2)  # wall time misleads on a loaded machine
    out["sid_table_seconds"] = round(time.perf_counter() - t0, 2)
    out["dedup_vocab"] = table.vocab_sizes[-1]
    out["distinct_prefixes"] = int(len(np.unique(codes, axis=0)))
    before = rss_mb()
    t0 = time.perf_counter()
    c0 = time.process_time()
    trie = SIDTrie.build(table.codes, table.vocab_sizes, table.representative)
    out["trie_build_cpu_seconds"] = round(time.process_time() - c0, 2)  # wall time misleads on a loaded machine
    out["trie_build_seconds"] = round(time.perf_counter() - t0, 2)
    out["trie_mb"] = round(trie.nbytes() / 2**20, 1)
    out["trie_rss_growth_mb"] = round(rss_mb() - before, 1)
    del trie
    with commit_stage(cfg.paths.tokenizer) as tmp:  # a whole stage (no embeddings stage: they live in memory)
        tok.save(tmp)
        table.save(tmp)

    # users who stay inside one cluster: item sequences the model can learn something from
    members = np.argsort(cluster, kind="stable")
    starts = np.searchsorted(cluster[members], np.arange(n_clusters + 1))
    big = np.flatnonzero(np.diff(starts) >= 5)  # a user needs 3+ items (train, valid, test)
    seqs = []
    for c in rng.choice(big, n_users):
        pool = members[starts[c] : starts[c + 1]]
        seqs.append(rng.choice(pool, size=min(len(pool), int(rng.integers(5, 15))), replace=False).tolist())
    with commit_stage(cfg.paths.data) as tmp:
        write_prepared(tmp, item_ids, seqs, cfg.data.max_history)
    del emb, codes, table
    from sidrec.training.recipes import train

    t0 = time.perf_counter()
    train(cfg, progress=False)
    out["train_seconds"] = round(time.perf_counter() - t0, 1)
    out["train_steps"] = args.steps

    base = rss_mb()
    t0 = time.perf_counter()
    rec = Recommender.load(root)
    out["load_seconds"] = round(time.perf_counter() - t0, 1)
    out["recommender_rss_growth_mb"] = round(rss_mb() - base, 1)
    hist = [[f"item{i}" for i in s[:-1]] for s in seqs[: 400 if not args.quick else 64]]
    rec.recommend(hist[:2], k=10)  # warm-up
    for bs in (1, 32):
        lat = []
        for lo in range(0, min(len(hist), 64 if bs == 1 else 320), bs):
            t0 = time.perf_counter()
            rec.recommend(hist[lo : lo + bs], k=10)
            lat.append(time.perf_counter() - t0)
        ms = np.array(lat) * 1000
        out[f"p50_ms_batch{bs}"] = round(float(np.percentile(ms, 50)), 1)
        out[f"p99_ms_batch{bs}"] = round(float(np.percentile(ms, 99)), 1)
        out[f"users_per_s_batch{bs}"] = round(bs * len(ms) / (ms.sum() / 1000), 1)
    out["rss_mb"] = round(rss_mb(), 1)
    out["rss_start_mb"] = round(rss0, 1)
    print(f"{n_items:,} items under {root}; torch threads {torch.get_num_threads()}", file=sys.stderr)
    emit(out)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run_script(main)
