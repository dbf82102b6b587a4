"""Training throughput (next-item samples/s) of the training paths, side by side.

    python benchmarks/train_speed.py -w /tmp/runs/beauty [--steps 30] [--threads 1] \
        [--paths plain,bucketed-sid,bucketed-item,deconly-seq,bucketed-item@2]

Paths measured on the same data, model size and thread count (one after another):

- ``plain``: encdec, every history padded to max_history items x T tokens, random
  batches, attention mask always applied (the naive implementation).
- ``bucketed-sid``: encdec, one encoder token per SID token, length-bucketed batches.
- ``bucketed-item``: encdec, one encoder token per item (sum of SID embeddings).
- ``deconly-seq``: decoder-only, one causal pass per user window (all prefixes at once).

``path@N`` runs a path with N intra-op threads (e.g. to compare 1 vs 2 threads).
Samples are next-item targets; the first ``--warmup`` steps are not timed.

Prints a Markdown table and writes JSON next to the run (``model_speed.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sidrec.config import ModelConfig, load_config
from sidrec.data.prepared import PreparedData
from sidrec.models import build_model
from sidrec.models.base import HistoryBatch
from sidrec.tokenizers.sid_table import SIDTable
from sidrec.training.data import Batch, TrainData
from sidrec.training.loop import _LossModule, _optimizer
from sidrec.training.stage import item_codes


def pad_full(b: Batch, H: int) -> Batch:
    """Left-pad a sample batch to H items, the always-padded baseline."""
    hb = b.history
    B, h, T = hb.codes.shape
    codes = torch.zeros(B, H, T, dtype=torch.long)
    mask = torch.zeros(B, H, dtype=torch.bool)
    codes[:, H - h :], mask[:, H - h :] = hb.codes, hb.mask
    mask[:, 0] |= ~mask.any(1)  # never all padding
    return replace(b, history=HistoryBatch(codes, mask, hb.user_bins))


def measure(name: str, model_cfg: ModelConfig, data: PreparedData, sids: SIDTable, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    model = build_model(model_cfg, sids.vocab_sizes, data.max_history)
    unit = "sequence" if model_cfg.arch == "deconly" else "sample"
    td = TrainData(data.train_sequences(), item_codes(data, sids), data.max_history, unit, True, 256, 0)
    batches = td.epoch_batches(0)
    if name == "plain":  # random batches, no bucketing
        perm = np.random.default_rng(0).permutation(len(td))
        batches = [perm[i : i + 256] for i in range(0, len(perm), 256)]
    wrapped = _LossModule(model).train()
    opt = _optimizer(model, load_config().train)
    n, secs = 0, 0.0
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        b = td.make_batch(batches[i])
        if name == "plain":
            b = pad_full(b, data.max_history)
        loss = wrapped(b) / b.n_global
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= args.warmup:
            secs += time.perf_counter() - t0
            n += b.n_global
    params = sum(p.numel() for p in model.parameters())
    return {"path": name, "samples_per_s": n / secs, "samples": n, "seconds": secs, "parameters": params}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workdir", required=True, help="run dir with data/ and tokenizer/")
    ap.add_argument("--tokenizer", default=None, help="SID table dir (default WORKDIR/tokenizer)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="default threads; a path may say path@N")
    ap.add_argument("--paths", default="plain,bucketed-sid,bucketed-item,deconly-seq")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    root = Path(args.workdir)
    data = PreparedData(root / "data")
    sids = SIDTable.load(args.tokenizer or root / "tokenizer")
    base = ModelConfig()
    cfgs = {
        "plain": replace(base, history_tokens="sid"),
        "bucketed-sid": replace(base, history_tokens="sid"),
        "bucketed-item": replace(base, history_tokens="item"),
        "deconly-seq": replace(base, arch="deconly"),
    }
    rows = []
    for spec in args.paths.split(","):  # "path" or "path@threads"
        name, _, threads = spec.partition("@")
        torch.set_num_threads(int(threads) if threads else args.threads)
        row = measure(name, cfgs[name], data, sids, args)
        row.update(path=spec, threads=torch.get_num_threads())
        rows.append(row)
        print(f"{spec}: {row['samples_per_s']:.1f} samples/s", flush=True)
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.split(":")[-1].strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"\n{cpu or platform.processor()}, torch {torch.__version__}, {args.threads} threads, commit {commit}, {args.steps} steps x batch 256\n")
    print("| path | threads | samples/s | parameters |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['path']} | {r['threads']} | {r['samples_per_s']:.0f} | {r['parameters']:,} |")
    out = {"cpu": cpu, "threads": args.threads, "commit": commit, "torch": torch.__version__, "rows": rows}
    (root / "model_speed.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
