"""Typed, frozen configuration: the single source of truth for every stage.

YAML files under ``configs/`` mirror these dataclasses section by section, and
``key=value`` overrides address fields by dotted path (``train.lr=1e-3``,
``tokenizer.params.normalize_residuals=false``). An unknown key is an error that
lists the valid keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from sidrec.errors import SidrecError
from sidrec.io import read_yaml


@dataclass(frozen=True)
class DataConfig:
    """Where the interactions come from and how they are split (``sidrec prepare``)."""

    dataset: str = "sequences"  # a name in sidrec.data's registry
    path: str = ""  # source file/dir; for downloadable datasets, files already on disk
    category: str = "Beauty"  # amazon2014 category
    items_path: str = ""  # interactions dataset: the items table (CSV/Parquet)
    min_count: int = 5  # k-core threshold, iterated to a fixed point (0 = off)
    max_history: int = 20  # most recent items a model sees


@dataclass(frozen=True)
class EmbedConfig:
    """Item text -> vectors (``sidrec embed``)."""

    model: str = "all-MiniLM-L6-v2"  # sentence-transformers name or local folder
    fields: tuple[str, ...] = ("title", "categories", "brand", "description", "price")  # any text columns of the items table
    template: str = ""  # e.g. "{title}. Genres: {genres}" (str.format over `fields`); "" = "Title: …; Genres: …"
    batch_size: int = 64
    device: str = "auto"


@dataclass(frozen=True)
class TokenizerConfig:
    """Embeddings -> semantic IDs (``sidrec tokenize``)."""

    method: str = "rkmeans"  # a name in sidrec.tokenizers' registry
    n_levels: int = 3
    codebook_size: int = 256
    collision: str = "digit"  # "digit": TIGER's extra de-dup digit; "random": GRID's random pick
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # method-specific, checked by the method


@dataclass(frozen=True)
class ModelConfig:
    """The sequence model that generates the next item's SID."""

    arch: str = "encdec"  # "encdec" (TIGER/GRID) or "deconly" (GPT-style)
    n_enc_layers: int = 4
    n_dec_layers: int = 4
    n_heads: int = 6
    d_model: int = 128
    head_dim: int = 64  # T5-style: attention width n_heads*head_dim need not equal d_model
    d_ff: int = 1024
    dropout: float = 0.1
    user_tokens: int = 0  # TIGER's hashed user tokens; 0 = off (GRID Table 4's best)
    history_tokens: str = "item"  # encdec encoder input: "item" = one token per item (sum of its SID embeddings), "sid" = one per SID token


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and model selection (``sidrec train``)."""

    method: str = "sid"  # training recipe: "sid" (generate SIDs), "sasrec" (ID baseline), "unigrec" (end to end)
    lr: float = 5e-4
    weight_decay: float = 1e-6
    batch_size: int = 256
    max_steps: int = 100_000
    warmup_steps: int = 100
    lr_schedule: str = "constant"  # after warmup: "constant", or "cosine" decay to lr/10 at decay_steps
    decay_steps: int = 0  # cosine reaches its floor here and stays there until early stopping; 0 = max_steps
    eval_every: int = 500  # steps between validation passes
    patience: int = 10  # validation passes without NDCG@10 improvement before stopping
    sliding_window: bool = True
    sub_windows: bool = False  # also every shorter history per target (GRID's reference collate; ~h/2x samples)
    device: str = "auto"
    num_threads: int = 0  # torch/faiss threads of tokenize, train and evaluate; 0 = auto (the cores other work leaves free, per rank)
    val_users: int = 0  # validate on a fixed seeded subset of this many users; 0 = all


@dataclass(frozen=True)
class SASRecConfig:
    """SASRec (``train.method=sasrec``): the ID-based baseline and UniGRec's teacher.

    Defaults follow RecBole's SASRec (used for UniGRec Table 2's baseline row,
    §4.1.4): d 64, 2 blocks, 2 heads, dropout 0.5, lr 1e-3, no weight decay,
    early stopping after 10 validation passes without improvement.
    """

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256  # train sequences (windows) per step
    max_epochs: int = 200
    eval_every_epochs: int = 1
    patience: int = 10  # validation passes without NDCG@10 improvement before stopping


@dataclass(frozen=True)
class UniGRecConfig:
    """UniGRec stage-2 settings and ablation switches (``train.method=unigrec``).

    Defaults follow the authors' code (github.com/Jialei-03/UniGRec, ``run_train_unigrec.sh``
    and ``model/``; issue 13) where it is more specific than the paper (§4.1.4); the
    reading behind each is in :mod:`sidrec.models.unigrec` / :mod:`sidrec.training.unigrec`.
    Stage-1 settings (tau annealing, the L_CU weight, its optimiser) are the soft-rqvae
    tokenizer's ``tokenizer.params``; the recommender is ``model``, its optimiser ``train``.
    """

    soft_ids: bool = True  # soft identifiers as encoder inputs (eq. 15), also when validating/serving; false = hard lookup
    joint: bool = True  # train the tokenizer in stage 2 (L_rec + λ_recon L_recon reach it); false = frozen
    lambda_recon: float = 0.5  # authors' alpha, against a per-element-mean L_recon (their mse_loss)
    lambda_cd_t: float = 0.01  # tokenizer-side distillation (eq. 18; authors' gamma); 0 = off
    lambda_cd_r: float = 0.1  # recommender-side distillation (eq. 20; authors' delta); 0 = off
    distill_warmup_epochs: float = 10.0  # both distillation terms off for the first (fractional) epochs (authors' warm_epoch)
    cd_t_temperature: float = 1.0  # L_CD^T codeword logits -d / this (authors: no temperature; old sidrec: tau_min)
    train_adapters: bool = False  # train the distillation adapters (authors: fixed at init; see models.unigrec.UniGRec)
    tau: float = 0.0  # stage-2 assignment temperature; 0 = the stage-1 tokenizer's final tau (else 1e-3)
    tau_prime: float = 0.07  # InfoNCE temperature (eq. 19)
    tokenizer_lr: float = 2e-7  # paper/authors: {2e-7, 2e-8}
    grad_clip: float = 1.0  # gradient-norm clipping of every trained parameter; 0 = off (authors: 1.0)
    teacher: str = ""  # SASRec run dir (its model/ directory) or an (n_items, d) .npy; authors: SASRec d 256
    finetune_steps: int = 1000  # recommender-only steps after joint training (tokenizer frozen, same inputs); 0 = off
    finetune_lr: float = 4e-4  # constant lr of the fine-tune, after a warm-up over 5% of its steps (authors)


@dataclass(frozen=True)
class EvalConfig:
    """Decoding and metrics (``sidrec evaluate``)."""

    beam_size: int = 20
    constrained: bool = True
    ks: tuple[int, ...] = (5, 10, 20)  # @K > beam_size would be computed on a beam-long list; use beam 30 for @30
    batch_size: int = 256
    filter_seen: bool = False
    split: str = "test"


@dataclass(frozen=True)
class Config:
    """A whole run. Every stage reads its section and writes under ``workdir``."""

    workdir: str = "runs/default"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    unigrec: UniGRecConfig = field(default_factory=UniGRecConfig)

    @property
    def paths(self) -> RunPaths:
        return RunPaths(Path(self.workdir))


@dataclass(frozen=True)
class RunPaths:
    """Where each stage's artifacts live inside a run directory."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def eval(self) -> Path:
        return self.root / "eval"


