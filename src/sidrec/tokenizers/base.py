"""The tokenizer contract, the registry, and the input checks every method shares.

A tokenizer maps item embeddings ``(N, d)`` to semantic IDs ``(N, n_levels)``.
It follows scikit-learn's estimator contract:

- ``__init__`` only stores hyper-parameters (validated in :meth:`Tokenizer.fit`);
- ``fit(X) -> self`` learns state, kept in attributes ending in ``_``;
- ``encode(X) -> int64 (N, n_levels)``, ``decode(codes) -> float32 (N, d)``;
- using ``encode``/``decode``/``save`` before ``fit`` raises :class:`SidrecError`.

``save(dir)`` writes ``tokenizer.safetensors`` (every learned array / module
weight) and ``tokenizer.json`` (method, hyper-parameters, learned scalars);
``Tokenizer.load(dir)`` restores a tokenizer whose codes are bit-identical.

Methods register themselves with ``@register("name")``; the stage builds one
from :class:`sidrec.config.TokenizerConfig` with :func:`build_tokenizer`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from sidrec.config import TokenizerConfig
from sidrec.errors import SidrecError
from sidrec.io import atomic_path, read_json, write_json

STATE_FILE = "tokenizer.safetensors"
CONFIG_FILE = "tokenizer.json"
FORMAT_VERSION = 1
#: Parameters every tokenizer takes; ``build_tokenizer`` fills them from the config's own fields.
COMMON_PARAMS = ("n_levels", "codebook_size", "seed")

_REGISTRY: dict[str, type[Tokenizer]] = {}
T = TypeVar("T", bound="type[Tokenizer]")


# ----------------------------------------------------------------------------- checks


def check_embeddings(x: Any, what: str = "embeddings", dim: int | None = None) -> np.ndarray:
    """Validate an embedding matrix and return it as C-contiguous float32.

    Args:
        x: array-like (N, d) (a torch tensor is accepted too).
        what: name used in error messages.
        dim: if given, the required number of columns (the dimension seen at fit).

    Raises:
        SidrecError: not 2-D, empty, non-numeric, wrong dimension, or NaN/inf values.
    """
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2:
        raise SidrecError(f"{what} must be a 2-D array (n_items, dim), got shape {x.shape}.")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise SidrecError(f"{what} must be non-empty, got shape {x.shape}.")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise SidrecError(f"{what} must be numeric, got dtype {x.dtype}.")
    if dim is not None and x.shape[1] != dim:
        raise SidrecError(f"{what} must have dimension {dim} (as at fit), got {x.shape[1]}.")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise SidrecError(f"{what} must be finite, got NaN/inf in row {int(np.flatnonzero(~finite)[0])}.")
    return np.ascontiguousarray(x, dtype=np.float32)


def check_int(owner: str, name: str, value: Any, low: int) -> int:
    """``value`` as an int >= ``low``, else a one-line :class:`SidrecError`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise SidrecError(f"`{name}` of {owner} must be an int >= {low}, got {value!r}.")
    return int(value)


def check_float(owner: str, name: str, value: Any, low: float, high: float = float("inf"), low_open: bool = False) -> float:
    """``value`` as a float in [low, high] (``(low, high]`` if ``low_open``)."""
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and v <= high and np.isfinite(v)
    if not ok:
        lo = "(" if low_open else "["
        raise SidrecError(f"`{name}` of {owner} must be a float in {lo}{low}, {high}], got {value!r}.")
    return float(value)


def check_bool(owner: str, name: str, value: Any) -> bool:
    """``value`` if it is a bool, else a one-line :class:`SidrecError`."""
    if not isinstance(value, bool | np.bool_):
        raise SidrecError(f"`{name}` of {owner} must be true or false, got {value!r}.")
    return bool(value)


def check_dims(owner: str, name: str, value: Any) -> tuple[int, ...]:
    """A non-empty sequence of positive ints (MLP widths)."""
    if isinstance(value, int | str) or not hasattr(value, "__iter__"):
        raise SidrecError(f"`{name}` of {owner} must be a list of positive ints, got {value!r}.")
    dims = tuple(value)
    if not dims or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in dims):
        raise SidrecError(f"`{name}` of {owner} must be a list of positive ints, got {value!r}.")
    return tuple(int(v) for v in dims)


# ----------------------------------------------------------------------------- base class


