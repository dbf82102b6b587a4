"""``sidrec tokenize``: fit a tokenizer on the item embeddings and write the SIDs.

Writes into ``workdir/tokenizer``:

- ``tokenizer.json`` + ``tokenizer.safetensors``: the fitted tokenizer (:meth:`Tokenizer.load`);
- ``sids.csv`` + ``sid_table.json``: the collision-resolved SID table (:class:`SIDTable`);
- ``sid_metrics.json``: SID quality metrics (:mod:`sidrec.metrics.sid_quality`) and timings;
- ``codebook_usage.png``: sorted codeword counts per level;
- ``stage.json``: the stage record (checksums of these files and of the embeddings they
  came from). The directory is written whole (:func:`sidrec.rundir.commit_stage`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from sidrec.config import Config, config_to_dict
from sidrec.data.prepared import PreparedData
from sidrec.embed.stage import load_embeddings
from sidrec.errors import SidrecError
from sidrec.io import atomic_path, read_json, sha256_file, write_json
from sidrec.metrics.sid_quality import sid_quality
from sidrec.rundir import check_stage, commit_stage, lock
from sidrec.threads import set_threads
from sidrec.tokenizers.base import build_tokenizer
from sidrec.tokenizers.sid_table import SIDTable

METRICS_FILE = "sid_metrics.json"
PLOT_FILE = "codebook_usage.png"


def run_tokenize(cfg: Config, progress: bool = True, reuse: bool = False) -> dict[str, Any]:
    """Fit ``cfg.tokenizer`` on ``workdir/embeddings`` and write SIDs + metrics.

    Args:
        reuse: keep an existing ``workdir/tokenizer`` instead of refitting when it is whole,
            was built from the current embeddings and with the same tokenizer config
            (``sidrec run`` / ``sidrec bench`` resuming a run: a stage-1 fit can take hours).

    Returns:
        The metrics dict written to ``sid_metrics.json`` (includes ``fit_seconds``), plus
        ``reused: True`` when the existing fit was kept (its ``fit_seconds`` are that fit's).
    """
    with lock(cfg.paths.root):  # no other writer between reading the embeddings and committing the SIDs
        kept = _reusable(cfg) if reuse else None
        return {**kept, "reused": True} if kept is not None else _tokenize(cfg, progress)


def _reusable(cfg: Config) -> dict[str, Any] | None:
    """The metrics of ``workdir/tokenizer`` if it can stand for a fresh fit of ``cfg``, else None."""
    out = cfg.paths.tokenizer
    try:
        files = check_stage(out)  # whole, and built from the embeddings now in the run (recursively: from this data)
        metrics = read_json(out / METRICS_FILE)
    except SidrecError:
        return None
    want = json.loads(json.dumps(config_to_dict(cfg.tokenizer)))  # as it reads back from JSON
    if not isinstance(metrics, dict) or metrics.get("config") != want:
        return None
    # the SID table must still be this fit's: UniGRec publishes its jointly trained table here
    return metrics if metrics.get("sids_sha256") == files.get("sids.csv") else None


def _tokenize(cfg: Config, progress: bool) -> dict[str, Any]:
    set_threads(cfg.train.num_threads)  # the training stage's policy: oversubscribed OpenMP stalls
    data = PreparedData(cfg.paths.data)
    emb = load_embeddings(cfg.paths.embeddings, data.item_ids)
    tok = build_tokenizer(cfg.tokenizer)
    t0 = time.perf_counter()
    tok.fit(emb, progress=progress)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    codes = tok.encode(emb)
    encode_seconds = time.perf_counter() - t0
    table = SIDTable.build(data.item_ids, codes, tok.codebook_sizes, cfg.tokenizer.collision, seed=cfg.tokenizer.seed)

    with commit_stage(cfg.paths.tokenizer, inputs=("embeddings",)) as out:
        tok.save(out)
        table.save(out)
        metrics = _metrics(cfg, tok, table, emb, codes, fit_seconds, encode_seconds)
        metrics["sids_sha256"] = sha256_file(out / "sids.csv")  # the table this fit wrote (see _reusable)
        plot_codebook_usage(codes, tok.codebook_sizes, out / PLOT_FILE, title=f"{tok.name} on {emb.shape[0]:,} items")
        write_json(out / METRICS_FILE, metrics)
    return metrics


def _metrics(cfg: Config, tok: Any, table: SIDTable, emb: np.ndarray, codes: np.ndarray, fit_seconds: float,
             encode_seconds: float) -> dict[str, Any]:  # fmt: skip
    metrics: dict[str, Any] = {
        "method": tok.name,
        "params": tok.get_params(),
        "n_items": int(emb.shape[0]),
        "dim": int(emb.shape[1]),
        "codebook_sizes": tok.codebook_sizes,
        "vocab_sizes": table.vocab_sizes,
        "collision": table.collision,
        "fit_seconds": round(fit_seconds, 3),
        "encode_seconds": round(encode_seconds, 3),
        **sid_quality(emb, codes, tok.codebook_sizes, reconstructed=tok.decode(codes), latent=tok.latent(emb)),
        "config": config_to_dict(cfg.tokenizer),
    }
    return metrics


def plot_codebook_usage(codes: np.ndarray, codebook_sizes: list[int], path: str | Path, title: str = "") -> None:
    """One panel per level: codeword counts sorted high -> low, with usage in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_levels = len(codebook_sizes)
    fig, axes = plt.subplots(1, n_levels, figsize=(4 * n_levels, 3), squeeze=False)
    for level, (ax, k) in enumerate(zip(axes[0], codebook_sizes)):
        counts = np.sort(np.bincount(codes[:, level], minlength=k))[::-1]
        ax.bar(np.arange(k), counts, width=1.0)
        ax.axhline(codes.shape[0] / k, color="k", lw=0.8, ls="--")
        ax.set_title(f"level {level}: {(counts > 0).mean():.0%} of {k} used", fontsize=9)
        ax.set_xlabel("codeword (sorted by count)")
        ax.set_ylabel("items" if level == 0 else "")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
