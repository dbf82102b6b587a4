"""Train, evaluate and export SASRec (:mod:`sidrec.models.sasrec`).

Training is next-item cross-entropy over the whole catalogue at every position
of each user's train sequence: one causal pass covers all of its prefixes, so
the sliding-window samples of the generative models come for free. Sequences
longer than ``max_history + 1`` are cut, from the end, into windows whose
targets do not overlap, so every train target is predicted exactly once per
epoch. Model selection is early stopping on validation NDCG@10 (full-catalogue
ranking); the test split is never looked at during training.

Files in ``out_dir``:
    config.json           model + training config, n_items, seed (written first)
    model.safetensors     weights of the best validation epoch
    checkpoint.safetensors  last epoch: weights, AdamW state, torch RNG, counters
                          (the counters as JSON in the safetensors metadata)
    train_result.json     returned by :func:`train_sasrec`
    metrics_<split>.json  returned by :func:`evaluate_sasrec`
    item_embeddings.npy   written by :func:`export_item_embeddings`
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from sidrec.checkpoint import check_finite
from sidrec.config import SASRecConfig
from sidrec.data.prepared import PreparedData
from sidrec.errors import SidrecError
from sidrec.io import atomic_path, load_npy, load_safetensors, read_json, save_npy, write_json
from sidrec.metrics.ranking import RankingAccumulator
from sidrec.models.sasrec import SASRec, pad_histories
from sidrec.rundir import record_stage
from sidrec.training.loop import check_resume

IGNORE = -100  # cross-entropy target of padding positions
KS = (5, 10, 20, 30)



CHECKPOINT = "checkpoint.safetensors"


def build_model(n_items: int, max_history: int, cfg: SASRecConfig) -> SASRec:
    """A fresh SASRec for ``n_items`` items and histories of up to ``max_history``."""
    return SASRec(n_items, max_history, cfg.d_model, cfg.n_layers, cfg.n_heads, 0, cfg.dropout)


def train_windows(sequences: list[np.ndarray], max_history: int) -> list[np.ndarray]:
    """Cut train sequences into windows of at most ``max_history + 1`` items with disjoint targets.

    A window ``w`` trains inputs ``w[:-1]`` on targets ``w[1:]``; windows are cut
    from the end, so the most recent targets see the longest histories.
    """
    out = []
    for s in sequences:
        end = len(s)
        while end >= 2:
            start = max(0, end - max_history - 1)
            out.append(np.asarray(s[start:end], dtype=np.int64))
            end = start + 1
    return out


def _batch(windows: list[np.ndarray], pad_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows -> right-padded inputs (B, L) and targets (B, L) with IGNORE at padding."""
    L = max(len(w) for w in windows) - 1
    x = torch.full((len(windows), L), pad_idx, dtype=torch.long)
    y = torch.full((len(windows), L), IGNORE, dtype=torch.long)
    for i, w in enumerate(windows):
        t = torch.from_numpy(w)
        x[i, : len(w) - 1], y[i, : len(w) - 1] = t[:-1], t[1:]
    return x, y


def _run_epoch(model: SASRec, opt: torch.optim.Optimizer, windows: list[np.ndarray], cfg: SASRecConfig, seed: int, epoch: int) -> float:
    """One shuffled pass over the windows; returns the mean cross-entropy per target."""
    model.train()
    order = np.random.default_rng([seed, epoch]).permutation(len(windows))
    total, count = 0.0, 0
    for i in range(0, len(order), cfg.batch_size):
        x, y = _batch([windows[j] for j in order[i : i + cfg.batch_size]], model.pad_idx)  # (B, L) each
        hidden = model(x)  # (B, L, D)
        real = y != IGNORE  # (B, L)
        logits = model.logits(hidden[real])  # (N, n_items): only real positions pay for the softmax
        loss = F.cross_entropy(logits, y[real])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * int(real.sum())
        count += int(real.sum())
    return total / max(count, 1)


# --------------------------------------------------------------------------- metrics


