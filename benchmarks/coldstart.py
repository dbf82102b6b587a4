"""Cold-start items (issue 16, TIGER §4.4): recommend items no user interacted with during training.

Protocol:

1. prepare Beauty as usual (``full/``), pick a seeded 5% of its items (the *cold* items);
2. ``warm/``: the same users with every interaction with a cold item removed (from the
   train histories, the validation and the test targets: the cold items are not in the
   warm run at all, not even in its tokenizer fit or its item table); no further k-core,
   users left with fewer than 3 items drop out;
3. embed (the full run's vectors, sliced), tokenize and train the warm run
   (configs/beauty.yaml: 4,000 steps, prefix windows, one thread);
4. at serving time, ``Recommender.add_items`` adds the cold items back by their text
   (encoder -> the fitted tokenizer's encode -> SID with a de-dup digit), and every user
   of the *full* run whose test target is a cold item is asked for 10 items with its full
   history (cold items in it included: they were added);
5. Recall@10 / NDCG@10 on those users, beside a text-similarity baseline (mean
   history embedding -> nearest item embeddings by cosine, history items excluded)
   and SASRec, which scores only the item ids it was trained on: 0 by construction.

The warm run is resumable (``--until train`` stops after training; a later call
evaluates; ``--no-train`` or ``$SIDREC_COLDSTART_NO_TRAIN=1`` evaluates the best checkpoint
so far, whose step the record shows as ``warm_best_step``). ``--quick``: the synthetic catalogue and a tiny model (smoke check).

    python benchmarks/coldstart.py --seed 0 -w /work/runs/coldstart
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # noqa: E402 (scripts run from any cwd)

from sidrec.bench.script import QUICK_OVERRIDES, emit, run_script, script_parser
from sidrec.config import Config, load_config
from sidrec.errors import SidrecError
from sidrec.io import read_json, save_npy, write_json
from sidrec.rundir import commit_stage

HERE = Path(__file__).resolve().parent
COLD_FRACTION = 0.05
K = 10
BEAM = 20
RUN_ENV = "SIDREC_COLDSTART_RUN"
NO_TRAIN_ENV = "SIDREC_COLDSTART_NO_TRAIN"  # = --no-train


def configs(root: Path, seed: int, quick: bool) -> tuple[Config, Config]:
    """(full, warm) configs: configs/beauty.yaml on one thread, or the quick synthetic setup."""
    if quick:
        over = [*QUICK_OVERRIDES, f"seed={seed}"]
        base = None
    else:
        data_root = Path(os.environ.get("SIDREC_DATA", "../shared/data"))
        over = [f"data.path={data_root / 'amazon-beauty-2014'}", "train.num_threads=1", f"seed={seed}"]
        base = str(HERE.parent / "configs" / "beauty.yaml")
    full = load_config(base, [*over, f"workdir={root / 'full'}"])
    warm = load_config(base, [*over, f"workdir={root / 'warm'}"])
    return full, warm


def cold_items(item_ids: list[str], seed: int) -> list[str]:
    """A seeded ``COLD_FRACTION`` of the items (at least one)."""
    n = max(1, round(COLD_FRACTION * len(item_ids)))
    pick = np.random.default_rng(seed).choice(len(item_ids), size=n, replace=False)
    return [item_ids[i] for i in np.sort(pick)]


def build_warm(full: Config, warm: Config, seed: int) -> list[str]:
    """Prepare + embed the full run, write the warm run's data and embeddings; returns the cold ids."""
    from sidrec.data import load_dataset, prepare
    from sidrec.data.base import RawDataset
    from sidrec.data.prepared import PreparedData
    from sidrec.embed import run_embed

    if not (full.paths.data / "manifest.json").is_file():
        prepare(load_dataset(full.data), full.data, full.paths.data)
    if not (full.paths.embeddings / "meta.json").is_file():
        run_embed(full, progress=False)
    data = PreparedData(full.paths.data)
    cold = cold_items(data.item_ids, seed)
    if (warm.paths.embeddings / "meta.json").is_file():
        return cold
    cold_set = set(cold)
    texts = data.item_texts()
    items = {i: texts[n] for n, i in enumerate(data.item_ids) if i not in cold_set}
    seqs = {u: [data.item_ids[i] for i in s if data.item_ids[i] not in cold_set] for u, s in zip(data.user_ids, data.sequences)}
    raw = RawDataset(f"{data.manifest['dataset']}-warm", items, {u: s for u, s in seqs.items() if s})
    prepare(raw, replace(warm.data, min_count=0), warm.paths.data)  # the full run is k-cored already
    wdata = PreparedData(warm.paths.data)
    meta = read_json(full.paths.embeddings / "meta.json")
    emb = np.load(full.paths.embeddings / "embeddings.npy")
    pos = {i: n for n, i in enumerate(meta["item_ids"])}
    rows = [pos[i] for i in wdata.item_ids]
    meta.update(n_items=len(rows), item_ids=wdata.item_ids, items_sha256=wdata.manifest["outputs"]["items.parquet"],
                note=f"rows of {full.paths.embeddings} (same encoder and fields)")  # fmt: skip
    with commit_stage(warm.paths.embeddings, inputs=("data",)) as tmp:  # a whole stage, tied to the warm data
        save_npy(tmp / "embeddings.npy", emb[rows])
        write_json(tmp / "meta.json", meta)
    write_json(warm.paths.root / "cold_items.json", {"seed": seed, "fraction": COLD_FRACTION, "items": cold})
    return cold


