"""Training throughput (next-item samples/s) of the training paths, side by side.

    python benchmarks/train_speed.py [--seed 0] [--quick] [-w RUN] [--steps 30] [--threads 1] \
        [--paths plain,bucketed-sid,bucketed-item,deconly-seq,bucketed-item@2]

Paths measured on the same data, model size and thread count (one after another):

- ``plain``: encdec, every history padded to max_history items x T tokens, random
  batches, attention mask always applied (the naive implementation).
- ``bucketed-sid``: encdec, one encoder token per SID token, length-bucketed batches.
- ``bucketed-item``: encdec, one encoder token per item (sum of SID embeddings) — the default.
- ``deconly-seq``: decoder-only, one causal pass per user window (all prefixes at once).

``path@N`` runs a path with N intra-op threads (e.g. to compare 1 vs 2 threads).
Samples are next-item targets; the first ``--warmup`` steps are not timed.

Input: a prepared and tokenized run (``-w``, else ``$SIDREC_BENCH_RUN``, else
``runs/beauty``: its ``data/`` and ``tokenizer/``) with the default model size;
``--quick`` prepares and tokenizes the synthetic catalogue in a temporary directory and
measures a tiny model for a few steps. Prints a Markdown table, writes
``RUN/model_speed.json`` (not under ``--quick``) and, as the last stdout line, a flat JSON
dict: ``samples_per_s_<path>`` per path and ``speedup_bucketed_item_vs_plain``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sidrec.bench.script import emit, require, run_dir, run_script, script_parser, synthetic_run
from sidrec.config import ModelConfig, load_config
from sidrec.data.prepared import PreparedData
from sidrec.errors import SidrecError
from sidrec.models import build_model
from sidrec.models.base import HistoryBatch
from sidrec.tokenizers.sid_table import SIDTable
from sidrec.training.data import Batch, TrainData
from sidrec.training.loop import _LossModule, _optimizer
from sidrec.training.stage import item_codes

PATHS = ("plain", "bucketed-sid", "bucketed-item", "deconly-seq")


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
    """Train ``args.warmup + args.steps`` steps of one path; samples/s over the timed steps."""
    torch.manual_seed(args.seed)
    model = build_model(model_cfg, sids.vocab_sizes, data.max_history)
    unit = "sequence" if model_cfg.arch == "deconly" else "sample"
    td = TrainData(data.train_sequences(), item_codes(data, sids), data.max_history, unit, True, args.batch_size, args.seed)
    batches = td.epoch_batches(0)
    if name == "plain":  # random batches, no bucketing
        perm = np.random.default_rng(args.seed).permutation(len(td))
        batches = [perm[i : i + args.batch_size] for i in range(0, len(perm), args.batch_size)]
    wrapped = _LossModule(model).train()
    opt = _optimizer(model, load_config().train)
    n, secs = 0, 0.0
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        b = td.make_batch(batches[i % len(batches)])  # a small catalogue may have fewer batches than steps
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


def _key(spec: str) -> str:
    """JSON key of a path spec: ``bucketed-item@2`` -> ``samples_per_s_bucketed_item_2threads``."""
    name, _, threads = spec.partition("@")
    return "samples_per_s_" + name.replace("-", "_") + (f"_{threads}threads" if threads else "")


def main() -> None:
    ap = script_parser(__doc__)
    ap.add_argument("--tokenizer", type=Path, default=None, help="SID table dir (default WORKDIR/tokenizer)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per path (default 30; 5 with --quick)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; 1 with --quick)")
    ap.add_argument("--batch-size", type=int, default=None, help="targets per step (default 256; 64 with --quick)")
    ap.add_argument("--threads", type=int, default=1, help="default threads; a path may say path@N")
    ap.add_argument("--paths", default=",".join(PATHS))
    args = ap.parse_args()
    args.steps = args.steps or (5 if args.quick else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.batch_size = args.batch_size or (64 if args.quick else 256)
    specs = args.paths.split(",")
    for spec in specs:
        if spec.partition("@")[0] not in PATHS:
            raise SidrecError(f"unknown path {spec!r} in --paths; valid: {', '.join(PATHS)} (optionally @THREADS)")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        if args.quick:  # the synthetic catalogue, tokenized; a tiny model
            cfg = synthetic_run(Path(tmp) / "run", args.seed, ("prepare", "embed", "tokenize"))
            root, base, sid_dir = cfg.paths.root, cfg.model, cfg.paths.tokenizer
        else:
            root, base = run_dir(args), ModelConfig()
            sid_dir = args.tokenizer or root / "tokenizer"
            require(root / "data" / "manifest.json", sid_dir / "sids.csv", what="a prepared run with data/ and tokenizer/")
        data = PreparedData(root / "data")
        sids = SIDTable.load(sid_dir)
        cfgs = {
            "plain": replace(base, arch="encdec", history_tokens="sid"),
            "bucketed-sid": replace(base, arch="encdec", history_tokens="sid"),
            "bucketed-item": replace(base, arch="encdec", history_tokens="item"),
            "deconly-seq": replace(base, arch="deconly"),
        }
        rows = []
        for spec in specs:  # "path" or "path@threads"
            name, _, threads = spec.partition("@")
            torch.set_num_threads(int(threads) if threads else args.threads)
            row = measure(name, cfgs[name], data, sids, args)
            row.update(path=spec, threads=torch.get_num_threads())
            rows.append(row)
            print(f"{spec}: {row['samples_per_s']:.1f} samples/s", flush=True)
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.split(":")[-1].strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"\n{cpu or platform.processor()}, torch {torch.__version__}, {args.threads} threads, commit {commit}, "
          f"{args.steps} steps x batch {args.batch_size}{' (--quick: synthetic, tiny model)' if args.quick else ''}\n")  # fmt: skip
    print("| path | threads | samples/s | parameters |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['path']} | {r['threads']} | {r['samples_per_s']:.0f} | {r['parameters']:,} |")
    if not args.quick:
        out = {"cpu": cpu, "threads": args.threads, "commit": commit, "torch": torch.__version__, "rows": rows}
        (root / "model_speed.json").write_text(json.dumps(out, indent=2))
    metrics: dict[str, float] = {"steps": args.steps, "batch_size": args.batch_size, "threads": args.threads}
    metrics.update({_key(r["path"]): round(r["samples_per_s"], 2) for r in rows})
    speed = {r["path"]: r["samples_per_s"] for r in rows}
    if "plain" in speed and "bucketed-item" in speed:  # the default path's gain over the naive one
        metrics["speedup_bucketed_item_vs_plain"] = round(speed["bucketed-item"] / speed["plain"], 3)
    emit(metrics)


if __name__ == "__main__":
    run_script(main)
