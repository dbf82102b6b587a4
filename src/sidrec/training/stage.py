"""``sidrec train`` and the helpers the evaluation stages use to load its result.

``run_evaluate`` / ``run_recommend`` live in :mod:`sidrec.generation.stage` (which
imports :func:`load_trained_model` from here, never the other way round).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from sidrec.checkpoint import check_finite

from sidrec.config import Config, dump_config
from sidrec.data.prepared import PreparedData
from sidrec.errors import SidrecError
from sidrec.io import atomic_open, load_safetensors, read_json, write_json
from sidrec.models import build_from_config, build_model
from sidrec.models.base import user_bins
from sidrec.rundir import check_stage, lock, retire_results, without_reports
from sidrec.threads import set_threads
from sidrec.tokenizers.sid_table import SIDTable
from sidrec.training import distributed as D
from sidrec.training.data import TrainData
from sidrec.training.loop import BEST, BEST_META, Validator, train


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda if available else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SidrecError(f"train.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from None


def item_codes(data: PreparedData, sids: SIDTable) -> np.ndarray:
    """SID codes in item_idx order, (n_items, T); every prepared item must have a SID."""
    pos = {item: n for n, item in enumerate(sids.item_ids)}
    missing = [i for i in data.item_ids if i not in pos]
    if missing:
        raise SidrecError(f"SID table lacks {len(missing)} prepared items (e.g. {missing[0]!r}); re-run `sidrec tokenize`")
    return sids.codes[[pos[i] for i in data.item_ids]]


def make_validator(cfg: Config, data: PreparedData, sids: SIDTable) -> Validator:
    """Beam-search validation (``sidrec.generation.evaluate.evaluate_split``) on ``train.val_users`` users."""
    ks = tuple(sorted(set(cfg.eval.ks) | {10}))

    def validate(model: nn.Module) -> dict[str, float]:
        from sidrec.generation.evaluate import evaluate_split

        return evaluate_split(
            model, data, sids, "valid", beam_size=cfg.eval.beam_size, constrained=cfg.eval.constrained,
            ks=ks, batch_size=cfg.eval.batch_size, max_users=cfg.train.val_users or None, progress=False,
        )  # fmt: skip

    return validate


def build_train_data(cfg: Config, data: PreparedData, sids: SIDTable, unit: str) -> TrainData:
    """Training units from the train part of every user's sequence."""
    if cfg.train.sub_windows and unit != "sample":
        raise SidrecError(
            f"train.sub_windows is an augmentation of per-sample training (model.arch encdec); "
            f"model.arch {cfg.model.arch} trains on whole windows, set train.sub_windows=false"
        )
    bins = user_bins(data.user_ids, cfg.model.user_tokens)
    return TrainData(
        data.train_sequences(), item_codes(data, sids), data.max_history, unit, cfg.train.sliding_window,
        cfg.train.batch_size, cfg.seed, None if bins is None else bins.numpy(), cfg.train.sub_windows,
    )  # fmt: skip


def run_train(cfg: Config, resume: bool = False, progress: bool = True, validate: Validator | None = None) -> dict[str, Any]:
    """Train the generative recommender of ``cfg.model`` on ``cfg.paths.data`` with ``cfg.paths.tokenizer`` SIDs.

    Writes to ``cfg.paths.model``: ``best.safetensors`` + ``best.json`` (best validation
    NDCG@10), ``stage.json`` (their checksums and those of the data and SID table they
    come from), ``last.safetensors`` (full resumable checkpoint), ``metrics.csv``, ``tensorboard/``,
    ``curves.png``, ``train_summary.json`` and ``config.yaml``. Under torchrun
    (WORLD_SIZE > 1) every rank calls this and trains one DDP replica.

    Args:
        cfg: the run config.
        resume: continue from ``last.safetensors`` (a finished run returns its summary); refused when
            there is none or the settings or inputs changed. Without it, a previous run's results
            are deleted just before the first step (``sidrec train`` asks for ``--overwrite`` first).
        progress: tqdm bar on rank 0.
        validate: override of the validation function (tests); default beam search.

    Returns:
        The training summary (also written as ``train_summary.json``).
    """
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun rank 0 writes and holds the lock
        with lock(cfg.paths.root):
            return _run_train(cfg, resume, progress, validate)
    return _run_train(cfg, resume, progress, validate)