class Tokenizer:
    """Base class: embeddings (N, d) -> codes (N, n_levels) in [0, codebook_sizes[l]).

    Subclasses implement ``_fit``, ``_encode`` and ``_decode`` on validated
    float32 arrays, and may override ``_check_params`` and ``min_items``.
    Learned state lives in attributes ending in ``_`` (ndarray, list of ndarray,
    ``torch.nn.Module`` or JSON scalars); :meth:`save` stores all of them.
    """

    name: ClassVar[str] = ""
    #: True for methods with one codebook only (``n_levels`` must be 1).
    single_level: ClassVar[bool] = False

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0):
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.seed = seed

    # -- parameters (scikit-learn style)

    @classmethod
    def param_names(cls) -> list[str]:
        """Constructor parameter names, in signature order."""
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to the constructor (tuples as lists, for JSON)."""
        return {p: list(v) if isinstance(v, tuple) else v for p in self.param_names() for v in [getattr(self, p)]}

    def _check_params(self) -> None:
        owner = type(self).__name__
        check_int(owner, "n_levels", self.n_levels, 1)
        check_int(owner, "codebook_size", self.codebook_size, 2)
        check_int(owner, "seed", self.seed, 0)

    @property
    def codebook_sizes(self) -> list[int]:
        """Vocabulary size of each level."""
        return [int(self.codebook_size)] * int(self.n_levels)

    def min_items(self) -> int:
        """Fewest items ``fit`` accepts (one per code of the largest codebook)."""
        return max(self.codebook_sizes)

    # -- the contract

    def fit(self, embeddings: np.ndarray, progress: bool = False) -> Tokenizer:
        """Learn codebooks from ``embeddings`` (N, d); returns ``self``.

        Args:
            embeddings: (N, d) item vectors, finite.
            progress: show a progress bar (iterative methods).
        """
        self._check_params()
        x = check_embeddings(embeddings)
        if x.shape[0] < self.min_items():
            raise SidrecError(
                f"{self.name} needs at least {self.min_items()} items to fit {self.codebook_size} codes per level, got {x.shape[0]}."
            )
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)  # refit from scratch
        self._fit(x, progress)
        self.dim_ = int(x.shape[1])
        return self

    def encode(self, embeddings: np.ndarray) -> np.ndarray:
        """Semantic IDs of ``embeddings`` (N, d) -> int64 (N, n_levels)."""
        self._check_fitted("encode")
        x = check_embeddings(embeddings, dim=self.dim_)
        codes = np.ascontiguousarray(self._encode(x), dtype=np.int64)
        assert codes.shape == (x.shape[0], len(self.codebook_sizes)), codes.shape
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Vectors (N, d) float32 that the codes (N, n_levels) stand for."""
        self._check_fitted("decode")
        codes = np.asarray(codes)
        sizes = np.asarray(self.codebook_sizes)
        if codes.ndim != 2 or codes.shape[1] != len(sizes) or not np.issubdtype(codes.dtype, np.integer):
            raise SidrecError(f"codes must be an int array of shape (n, {len(sizes)}), got {codes.dtype} {codes.shape}.")
        if codes.size and ((codes < 0).any() or (codes >= sizes).any()):
            raise SidrecError(f"codes must lie in [0, codebook_sizes) = [0, {sizes.tolist()}), got values outside.")
        out = np.ascontiguousarray(self._decode(codes.astype(np.int64)), dtype=np.float32)
        assert out.shape == (codes.shape[0], self.dim_), out.shape
        return out

    def latent(self, embeddings: np.ndarray) -> np.ndarray:
        """The vectors (N, d') this tokenizer quantises: its own quantisation space.

        The input itself unless the tokenizer maps it first (RQ-VAE's encoder latent,
        R³-VAE's reference-projected residual e0 of eq. 2). SID metrics are reported in
        this space as well as on the raw input: R³-VAE §4.7.1 measures PD after the
        reference-vector projection (-1.917) and before it (-0.284).
        """
        self._check_fitted("latent")
        x = check_embeddings(embeddings, dim=self.dim_)
        return np.ascontiguousarray(self._latent(x), dtype=np.float32)

    def fit_encode(self, embeddings: np.ndarray, progress: bool = False) -> np.ndarray:
        """``fit(embeddings).encode(embeddings)``."""
        return self.fit(embeddings, progress).encode(embeddings)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "dim_")

    def _check_fitted(self, what: str) -> None:
        if not self.is_fitted:
            raise SidrecError(f"{type(self).__name__} is not fitted: call fit(embeddings) before {what}().")

    # -- subclass hooks

    def _fit(self, x: np.ndarray, progress: bool) -> None:
        raise NotImplementedError

    def _encode(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _latent(self, x: np.ndarray) -> np.ndarray:
        return x

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Rebuild learned state from saved arrays (scalars are already set).

        The default handles ndarray attributes and lists of them; subclasses
        holding a torch module build it here and load its weights.
        """
        lists: dict[str, dict[int, np.ndarray]] = {}
        for key, arr in arrays.items():
            if "." in key:
                attr, idx = key.split(".", 1)
                if idx.isdigit():
                    lists.setdefault(attr, {})[int(idx)] = arr
                    continue
            if key.endswith("_"):
                setattr(self, key, arr)
        for attr, parts in lists.items():
            setattr(self, attr, [parts[i] for i in range(len(parts))])

    # -- persistence

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {}
        scalars: dict[str, Any] = {}
        for key, value in vars(self).items():
            if not key.endswith("_") or key.startswith("_"):
                continue
            if isinstance(value, np.ndarray):
                arrays[key] = value
            elif isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
                arrays.update({f"{key}.{i}": v for i, v in enumerate(value)})
            elif hasattr(value, "state_dict"):  # torch.nn.Module
                arrays.update({f"{key}.{n}": t.detach().cpu().numpy() for n, t in value.state_dict().items()})
            elif isinstance(value, int | float | str | bool | list | type(None)):
                scalars[key] = value
            else:
                raise TypeError(f"cannot save learned attribute {key} of type {type(value).__name__}")
        return arrays, scalars

    def save(self, root: str | Path) -> None:
        """Write ``tokenizer.safetensors`` + ``tokenizer.json`` into ``root`` (atomically)."""
        from safetensors.numpy import save_file

        self._check_fitted("save")
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        arrays, scalars = self._state()
        with atomic_path(root / STATE_FILE) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        write_json(
            root / CONFIG_FILE,
            {"format": FORMAT_VERSION, "method": self.name, "params": self.get_params(), "state": scalars},
        )

    @classmethod
    def load(cls, root: str | Path) -> Tokenizer:
        """Load a tokenizer written by :meth:`save` (any registered method)."""
        from safetensors.numpy import load_file

        root = Path(root)
        meta = read_json(root / CONFIG_FILE, "tokenizer config (run `sidrec tokenize` first)")
        if meta.get("format") != FORMAT_VERSION:
            raise SidrecError(f"{root / CONFIG_FILE}: expected format {FORMAT_VERSION}, got {meta.get('format')!r}.")
        klass = get_tokenizer(meta["method"])
        if cls is not Tokenizer and not issubclass(klass, cls):
            raise SidrecError(f"{root}: expected a {cls.name} tokenizer, got {meta['method']!r}.")
        if not (root / STATE_FILE).is_file():
            raise SidrecError(f"tokenizer weights not found: {root / STATE_FILE}")
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()}
        tok = klass(**params)
        for key, value in meta["state"].items():
            setattr(tok, key, value)
        tok._restore(load_file(str(root / STATE_FILE)))
        return tok

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


# ----------------------------------------------------------------------------- registry


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make a tokenizer available as ``tokenizer.method=name``."""

    def deco(cls: T) -> T:
        if name in _REGISTRY:
            raise RuntimeError(f"tokenizer {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_tokenizers() -> list[str]:
    """Names of every registered tokenizer."""
    return sorted(_REGISTRY)


def get_tokenizer(name: str) -> type[Tokenizer]:
    """The tokenizer class registered as ``name``."""
    if name not in _REGISTRY:
        raise SidrecError(f"unknown tokenizer {name!r}; available: {', '.join(available_tokenizers())}")
    return _REGISTRY[name]


def build_tokenizer(cfg: TokenizerConfig) -> Tokenizer:
    """Instantiate ``cfg.method`` with the config's levels, size, seed and ``params``.

    Raises:
        SidrecError: unknown method, or a ``params`` key the method does not take.
    """
    cls = get_tokenizer(cfg.method)
    valid = [p for p in cls.param_names() if p not in COMMON_PARAMS]
    for key in cfg.params:
        if key not in valid:
            which = ", ".join(valid) if valid else "(none)"
            hint = f" (set tokenizer.{key} instead)" if key in COMMON_PARAMS else ""
            raise SidrecError(f"unknown key 'tokenizer.params.{key}' for {cfg.method}{hint}; valid keys: {which}")
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()}
    params = {k: _coerce_param(defaults[k], v) for k, v in cfg.params.items()}
    return cls(n_levels=cfg.n_levels, codebook_size=cfg.codebook_size, seed=cfg.seed, **params)


def _coerce_param(default: Any, value: Any) -> Any:
    """Config values as the constructor expects them: YAML lists -> tuples, and a
    float parameter accepts an int or a numeric string (YAML reads ``1e-4`` as a string).
    Anything else is passed through and checked by the method's ``fit``."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(default, float) and not isinstance(value, bool):
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
    return value
