"""The training recipe: an explicit AdamW loop with validation, early stopping and exact resume.

Every ``eval_every`` steps rank 0 validates (beam search on the validation split
through the injected ``validate`` function), the best model by validation NDCG@10
is kept (``best.safetensors`` + ``best.json``), and a full checkpoint
(``last.safetensors``: model, optimizer, scheduler, every rank's python/numpy/torch RNG
state, data order position, step, metric history, the run's settings) is written
atomically as safetensors + JSON (:mod:`sidrec.checkpoint`: loading it runs no code). The
data order is a pure function of ``(seed, epoch)``, so a run killed at any moment
and resumed from ``last.safetensors`` replays exactly what the uninterrupted run did.
A resume whose settings (``train`` section, seed, model, inputs) differ is refused.

Under torchrun each rank takes a contiguous share of every global batch; losses
are scaled so DDP's gradient average equals the gradient of the global-batch mean.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sidrec.checkpoint import load_state, save_state
from sidrec.config import TrainConfig, dotted
from sidrec.errors import SidrecError
from sidrec.io import atomic_path, write_json
from sidrec.rundir import REPORTS, record_stage
from sidrec.training import distributed as D
from sidrec.training.data import Batch, TrainData
from sidrec.training.logs import TensorBoardLog, plot_curves, write_metrics_csv

Validator = Callable[[nn.Module], dict[str, float]]
LAST, BEST, BEST_META = "last.safetensors", "best.safetensors", "best.json"
LEGACY_LAST = "last.pt"  # pickled checkpoints of sidrec < issue 15: never loaded (unpickling runs code)
RESUME_FREE = ("device", "num_threads")  # train keys a resume may change: they do not change what is computed
# A resume may also extend a run (more steps, more patience) as long as the steps already taken would have been
# the same: the lr schedule is pinned by its decay horizon (decay_steps, else max_steps), not by max_steps itself.
EXTENDABLE = ("max_steps", "patience", "decay_steps")
TIMING = ("val_seconds", "val_users_per_second")  # logged, but not metrics


class Interrupted(RuntimeError):
    """Raised by the ``interrupt_at`` test hook to simulate a killed run."""


@dataclass
class TrainState:
    """Counters that, with the RNG states, fully determine what happens next."""

    step: int = 0
    epoch: int = 0
    index: int = 0  # next batch of the epoch
    best: float = -math.inf
    best_step: int = -1
    bad_evals: int = 0
    stopped: str = ""  # why training ended ("" while running)
    train_seconds: float = 0.0
    samples: int = 0  # next-item targets trained on, all ranks
    rows: list[dict[str, Any]] = field(default_factory=list)

    def advance(self, n_samples: int, seconds: float) -> None:
        """Count one optimizer step over ``n_samples`` targets that took ``seconds``."""
        self.step, self.index = self.step + 1, self.index + 1
        self.samples += n_samples
        self.train_seconds += seconds


class _LossModule(nn.Module):
    """Wraps a model so DDP sees one forward: Batch -> (sum of per-target losses, n_targets)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, b: Batch) -> torch.Tensor:
        if b.codes is not None:
            total, _ = self.model.sequence_loss(b.codes, b.lengths, b.user_bins)
            return total
        return self.model.loss(b.history, b.targets) * b.n_targets


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(s: dict[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW (fused CPU/GPU kernel); weight decay on matrices only (not norms, biases)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)


def train(
    model: nn.Module,
    data: TrainData,
    validate: Validator,
    cfg: TrainConfig,
    out_dir: Path,
    seed: int,
    resume: bool = False,
    progress: bool = True,
    interrupt_at: int | None = None,
    settings: dict[str, Any] | None = None,
    inputs: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Train ``model`` until early stopping or ``cfg.max_steps``; return the run summary.

    Args:
        model: a registered SID generator, already on its device.
        data: training units; batches come from ``data.epoch_batches``.
        validate: model -> validation metrics (needs "ndcg@10"); called on rank 0 only.
        cfg: the ``train`` config section.
        out_dir: where checkpoints and logs go.
        seed: seeds dropout (per rank) for a fresh run.
        resume: continue from ``out_dir/last.safetensors`` (an error if there is none).
        progress: show a tqdm bar (rank 0).
        interrupt_at: test hook; raise :class:`Interrupted` right after this step.
        settings: what else the run depends on (config sections, input checksums), as JSON;
            stored in the checkpoint with ``cfg`` and ``seed``, and a resume must match all of it.
        inputs: sibling stages of ``out_dir`` the model is built from (``("data", "tokenizer")``);
            if given, ``out_dir/stage.json`` is re-recorded after every best checkpoint.

    Returns:
        Summary dict (best step and validation metrics, steps, epochs, samples/s, ...).
    """
    rank, world = D.world_info()[:2]
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapped: nn.Module = _LossModule(model)
    if world > 1:
        wrapped = DistributedDataParallel(wrapped)
    opt = _optimizer(model, cfg)
    sched = lr_scheduler(opt, cfg)
    state = TrainState()
    last = out_dir / LAST
    run_settings = resume_settings(cfg, seed, settings)
    if resume:
        ck = load_checkpoint(out_dir)
        check_resume(last, ck["settings"], run_settings)
        if ck["world"] != world:
            raise SidrecError(f"{last} was written by {ck['world']} ranks; resume with the same number, got {world}")
        if ck["arch"] != model.arch or ck["config"] != model.config():
            raise SidrecError(f"{last} holds a different model ({ck['arch']} {ck['config']}); resume with the same model config")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        state = TrainState(**ck["state"])
        _check_extension(last, state, cfg)
        state.stopped = _stop_reason(state, cfg)  # under a larger max_steps or patience, a finished run goes on
        _set_rng_state(ck["rng"][rank])
    else:
        random.seed(seed + rank)
        np.random.seed(seed + rank)
        torch.manual_seed(seed * 1000 + rank)
    resumed_from = state.step  # 0 for a fresh run; kept in the summary so a record says it was resumed
    tb = TensorBoardLog(out_dir / "tensorboard", purge_step=state.step) if rank == 0 else None
    bar = tqdm(total=cfg.max_steps, initial=state.step, disable=not (progress and rank == 0), dynamic_ncols=True)
    loss_acc = n_acc = 0.0
    win_samples, win_seconds = 0, 0.0
    batches = data.epoch_batches(state.epoch)
    model.train()
    while not state.stopped and state.step < cfg.max_steps:
        if state.index >= len(batches):
            state.epoch, state.index = state.epoch + 1, 0
            batches = data.epoch_batches(state.epoch)
        t0 = time.perf_counter()
        b = data.make_batch(batches[state.index], rank, world)
        total = wrapped(b)  # sum over this rank's targets of the per-token cross-entropy
        loss = total * (world / b.n_global)  # DDP averages grads over ranks -> global-batch mean
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        dt = time.perf_counter() - t0
        state.advance(b.n_global, dt)
        win_samples, win_seconds = win_samples + b.n_global, win_seconds + dt
        loss_acc, n_acc = loss_acc + float(total.detach()), n_acc + b.n_targets
        bar.update(1)
        if state.step % 20 == 0:
            bar.set_postfix(loss=f"{loss_acc / max(n_acc, 1):.3f}", samples_s=f"{win_samples / max(win_seconds, 1e-9):.0f}")
        if state.step % cfg.eval_every == 0 or state.step == cfg.max_steps:
            loss_acc, n_acc = D.all_reduce_sum([loss_acc, n_acc])
            row = {
                "step": state.step,
                "epoch": round(state.epoch + state.index / max(len(batches), 1), 3),
                "train_loss": loss_acc / max(n_acc, 1),
                "samples_per_s": win_samples / max(win_seconds, 1e-9),
                "lr": sched.get_last_lr()[0],
            }
            loss_acc = n_acc = 0.0
            win_samples, win_seconds = 0, 0.0
            _evaluate(model, validate, state, row, cfg, out_dir, rank, inputs)
            if rank == 0:
                write_metrics_csv(out_dir / "metrics.csv", state.rows)
                plot_curves(out_dir / "curves.png", state.rows)
                tb.scalars(state.step, {f"train/{k}": row[k] for k in ("train_loss", "samples_per_s", "lr")})
                tb.scalars(state.step, {f"valid/{k[4:]}": v for k, v in row.items() if k.startswith("val_")})
            state.stopped = _stop_reason(state, cfg)
            _save_last(last, model, opt, sched, state, world, run_settings)
        if interrupt_at is not None and state.step == interrupt_at:
            bar.close()
            raise Interrupted(f"interrupted after step {state.step}")
    bar.close()
    if tb is not None:
        tb.close()
    summary = {
        "stopped": state.stopped,
        "steps": state.step,
        "epochs": state.epoch + state.index / max(len(batches), 1),
        "best_step": state.best_step,
        "best_valid": {k[4:]: v for k, v in _best_row(state).items() if k.startswith("val_") and k not in TIMING},
        "train_samples": state.samples,
        "train_seconds": state.train_seconds,
        "samples_per_s": state.samples / max(state.train_seconds, 1e-9),
        "resumed_from_step": resumed_from,
    }
    if rank == 0:
        write_json(out_dir / "train_summary.json", summary)
    D.barrier()
    return summary


def _stop_reason(state: TrainState, cfg: TrainConfig) -> str:
    """Why training ends after the validation at ``state.step`` ("" to go on)."""
    if state.bad_evals >= cfg.patience:
        return f"early stop: no validation NDCG@10 gain in {cfg.patience} evaluations"
    if state.step >= cfg.max_steps:
        return f"reached max_steps={cfg.max_steps}"
    return ""


def _best_row(state: TrainState) -> dict[str, Any]:
    return next((r for r in state.rows if r["step"] == state.best_step), {})


def _evaluate(model: nn.Module, validate: Validator, state: TrainState, row: dict[str, Any], cfg: TrainConfig, out_dir: Path, rank: int,
              inputs: tuple[str, ...] | None = None) -> None:
    """Validate on rank 0, share the result, update early stopping, keep the best weights."""
    metrics = None
    if rank == 0:
        t0 = time.perf_counter()
        rng = _rng_state()  # validation must not perturb the training RNG stream
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in validate(model).items()}
        model.train()
        _set_rng_state(rng)
        metrics["seconds"] = time.perf_counter() - t0
    metrics = D.broadcast_object(metrics)
    row.update({f"val_{k}": v for k, v in metrics.items()})
    state.rows.append(row)
    score = metrics["ndcg@10"]
    if score > state.best:
        state.best, state.best_step, state.bad_evals = score, state.step, 0
        if rank == 0:
            with atomic_path(out_dir / BEST) as tmp:
                save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp))
            write_json(out_dir / BEST_META, {"arch": model.arch, "config": model.config(), "step": state.step, "valid": metrics})
            if inputs is not None:  # last: a kill before this leaves best.* that fail the old record's checksums
                record_stage(out_dir, (BEST, BEST_META), inputs)
    else:
        state.bad_evals += 1


LR_SCHEDULES = ("constant", "cosine")
COSINE_FLOOR = 0.1  # cosine decays to this fraction of the peak lr (a common floor; 0 wastes the last steps)


def lr_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup_steps``, then constant or cosine decay to ``COSINE_FLOOR`` x lr at the horizon.

    The horizon is ``decay_steps`` (0: ``max_steps``); after it the lr stays at the floor, so a run can
    train on to early stopping (``patience``) after its schedule has annealed.

    Raises:
        SidrecError: for an unknown ``train.lr_schedule``.
    """
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise SidrecError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {cfg.lr_schedule!r}")
    warm = max(1, cfg.warmup_steps)
    span = max(1, decay_horizon(cfg.decay_steps, cfg.max_steps) - warm)

    def factor(step: int) -> float:
        if step + 1 < warm:
            return (step + 1) / warm
        if cfg.lr_schedule == "constant":
            return 1.0
        done = min(1.0, (step + 1 - warm) / span)
        return COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * done))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def decay_horizon(decay_steps: int, max_steps: int) -> int:
    """The step at which a cosine schedule reaches its floor."""
    return decay_steps or max_steps