# --------------------------------------------------------------------------- loading


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), base: Config | None = None
) -> Config:
    """Build a :class:`Config`: ``base`` (default: all defaults), then a YAML file, then overrides."""
    cfg = base if base is not None else Config()
    if path is not None:
        raw = read_yaml(path, "config file")
        if not isinstance(raw, dict):
            raise SidrecError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
        cfg = _merge(cfg, raw, prefix="", source=str(path))
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply ``section.key=value`` overrides; values are parsed as YAML scalars."""
    for item in overrides:
        if "=" not in item:
            raise SidrecError(f"override must look like key=value, got {item!r}")
        key, _, value = item.partition("=")
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            parsed = value
        nested: Any = parsed
        for part in reversed(key.strip().split(".")):
            nested = {part: nested}
        cfg = _merge(cfg, nested, prefix="", source=f"override {item!r}")
    from sidrec.config_ranges import check_config

    check_config(cfg)  # ranges last: an override may fix what the file set
    return cfg


def _merge(obj: Any, raw: dict[str, Any], prefix: str, source: str) -> Any:
    valid = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in valid:
            raise SidrecError(
                f"{source}: unknown key {prefix + str(key)!r}; valid keys: "
                + ", ".join(prefix + k for k in valid)
            )
        current = getattr(obj, key)
        hint = typing.get_type_hints(type(obj))[key]
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise SidrecError(f"{source}: {prefix + key!r} is a section; expected a mapping, got {value!r}")
            changes[key] = _merge(current, value, prefix + key + ".", source)
        elif isinstance(current, dict):
            if not isinstance(value, dict):
                raise SidrecError(f"{source}: {prefix + key!r} expects a mapping, got {value!r}")
            changes[key] = {**current, **value}
        else:
            changes[key] = _coerce(value, hint, prefix + key, source)
    return replace(obj, **changes)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        (elem,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, elem, key, source) for v in items)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes", "on"):
                return True
            if str(value).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return "" if value is None else str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise SidrecError(f"{source}: {key!r} expects {getattr(hint, '__name__', hint)}, got {value!r}")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view (tuples as lists) for YAML/JSON records."""
    out = dataclasses.asdict(cfg)
    return _listify(out)


def dotted(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``section.key`` -> value (the override syntax); tuples as lists."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(dotted(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": _listify(v)})
    return out


def _listify(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _listify(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_listify(v) for v in x]
    return x


def dump_config(cfg: Config) -> str:
    """YAML text of a config, loadable by :func:`load_config`."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
