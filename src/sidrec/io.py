"""Atomic artifact writing and checksums.

Every artifact is written to a temporary file in the destination directory and
then renamed over the target (``os.replace`` is atomic on POSIX and Windows), so
an interrupted run never leaves a half-written file that a later run trusts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:  # make the bytes durable before the rename
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` only on success."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read JSON, turning a missing or malformed file into a one-line :class:`SidrecError`."""
    from sidrec.errors import SidrecError

    path = Path(path)
    if not path.is_file():
        raise SidrecError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SidrecError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise SidrecError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_yaml(path: str | os.PathLike, what: str = "file") -> Any:
    """Read YAML (an empty file is ``{}``), turning a missing or malformed file into a one-line :class:`SidrecError`."""
    import yaml

    from sidrec.errors import SidrecError

    path = Path(path)
    if not path.is_file():
        raise SidrecError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise SidrecError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        raise SidrecError(f"{path}: malformed YAML ({str(e).splitlines()[0]})") from None


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save a NumPy array atomically."""
    with atomic_open(path, "wb") as f:
        np.save(f, array)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(*parts: str) -> str:
    """Hex sha256 of the given strings joined by NUL."""
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def sidrec_home() -> Path:
    """Cache root: ``$SIDREC_HOME`` or ``~/.cache/sidrec``."""
    return Path(os.environ.get("SIDREC_HOME", Path.home() / ".cache" / "sidrec"))


def load_npy(path: str | os.PathLike, what: str = "array") -> np.ndarray:
    """``np.load`` without pickles; a missing, truncated or object-dtype file is a one-line error."""
    from sidrec.errors import SidrecError

    path = Path(path)
    if not path.is_file():
        raise SidrecError(f"{what} not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:  # object arrays, short files, bad headers
        raise SidrecError(f"{path}: unreadable {what} ({str(e).splitlines()[0]})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise SidrecError(f"{path}: {what} must be a numeric .npy array, got {getattr(arr, 'dtype', type(arr).__name__)}")
    return arr


def load_safetensors(path: str | os.PathLike, what: str = "weights", framework: str = "pt") -> dict[str, Any]:
    """All tensors of a safetensors file; a missing or damaged (e.g. truncated) file is a one-line error."""
    from safetensors import safe_open

    from sidrec.errors import SidrecError

    path = Path(path)
    if not path.is_file():
        raise SidrecError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework=framework) as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors' own error types: bad header, short file
        raise SidrecError(f"{path}: damaged {what} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'})") from None
