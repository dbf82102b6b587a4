"""SASRec on Amazon Beauty: train (early stopping on validation NDCG@10), then test.

    python benchmarks/sasrec_beauty.py [--data /tmp/runs/beauty/data] [--out /tmp/runs/beauty/sasrec]
        [--threads 1] [--seed 0] [--resume] [key=value ...]   # key = a SASRecConfig field

Prints the full-catalogue test metrics (one target per user, no seen-item
filtering) next to UniGRec Table 2's SASRec row, and the wall time; writes the
same as JSON to ``<out>/benchmark.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import time
from pathlib import Path

import torch
import yaml

from sidrec.data.prepared import PreparedData
from sidrec.io import write_json
from sidrec.training.sasrec import SASRecConfig, evaluate_sasrec, export_item_embeddings, train_sasrec

PAPER = {"recall@5": 0.0284, "recall@10": 0.0550, "ndcg@5": 0.0172, "ndcg@10": 0.0244}  # UniGRec Table 2, Beauty


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/tmp/runs/beauty/data")
    p.add_argument("--out", default="/tmp/runs/beauty/sasrec")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    types = {f.name: f.type for f in dataclasses.fields(SASRecConfig)}
    changes = {}
    for o in args.overrides:
        k, _, v = o.partition("=")
        changes[k] = {"int": int, "float": float}[types[k]](yaml.safe_load(v))
    cfg = dataclasses.replace(SASRecConfig(), **changes)
    data = PreparedData(args.data)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()  # at launch
    t0 = time.perf_counter()
    train = train_sasrec(data, args.out, cfg, seed=args.seed, resume=args.resume, progress=True)
    test = evaluate_sasrec(args.out, data, "test")
    export_item_embeddings(args.out)

    print(f"\nSASRec on {data.manifest['dataset']}: {data.n_users} users, {data.n_items} items, max_history {data.max_history}")
    print(f"config: {dataclasses.asdict(cfg)} seed={args.seed} threads={args.threads}")
    print(f"best epoch {train['best_epoch']} of {train['epochs']}; valid NDCG@10 {train['valid']['ndcg@10']:.4f}")
    print("| metric | sidrec SASRec (test) | UniGRec Table 2 SASRec |")
    print("|---|---:|---:|")
    for k in ("recall@5", "recall@10", "ndcg@5", "ndcg@10", "recall@20", "ndcg@20", "recall@30", "ndcg@30", "mrr"):
        print(f"| {k} | {test[k]:.4f} | {PAPER.get(k, float('nan')):.4f} |")
    print(f"train wall (summed over resumes) {train['wall_seconds']:.0f} s; this invocation {time.perf_counter() - t0:.0f} s")
    print(f"commit {commit}; cpu {_cpu()}; torch {torch.__version__}")
    write_json(Path(args.out) / "benchmark.json", {"config": dataclasses.asdict(cfg), "seed": args.seed, "threads": args.threads,
               "test": test, "train": {k: v for k, v in train.items() if k != "history"}, "commit": commit, "cpu": _cpu()})


if __name__ == "__main__":
    main()
