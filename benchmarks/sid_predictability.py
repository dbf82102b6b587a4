"""How well an item's SID prefix predicts the next item's: a cheap tokenizer-level proxy.

    python benchmarks/sid_predictability.py -w RUN SPEC [SPEC ...] [--seed 0] [--out FILE.jsonl]

SPEC is a fitted tokenizer directory (``RUN/tokenizer``) or ``method[:key=value,...]``, fitted
here on ``RUN``'s embeddings at 3 levels x 256 codes (``rqvae:whiten=true,optimizer=adagrad``).

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

from sidrec.config import TokenizerConfig
from sidrec.data.prepared import PreparedData
from sidrec.embed.stage import load_embeddings
from sidrec.tokenizers.base import Tokenizer, build_tokenizer



def _tokenizer(spec: str, x: np.ndarray, seed: int) -> Tokenizer:
    if Path(spec).is_dir():
        return Tokenizer.load(spec)
    method, _, rest = spec.partition(":")
    params = {}
    for kv in filter(None, rest.split(",")):
        key, _, value = kv.partition("=")
        params[key] = {"true": True, "false": False}.get(value, value)
        if isinstance(params[key], str):
            try:
                params[key] = int(value) if value.lstrip("-").isdigit() else float(value)
            except ValueError:
                pass
    levels = int(params.pop("n_levels", 3))  # kmeans:n_levels=1 is R³-VAE's flat KMeans row
    tok = build_tokenizer(TokenizerConfig(method=method, n_levels=levels, codebook_size=256, seed=seed, params=params))
    return tok.fit(x)


def _prefix_ids(codes: np.ndarray, level: int) -> np.ndarray:
    """(N,) dense id of each item's first ``level`` codes."""
    _, inv = np.unique(codes[:, :level], axis=0, return_inverse=True)
    return inv.reshape(-1)


def predictability(codes: np.ndarray, pairs: np.ndarray, held: np.ndarray) -> list[dict]:
    """Per level: unigram / bigram cross-entropy (bits) on ``held`` pairs, bigram counted on ``pairs``."""
    out = []
    for level in range(1, codes.shape[1] + 1):
        p = _prefix_ids(codes, level)
        n = int(p.max()) + 1
        a, b = p[pairs[:, 0]], p[pairs[:, 1]]
        uni = (np.bincount(b, minlength=n) + 1.0) / (len(b) + n)  # add-one unigram over prefixes
        key = a.astype(np.int64) * n + b
        uniq, cnt = np.unique(key, return_counts=True)
        row_tot = np.bincount(a, minlength=n).astype(float)
        row_types = np.bincount(uniq // n, minlength=n).astype(float)  # distinct successors of each prefix
        ha, hb = p[held[:, 0]], p[held[:, 1]]
        hk = ha.astype(np.int64) * n + hb
        pos = np.searchsorted(uniq, hk)
        found = (pos < len(uniq)) & (uniq[np.minimum(pos, len(uniq) - 1)] == hk)
        c = np.where(found, cnt[np.minimum(pos, len(uniq) - 1)], 0)
        # Witten-Bell: P(b | a) = (c(a, b) + T(a) P(b)) / (N(a) + T(a)); unseen a -> the unigram
        t = np.maximum(row_types[ha], 1.0)
        prob = (c + t * uni[hb]) / (row_tot[ha] + t)
        # the bigram's argmax per source prefix (ties -> the lowest id)
        order = np.lexsort((-cnt, uniq // n))
        src = uniq[order] // n
        first = np.r_[True, src[1:] != src[:-1]]
        best = np.full(n, int(np.argmax(uni)))
        best[src[first]] = uniq[order][first] % n
        out.append({"level": level, "prefixes": n, "h_uni": float(-np.log2(uni[hb]).mean()),
                    "h_bi": float(-np.log2(prob).mean()), "gain": float((-np.log2(uni[hb]) + np.log2(prob)).mean()),
                    "hit1": float((best[ha] == hb).mean())})
    return out


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
        perplexity = []
        for c in codes.T:
            f = np.bincount(c) / len(c)
            perplexity.append(round(float(2 ** -(f[f > 0] * np.log2(f[f > 0])).sum()), 1))
        rec = {"spec": spec, "seed": args.seed, "fit_seconds": round(time.perf_counter() - t0, 1),
               "collision_rate": float(1 - len(group) / len(codes)), "max_items_per_sid": int(group.max()),
               "perplexity": perplexity, "levels": predictability(codes, pairs, held)}
        line = json.dumps(rec)
        print(line, flush=True)
        if args.out:
            with args.out.open("a", encoding="utf-8") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