def full_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among all items; ties count against the target.

    Args:
        scores: (U, n_items) float.
        targets: (U,) long item_idx.

    Returns:
        (U,) long ranks in [1, n_items].
    """
    t = scores.gather(1, targets[:, None])  # (U, 1)
    return (scores > t).sum(dim=1) + (scores == t).sum(dim=1)  # the target itself counts once in ==


def _metrics_from_ranks(ranks: torch.Tensor, ks: tuple[int, ...]) -> dict[str, Any]:
    """Recall@K, NDCG@K (gain 1/log2(rank+1)) and MRR averaged over users (:mod:`sidrec.metrics.ranking`)."""
    acc = RankingAccumulator(ks)
    acc.add_ranks(ranks)
    return acc.result()


@torch.no_grad()
def rank_split(
    model: SASRec, data: PreparedData, split: str, batch_size: int = 512, filter_seen: bool = False
) -> torch.Tensor:
    """Full-catalogue rank of every user's held-out ``split`` target given its history.

    Returns:
        (U,) long ranks in user_idx order.
    """
    model.eval()
    ex = data.eval_examples(split)
    targets = torch.from_numpy(ex.targets)
    ranks = []
    for i in range(0, len(targets), batch_size):
        hist = pad_histories(ex.histories[i : i + batch_size], model.pad_idx, model.max_history)  # (B, L)
        scores = model.scores(hist)  # (B, n_items)
        if filter_seen:
            seen = torch.zeros(len(hist), model.n_items + 1, dtype=torch.bool).scatter_(1, hist, True)
            scores = scores.masked_fill(seen[:, : model.n_items], float("-inf"))
        ranks.append(full_ranks(scores, targets[i : i + batch_size]))
    return torch.cat(ranks)


# --------------------------------------------------------------------------- checkpoints


def _save_checkpoint(path: Path, model: SASRec, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Weights, AdamW moments, torch RNG and the JSON ``state`` in one atomically written file."""
    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    for i, s in opt.state_dict()["state"].items():
        tensors |= {f"optim.{i}.{k}": torch.as_tensor(v).clone().contiguous() for k, v in s.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"state": json.dumps(state)})


