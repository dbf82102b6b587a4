"""The papers' preprocessing protocol: k-core, chronological order, leave-one-out.

``prepare`` turns a :class:`RawDataset` into a prepared directory:

- ``items.parquet``: ``item_idx`` (0..N-1), ``item_id`` and the text fields (the Amazon
  ones, then any other text column the loader kept: ``genres``, ``tags``, ...),
- ``sequences.parquet``: ``user_idx``, ``user_id``, ``items`` (item_idx list, chronological),
- ``manifest.json``: counts, split sizes, parameters, sha256 of inputs and outputs,
- ``stage.json``: the stage record (:mod:`sidrec.rundir`); the directory is committed whole.

Splits are derived from the sequences, never stored twice: for each user the
last item is the test target, the second-to-last the validation target, the
rest the train part (see :mod:`sidrec.data.prepared`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sidrec.config import DataConfig, config_to_dict
from sidrec.data.base import TEXT_FIELDS, RawDataset, natural_key
from sidrec.errors import SidrecError
from sidrec.io import sha256_file, write_json
from sidrec.rundir import commit_stage

#: A user needs one train item, a validation target and a test target.
MIN_SEQUENCE_LENGTH = 3


def k_core(sequences: dict[str, list[str]], k: int) -> dict[str, list[str]]:
    """Drop users and items with fewer than ``k`` interactions until none is left to drop.

    Removing an item can push a user under ``k`` and vice versa, so the filter is
    iterated to a fixed point. Repeated interactions count each time.
    """
    if k <= 1:
        return {u: list(s) for u, s in sequences.items() if s}
    seqs = {u: list(s) for u, s in sequences.items()}
    while True:
        item_counts = Counter(i for s in seqs.values() for i in s)
        rare = {i for i, c in item_counts.items() if c < k}
        if rare:
            seqs = {u: [i for i in s if i not in rare] for u, s in seqs.items()}
        short = [u for u, s in seqs.items() if len(s) < k]
        for u in short:
            del seqs[u]
        if not rare and not short:
            return seqs


def prepare(raw: RawDataset, cfg: DataConfig, out_dir: str | Path) -> dict[str, Any]:
    """Filter, index and write a dataset; returns the manifest.

    Raises:
        SidrecError: if nothing is left after filtering.
    """
    out_dir = Path(out_dir)
    seqs = k_core(raw.sequences, cfg.min_count)
    seqs = {u: s for u, s in seqs.items() if len(s) >= MIN_SEQUENCE_LENGTH}
    if not seqs:
        raise SidrecError(
            f"{raw.name}: no user is left after {cfg.min_count}-core filtering "
            f"(and the minimum of {MIN_SEQUENCE_LENGTH} interactions per user); lower data.min_count"
        )
    item_ids = sorted({i for s in seqs.values() for i in s}, key=natural_key)
    item_index = {i: n for n, i in enumerate(item_ids)}
    user_ids = sorted(seqs, key=natural_key)

    items_cols: dict[str, list[Any]] = {"item_idx": list(range(len(item_ids))), "item_id": item_ids}
    # the Amazon fields always (possibly all null), then every other field a loader kept, in first-seen order
    extra = dict.fromkeys(f for i in item_ids for f in raw.items[i] if f not in TEXT_FIELDS and f not in items_cols)
    for f in (*TEXT_FIELDS, *extra):
        # JSON-encode structured values (category paths) so the column has one type.
        items_cols[f] = [_as_text(raw.items[i].get(f)) for i in item_ids]
    seq_table = pa.table(
        {
            "user_idx": pa.array(range(len(user_ids)), pa.int32()),
            "user_id": pa.array(user_ids, pa.string()),
            "items": pa.array([[item_index[i] for i in seqs[u]] for u in user_ids], pa.list_(pa.int32())),
        }
    )
    outputs = {"items.parquet": pa.table(items_cols), "sequences.parquet": seq_table}
    with commit_stage(out_dir) as tmp:  # the three files appear together or not at all
        for name, table in outputs.items():
            pq.write_table(table, tmp / name)
        manifest = _manifest(raw, cfg, user_ids, item_ids, seqs, {name: sha256_file(tmp / name) for name in outputs})
        write_json(tmp / "manifest.json", manifest)
    return manifest


def _manifest(raw: RawDataset, cfg: DataConfig, user_ids: list[str], item_ids: list[str], seqs: dict[str, list[str]],
              outputs: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    lengths = [len(seqs[u]) for u in user_ids]
    n_train_items = [n - 2 for n in lengths]
    manifest = {
        "dataset": raw.name,
        "params": config_to_dict(cfg),
        "counts": {
            "users": len(user_ids),
            "items": len(item_ids),
            "interactions": sum(lengths),
        },
        "splits": {
            "train_users": len(user_ids),
            "valid_users": len(user_ids),
            "test_users": len(user_ids),
            "train_interactions": sum(n_train_items),
            # every prefix of a user's train part predicts its next item
            "sliding_window_samples": sum(n - 1 for n in n_train_items),
        },
        "inputs": {str(p): sha256_file(p) for p in raw.sources},
        "outputs": outputs,
    }
    return manifest


def _as_text(value: Any) -> str | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
