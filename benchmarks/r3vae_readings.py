"""R³-VAE's ambiguous readings (issue 14, points 1-6), measured at the tokenizer level.

    sidrec prepare ../shared/data/amazon-beauty-2014 -w runs/beauty && sidrec embed -w runs/beauty
    python benchmarks/r3vae_readings.py -w runs/beauty [--only NAME ...] [--seed 0] [--epochs 100]

Fits one ``r3vae`` per variant on the run's item embeddings (1 CPU thread) and appends one
JSON line per variant to ``RUN/r3vae_readings.jsonl`` (variants already there are skipped,
so an interrupted run resumes). Per variant: per-level usage and perplexity, collision rate
and the largest SID group, the reconstruction error of the codes alone (``decode(encode(x))``
relative to ``||x||^2``), the share of items whose hard-chain codes differ from their SID
(point 4), and SC/PD of full SIDs and of 1- and 2-level prefixes, on the raw input and in
the tokenizer's own space e0 (point 6). BENCHMARKS.md (R³-VAE readings) quotes the output.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sidrec.data.prepared import PreparedData
from sidrec.embed.stage import load_embeddings
from sidrec.metrics.sid_quality import sid_quality
from sidrec.tokenizers.r3vae import R3VAE

# name -> R3VAE parameters. The "sum-scale" variants reproduce the loss scale of sidrec
# before issue 14: L_rec summed over the 384 dimensions is 384 x the per-element MSE, and
# with Adam a common factor on the loss changes nothing, so lambda/384 at the MSE scale
# is exactly the old weighting (up to Adam's epsilon).
OLD_LAMBDA = 0.01 / 384
VARIANTS: dict[str, dict] = {
    "old-default": dict(top_k=4, temperature=0.05, init="l2", reg_weight=OLD_LAMBDA),
    "top4-l2": dict(top_k=4, temperature=0.05, init="l2", reg_weight=0.01),
    "top4-spherical": dict(top_k=4, temperature=0.05, init="spherical", reg_weight=0.01),
    "top1-spherical": dict(top_k=1, temperature=0.05, init="spherical", reg_weight=0.01),
    "full-literal": dict(top_k=256, temperature=1.0, init="spherical", reg_weight=0.01),
    "full-t0.05": dict(top_k=256, temperature=0.05, init="spherical", reg_weight=0.01),
    "top4-no-init": dict(top_k=4, temperature=0.05, init="none", reg_weight=0.01),
    "top4-lambda0": dict(top_k=4, temperature=0.05, init="spherical", reg_weight=0.0),
    "ste-spherical": dict(top_k=4, temperature=0.05, init="spherical", reg_weight=0.01, ablate=("rating",)),
    # lambda at the MSE scale: the paper's Table 9 grid, and the old weighting (0.01 / 384)
    "top4-spherical-lam0.001": dict(top_k=4, temperature=0.05, init="spherical", reg_weight=0.001),
    "top4-spherical-oldlam": dict(top_k=4, temperature=0.05, init="spherical", reg_weight=OLD_LAMBDA),
    "top1-spherical-oldlam": dict(top_k=1, temperature=0.05, init="spherical", reg_weight=OLD_LAMBDA),
    "top1-spherical-lam0.001": dict(top_k=1, temperature=0.05, init="spherical", reg_weight=0.001),
    # point 4: one residual chain for training and SID (straight-through to the SID's codeword)
    "top4-hard-oldlam": dict(top_k=4, temperature=0.05, init="spherical", reg_weight=OLD_LAMBDA, chain="hard"),
    "top4-hard-lam0.001": dict(top_k=4, temperature=0.05, init="spherical", reg_weight=0.001, chain="hard"),
}


def measure(tok: R3VAE, x: np.ndarray) -> dict:
    codes = tok.encode(x)
    q = sid_quality(x, codes, tok.codebook_sizes, reconstructed=tok.decode(codes), latent=tok.latent(x))
    keep = ("collision_rate", "items_per_sid", "max_items_per_sid", "usage", "perplexity", "recon_rel",
            "semantic_cohesion", "preference_discrimination", "sc_prefix", "pd_prefix",
            "sc_latent", "pd_latent", "sc_prefix_latent", "pd_prefix_latent")
    out = {k: q[k] for k in keep}
    out["hard_chain_disagreement"] = tok.hard_chain_disagreement(x)
    out["final_epoch"] = tok.history_[-1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workdir", required=True, type=Path)
    ap.add_argument("--only", nargs="+", choices=sorted(VARIANTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = PreparedData(args.workdir / "data")
    x = load_embeddings(args.workdir / "embeddings", data.item_ids)
    out_path = args.workdir / "r3vae_readings.jsonl"
    done = set()
    if out_path.is_file():
        done = {(r["variant"], r["seed"], r["epochs"]) for r in map(json.loads, out_path.read_text().splitlines())}
    for name in args.only or VARIANTS:
        if (name, args.seed, args.epochs) in done:
            print(f"{name}: done, skipped", flush=True)
            continue
        t0 = time.perf_counter()
        tok = R3VAE(seed=args.seed, epochs=args.epochs, device="cpu", **VARIANTS[name]).fit(x)
        rec = {"variant": name, "seed": args.seed, "epochs": args.epochs, "params": VARIANTS[name],
               "fit_seconds": round(time.perf_counter() - t0, 1), **measure(tok, x)}
        with out_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