def resume_settings(cfg: TrainConfig, seed: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings a resumed run must share with the run that wrote the checkpoint (JSON)."""
    train = {k: v for k, v in asdict(cfg).items() if k not in RESUME_FREE}
    return {"train": train, "seed": seed, **(extra or {})}


def _pinned(settings: dict[str, Any], extendable: bool) -> dict[str, Any]:
    """``settings`` with the extendable train keys replaced by the lr horizon they imply (if ``extendable``)."""
    train = dict(settings.get("train", {}))
    if "max_steps" in train:
        train.setdefault("decay_steps", 0)  # checkpoints of older sidrecs have none: their horizon was max_steps
        if extendable:
            train["lr_horizon"] = decay_horizon(train["decay_steps"], train["max_steps"])
            for k in EXTENDABLE:
                del train[k]
    return {**settings, "train": train}


def load_checkpoint(out_dir: Path) -> dict[str, Any]:
    """The resumable state in ``out_dir``; a one-line error when there is none or it is a legacy pickle."""
    last = out_dir / LAST
    if not last.is_file():
        if (out_dir / LEGACY_LAST).is_file():
            raise SidrecError(f"{out_dir / LEGACY_LAST} is a pickled checkpoint of an older sidrec, which is never loaded "
                              "(unpickling can run code); train afresh with --overwrite")  # fmt: skip
        raise SidrecError(f"nothing to resume: {out_dir} has no checkpoint ({LAST}); run without --resume to start training")
    return load_state(last, "training checkpoint")


def check_resume(path: Path, saved: dict[str, Any], now: dict[str, Any], extendable: bool = True) -> None:
    """Refuse a resume whose settings differ from the checkpoint's, listing every difference.

    If ``extendable``, ``max_steps``, ``patience`` and ``decay_steps`` may change while the lr horizon
    stays the same (``EXTENDABLE``; the caller then checks the history with ``_check_extension``).
    """
    a, b = dotted(_pinned(saved, extendable)), dotted(_pinned(now, extendable))
    for d in (a, b):  # checkpoints of older sidrecs list the inputs' reports too (rundir.REPORTS)
        for k in [k for k in d if k.startswith("inputs.") and k.split(".", 2)[-1] in REPORTS]:
            del d[k]
    diff = [f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if diff:
        diff = [d if len(d) < 160 else d[:150] + " ..." for d in diff]  # checksums and long lists stay readable
        raise SidrecError(f"cannot resume {path}: the run's settings changed ({'; '.join(diff)}); "
                          "restore them, or train afresh with --overwrite")  # fmt: skip


def _check_extension(path: Path, state: TrainState, cfg: TrainConfig) -> None:
    """Refuse a changed ``max_steps`` / ``patience`` under which the steps already trained would not all have run."""
    if cfg.max_steps < state.step:
        raise SidrecError(f"cannot resume {path}: it is at step {state.step}, past train.max_steps={cfg.max_steps}")
    best, bad, most, stop = -math.inf, 0, 0, None
    for row in [r for r in state.rows if r["step"] < state.step]:  # replay early stopping over the validation history
        if row["val_ndcg@10"] > best:
            best, bad = row["val_ndcg@10"], 0
        else:
            bad += 1
        most = max(most, bad)
        if bad >= cfg.patience and stop is None:
            stop = row["step"]
    if stop is not None:
        raise SidrecError(f"cannot resume {path}: with train.patience={cfg.patience} it would have stopped at step "
                          f"{stop}, before its {state.step} steps; use patience >= {most + 1} or train afresh")  # fmt: skip


def _save_last(path: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, state: TrainState, world: int,
               settings: dict[str, Any]) -> None:
    rngs = D.gather_objects(_rng_state())
    if D.world_info()[0] == 0:
        ck = {
            "arch": model.arch,
            "config": model.config(),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "state": asdict(state),
            "rng": rngs,
            "world": world,
            "settings": settings,
        }
        save_state(path, ck)
    D.barrier()
