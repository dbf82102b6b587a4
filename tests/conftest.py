"""Shared fixtures: the real datasets (by path, never copied) and small fixture datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("SIDREC_DATA", REPO.parent / "shared" / "data"))


def real_dataset(name: str) -> Path:
    """Path of a dataset under ``$SIDREC_DATA`` (default ../shared/data); skip if absent."""
    path = DATA_ROOT / name
    if not (path / "sequences.txt").is_file():
        pytest.skip(f"real dataset {name!r} not found under {DATA_ROOT} (set SIDREC_DATA to run this test)")
    return path


def write_sequences_dataset(root: Path, sequences: dict[str, list[str]], items: dict[str, dict] | None = None) -> Path:
    """Write a P5/S3-Rec layout (sequences.txt + items.jsonl) fixture."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "sequences.txt", "w") as f:
        for user, seq in sequences.items():
            f.write(" ".join([user, *seq]) + "\n")
    if items is None:
        ids = sorted({i for s in sequences.values() for i in s}, key=lambda x: int(x) if x.isdigit() else x)
        items = {i: {"title": f"item {i}", "categories": [["Cat", f"Sub{int(i) % 3 if i.isdigit() else 0}"]], "brand": None} for i in ids}
    with open(root / "items.jsonl", "w") as f:
        for item_id, rec in items.items():
            f.write(json.dumps({"item_id": int(item_id) if item_id.isdigit() else item_id, **rec}) + "\n")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's cache (embeddings, downloads) out of the user's ~/.cache."""
    monkeypatch.setenv("SIDREC_HOME", str(tmp_path_factory.mktemp("sidrec_home")))
