"""UniGRec's two-stage training recipe (Algorithm 1), served afterwards like any encdec run.

Stage 1 (tokenizer pre-training, eq. 21) is ``sidrec tokenize`` with
``tokenizer.method=soft-rqvae`` (annealed tau, codeword uniformity weight in
``tokenizer.params``); :func:`run_unigrec` reuses ``workdir/tokenizer`` when it
holds a fitted tokenizer of ``cfg.tokenizer.method`` and runs that stage otherwise.

Stage 2 (joint training, eq. 22) trains the recommender (``cfg.train.lr``,
warm-up and schedule, AdamW with ``cfg.train.weight_decay``) and the tokenizer (its
own AdamW, ``UniGRecConfig.tokenizer_lr``) on L_rec + λ_recon L_recon + λ_T L_CD^T +
λ_R L_CD^R with tau fixed at stage 1's final tau. At every epoch start the hard SIDs
(labels, de-dup digits, validation) are rebuilt from the live tokenizer with
``SIDTable.build(collision="digit")``; the de-dup vocabulary is fixed when the
recommender is built (twice stage 1's largest collision group, at least 4) and an
epoch whose table would exceed it keeps the previous table (counted in the summary).

The authors' recipe (their code, issue 13), point by point, as defaults:

1. distillation warm-up: λ_T and λ_R are 0 for the first ``distill_warmup_epochs`` (10);
2. L_CD^T: MLP adapters into codeword space (fixed at init, as the authors' optimiser
   leaves them: ``train_adapters``), logits -d (no tau_min sharpening; the
   paper's sign, where the authors' code uses +d), symmetric KL averaged over levels
   and the batch's distinct targets, λ_T 0.01 (:mod:`sidrec.models.unigrec`);
3. L_CD^R: in the teacher's width (256 with the d-256 SASRec teacher), distinct targets;
4. soft identifiers enter the encoder only; the decoder is teacher-forced with hard SIDs;
5. validation, ``evaluate`` and ``recommend`` use the soft history the model was trained
   on: the checkpoint is a :class:`~sidrec.models.soft_history.SoftHistoryEncoderDecoder`;
6. one code chain: hard SIDs are the argmax of the soft chain's probabilities;
7. gradient-norm clipping at 1.0 (``grad_clip``); tokenizer lr 2e-7; then a fine-tune
   (``finetune_steps``, on by default) with the tokenizer frozen, the same (soft) inputs,
   no distillation or L_recon, constant lr ``finetune_lr`` after a 5% warm-up, fresh
   AdamW moments. Deliberately different: it continues from the last joint step, where the
   authors reload the best joint checkpoint; budgets are steps, not early-stopped epochs.
8. (stage 1) lives in :mod:`sidrec.tokenizers.soft_rqvae`.

Ablation rows of UniGRec Table 3 (Beauty), as switch combinations:

- M0 (TIGER): stage 1 ``tokenizer.method=rqvae`` (hard RQ-VAE), ``soft_ids=false, joint=false``,
  ``lambda_cd_t=lambda_cd_r=0``
- M1 (+ soft identifier): stage 1 ``soft-rqvae`` with ``cu_weight=0``, ``soft_ids=true, joint=false``
- M2 (+ joint training): M1 with ``joint=true``
- M3 (+ L_CU): M2 with stage 1 ``tokenizer.params.cu_weight=1e-4``
- M4 (+ L_CD^T): M3 with ``lambda_cd_t > 0``
- M5 (+ L_CD^R): M3 with ``lambda_cd_r > 0``
- M6 (full): M3 with both ``lambda_cd_t, lambda_cd_r > 0`` (the defaults)

(With ``joint=false`` the tokenizer is frozen: no tokenizer optimizer, no L_recon.)

Outputs, so ``sidrec evaluate`` / ``sidrec recommend`` work unchanged:
``workdir/model/best.safetensors`` + ``best.json`` hold the *recommender only*
(arch ``encdec``, or ``encdec-soft`` with its per-item soft inputs when ``soft_ids``;
both loadable by ``load_trained_model``); the SID table it was
validated with is written to ``workdir/tokenizer/sids.csv`` + ``sid_table.json``
(overwriting stage 1's, whose copy stays in ``workdir/tokenizer/stage1/``); the
jointly trained tokenizer goes to ``workdir/model/tokenizer/``. ``last.safetensors`` is a
full resumable checkpoint (both optimizers, RNG, the epoch's SID table) in
:mod:`sidrec.checkpoint`'s code-free format.
Single process (no DDP).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sidrec.config import Config, UniGRecConfig, dump_config
from sidrec.data.prepared import PreparedData
from sidrec.embed.stage import load_embeddings
from sidrec.errors import SidrecError
from sidrec.io import read_json, write_json
from sidrec.rundir import commit_stage, record_stage, retire_results
from sidrec.models import build_model
from sidrec.models.unigrec import SoftTokenizer, UniGRec
from sidrec.tokenizers._torch import TorchTokenizer
from sidrec.tokenizers.base import CONFIG_FILE, Tokenizer
from sidrec.tokenizers.sid_table import SIDTable
from sidrec.training.data import TrainData
from sidrec.checkpoint import save_state
from sidrec.training.loop import (
    BEST, BEST_META, LAST, TrainState, _evaluate, _rng_state, _set_rng_state, check_resume, load_checkpoint, lr_scheduler,
    resume_settings,
)  # fmt: skip
from sidrec.training.sasrec import load_teacher
from sidrec.training.logs import TensorBoardLog, plot_curves, write_metrics_csv
from sidrec.threads import set_threads
from sidrec.training.stage import make_validator, resolve_device

BEST_SIDS = "best_sids"


@dataclass
class UniGRecState(TrainState):
    """TrainState plus the stage-2 phase ("joint" or "finetune") and SID bookkeeping."""

    phase: str = "joint"
    finetune_end: int = 0
    tables_kept: int = 0  # epochs whose rebuilt table overflowed the de-dup vocabulary
    collisions: list[float] = dataclasses.field(default_factory=list)  # per rebuild: 1 - unique/items
    changed: list[float] = dataclasses.field(default_factory=list)  # per rebuild: share of items whose SID changed


def stage1_tokenizer(cfg: Config, progress: bool) -> TorchTokenizer:
    """The stage-1 tokenizer in ``workdir/tokenizer`` (fitted by ``sidrec tokenize`` if absent)."""
    root = cfg.paths.tokenizer
    if not ((root / CONFIG_FILE).is_file() and read_json(root / CONFIG_FILE).get("method") == cfg.tokenizer.method):
        from sidrec.tokenizers.stage import run_tokenize

        run_tokenize(cfg, progress=progress)
    tok = Tokenizer.load(root)
    if not isinstance(tok, TorchTokenizer):  # stage 2 runs its module_ (encoder, codebooks, decoder)
        raise SidrecError(f"UniGRec needs an RQ-VAE-style tokenizer (e.g. soft-rqvae), got {tok.name!r}")
    stage1 = root / "stage1"
    if not (stage1 / "sids.csv").is_file():
        SIDTable.load(root).save(stage1)
    return tok


def build_table(tok: SoftTokenizer, items: torch.Tensor, item_ids: list[str], sizes: list[int], tau: float | None) -> SIDTable:
    """Hard SIDs of every item from the live tokenizer, de-duplicated with an extra digit.

    ``tau``: the soft chain's temperature (soft-rqvae: one chain with the soft inputs), or
    None for the nearest-codeword chain (``rqvae``, TIGER's own SIDs).
    """
    codes = tok.hard_codes(items, tau).cpu().numpy()
    return SIDTable.build(item_ids, codes, sizes, "digit")


def check_unigrec(u: UniGRecConfig) -> None:
    """One-line errors for out-of-range ``unigrec.*`` values."""
    for name in ("lambda_recon", "lambda_cd_t", "lambda_cd_r", "tau", "tokenizer_lr", "grad_clip"):
        if getattr(u, name) < 0:
            raise SidrecError(f"unigrec.{name} must be >= 0, got {getattr(u, name)}")
    for name in ("tau_prime", "cd_t_temperature", "finetune_lr"):
        if getattr(u, name) <= 0:
            raise SidrecError(f"unigrec.{name} must be > 0, got {getattr(u, name)}")
    for name in ("distill_warmup_epochs", "finetune_steps"):
        if getattr(u, name) < 0:
            raise SidrecError(f"unigrec.{name} must be >= 0, got {getattr(u, name)}")


def _with_vocab(table: SIDTable, vocab: list[int]) -> SIDTable:
    return dataclasses.replace(table, vocab_sizes=list(vocab))


def run_unigrec(cfg: Config, resume: bool = False, progress: bool = True, ucfg: UniGRecConfig | None = None,
                interrupt_at: int | None = None) -> dict[str, Any]:
    """UniGRec stages 1 + 2 on ``cfg.paths.data`` / ``cfg.paths.embeddings``; see the module docstring.

    Args:
        cfg: the run config (``model`` = the encoder-decoder, ``train`` = budget, lr, validation).
        resume: continue from ``workdir/model/last.safetensors`` (an error if there is none).
        progress: tqdm bar.
        ucfg: stage-2 settings; default ``cfg.unigrec`` if the config has that section, else defaults.
        interrupt_at: test hook; raise ``loop.Interrupted`` right after this step.

    Returns:
        The training summary (also ``train_summary.json``).
    """
    from sidrec.training.loop import Interrupted

    u = ucfg or cfg.unigrec
    t = cfg.train
    for name, v in (("batch_size", t.batch_size), ("max_steps", t.max_steps), ("eval_every", t.eval_every), ("patience", t.patience)):
        if v <= 0:
            raise SidrecError(f"train.{name} must be positive, got {v}")
    check_unigrec(u)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise SidrecError(f"UniGRec training is single-process; expected WORLD_SIZE=1, got {os.environ['WORLD_SIZE']}")
    device = resolve_device(t.device)
    threads = set_threads(t.num_threads)
    data = PreparedData(cfg.paths.data)
    tok = stage1_tokenizer(cfg, progress)
    # the item embeddings as stage 1's module takes them (whitened when the tokenizer whitens): the
    # joint tokenizer, its hard SIDs, L_Recon and the served soft history all live in that space
    raw = torch.from_numpy(load_embeddings(cfg.paths.embeddings, data.item_ids))
    items = tok.model_input(raw).to(device)
    distil = u.lambda_cd_t > 0 or u.lambda_cd_r > 0
    teacher = torch.from_numpy(load_teacher(u.teacher, data.n_items)) if distil else None
    out = cfg.paths.model
    if not resume:
        retire_results(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(dataclasses.replace(cfg, unigrec=u)), encoding="utf-8")

    torch.manual_seed(cfg.seed)
    soft = SoftTokenizer.from_module(tok.module_).to(device)
    sizes = list(tok.codebook_sizes)
    # Algorithm 1 line 12: tau <- tau_min; the authors force stage 1's saved (best-epoch) tau
    tau = u.tau or float(getattr(tok, "final_tau", 1e-3))
    chain_tau = tau if hasattr(tok, "final_tau") else None  # soft-rqvae: the soft chain; rqvae: its own
    table = build_table(soft, items, data.item_ids, sizes, chain_tau)
    vocab = sizes + [max(4, 2 * table.vocab_sizes[-1])]
    rec = build_model(dataclasses.replace(cfg.model, arch="encdec"), vocab, data.max_history)
    # L_recon is the authors' per-element mean (their mse_loss; λ_recon 0.5 is set against it) whatever
    # stage 1 used: a 384x larger squared norm would dominate the clipped gradient norm of the joint step
    unwhiten = getattr(tok, "white_w_inv_", None)  # L_recon on the raw embeddings (see UniGRec)
    model = UniGRec(rec, soft, items, teacher, tau, u.tau_prime, u.cd_t_temperature, "mean",
                    None if unwhiten is None else torch.from_numpy(unwhiten), u.train_adapters).to(device)
    train_data = TrainData(data.train_sequences(), np.arange(data.n_items)[:, None], data.max_history,
                           "sample", t.sliding_window, t.batch_size, cfg.seed, None, t.sub_windows)  # fmt: skip  (codes = item_idx)
    if len(train_data) == 0:
        raise SidrecError(f"no training samples: users need at least 4 interactions, got {data.n_users} users")
    rec_params = [p for n, p in model.named_parameters() if not n.startswith("tokenizer.") and p.requires_grad]
    decay = [p for p in rec_params if p.dim() >= 2]
    other = [p for p in rec_params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay}, {"params": other, "weight_decay": 0.0}], lr=t.lr)
    opt_tok = torch.optim.AdamW(soft.parameters(), lr=u.tokenizer_lr, weight_decay=0.0)
    joint_factor = lr_scheduler(opt, t).lr_lambdas[0]

    def factor(step: int) -> float:  # the joint schedule, then the fine-tune's (constant after a 5% warm-up)
        if state.phase != "finetune":
            return joint_factor(step)
        start = state.finetune_end - u.finetune_steps
        return u.finetune_lr / t.lr * min(1.0, (step - start + 1) / max(1, round(0.05 * u.finetune_steps)))

    state = UniGRecState()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    settings = resume_settings(t, cfg.seed, {"unigrec": dataclasses.asdict(u), "model": dataclasses.asdict(cfg.model)})
    if resume:
        ck = load_checkpoint(out)
        check_resume(out / LAST, ck["settings"], settings, extendable=False)  # max_steps also times the fine-tune phase
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        opt_tok.load_state_dict(ck["optimizer_tok"])
        sched.load_state_dict(ck["scheduler"])
        state = UniGRecState(**ck["state"])
        table = SIDTable(list(data.item_ids), ck["codes"], list(vocab), "digit", np.ones(data.n_items, dtype=bool))
        _set_rng_state(ck["rng"])
    else:
        state.collisions.append(_collision(table))
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
    codes = torch.from_numpy(table.codes).to(device)
    resumed_from = state.step  # 0 for a fresh run; kept in the summary so a record says it was resumed
    tb = TensorBoardLog(out / "tensorboard", purge_step=state.step)
    max_steps = state.finetune_end if state.phase == "finetune" else t.max_steps
    bar = tqdm(total=max_steps, initial=state.step, disable=not progress, dynamic_ncols=True)
    sums: dict[str, float] = {}
    n_sum, win_samples, win_seconds = 0, 0, 0.0
    batches = train_data.epoch_batches(state.epoch)
    model.train()
    while not state.stopped:
        joint = state.phase == "joint"
        train_tok = u.joint and joint
        for p in soft.parameters():
            p.requires_grad_(train_tok)
        if state.index >= len(batches):
            state.epoch, state.index = state.epoch + 1, 0
            batches = train_data.epoch_batches(state.epoch)
            if train_tok:  # Algorithm 1: hard IDs follow the live tokenizer
                new = build_table(soft, items, data.item_ids, sizes, chain_tau)
                if new.vocab_sizes[-1] <= vocab[-1]:
                    state.changed.append(_changed(table, new))
                    table, codes = new, torch.from_numpy(new.codes).to(device)
                    state.collisions.append(_collision(new))
                else:
                    state.tables_kept += 1
        t0 = time.perf_counter()
        b = train_data.make_batch(batches[state.index])
        hist, mask, target = b.history.codes[..., 0].to(device), b.history.mask.to(device), b.targets[:, 0].to(device)
        lambdas = _lambdas(u, state.phase, state.epoch + state.index / len(batches))
        terms = model.losses(hist, mask, target, codes, u.soft_ids, lambdas)
        opt.zero_grad(set_to_none=True)
        opt_tok.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if u.grad_clip > 0:  # the authors clip every trained parameter (the tokenizer too) at 1.0
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], u.grad_clip)
        opt.step()
        if train_tok:
            opt_tok.step()
        sched.step()
        dt = time.perf_counter() - t0
        state.advance(b.n_global, dt)
        win_samples, win_seconds = win_samples + b.n_global, win_seconds + dt
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        n_sum += 1
        bar.update(1)
        if state.step % 20 == 0:
            bar.set_postfix(loss=f"{sums['loss'] / n_sum:.3f}", phase=state.phase)
        if state.step % t.eval_every == 0 or state.step == max_steps:
            row = {"step": state.step, "epoch": round(state.epoch + state.index / len(batches), 3),
                   "train_loss": sums.get("rec", 0.0) / max(n_sum, 1),
                   **{f"train_{k}": v / max(n_sum, 1) for k, v in sums.items() if k != "rec"},
                   "samples_per_s": win_samples / max(win_seconds, 1e-9), "lr": sched.get_last_lr()[0],
                   "collision": state.collisions[-1], "sid_changed": state.changed[-1] if state.changed else 0.0,
                   "phase": state.phase}  # fmt: skip
            sums, n_sum, win_samples, win_seconds = {}, 0, 0, 0.0
            served = _with_vocab(table, vocab)
            served_model = model.serving_model(codes, u.soft_ids)  # point 5: validated as it is trained
            _evaluate(served_model, make_validator(cfg, data, served), state, row, t, out, 0)
            if state.best_step == state.step:
                served.save(out / BEST_SIDS)
            del served_model
            write_metrics_csv(out / "metrics.csv", state.rows)
            plot_curves(out / "curves.png", state.rows)
            tb.scalars(state.step, {f"train/{k}": v for k, v in row.items() if isinstance(v, float) and not k.startswith("val_")})
            tb.scalars(state.step, {f"valid/{k[4:]}": v for k, v in row.items() if k.startswith("val_")})
            if state.bad_evals >= t.patience or state.step >= max_steps:
                why = f"early stop: no validation NDCG@10 gain in {t.patience} evaluations" if state.bad_evals >= t.patience else f"reached {max_steps} steps"
                if joint and u.finetune_steps > 0:  # recommender-only fine-tuning, tokenizer frozen (point 7)
                    state.phase, state.bad_evals = "finetune", 0
                    state.finetune_end = max_steps = state.step + u.finetune_steps
                    opt.state.clear()  # the authors start the fine-tune with a new AdamW
                    for g in opt.param_groups:  # its lr from the next step on
                        g["lr"] = g["initial_lr"] * factor(sched.last_epoch)
                    new = build_table(soft, items, data.item_ids, sizes, chain_tau)
                    if new.vocab_sizes[-1] > vocab[-1]:
                        raise SidrecError(f"final SID table needs {new.vocab_sizes[-1]} de-dup codes, the model has {vocab[-1]}")
                    state.changed.append(_changed(table, new))
                    table = new
                    codes = torch.from_numpy(table.codes).to(device)
                    bar.total = max_steps
                else:
                    state.stopped = why
            _save_last(out / LAST, model, opt, opt_tok, sched, state, table.codes, settings)
        if interrupt_at is not None and state.step == interrupt_at:
            bar.close()
            tb.close()
            raise Interrupted(f"interrupted after step {state.step}")
    bar.close()
    tb.close()
    return _finish(cfg, tok, soft, state, out, len(batches), threads, model, resumed_from)


def _lambdas(u: UniGRecConfig, phase: str, epochs: float) -> tuple[float, float, float]:
    """(λ_recon, λ_T, λ_R) of a step ``epochs`` into training: distillation off during its warm-up
    (the authors' ``warm_epoch``, point 1), everything but L_rec off in the fine-tune."""
    if phase == "finetune":
        return 0.0, 0.0, 0.0
    distil = epochs >= u.distill_warmup_epochs
    return (u.lambda_recon if u.joint else 0.0, u.lambda_cd_t if distil else 0.0, u.lambda_cd_r if distil else 0.0)


def _collision(table: SIDTable) -> float:
    """Share of items whose L-level code is not unique (UniGRec §4.4.1's collision rate)."""
    return round(1.0 - len(np.unique(table.codes[:, :-1], axis=0)) / len(table.codes), 6)


def _changed(old: SIDTable, new: SIDTable) -> float:
    """Share of items whose full SID (de-dup digit included) differs between two rebuilds: the labels
    the recommender has to re-learn (joint training moves codes; a digit shifts with its group)."""
    return round(float((old.codes != new.codes).any(1).mean()), 6)


def _save_last(path: Path, model: UniGRec, opt: Any, opt_tok: Any, sched: Any, state: UniGRecState, codes: np.ndarray,
               settings: dict[str, Any]) -> None:
    ck = {"model": model.state_dict(), "optimizer": opt.state_dict(), "optimizer_tok": opt_tok.state_dict(),
          "scheduler": sched.state_dict(), "state": dataclasses.asdict(state), "rng": _rng_state(), "codes": codes,
          "settings": settings}  # fmt: skip
    save_state(path, ck)


def _finish(cfg: Config, tok: Tokenizer, soft: SoftTokenizer, state: UniGRecState, out: Path, n_batches: int,
            threads: int, model: UniGRec, resumed_from: int) -> dict[str, Any]:
    """Publish the best step's SID table to the tokenizer dir, save the live tokenizer, write the summary."""
    if (out / BEST_SIDS / "sids.csv").is_file():  # the tokenizer stage is updated whole, then the model recorded against it
        with commit_stage(cfg.paths.tokenizer, inputs=("embeddings",), keep=True) as tmp:
            SIDTable.load(out / BEST_SIDS).save(tmp)
    module = tok.module_
    cb = module.codebooks if hasattr(module, "codebooks") else module.quantizer.codebooks
    with torch.no_grad():
        module.encoder.load_state_dict(soft.encoder.state_dict())
        module.decoder.load_state_dict(soft.decoder.state_dict())
        cb.copy_(soft.codebooks.cpu())
    tok.save(out / "tokenizer")
    best = next((r for r in state.rows if r["step"] == state.best_step), {})
    summary = {
        "method": "unigrec",
        "stopped": state.stopped,
        "steps": state.step,
        "epochs": state.epoch + state.index / max(n_batches, 1),
        "best_step": state.best_step,
        "best_valid": {k[4:]: v for k, v in best.items() if k.startswith("val_")},
        "collision_per_epoch": state.collisions,
        "sid_changed_per_rebuild": state.changed,
        "tables_kept": state.tables_kept,
        "tau": model.tau,
        "served_arch": read_json(out / BEST_META)["arch"] if (out / BEST_META).is_file() else None,
        "train_samples": state.samples,
        "train_seconds": state.train_seconds,
        "samples_per_s": state.samples / max(state.train_seconds, 1e-9),
        "resumed_from_step": resumed_from,
        "threads": threads,
        "parameters": sum(p.numel() for p in model.rec.parameters()),
    }
    write_json(out / "train_summary.json", summary)
    if (out / BEST_META).is_file():
        record_stage(out, (BEST, BEST_META), ("data", "tokenizer"))
    return summary