def _run_train(cfg: Config, resume: bool, progress: bool, validate: Validator | None) -> dict[str, Any]:
    t = cfg.train
    device = resolve_device(t.device)
    rank, world = D.init_distributed(device)
    if device.type == "cuda" and world > 1:  # one GPU per local rank
        device = torch.device("cuda", D.world_info()[2])
        torch.cuda.set_device(device)
    if world > 1 and t.batch_size < world:
        raise SidrecError(f"train.batch_size must be >= the number of ranks ({world}), got {t.batch_size}")
    threads = set_threads(t.num_threads)
    inputs = {name: without_reports(check_stage(cfg.paths.root / name)) for name in ("data", "tokenizer")}  # whole and consistent
    data = PreparedData(cfg.paths.data)
    sids = SIDTable.load(cfg.paths.tokenizer)
    out = cfg.paths.model
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, sids.vocab_sizes, data.max_history).to(device)
    unit = getattr(model, "train_unit", "sample") if t.sliding_window else "sample"
    train_data = build_train_data(cfg, data, sids, unit)
    if len(train_data) == 0:
        raise SidrecError(f"no training samples: users need at least 4 interactions, got {data.n_users} users")
    if rank == 0:
        if not resume:  # only now, with config, inputs and model validated, may a previous run's results go
            retire_results(out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_open(out / "config.yaml", "w", encoding="utf-8") as f:
            f.write(dump_config(cfg))
    D.barrier()
    summary = train(
        model, train_data, validate or make_validator(cfg, data, sids), t, out, cfg.seed,
        resume=resume, progress=progress, settings={"model": asdict(cfg.model), "inputs": inputs}, inputs=("data", "tokenizer"),
    )  # fmt: skip
    summary.update(threads=threads, world_size=world, parameters=sum(p.numel() for p in model.parameters()))
    if rank == 0:
        write_json(out / "train_summary.json", summary)
    return summary


def load_trained_model(cfg: Config, device: str | torch.device = "cpu") -> tuple[nn.Module, SIDTable, PreparedData]:
    """The best checkpoint of ``sidrec train``, ready for decoding.

    Reads ``cfg.paths.model/best.json`` (architecture + constructor arguments) and
    ``best.safetensors`` (weights), plus the SID table and prepared data the model was
    trained on. The model is in eval mode on ``device``. This is what
    ``sidrec evaluate`` / ``sidrec recommend`` use; the test split is only ever scored
    from this checkpoint.

    Returns:
        (model implementing SIDGenerator, SIDTable, PreparedData).
    """
    meta = read_json(cfg.paths.model / BEST_META, "trained model (run `sidrec train` first)")
    weights = cfg.paths.model / BEST
    if not weights.is_file():
        raise SidrecError(f"model weights not found: {weights} (run `sidrec train` first)")
    check_stage(cfg.paths.model)  # whole, and trained on the data and SID table now in the run directory
    sids = SIDTable.load(cfg.paths.tokenizer)
    if list(meta["config"]["vocab_sizes"]) != list(sids.vocab_sizes):
        raise SidrecError(
            f"SID table {cfg.paths.tokenizer} has vocab sizes {sids.vocab_sizes}, the model was trained with "
            f"{meta['config']['vocab_sizes']}; re-train after re-tokenizing"
        )
    data = PreparedData(cfg.paths.data)
    model = build_from_config(meta["arch"], meta["config"])
    model.load_state_dict(load_safetensors(weights, "model weights"))
    check_finite(model, weights)
    return model.to(resolve_device(device) if isinstance(device, str) else device).eval(), sids, data


__all__ = ["load_trained_model", "run_train"]
