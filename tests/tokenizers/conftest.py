"""Small random data and a tiny prepared workdir for tokenizer tests."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from sidrec.config import DataConfig
from sidrec.data import RawDataset, prepare
from sidrec.io import save_npy, write_json
from sidrec.tokenizers import Tokenizer, get_tokenizer
from sidrec.rundir import record_stage

N_ITEMS, DIM, K, LEVELS = 300, 16, 8, 2

#: Small settings for iterative methods, passed only to classes that take them.
FAST = {"epochs": 3, "batch_size": 64, "dims": (32, 8), "device": "cpu", "niter": 5}


def make_tokenizer(method: str, seed: int = 0, **overrides) -> Tokenizer:
    """``method`` with 2 levels x 8 codes and fast settings (1 level for single-level methods)."""
    cls = get_tokenizer(method)
    params = set(inspect.signature(cls.__init__).parameters)
    kwargs = {k: v for k, v in FAST.items() if k in params}
    base = {"n_levels": 1 if cls.single_level else LEVELS, "codebook_size": K, "seed": seed}
    return cls(**{**base, **kwargs, **overrides})


def clustered(n: int = N_ITEMS, dim: int = DIM, k: int = K, seed: int = 0, spread: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points around ``k`` random unit centres; returns (points, true cluster)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    label = np.arange(n) % k
    x = centres[label] + spread * rng.normal(size=(n, dim))
    return x.astype(np.float32), label


@pytest.fixture
def data() -> np.ndarray:
    return clustered()[0]


def make_workdir(root: Path, n_items: int = 40, dim: int = 12, seed: int = 0) -> Path:
    """A prepared dataset of ``n_items`` items plus random embeddings in the embed stage's format."""
    rng = np.random.default_rng(seed)
    items = {str(i): {"title": f"item {i}"} for i in range(1, n_items + 1)}
    ids = list(items)
    sequences = {f"u{u}": [ids[(u * 7 + j * 3) % n_items] for j in range(6)] for u in range(60)}
    raw = RawDataset(name="tiny", items=items, sequences=sequences)
    manifest = prepare(raw, DataConfig(min_count=0), root / "data")
    n = manifest["counts"]["items"]
    from sidrec.data import PreparedData

    item_ids = PreparedData(root / "data").item_ids
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    save_npy(root / "embeddings" / "embeddings.npy", emb)
    write_json(root / "embeddings" / "meta.json", {"n_items": n, "dim": dim, "item_ids": item_ids})
    record_stage(root / "embeddings", inputs=("data",))  # as `sidrec embed` records it
    return root
