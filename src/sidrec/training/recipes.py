"""Training recipes behind ``sidrec train / evaluate / recommend`` (``train.method``).

- ``sid``: the generative recommender over SIDs (:mod:`sidrec.training.stage`),
  evaluated by beam search (:mod:`sidrec.generation.stage`).
- ``sasrec``: the ID-based SASRec baseline and UniGRec teacher
  (:mod:`sidrec.training.sasrec`), evaluated by full-catalogue ranking.
- ``unigrec``: tokenizer and recommender trained end to end
  (:mod:`sidrec.training.unigrec`); its recommender is an ordinary SID model, so it
  is evaluated and served like ``sid``.

The recipe that trained a run is recorded in ``model/recipe.json``, so ``evaluate``
and ``recommend`` on that run use it whatever ``train.method`` says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidrec.config import Config
from sidrec.errors import SidrecError
from sidrec.io import read_json, write_json
from sidrec.rundir import RESUMABLE, check_fresh_start, check_stage, lock, retire_results

RECIPE_FILE = "recipe.json"


@dataclass(frozen=True)
class Recipe:
    """How one method trains, evaluates and recommends."""

    train: Callable[[Config, bool, bool], dict[str, Any]]
    evaluate: Callable[[Config, bool, int, bool], dict[str, Any]]
    recommend: Callable[[Config, list[str], int], dict[str, Any]]


# ----------------------------------------------------------------- sid / unigrec


def _train_sid(cfg: Config, resume: bool, progress: bool) -> dict[str, Any]:
    from sidrec.training.stage import run_train

    return run_train(cfg, resume=resume, progress=progress)


def _train_unigrec(cfg: Config, resume: bool, progress: bool) -> dict[str, Any]:
    from sidrec.training.unigrec import run_unigrec

    return run_unigrec(cfg, resume=resume, progress=progress)


def _evaluate_sid(cfg: Config, save_predictions: bool, exact_users: int, progress: bool) -> dict[str, Any]:
    from sidrec.generation.stage import run_evaluate

    return run_evaluate(cfg, save_predictions=save_predictions, exact_users=exact_users, progress=progress)


def _recommend_sid(cfg: Config, history: list[str], k: int) -> dict[str, Any]:
    from sidrec.generation.stage import run_recommend  # any method, through sidrec.api.Recommender

    return run_recommend(cfg, history, k=k)


# ----------------------------------------------------------------- sasrec


def _train_sasrec(cfg: Config, resume: bool, progress: bool) -> dict[str, Any]:
    from sidrec.data.prepared import PreparedData
    from sidrec.training.sasrec import export_item_embeddings, train_sasrec
    from sidrec.threads import set_threads

    set_threads(cfg.train.num_threads)
    data = PreparedData(cfg.paths.data)
    if not resume:
        retire_results(cfg.paths.model)  # check_fresh_start allowed it (--overwrite)
    result = train_sasrec(data, cfg.paths.model, cfg.sasrec, seed=cfg.seed, resume=resume, progress=progress, inputs=("data",))
    export_item_embeddings(cfg.paths.model)  # ready as UniGRec's teacher (unigrec.teacher=RUN/model)
    return result


def _evaluate_sasrec(cfg: Config, save_predictions: bool, exact_users: int, progress: bool) -> dict[str, Any]:
    from sidrec.data.prepared import PreparedData
    from sidrec.training.sasrec import evaluate_sasrec

    if save_predictions or exact_users:
        raise SidrecError("--save-predictions and --exact apply to SID models; this run was trained with train.method=sasrec")
    check_stage(cfg.paths.model)  # whole, and trained on the prepared data now in the run directory
    metrics = evaluate_sasrec(cfg.paths.model, PreparedData(cfg.paths.data), cfg.eval.split, cfg.eval.ks, cfg.eval.filter_seen)
    result = {"split": cfg.eval.split, "method": "sasrec", "filter_seen": cfg.eval.filter_seen, "metrics": metrics}
    write_json(cfg.paths.eval / "metrics.json", result)
    return result


RECIPES: dict[str, Recipe] = {
    "sid": Recipe(_train_sid, _evaluate_sid, _recommend_sid),
    "sasrec": Recipe(_train_sasrec, _evaluate_sasrec, _recommend_sid),  # one path: sidrec.api.Recommender
    "unigrec": Recipe(_train_unigrec, _evaluate_sid, _recommend_sid),
}


#: Stages a method does not use (SASRec learns item ids: no text embeddings, no SIDs).
SKIPPED_STAGES: dict[str, tuple[str, ...]] = {"sasrec": ("embed", "tokenize")}


def _recipe(method: str) -> Recipe:
    if method not in RECIPES:
        raise SidrecError(f"unknown train.method {method!r}; valid methods: {', '.join(RECIPES)}")
    return RECIPES[method]


def trained_method(cfg: Config) -> str:
    """The method recorded by the run's training, else ``cfg.train.method``."""
    path = Path(cfg.paths.model) / RECIPE_FILE
    return read_json(path, "recipe record")["method"] if path.is_file() else cfg.train.method


def has_checkpoint(cfg: Config) -> bool:
    """Whether the run's model directory holds a resumable checkpoint (of any recipe)."""
    return any((cfg.paths.model / name).is_file() for name in RESUMABLE)


def train(cfg: Config, resume: bool = False, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train with ``cfg.train.method`` and record the method for evaluate/recommend.

    Holds the run directory's lock. A fresh run (no ``resume``) into a model directory
    with a previous run's results is refused unless ``overwrite``.
    """
    recipe = _recipe(cfg.train.method)
    with lock(cfg.paths.root):
        if resume and not has_checkpoint(cfg) and not (cfg.paths.model / "last.pt").is_file():  # (last.pt: the loop explains)
            raise SidrecError(f"nothing to resume: {cfg.paths.model} has no training checkpoint; run without --resume to start training")
        check_fresh_start(cfg.paths.model, resume, overwrite)
        cfg.paths.model.mkdir(parents=True, exist_ok=True)
        write_json(cfg.paths.model / RECIPE_FILE, {"method": cfg.train.method})
        return recipe.train(cfg, resume, progress)


def evaluate(cfg: Config, save_predictions: bool = False, exact_users: int = 0, progress: bool = True) -> dict[str, Any]:
    """Test (``cfg.eval.split``) metrics of the run's best checkpoint; writes ``eval/metrics.json``."""
    return _recipe(trained_method(cfg)).evaluate(cfg, save_predictions, exact_users, progress)


def recommend(cfg: Config, history: list[str], k: int = 10) -> dict[str, Any]:
    """Top-``k`` item ids with scores for a history of item ids (oldest first)."""
    return _recipe(trained_method(cfg)).recommend(cfg, history, k)
