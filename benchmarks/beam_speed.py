"""Beam-search throughput (users/s) and beam-vs-exact agreement of a trained SID model.

    python benchmarks/beam_speed.py -w /tmp/runs/beauty [--users 2000] [--beam 20]
        [--batch-size 256] [--threads 2] [--exact 200] [--split test]

    # before a trained model exists: a randomly initialised default model (speed only)
    python benchmarks/beam_speed.py --random-init --data /tmp/runs/beauty-rkmeans/data \
        --tokenizer /tmp/runs/beauty-rkmeans/tokenizer

Decodes the same seeded sample of users in constrained and in free mode (one
warm-up batch first, not timed), printing users/s and the metrics on that
sample; with ``--exact N`` also scores every item for N users and prints the
overlap@k between beam search's and the exact top-k. Writes the record as JSON to
``--out`` (default ``<workdir>/eval/beam_speed.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from sidrec.config import ModelConfig, load_config
from sidrec.data.prepared import PreparedData
from sidrec.generation.evaluate import align_sids, decode_split, pick_users
from sidrec.generation.stage import exact_agreement
from sidrec.generation.trie import SIDTrie
from sidrec.io import write_json
from sidrec.metrics.ranking import RankingAccumulator
from sidrec.models import build_model
from sidrec.tokenizers.sid_table import SIDTable


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
    out["seconds"] = round(seconds, 2)
    out["users_per_second"] = round(len(users) / seconds, 1)
    out["miss_fraction"] = round(misses / (len(users) * args.beam), 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-w", "--workdir", default="/tmp/runs/beauty")
    p.add_argument("--random-init", action="store_true", help="untrained default encdec (speed only)")
    p.add_argument("--data", default=None, help="prepared data dir (with --random-init)")
    p.add_argument("--tokenizer", default=None, help="tokenizer dir (with --random-init)")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--beam", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--exact", type=int, default=0, metavar="N", help="beam-vs-exact overlap on N users (constrained beam)")
    p.add_argument("--exact-free", action="store_true", help="also compare the free-mode beam with the exact top-k")
    p.add_argument("--split", default="test")
    p.add_argument("--out", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for the loaded run")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    cfg = load_config(None, [f"workdir={args.workdir}", f"eval.beam_size={args.beam}", f"eval.split={args.split}", *args.overrides])
    if args.random_init:
        data = PreparedData(args.data or cfg.paths.data)
        sids = SIDTable.load(args.tokenizer or cfg.paths.tokenizer)
        torch.manual_seed(args.seed)
        model = build_model(ModelConfig(), sids.vocab_sizes, data.max_history).eval()
        label = "random-init default encdec"
    else:
        from sidrec.training.stage import load_trained_model

        model, sids, data = load_trained_model(cfg)
        label = f"trained model {cfg.paths.model}"
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
        record[mode] = _time_mode(model, data, sids, trie, users, args, constrained)
        r = record[mode]
        print(f"{mode:>11}: {r['users_per_second']:8.1f} users/s  ({len(users)} users in {r['seconds']} s)  "
              f"recall@10 {r['recall@10']:.4f}  ndcg@10 {r['ndcg@10']:.4f}  misses {r['miss_fraction']:.2%}")  # fmt: skip
    if args.exact:  # ~10 s per user for Beauty's 12k items: constrained only unless asked
        for mode, constrained in (("constrained", True), ("free", False))[: 2 if args.exact_free else 1]:
            c = load_config(None, [f"workdir={args.workdir}", f"eval.beam_size={args.beam}", f"eval.split={args.split}",
                                   f"eval.constrained={constrained}", f"seed={args.seed}"])  # fmt: skip
            record[f"exact_{mode}"] = ex = exact_agreement(model, data, sids, c, args.exact)
            overlaps = {k: round(v, 4) for k, v in ex.items() if k.startswith("overlap@")}
            print(f"exact vs {mode} beam on {ex['users']} users ({ex['seconds']} s): {overlaps}")
    print(f"{label}; commit {record['commit']}; cpu {record['cpu']}; threads {args.threads}; torch {torch.__version__}")
    out = Path(args.out) if args.out else cfg.paths.eval / ("beam_speed_random_init.json" if args.random_init else "beam_speed.json")
    write_json(out, record)
    print(json.dumps({"written": str(out)}))


if __name__ == "__main__":
    main()
