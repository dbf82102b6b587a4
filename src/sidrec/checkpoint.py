"""Resumable training state as safetensors + JSON: loading a checkpoint cannot run code.

``torch.save`` pickles, and unpickling a crafted ``last.pt`` runs whatever it names.
Here a checkpoint is one safetensors file: every tensor / NumPy array of the state
(weights, optimizer moments, RNG states) is a named tensor, and the rest of the
structure (dicts, lists, tuples, numbers, strings) is JSON in the file's metadata,
with ``{"__tensor__": name}`` where a tensor was. Loading parses JSON and raw
tensor bytes only. One file, written atomically, so a checkpoint is whole or absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sidrec.errors import SidrecError
from sidrec.io import atomic_path

FORMAT = "sidrec-checkpoint-1"
_NUMERIC = "biufc"  # NumPy dtype kinds a checkpoint may hold (never object arrays)


def save_state(path: str | Path, state: Any) -> None:
    """Write ``state`` (nested dicts/lists/tuples of tensors, arrays and JSON scalars) atomically."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors)
    meta = {"format": FORMAT, "state": json.dumps(tree, allow_nan=True)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_state(path: str | Path, what: str = "checkpoint") -> Any:
    """Read what :func:`save_state` wrote; a missing, truncated or foreign file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise SidrecError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise SidrecError(f"{path}: not a sidrec checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        tree = json.loads(meta["state"])
    except SidrecError:
        raise
    except Exception as e:  # safetensors raises its own error types for a damaged header or short file
        raise SidrecError(f"{path}: damaged {what} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}); "
                          "delete it to start afresh") from None  # fmt: skip
    return _decode(tree, tensors, path)


def _encode(x: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(x, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = x.detach().cpu().contiguous().clone()  # clone: safetensors refuses shared storage
        return {"__tensor__": name}
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in _NUMERIC:
            raise TypeError(f"cannot checkpoint a {x.dtype} array")
        name = f"t{len(tensors)}"
        tensors[name] = torch.frombuffer(bytearray(np.ascontiguousarray(x).tobytes()), dtype=torch.uint8)
        return {"__ndarray__": name, "dtype": x.dtype.str, "shape": list(x.shape)}
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in x]}
    if isinstance(x, list):
        return [_encode(v, tensors) for v in x]
    if isinstance(x, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in x):
            return {k: _encode(v, tensors) for k, v in x.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in x.items()]}
    if x is None or isinstance(x, bool | int | float | str):
        return x
    raise TypeError(f"cannot checkpoint a {type(x).__name__}")


def _decode(x: Any, tensors: dict[str, torch.Tensor], path: Path) -> Any:
    if isinstance(x, list):
        return [_decode(v, tensors, path) for v in x]
    if not isinstance(x, dict):
        return x
    try:
        if "__tensor__" in x:
            return tensors[x["__tensor__"]]
        if "__ndarray__" in x:
            dtype = np.dtype(x["dtype"])
            if dtype.kind not in _NUMERIC:
                raise ValueError(f"dtype {dtype} is not numeric")
            return np.frombuffer(tensors[x["__ndarray__"]].numpy().tobytes(), dtype=dtype).reshape(x["shape"]).copy()
        if "__tuple__" in x:
            return tuple(_decode(v, tensors, path) for v in x["__tuple__"])
        if "__items__" in x:
            return {_hashable(_decode(k, tensors, path)): _decode(v, tensors, path) for k, v in x["__items__"]}
    except (KeyError, TypeError, ValueError) as e:
        raise SidrecError(f"{path}: damaged checkpoint structure ({type(e).__name__}: {e})") from None
    return {k: _decode(v, tensors, path) for k, v in x.items()}


def _hashable(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k


def check_finite(model: torch.nn.Module, path: str | Path) -> None:
    """Refuse weights with NaN/inf values: they decode to empty lists and all-zero metrics, silently."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise SidrecError(f"{path}: weight {name!r} holds NaN/inf values (training diverged?); retrain, e.g. with a lower lr")
