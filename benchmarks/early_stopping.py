"""Does early stopping decide the tokenizer comparison? (issue 14's downstream protocol)

    python benchmarks/early_stopping.py                         # every record of the suites below
    python benchmarks/early_stopping.py --extended runs/pat4/r3vae-ablation/no-sc-seed0 ...

The protocol stops a run when validation NDCG@10 has not improved for ``train.patience`` = 2
evaluations (1,000 steps apart, 5,000 users). Part 1 lists every record's best and last step
beside its test metrics and ranks best step against test Recall@10 (Spearman, with the permutation
p of the `correlation` tables, sidrec.bench.report), because a
run stopped early in a noisy validation dip would test lower for reasons that are not its SIDs.

Part 2 reads copies of finished bench run directories that were resumed with a longer patience
(``sidrec train -c RUN/run_config.yaml -w COPY --resume train.patience=4``, then ``sidrec
evaluate -c RUN/run_config.yaml -w COPY``; a resume replays the same run, so the copy is what the
run would have been at that patience) and sets their test metrics beside the record's. With
``--write`` each comparison is stored as JSON under ``benchmarks/results/archive/patience-4/``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from sidrec.bench.report import _spearman, load_records
from sidrec.bench.runner import git_state

RESULTS = Path(__file__).parent / "results"
METRICS = ("evaluate/recall@10", "evaluate/ndcg@10")


def records(suites: list[str]) -> dict[str, dict]:
    """``suite/run-seedK`` -> record, skipping r3vae-ablation's λ 0.01 rows (copies of tokenizers' r3vae)."""
    return {f"{suite}/{run}-seed{r['seed']}": r for suite in suites for run, recs in load_records(RESULTS, suite).items()
            for r in recs if not (suite == "r3vae-ablation" and run == "lambda-0.01")}


def part1(recs: dict[str, dict]) -> None:
    rows = sorted(recs.items(), key=lambda kv: kv[1]["metrics"]["train/best_step"])
    print(f"{'record':48s} {'best':>6s} {'last':>6s} {'R@10':>7s} {'N@10':>7s} {'val N@10':>8s}")
    for name, r in rows:
        m = r["metrics"]
        print(f"{name:48s} {m['train/best_step']:6.0f} {m['train/steps']:6.0f} {m[METRICS[0]]:7.4f} "
              f"{m[METRICS[1]]:7.4f} {m['train/best_valid/ndcg@10']:8.4f}")
    best = [r["metrics"]["train/best_step"] for _, r in rows]
    for key in METRICS:
        rho, p = _spearman(best, [r["metrics"][key] for _, r in rows])
        print(f"Spearman(best step, test {key.split('/')[1]}) = {rho:+.3f} (p {p:.3f}, n {len(rows)})")


def val_curve(run_dir: Path) -> list[tuple[int, float]]:
    with open(run_dir / "model" / "metrics.csv", newline="") as f:
        return [(int(row["step"]), round(float(row["val_ndcg@10"]), 5)) for row in csv.DictReader(f)]


def part2(dirs: list[Path], recs: dict[str, dict], write: bool) -> None:
    commit = git_state()["commit"][:7]
    for d in dirs:
        name = f"{d.parent.name}/{d.name}"
        rec = recs[name]
        summary = json.loads((d / "model" / "train_summary.json").read_text())
        test = json.loads((d / "eval" / "metrics.json").read_text())
        new = {k: test["metrics"][k.split("/", 1)[1]] for k in METRICS}  # eval/metrics.json of `sidrec evaluate`
        old = {k: rec["metrics"][k] for k in METRICS}
        print(f"{name}: best {rec['metrics']['train/best_step']:.0f} -> {summary['best_step']}, "
              f"last {rec['metrics']['train/steps']:.0f} -> {summary['steps']}; "
              + ", ".join(f"{k.split('/')[1]} {old[k]:.4f} -> {new[k]:.4f} ({(new[k] / old[k] - 1) * 100:+.1f}%)" for k in METRICS))
        if write:
            out = RESULTS / "archive" / "patience-4" / f"{d.parent.name}-{d.name}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({
                "record": name, "record_git": rec["git"]["commit"][:7], "analysed_at": commit,
                "command": f"sidrec train -c {d}/run_config.yaml -w {d} --resume train.patience=4; "
                           f"sidrec evaluate -c {d}/run_config.yaml -w {d}",
                "machine": rec["machine"],  # the resume ran where the record did
                "patience_2": {"best_step": rec["metrics"]["train/best_step"], "steps": rec["metrics"]["train/steps"], **old},
                "patience_4": {"best_step": summary["best_step"], "steps": summary["steps"],
                               "train_seconds": summary["train_seconds"], **new},
                "val_ndcg@10": val_curve(d),
            }, indent=1) + "\n")
            print(f"  wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suites", nargs="+", default=["tokenizers", "r3vae-ablation"])
    ap.add_argument("--extended", nargs="*", type=Path, default=[], help="resumed copies of bench run directories")
    ap.add_argument("--write", action="store_true", help="store part 2 under results/archive/patience-4/")
    args = ap.parse_args()
    recs = records(args.suites)
    part1(recs)
    part2(args.extended, recs, args.write)


if __name__ == "__main__":
    main()
