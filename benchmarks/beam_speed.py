"""Beam-search throughput (users/s, constrained and free) against the exact scorer, and their agreement.

    python benchmarks/beam_speed.py [--seed 0] [--quick] [-w RUN] [--users 2000] [--beam 20]
        [--batch-size 256] [--threads 2] [--exact 20] [--split test] [key=value ...]

    # before a trained model exists: a randomly initialised default model (speed only)
    python benchmarks/beam_speed.py --random-init --data RUN/data --tokenizer RUN/tokenizer

Decodes the same seeded sample of ``--users`` users in constrained and in free mode
(one warm-up batch first, not timed), giving users/s and the metrics on that sample.
Then, on a smaller seeded sample of ``--exact`` users, scores every item exactly
(teacher-forced log-likelihood of each item's SID, 8 users per call; the reference
beam search approximates): exact users/s, beam users/s divided by it, and the
overlap@10 between each beam's top-10 and the exact top-10 on those users.

Input: the trained model of a run (``-w``, else ``$SIDREC_BENCH_RUN``, else
``runs/beauty``; ``key=value`` overrides apply to its config); ``--quick`` prepares,
tokenizes and briefly trains a tiny model on the synthetic catalogue in a temporary
directory. Writes the full record to ``--out`` (default ``RUN/eval/beam_speed.json``;
not under ``--quick``); the last stdout line is a flat JSON dict of numbers.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from sidrec.bench.script import emit, require, run_dir, run_script, script_parser, synthetic_run
from sidrec.config import ModelConfig, load_config
from sidrec.data.prepared import PreparedData
from sidrec.errors import SidrecError
from sidrec.generation.beam import beam_search, ranked_items
from sidrec.generation.evaluate import align_sids, decode_split, history_batch, pick_users
from sidrec.generation.exact import exact_topk, overlap_at_k
from sidrec.generation.trie import SIDTrie
from sidrec.io import write_json
from sidrec.metrics.ranking import RankingAccumulator
from sidrec.models import build_model
from sidrec.tokenizers.sid_table import SIDTable

OVERLAP_K = 10
EXACT_BATCH = 8  # users per exact call: x 1024 candidates = 8k SIDs scored at once (as `sidrec evaluate --exact`)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _time_mode(model, data, sids, trie, users, args, constrained: bool) -> dict:  # noqa: ANN001
    acc = RankingAccumulator((5, 10, 20))
    misses = 0
    with torch.inference_mode():
        warm = users[: min(len(users), args.batch_size)]
        for _ in decode_split(model, data, sids, args.split, warm, args.beam, constrained, args.batch_size, False, trie):
            pass
        t0 = time.perf_counter()
        for db in decode_split(model, data, sids, args.split, users, args.beam, constrained, args.batch_size, False, trie):
            acc.add(db.items, torch.from_numpy(db.targets))
            misses += int(((db.items < 0) & torch.isfinite(db.scores)).sum())  # free-mode SIDs of no item
        seconds = time.perf_counter() - t0
    out = acc.result()
    out["seconds"] = round(seconds, 3)
    out["users_per_second"] = round(len(users) / seconds, 1)
    out["miss_fraction"] = round(misses / (len(users) * args.beam), 4)
    return out


def _exact(model, data, sids, trie, users, args) -> dict:  # noqa: ANN001
    """Exact top-k of ``users`` (timed alone) and each beam's overlap@10 with it."""
    ex = data.eval_examples(args.split)
    overlap = {"constrained": 0.0, "free": 0.0}
    acc = RankingAccumulator((5, 10, 20))
    seconds = 0.0
    with torch.inference_mode():
        for lo in range(0, len(users), EXACT_BATCH):
            ub = users[lo : lo + EXACT_BATCH]
            batch = history_batch(model, data, sids, ub, [ex.histories[u] for u in ub])
            t0 = time.perf_counter()
            exact, _ = exact_topk(model, batch, sids, args.beam, batch_size=1024)
            seconds += time.perf_counter() - t0
            acc.add(exact, torch.from_numpy(ex.targets[ub]))
            for mode in overlap:
                beam, _ = ranked_items(beam_search(model, batch, trie, args.beam, mode == "constrained"))
                overlap[mode] += float(overlap_at_k(beam, exact, OVERLAP_K).sum())
    out = {f"{mode}_overlap@{OVERLAP_K}": round(v / len(users), 4) for mode, v in overlap.items()}
    out.update(users=len(users), seconds=round(seconds, 3), users_per_second=round(len(users) / seconds, 2), metrics=acc.result())
    return out


def _load(args: argparse.Namespace, tmp: Path) -> tuple:
    """(model, sids, data, label, cfg) of the real run, a random-init model, or a quick synthetic run."""
    if args.quick:
        cfg = synthetic_run(tmp / "run", args.seed, ("prepare", "embed", "tokenize", "train"))
    else:
        root = run_dir(args)
        cfg = load_config(None, [f"workdir={root}", f"eval.split={args.split}", *args.overrides])
    if args.random_init:
        data_dir, sid_dir = Path(args.data or cfg.paths.data), Path(args.tokenizer or cfg.paths.tokenizer)
        require(data_dir / "manifest.json", sid_dir / "sids.csv", what="prepared data and a SID table")
        data, sids = PreparedData(data_dir), SIDTable.load(sid_dir)
        torch.manual_seed(args.seed)
        model = build_model(ModelConfig(), sids.vocab_sizes, data.max_history).eval()
        return model, sids, data, "random-init default encdec", cfg
    from sidrec.training.stage import load_trained_model

    require(cfg.paths.model / "best.json", cfg.paths.tokenizer / "sids.csv", cfg.paths.data / "manifest.json",
            what="a trained SID model (model/best.json, tokenizer/, data/)")  # fmt: skip
    model, sids, data = load_trained_model(cfg)
    return model, sids, data, f"trained model {cfg.paths.model}" + (" (--quick: synthetic, tiny)" if args.quick else ""), cfg