def _load_checkpoint(path: Path, model: SASRec, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore what :func:`_save_checkpoint` wrote; returns the JSON state."""
    tensors = load_safetensors(path, "SASRec checkpoint")
    with safe_open(str(path), framework="pt") as f:
        state = json.loads(f.metadata()["state"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optim: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, i, name = k.split(".", 2)
            optim.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": optim, "param_groups": opt.state_dict()["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return state


def _save_weights(path: Path, model: SASRec) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(tmp))


def load_sasrec(out_dir: str | Path) -> SASRec:
    """The best-validation SASRec saved by :func:`train_sasrec`, in eval mode."""
    out_dir = Path(out_dir)
    meta = read_json(out_dir / "config.json", "SASRec config (run train_sasrec first)")
    weights = out_dir / "model.safetensors"
    if not weights.is_file():
        raise SidrecError(f"SASRec weights not found: {weights} (training has not finished a validation pass)")
    model = build_model(meta["n_items"], meta["max_history"], SASRecConfig(**meta["train"]))
    model.load_state_dict(load_safetensors(weights, "SASRec weights"))
    check_finite(model, weights)
    return model.eval()


# --------------------------------------------------------------------------- public API


def train_sasrec(
    data: PreparedData,
    out_dir: str | Path,
    cfg: SASRecConfig = SASRecConfig(),
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    inputs: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train SASRec with early stopping on validation NDCG@10, keeping the best weights.

    Args:
        data: the prepared dataset (train part = each sequence minus its last two items).
        out_dir: where config, weights and checkpoints go.
        cfg: model and optimisation settings.
        seed: seeds initialisation, dropout and the per-epoch shuffles.
        resume: continue from ``out_dir/checkpoint.safetensors`` if present (same cfg and seed).
        progress: show a progress bar.
        inputs: sibling stages of ``out_dir`` recorded in its ``stage.json`` with the best weights.

    Returns:
        ``best_epoch``, ``epochs`` run, ``stopped_early``, the best ``valid`` metrics,
        the per-pass ``history`` and ``wall_seconds`` (summed over resumed runs).
    """
    if cfg.batch_size < 1 or cfg.max_epochs < 1 or cfg.eval_every_epochs < 1 or cfg.patience < 1:
        raise SidrecError(f"expected positive batch_size, max_epochs, eval_every_epochs and patience, got {cfg}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"arch": "sasrec", "n_items": data.n_items, "max_history": data.max_history, "seed": seed, "train": dataclasses.asdict(cfg)}
    ckpt = out_dir / CHECKPOINT

    torch.manual_seed(seed)
    model = build_model(data.n_items, data.max_history, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    windows = train_windows(data.train_sequences(), data.max_history)
    if not windows:
        raise SidrecError("expected at least one train sequence with two or more items, got none")

    state: dict[str, Any] = {"epoch": 0, "best_ndcg": -1.0, "best_epoch": 0, "bad_evals": 0, "history": [], "wall_seconds": 0.0, "done": False}
    if resume and not ckpt.is_file():
        raise SidrecError(f"nothing to resume: {out_dir} has no checkpoint ({CHECKPOINT}); run without --resume to start training")
    if resume:
        check_resume(out_dir, read_json(out_dir / "config.json", "SASRec config"), meta)
        state = _load_checkpoint(ckpt, model, opt)
    else:
        write_json(out_dir / "config.json", meta)
    if state["done"]:
        return read_json(out_dir / "train_result.json", "SASRec train result")

    t0 = time.perf_counter() - state["wall_seconds"]
    bar = tqdm(total=cfg.max_epochs, initial=state["epoch"], desc="sasrec", unit="epoch", disable=not progress)
    while state["epoch"] < cfg.max_epochs and not state["done"]:
        epoch = state["epoch"] + 1
        loss = _run_epoch(model, opt, windows, cfg, seed, epoch)
        state["epoch"] = epoch
        if epoch % cfg.eval_every_epochs == 0 or epoch == cfg.max_epochs:
            valid = _metrics_from_ranks(rank_split(model, data, "valid"), KS)
            state["history"].append({"epoch": epoch, "loss": loss, **valid})
            if valid["ndcg@10"] > state["best_ndcg"]:
                state |= {"best_ndcg": valid["ndcg@10"], "best_epoch": epoch, "bad_evals": 0, "best_valid": valid}
                _save_weights(out_dir / "model.safetensors", model)
                record_stage(out_dir, ("model.safetensors", "config.json"), inputs)
            else:
                state["bad_evals"] += 1
                state["done"] = state["bad_evals"] >= cfg.patience
            bar.set_postfix(loss=f"{loss:.3f}", ndcg10=f"{valid['ndcg@10']:.4f}", best=state["best_epoch"])
        state["done"] = state["done"] or epoch == cfg.max_epochs
        state["wall_seconds"] = time.perf_counter() - t0
        _save_checkpoint(ckpt, model, opt, state)
        bar.update(1)
    bar.close()

    result = {
        "best_epoch": state["best_epoch"],
        "epochs": state["epoch"],
        "stopped_early": state["epoch"] < cfg.max_epochs,
        "valid": state["best_valid"],
        "history": state["history"],
        "wall_seconds": round(state["wall_seconds"], 2),
    }
    write_json(out_dir / "train_result.json", result)
    return result


def evaluate_sasrec(
    out_dir: str | Path, data: PreparedData, split: str = "test", ks: tuple[int, ...] = KS, filter_seen: bool = False
) -> dict[str, Any]:
    """Full-catalogue Recall@K, NDCG@K and MRR of the best checkpoint on ``split``.

    One held-out target per user; NDCG gain is 1/log2(rank+1); ties rank against
    the target. ``filter_seen`` removes the history items from the ranking.
    Also written to ``out_dir/metrics_<split>.json``.
    """
    model = load_sasrec(out_dir)
    if model.n_items != data.n_items:
        raise SidrecError(f"expected a dataset with the model's {model.n_items} items, got {data.n_items}")
    metrics = _metrics_from_ranks(rank_split(model, data, split, filter_seen=filter_seen), tuple(ks))
    write_json(Path(out_dir) / f"metrics_{split}.json", metrics)
    return metrics


def export_item_embeddings(out_dir: str | Path) -> np.ndarray:
    """Write the best model's item embeddings to ``out_dir/item_embeddings.npy`` and return them.

    Returns:
        (n_items, D) float32, row ``i`` = item_idx ``i`` (the UniGRec teacher vectors).
    """
    emb = load_sasrec(out_dir).item_embeddings().numpy().astype(np.float32)
    save_npy(Path(out_dir) / "item_embeddings.npy", emb)
    return emb


def load_teacher(path: str, n_items: int) -> np.ndarray:  # UniGRec's collaborative teacher (eqs. 18-20)
    """Teacher item embeddings (n_items, d_t): a SASRec run dir (exported if needed) or a .npy file."""
    p = Path(path)
    if not path or not p.exists():
        raise SidrecError(f"collaborative distillation needs a teacher: expected a SASRec dir or .npy, got {path!r}")
    if p.is_dir():
        npy = p / "item_embeddings.npy"
        if npy.is_file():
            emb = load_npy(npy, "teacher embeddings")
        else:
            emb = export_item_embeddings(p)
    else:
        emb = load_npy(p, "teacher embeddings")
    if emb.ndim != 2 or emb.shape[0] != n_items:
        raise SidrecError(f"teacher {path}: expected shape ({n_items}, d), got {emb.shape}")
    return emb.astype(np.float32)
