"""``sidrec run``: prepare -> embed -> tokenize -> train -> evaluate from one config."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sidrec.config import Config, dump_config
from sidrec.io import atomic_open, write_json
from sidrec.rundir import lock


def _prepare(cfg: Config, progress: bool) -> dict[str, Any]:
    from sidrec.data import load_dataset, prepare

    return prepare(load_dataset(cfg.data), cfg.data, cfg.paths.data)


def _embed(cfg: Config, progress: bool) -> dict[str, Any]:
    from sidrec.embed import run_embed

    return run_embed(cfg, progress=progress)


def _tokenize(cfg: Config, progress: bool) -> dict[str, Any]:
    from sidrec.tokenizers.stage import run_tokenize

    return run_tokenize(cfg, progress=progress, reuse=True)  # a resumed run keeps its fit (same config and inputs)


def _train(cfg: Config, progress: bool) -> dict[str, Any]:
    from sidrec.rundir import interrupted_before_checkpoint
    from sidrec.training.recipes import has_checkpoint, train

    resume = has_checkpoint(cfg)  # continue an interrupted `sidrec run`; one killed before its first checkpoint starts over
    return train(cfg, resume=resume, progress=progress, overwrite=not resume and interrupted_before_checkpoint(cfg.paths.model))


def _evaluate(cfg: Config, progress: bool) -> dict[str, Any]:
    from sidrec.training.recipes import evaluate

    return evaluate(cfg, progress=progress)


STAGES: dict[str, Callable[[Config, bool], dict[str, Any]]] = {
    "prepare": _prepare,
    "embed": _embed,
    "tokenize": _tokenize,
    "train": _train,
    "evaluate": _evaluate,
}


def run_pipeline(cfg: Config, progress: bool = True, stages: tuple[str, ...] = tuple(STAGES)) -> dict[str, Any]:
    """Run the stages in order; write ``run_config.yaml`` and ``run_summary.json``.

    Training resumes from its last checkpoint if the run directory has one, so an
    interrupted ``sidrec run`` continues where it stopped; a run killed before its first
    checkpoint (best weights but nothing to resume) trains again from the start.

    Returns:
        {"seconds": {stage: wall seconds}, "results": {stage: stage output}}.
    """
    with lock(cfg.paths.root):  # one writer for the whole pipeline
        return _run(cfg, progress, stages)


def _run(cfg: Config, progress: bool, stages: tuple[str, ...]) -> dict[str, Any]:
    root = cfg.paths.root
    with atomic_open(root / "run_config.yaml", "w", encoding="utf-8") as f:
        f.write(dump_config(cfg))
    from sidrec.training.recipes import SKIPPED_STAGES

    seconds: dict[str, float] = {}
    results: dict[str, Any] = {}
    for name in [s for s in stages if s not in SKIPPED_STAGES.get(cfg.train.method, ())]:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        out = STAGES[name](cfg, progress)
        seconds[name] = round(time.perf_counter() - t0, 2)
        results[name] = {k: v for k, v in out.items() if k != "item_ids"} if isinstance(out, dict) else out
        print(f"   {name} done in {seconds[name]:.1f} s", flush=True)
    summary = {"seconds": seconds, "total_seconds": round(sum(seconds.values()), 2), "results": results}
    write_json(root / "run_summary.json", summary)
    return summary