def main() -> None:
    p = script_parser(__doc__)
    p.add_argument("--random-init", action="store_true", help="untrained default encdec (speed only)")
    p.add_argument("--data", default=None, help="prepared data dir (with --random-init)")
    p.add_argument("--tokenizer", default=None, help="tokenizer dir (with --random-init)")
    p.add_argument("--users", type=int, default=None, help="users decoded per mode (default 2000; 200 with --quick)")
    p.add_argument("--beam", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=None, help="users per beam batch (default 256; 64 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default 2; 1 with --quick)")
    p.add_argument("--exact", type=int, default=None, metavar="N", help="users scored exactly (default 20; 16 with --quick)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", default=None)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for the loaded run")
    args = p.parse_args()
    args.users = args.users or (200 if args.quick else 2000)
    args.batch_size = args.batch_size or (64 if args.quick else 256)
    args.threads = args.threads or (1 if args.quick else 2)
    args.exact = args.exact if args.exact is not None else (16 if args.quick else 20)
    if args.beam < OVERLAP_K or args.exact < 1:
        raise SidrecError(f"--beam must be >= {OVERLAP_K} (overlap@{OVERLAP_K}) and --exact >= 1, got {args.beam} and {args.exact}")

    with tempfile.TemporaryDirectory(prefix="beam_speed_") as tmp:
        model, sids, data, label, cfg = _load(args, Path(tmp))
        torch.set_num_threads(args.threads)  # after loading: the quick run's training sets its own
        sids = align_sids(data, sids)
        trie = SIDTrie.build(sids.codes, sids.vocab_sizes, sids.representative)
        users = pick_users(data.n_users, args.users, args.seed)
        record = {
            "model": label,
            "model_config": model.config(),
            "n_items": data.n_items,
            "vocab_sizes": sids.vocab_sizes,
            "users": len(users),
            "beam": args.beam,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "split": args.split,
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
            "cpu": _cpu(),
            "torch": torch.__version__,
        }
        for mode, constrained in (("constrained", True), ("free", False)):
            record[mode] = r = _time_mode(model, data, sids, trie, users, args, constrained)
            print(f"{mode:>11}: {r['users_per_second']:8.1f} users/s  ({len(users)} users in {r['seconds']} s)  "
                  f"recall@10 {r['recall@10']:.4f}  ndcg@10 {r['ndcg@10']:.4f}  misses {r['miss_fraction']:.2%}")  # fmt: skip
        exact_users = pick_users(data.n_users, args.exact, args.seed)
        record["exact"] = ex = _exact(model, data, sids, trie, exact_users, args)
        print(f"      exact: {ex['users_per_second']:8.2f} users/s  ({ex['users']} users in {ex['seconds']} s)  "
              f"overlap@{OVERLAP_K} with constrained beam {ex[f'constrained_overlap@{OVERLAP_K}']:.3f}, "
              f"free beam {ex[f'free_overlap@{OVERLAP_K}']:.3f}")  # fmt: skip
    print(f"{label}; commit {record['commit']}; cpu {record['cpu']}; threads {args.threads}; torch {torch.__version__}")
    if not args.quick:
        out = Path(args.out) if args.out else cfg.paths.eval / ("beam_speed_random_init.json" if args.random_init else "beam_speed.json")
        write_json(out, record)
        print(f"record written to {out}")
    c, f = record["constrained"], record["free"]
    emit({
        "users": len(users),
        "beam": args.beam,
        "threads": args.threads,
        "n_items": data.n_items,
        "constrained_users_per_s": c["users_per_second"],
        "free_users_per_s": f["users_per_second"],
        "exact_users_per_s": ex["users_per_second"],
        "constrained_vs_exact": round(c["users_per_second"] / ex["users_per_second"], 3),
        "free_vs_exact": round(f["users_per_second"] / ex["users_per_second"], 3),
        "free_vs_constrained": round(f["users_per_second"] / c["users_per_second"], 3),
        "exact_users": ex["users"],
        f"constrained_overlap@{OVERLAP_K}": ex[f"constrained_overlap@{OVERLAP_K}"],
        f"free_overlap@{OVERLAP_K}": ex[f"free_overlap@{OVERLAP_K}"],
        "constrained_recall@10": round(c["recall@10"], 5),
        "constrained_ndcg@10": round(c["ndcg@10"], 5),
        "free_recall@10": round(f["recall@10"], 5),
        "free_ndcg@10": round(f["ndcg@10"], 5),
        "free_miss_fraction": f["miss_fraction"],
        "exact_recall@10": round(ex["metrics"]["recall@10"], 5),
    })


if __name__ == "__main__":
    run_script(main)
