"""kill -9 at random points of ``prepare``, ``tokenize`` and ``train``: no mixed directory is ever accepted.

    python benchmarks/kill_stages.py [--trials 20] [--seed 0] [-w DIR] [--stages prepare,tokenize,train]

A worker process rewrites one stage of a tiny run directory in a loop, alternating
between two versions (prepare: two different datasets; tokenize: two tokenizer seeds;
train: two seeds, ``--overwrite``), and is killed with SIGKILL after a random delay.
After each kill the harness checks what the next command would see:

- the writer lock of the dead worker is taken over at once (and its temporaries cleared);
- the stage is either one whole version (its files equal a reference of version A or B)
  or refused with a one-line :class:`SidrecError` — never accepted while mixed;
- a later stage built from the other version is refused (stale input), never accepted.

Prints one line per trial and, last, a JSON summary: trials, outcomes per stage
(``A``/``B`` = a whole version accepted, ``refused``), and ``mixed_accepted`` (must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "tokenizer.method=rkmeans", "tokenizer.n_levels=2", "tokenizer.codebook_size=4", "model.n_enc_layers=1",
    "model.n_dec_layers=1", "model.n_heads=2", "model.d_model=16", "model.head_dim=8", "model.d_ff=32",
    "train.max_steps=400", "train.eval_every=5", "train.batch_size=16", "train.device=cpu", "train.num_threads=1",
    "train.val_users=8", "train.warmup_steps=2", "eval.beam_size=10", "eval.ks=1,5", "eval.batch_size=8",
]  # fmt: skip
#: seconds between the worker's "ready" (imports done) and the kill; each range spans several write cycles
DELAY = {"prepare": (0.0, 1.5), "tokenize": (0.0, 4.0), "train": (0.0, 15.0)}


def toy_raw(version: int):  # noqa: ANN201
    """Dataset A (0) or B (1): same item ids, different sequences."""
    from sidrec.data import RawDataset

    rng = np.random.default_rng(version)
    items = {f"i{n}": {"title": f"item {n}"} for n in range(30)}
    seqs = {f"u{u}": [f"i{(int(rng.integers(0, 22)) + j) % 30}" for j in range(int(rng.integers(4, 8)))] for u in range(40)}
    return RawDataset("toy", items, seqs)


def config(root: Path, version: int = 0):  # noqa: ANN201
    from sidrec.config import load_config

    return load_config(None, [f"workdir={root}", f"seed={version}", f"tokenizer.seed={version}", "data.min_count=0",
                              "data.max_history=5", *TINY])  # fmt: skip


def run_stage(stage: str, root: Path, version: int) -> None:
    """Write one version of ``stage`` into the run directory ``root``."""
    from sidrec.data import prepare

    cfg = config(root, version)
    if stage == "prepare":
        prepare(toy_raw(version), cfg.data, cfg.paths.data)
    elif stage == "embed":  # random vectors in the embed stage's format (no encoder download)
        from sidrec.data import PreparedData
        from sidrec.io import save_npy, write_json
        from sidrec.rundir import commit_stage

        data = PreparedData(cfg.paths.data)
        with commit_stage(cfg.paths.embeddings, inputs=("data",)) as tmp:
            save_npy(tmp / "embeddings.npy", np.random.default_rng(0).normal(size=(data.n_items, 12)).astype(np.float32))
            write_json(tmp / "meta.json", {"n_items": data.n_items, "dim": 12, "item_ids": data.item_ids})
    elif stage == "tokenize":
        from sidrec.tokenizers.stage import run_tokenize

        run_tokenize(cfg, progress=False)
    elif stage == "train":
        from sidrec.training.recipes import train

        train(cfg, progress=False, overwrite=True)
    else:
        raise ValueError(stage)


def worker(stage: str, root: Path, first: int) -> None:
    """Rewrite ``stage`` forever, alternating versions, until killed; one stdout line per finished write."""
    import sidrec.tokenizers.stage  # noqa: F401  (imports first: the kill delay counts from "ready")
    import sidrec.training.recipes  # noqa: F401

    print("ready", flush=True)
    version = first
    while True:
        run_stage(stage, root, version)
        print(f"wrote {version}", flush=True)
        version = 1 - version


def setup(base: Path, train: bool = True) -> tuple[Path, dict]:
    """A run directory with every stage at version A, and the reference files of each version."""
    from sidrec.rundir import file_checksums

    refs: dict = {}
    for v in (0, 1):
        ref = base / f"ref{v}"
        run_stage("prepare", ref, v)
        refs[("prepare", v)] = file_checksums(ref / "data")
        tref = base / f"tref{v}"  # tokenizer refs: both seeds on data A, as in the run directory
        for stage, version in (("prepare", 0), ("embed", 0), ("tokenize", v)):
            run_stage(stage, tref, version)
        refs[("tokenize", v)] = {"sids.csv": file_checksums(tref / "tokenizer", ["sids.csv"])["sids.csv"]}
    root = base / "run"
    for stage in ("prepare", "embed", "tokenize", "train")[: 4 if train else 3]:
        run_stage(stage, root, 0)
    return root, refs


REASONS: list[str] = []  # why each "refused" was refused (the one-line error), for the log


def classify(stage: str, root: Path, refs: dict) -> str:
    """What a reader of ``stage`` gets after the kill: "A", "B", "refused", or "MIXED" (a failure)."""
    from sidrec.errors import SidrecError
    from sidrec.rundir import check_stage, file_checksums

    d = root / {"prepare": "data", "tokenize": "tokenizer", "train": "model"}[stage]
    try:
        if stage == "train":
            from sidrec.training.stage import load_trained_model

            load_trained_model(config(root))  # verifies the model and its inputs, loads finite weights
            return "A|B"  # consistent by its record; both versions share inputs
        if stage == "prepare":
            from sidrec.data import PreparedData

            PreparedData(d)
            files = file_checksums(d, [n for n in check_stage(d)])
        else:
            check_stage(d)
            files = file_checksums(d, ["sids.csv"])
    except SidrecError as e:
        REASONS.append(str(e).split(": ", 1)[-1][:90])
        return "refused"
    for v in (0, 1):
        if files == refs[(stage, v)]:
            return "AB"[v]
    return "MIXED"


def downstream_ok(stage: str, root: Path, state: str) -> bool:
    """A later stage built from version A may be accepted only while the stage holds version A whole."""
    from sidrec.errors import SidrecError
    from sidrec.rundir import check_stage

    if stage == "train":
        return True
    try:
        check_stage(root / ("tokenizer" if stage == "prepare" else "model"))  # built from data A / tokenizer A
    except SidrecError:
        return True
    return state == "A"


def trial(stage: str, root: Path, refs: dict, rng: random.Random) -> dict:
    lo, hi = DELAY[stage]
    delay = rng.uniform(lo, hi)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, __file__, "--worker", stage, str(root), str(rng.randint(0, 1))], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"worker failed to start: {proc.communicate()[1][-500:]}")
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    writes = out.count("wrote ")
    if proc.returncode != -signal.SIGKILL:
        raise RuntimeError(f"worker ended before the kill ({proc.returncode}): {err[-500:]}")
    from sidrec.rundir import lock

    t0 = time.perf_counter()
    with lock(root):  # the dead worker's lock is taken over at once; its temporaries go
        pass
    took = time.perf_counter() - t0
    temps = [p.name for p in root.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    state = classify(stage, root, refs)
    why = REASONS[-1] if state == "refused" else ""
    return {"stage": stage, "delay": round(delay, 2), "writes": writes, "state": state, "why": why, "lock_s": round(took, 3), "temps_left": temps,
            "downstream_ok": downstream_ok(stage, root, state)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20, help="kills per stage")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-w", "--workdir", default=None, help="scratch directory (default: a temporary one)")
    p.add_argument("--stages", default="prepare,tokenize,train")
    p.add_argument("--worker", nargs=3, metavar=("STAGE", "ROOT", "FIRST"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), int(args.worker[2]))
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root, refs = setup(Path(tmp))
        results = []
        for stage in args.stages.split(","):
            for n in range(args.trials):
                r = trial(stage, root, refs, rng)
                results.append(r)
                print(f"{stage} #{n}: killed {r['delay']} s after ready, {r['writes']} whole writes before -> {r['state']}; lock taken in {r['lock_s']} s; "
                      f"temporaries left {r['temps_left'] or 'none'}; later stage consistent: {r['downstream_ok']}"
                      + (f" [{r['why']}]" if r["why"] else ""), flush=True)  # fmt: skip
            if stage == "prepare":  # later trials need data A again (tokenize/train read it)
                run_stage("prepare", root, 0)
                for s in ("embed", "tokenize", "train"):
                    run_stage(s, root, 0)
    summary = {
        "trials": len(results),
        "outcomes": {s: {k: sum(r["state"] == k for r in results if r["stage"] == s) for k in ("A", "B", "A|B", "refused", "MIXED")}
                     for s in args.stages.split(",")},  # fmt: skip
        "writes_before_kill": {s: [r["writes"] for r in results if r["stage"] == s] for s in args.stages.split(",")},
        "mixed_accepted": sum(r["state"] == "MIXED" for r in results),
        "temporaries_left": sum(bool(r["temps_left"]) for r in results),
        "stale_downstream_accepted": sum(not r["downstream_ok"] for r in results),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