def train_warm(warm: Config) -> None:
    from sidrec.pipeline import run_pipeline

    stages = ("tokenize", "train") if not (warm.paths.tokenizer / "sids.csv").is_file() else ("train",)
    if not (warm.paths.model / "train_summary.json").is_file():
        run_pipeline(warm, progress=False, stages=stages)


def evaluate_cold(full: Config, warm: Config, cold: list[str]) -> dict[str, float]:
    """Add the cold items by text to the warm run's Recommender; metrics on the cold-target users."""
    from sidrec.api import Recommender
    from sidrec.data.prepared import PreparedData
    from sidrec.embed.stage import load_embeddings
    from sidrec.metrics.ranking import RankingAccumulator

    import torch

    data = PreparedData(full.paths.data)
    cold_set = set(cold)
    ex = data.eval_examples("test")
    users = [u for u in range(data.n_users) if data.item_ids[ex.targets[u]] in cold_set]
    if not users:
        raise SidrecError("no test target is a cold item; raise the catalogue size or the cold fraction")
    rec = Recommender.load(warm.paths.root, beam_size=BEAM)
    texts = data.item_texts()
    index = data.item_index()
    t0 = time.perf_counter()
    added = rec.add_items([{"item_id": i, **texts[index[i]]} for i in cold if i not in rec])
    add_seconds = time.perf_counter() - t0
    histories = [[data.item_ids[i] for i in ex.histories[u]] for u in users]
    targets = torch.tensor([[ex.targets[u]] for u in users])[:, 0]

    def ranked(lists: list[list[str]]) -> torch.Tensor:
        out = torch.full((len(lists), K), -1, dtype=torch.long)
        for b, items in enumerate(lists):
            for j, i in enumerate(items[:K]):
                out[b, j] = index[i]
        return out

    t0 = time.perf_counter()
    recs = [r for lo in range(0, len(histories), 256) for r in rec.recommend(histories[lo : lo + 256], k=K)]
    rec_seconds = time.perf_counter() - t0
    sid_lists = [[r.item_id for r in row] for row in recs]
    sid_acc = RankingAccumulator((K,))
    sid_acc.add(ranked(sid_lists), targets)
    cold_share = float(np.mean([sum(i in cold_set for i in row) / K for row in sid_lists]))

    emb = load_embeddings(full.paths.embeddings, data.item_ids)  # every item, cold ones included
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    base_lists = []
    for u in users:
        h = ex.histories[u]
        sims = emb @ emb[h].mean(axis=0)
        sims[h] = -np.inf  # text similarity alone would return the history itself first
        top = np.argsort(-sims, kind="stable")[:K]
        base_lists.append([data.item_ids[i] for i in top])
    base_acc = RankingAccumulator((K,))
    base_acc.add(ranked(base_lists), targets)
    s, b = sid_acc.result(), base_acc.result()
    return {
        "cold_items": len(cold),
        "cold_added": added.added,
        "cold_unreachable": len(added.unreachable),
        "cold_users": len(users),
        "sid_recall@10": s["recall@10"],
        "sid_ndcg@10": s["ndcg@10"],
        "sid_cold_share@10": round(cold_share, 4),
        "text_recall@10": b["recall@10"],
        "text_ndcg@10": b["ndcg@10"],
        "sasrec_recall@10": 0.0,  # SASRec ranks only the item ids it was trained on
        "sasrec_ndcg@10": 0.0,
        "add_items_seconds": round(add_seconds, 2),
        "recommend_users_per_s": round(len(users) / max(rec_seconds, 1e-9), 1),
    }


def main() -> None:
    p = script_parser(__doc__)
    p.add_argument("--until", choices=("train", "evaluate"), default="evaluate", help="stop after this phase")
    p.add_argument("--no-train", action="store_true",
                   help="evaluate the warm run's best checkpoint so far (its training may still be running or stopped early)")  # fmt: skip
    args = p.parse_args()
    if args.quick:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="sidrec-coldstart-"))
    else:
        root = args.workdir or Path(os.environ.get(RUN_ENV) or "runs/coldstart")
    full, warm = configs(root, args.seed, args.quick)
    cold = build_warm(full, warm, args.seed)
    if not (args.no_train or os.environ.get(NO_TRAIN_ENV)):  # the env var reaches the script through `sidrec bench`
        train_warm(warm)
    if args.until == "train":
        print(f"warm run trained under {warm.paths.root}", file=sys.stderr)
        return
    metrics = evaluate_cold(full, warm, cold)
    best = read_json(warm.paths.model / "best.json", "the warm run's best checkpoint")
    metrics["warm_best_step"] = int(best.get("step", -1))
    metrics["warm_trained_items"] = trained_items(warm)
    emit(metrics)


def trained_items(cfg: Config) -> int:
    from sidrec.data.prepared import PreparedData

    return PreparedData(cfg.paths.data).n_items


if __name__ == "__main__":
    run_script(main)
