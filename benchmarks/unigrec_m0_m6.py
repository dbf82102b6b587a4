"""M0 vs M6 of UniGRec Table 3 on Beauty, same budget and seed (driver for BENCHMARKS.md).

    python benchmarks/unigrec_m0_m6.py --root /tmp/unigrec_bench --beauty /tmp/runs/beauty \
        --teacher /tmp/runs/beauty/sasrec/item_embeddings.npy M0 M6

Both rows share one stage-1 tokenizer (the hard RQ-VAE: TIGER's M0), the recommender
size and the step budget; M6 adds soft identifiers, joint training and both
distillation losses (teacher = SASRec item embeddings). Test metrics on a seeded
5,000-user subset, the same subset for both rows.
"""
import argparse
import json, shutil, sys, time
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from sidrec.config import load_config
from sidrec.data.prepared import PreparedData
from sidrec.generation.evaluate import evaluate_split
from sidrec.training.stage import load_trained_model
from sidrec.training.unigrec import UniGRecConfig, run_unigrec

ap = argparse.ArgumentParser()
ap.add_argument("--root", default="/tmp/unigrec_bench")
ap.add_argument("--beauty", default="/tmp/runs/beauty", help="run dir with prepared data/ and embeddings/")
ap.add_argument("--teacher", required=True, help="SASRec item embeddings (.npy) or a SASRec model dir")
ap.add_argument("rows", nargs="*", default=["M0", "M6"])
args = ap.parse_args()
ROOT = Path(args.root)
teacher = args.teacher
OVR = ["tokenizer.method=soft-rqvae",
       "model.n_enc_layers=2", "model.n_dec_layers=2", "model.d_ff=512", "train.lr=2e-3", "train.weight_decay=0.05",
       "train.batch_size=256", "train.max_steps=1200", "train.eval_every=400", "train.warmup_steps=100",
       "train.val_users=1000", "train.num_threads=1", "train.device=cpu", "eval.beam_size=20", "seed=0"]
ROWS = {"M0": UniGRecConfig(soft_ids=False, joint=False, lambda_cd_t=0, lambda_cd_r=0),
        "M6": UniGRecConfig(lambda_cd_t=0.1, lambda_cd_r=0.1, teacher=str(teacher))}
CU = {"M0": 0.0, "M6": 1.0e-4}  # stage-1 L_CU weight (Table 3: L_CU enters at M3)
out = {}
for name in args.rows:
    wd = ROOT / name
    for sub in ("data", "embeddings"):
        (wd / sub).parent.mkdir(parents=True, exist_ok=True)
        if not (wd / sub).exists():
            (wd / sub).symlink_to(Path(args.beauty) / sub)
    if name == "M6" and not (wd / "tokenizer").exists():  # stage 1 shared with M0 (identical seed and settings)
        shutil.copytree(ROOT / "M0" / "tokenizer", wd / "tokenizer")
        for f in ("sids.csv", "sid_table.json"):
            shutil.copy(ROOT / "M0" / "tokenizer" / "stage1" / f, wd / "tokenizer" / f)
    if name in ("M0", "M6"):  # TIGER: the hard RQ-VAE (commitment loss, k-means init, dead-code reset)
        extra = ["tokenizer.method=rqvae", "tokenizer.params={dims: [512, 256, 128, 64, 32], epochs: 60, device: cpu}"]
    else:  # UniGRec stage 1: soft-rqvae, tau 0.01 -> 0.001 (eq. 16), L_CU weight (eq. 21)
        extra = [f"tokenizer.params={{dims: [512, 256, 128, 64, 32], tau_max: 0.01, tau_min: 0.001, cu_weight: {CU[name]}, epochs: 60, device: cpu}}"]
    cfg = load_config(None, [f"workdir={wd}", *OVR, *extra])
    t0 = time.time()
    summ = run_unigrec(cfg, progress=False, ucfg=ROWS[name])
    model, sids, data = load_trained_model(cfg)
    m = evaluate_split(model, data, sids, "test", beam_size=30, ks=(5, 10), max_users=5000, seed=0)
    out[name] = {"test": m, "summary": {k: summ[k] for k in ("steps", "best_step", "best_valid", "collision_per_epoch", "train_seconds")}, "wall": time.time() - t0}
    print(name, json.dumps(out[name]), flush=True)
    (ROOT / f"{name}.json").write_text(json.dumps(out[name], indent=2))
