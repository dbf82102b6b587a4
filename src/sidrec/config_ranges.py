"""Valid ranges of every numeric hyper-parameter, checked when a config is loaded.

A value outside its range is a one-line :class:`SidrecError` naming the key, the
range and the value, raised before any stage touches the run directory (a typo
must never cost a previous run its results).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from sidrec.errors import SidrecError

Check = tuple[Callable[[Any], bool], str]


def _int_min(lo: int) -> Check:
    return (lambda v: v >= lo), f">= {lo}"


def _pos_float() -> Check:
    return (lambda v: math.isfinite(v) and v > 0), "a finite number > 0"


def _nonneg_float() -> Check:
    return (lambda v: math.isfinite(v) and v >= 0), "a finite number >= 0"


def _prob() -> Check:
    return (lambda v: math.isfinite(v) and 0 <= v < 1), "in [0, 1)"


#: section -> key -> (predicate, range shown in the error). Keys not listed are free
#: (strings, booleans and method-specific ``params`` are checked by their stage).
RANGES: dict[str, dict[str, Check]] = {
    "": {"seed": _int_min(0)},
    "data": {"min_count": _int_min(0), "max_history": _int_min(1)},
    "embed": {"batch_size": _int_min(1)},
    "tokenizer": {"n_levels": _int_min(1), "codebook_size": _int_min(1), "seed": _int_min(0)},
    "model": {
        "n_enc_layers": _int_min(1), "n_dec_layers": _int_min(1), "n_heads": _int_min(1), "d_model": _int_min(1),
        "head_dim": _int_min(1), "d_ff": _int_min(1), "dropout": _prob(), "user_tokens": _int_min(0),
    },  # fmt: skip
    "train": {
        "lr": _pos_float(), "weight_decay": _nonneg_float(), "batch_size": _int_min(1), "max_steps": _int_min(1),
        "warmup_steps": _int_min(0), "decay_steps": _int_min(0), "eval_every": _int_min(1), "patience": _int_min(1),
        "num_threads": _int_min(0), "val_users": _int_min(0),
    },  # fmt: skip
    "sasrec": {
        "d_model": _int_min(1), "n_layers": _int_min(1), "n_heads": _int_min(1), "dropout": _prob(), "lr": _pos_float(),
        "weight_decay": _nonneg_float(), "batch_size": _int_min(1), "max_epochs": _int_min(1),
        "eval_every_epochs": _int_min(1), "patience": _int_min(1),
    },  # fmt: skip
    "unigrec": {
        "lambda_recon": _nonneg_float(), "lambda_cd_t": _nonneg_float(), "lambda_cd_r": _nonneg_float(),
        "tau": _nonneg_float(), "tau_prime": _pos_float(), "tokenizer_lr": _nonneg_float(), "finetune_steps": _int_min(0),
    },  # fmt: skip
    "eval": {"beam_size": _int_min(1), "ks": ((lambda v: len(v) > 0 and all(k >= 1 for k in v)), "a non-empty list of ints >= 1"),
             "batch_size": _int_min(1)},  # fmt: skip  (eval.split: checked by the splits, with their names)
}


def check_section(section: Any, name: str) -> None:
    """Check every listed field of one config section (``name`` = its key, "" for the top level).

    Raises:
        SidrecError: ``model.dropout must be in [0, 1), got 2.0``.
    """
    rules = RANGES.get(name, {})
    prefix = f"{name}." if name else ""
    for f in fields(section):
        if f.name in rules:
            ok, shown = rules[f.name]
            value = getattr(section, f.name)
            if not ok(value):
                raise SidrecError(f"{prefix}{f.name} must be {shown}, got {value!r}")
    if name == "sasrec" and section.d_model % section.n_heads:
        raise SidrecError(f"sasrec.d_model must be divisible by sasrec.n_heads, got d_model={section.d_model}, n_heads={section.n_heads}")


def check_config(cfg: Any) -> None:
    """Check the top-level keys and every section of a :class:`sidrec.config.Config`."""
    check_section(cfg, "")
    for f in fields(cfg):
        if f.name in RANGES and f.name:
            check_section(getattr(cfg, f.name), f.name)
