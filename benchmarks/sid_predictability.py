"""How well an item's SID prefix predicts the next item's: a cheap tokenizer-level proxy.

    python benchmarks/sid_predictability.py -w RUN SPEC [SPEC ...] [--seed 0] [--out FILE.jsonl]

SPEC is a fitted tokenizer directory (``RUN/tokenizer``) or ``method[:key=value,...]``, fitted
here on ``RUN``'s embeddings at 3 levels x 256 codes (``rqvae:whiten=true,optimizer=adagrad``;
a list as ``dims=512/256/128/64/32``).

A generative recommender must name the next item's first code from the history before anything
else, so a tokenizer whose level-1 codes carry sequential signal gives it an easier first step.
For each level l, with P_l(i) the item's first-l-codes prefix: a bigram P(P_l(next) | P_l(last))
is counted on the training pairs (consecutive items of the training sequences), smoothed by
Witten-Bell interpolation with the unigram (nothing tuned on validation), and scored on the validation targets (last history item ->
held-out item). Reported per level, in bits: the unigram cross-entropy ``h_uni``, the bigram
cross-entropy ``h_bi`` and ``gain = h_uni - h_bi`` (what the previous item's prefix tells about
the next one's), and ``hit1`` = share of validation targets whose prefix is the bigram's argmax;
beside them the collision rate, the largest SID group and each level's codebook perplexity.
No downstream model is trained; BENCHMARKS.md compares the proxy with downstream Recall@10.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sidrec.bench.runner import git_state, machine
from sidrec.config import Config, apply_overrides
from sidrec.data.prepared import PreparedData
from sidrec.embed.stage import load_embeddings
from sidrec.metrics.sequential import sequential_predictability
from sidrec.tokenizers.base import Tokenizer, build_tokenizer



def _tokenizer(spec: str, x: np.ndarray, seed: int) -> Tokenizer:
    if Path(spec).is_dir():
        return Tokenizer.load(spec)
    method, _, rest = spec.partition(":")
    overrides = [f"tokenizer.method={method}", "tokenizer.codebook_size=256", f"tokenizer.seed={seed}"]
    for kv in filter(None, rest.split(",")):  # values parse as the CLI's key=value overrides do
        key, _, value = kv.partition("=")
        value = f"[{value.replace('/', ',')}]" if "/" in value else value  # dims=512/256 -> [512,256]
        overrides.append(f"tokenizer.{key}={value}" if key == "n_levels" else f"tokenizer.params.{key}={value}")
    return build_tokenizer(apply_overrides(Config(), overrides).tokenizer).fit(x)  # n_levels=1: R³-VAE's flat KMeans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workdir", required=True, type=Path)
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="append one JSON line per SPEC here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = PreparedData(args.workdir / "data")
    x = load_embeddings(args.workdir / "embeddings", data.item_ids)
    train = data.train_sequences()
    pairs = np.concatenate([np.stack([s[:-1], s[1:]], 1) for s in train if len(s) > 1])
    val = data.eval_examples("valid")
    held = np.stack([np.array([h[-1] for h in val.histories]), val.targets], 1)
    for spec in args.specs:
        t0 = time.perf_counter()
        tok = _tokenizer(spec, x, args.seed)
        codes = tok.encode(x)
        _, group = np.unique(codes, axis=0, return_counts=True)
        perplexity, usage = [], []
        for c, k in zip(codes.T, tok.codebook_sizes):
            f = np.bincount(c, minlength=k) / len(c)
            perplexity.append(round(float(2 ** -(f[f > 0] * np.log2(f[f > 0])).sum()), 1))
            usage.append(round(float((f > 0).mean()), 3))
        # a fitted directory keeps its own seed
        rec = {"spec": spec, "seed": tok.seed, "git": git_state()["commit"][:7], "cpu": machine()["cpu"],
               "fit_seconds": round(time.perf_counter() - t0, 1),
               "collision_rate": float(1 - len(group) / len(codes)), "max_items_per_sid": int(group.max()),
               "usage": usage, "perplexity": perplexity, "levels": sequential_predictability(codes, pairs, held)}
        line = json.dumps(rec)
        print(line, flush=True)
        if args.out:
            with args.out.open("a", encoding="utf-8") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
