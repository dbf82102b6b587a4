"""The P5 / S3-Rec layout: ``sequences.txt`` + ``items.jsonl``.

``sequences.txt`` has one line per user, ``user_id item_id item_id ...`` in
chronological order. ``items.jsonl`` has one JSON object per item with
``item_id`` and any of title / categories / brand / description / price (each
possibly null). Where ``title`` is null and a ``title_proxy`` exists (the staged
Sports data), the proxy is used as the title.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sidrec.config import DataConfig
from sidrec.data.base import TEXT_FIELDS, RawDataset, register_dataset, require_file
from sidrec.errors import SidrecError


_NOT_TEXT = ("item_id", "asin", "title_proxy")


def read_items_jsonl(path: Path) -> dict[str, dict[str, Any]]:
    """Read an items.jsonl file into item id -> text fields."""
    items: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise SidrecError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(rec, dict) or rec.get("item_id") is None:
                raise SidrecError(f"{path}:{lineno}: expected an object with an 'item_id'")
            item_id = str(rec["item_id"])
            if item_id in items:
                raise SidrecError(f"{path}:{lineno}: duplicate item id {item_id!r}")
            fields = {k: rec.get(k) for k in TEXT_FIELDS}
            # the catalogue's own text fields too (not the ids, not the staging-only title proxy)
            fields.update({k: v for k, v in rec.items() if k not in fields and k not in _NOT_TEXT})
            if not fields["title"] and rec.get("title_proxy"):
                fields["title"] = rec["title_proxy"]
            items[item_id] = fields
    return items


def read_sequences_txt(path: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Read ``user item item ...`` lines; returns sequences and each user's file:line."""
    sequences: dict[str, list[str]] = {}
    locations: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            user = parts[0]
            if len(parts) < 2:
                raise SidrecError(f"{path}:{lineno}: user {user!r} has no items (expected 'user item item ...')")
            if user in sequences:
                raise SidrecError(f"{path}:{lineno}: duplicate user id {user!r}")
            sequences[user] = parts[1:]
            locations[user] = f"{path}:{lineno}"
    return sequences, locations


@register_dataset("sequences")
def load_sequences(cfg: DataConfig) -> RawDataset:
    """Load a directory holding ``sequences.txt`` and ``items.jsonl``."""
    if not cfg.path:
        raise SidrecError("dataset 'sequences' needs data.path: a directory with sequences.txt and items.jsonl")
    root = Path(cfg.path)
    if not root.is_dir():
        raise SidrecError(f"data directory not found: {root}")
    seq_path = require_file(root / "sequences.txt", "sequences file")
    items_path = require_file(root / "items.jsonl", "items file")
    items = read_items_jsonl(items_path)
    sequences, locations = read_sequences_txt(seq_path)
    return RawDataset(
        name=root.name,
        items=items,
        sequences=sequences,
        sources=[seq_path, items_path],
        locations=locations,
        items_source=str(items_path),
    )
