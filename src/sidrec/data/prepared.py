"""A prepared dataset on disk, and the leave-one-out splits derived from it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from sidrec.errors import SidrecError
from sidrec.io import read_json
from sidrec.rundir import stage_files

SPLITS = ("valid", "test")


@dataclass
class EvalExamples:
    """One held-out target per user.

    Attributes:
        users: (U,) user_idx.
        histories: U arrays of item_idx, chronological, truncated to the most recent items.
        targets: (U,) item_idx of the held-out item.
    """

    users: np.ndarray
    histories: list[np.ndarray]
    targets: np.ndarray


class PreparedData:
    """Items and chronological sequences written by ``sidrec prepare``.

    Attributes:
        item_ids: external item id of each item_idx.
        user_ids: external user id of each user_idx.
        sequences: per user_idx, the full chronological item_idx array.
        manifest: the manifest written by prepare.
    """

    def __init__(self, root: str | Path):
        root = Path(root)
        self.root = root
        if not (root / "manifest.json").is_file():
            raise SidrecError(f"prepared data manifest not found: {root / 'manifest.json'} (run `sidrec prepare` first)")
        files = stage_files(root)  # every file whole and from one preparation (sha256 vs the stage record)
        for name in ("manifest.json", "items.parquet", "sequences.parquet"):
            if name not in files:
                raise SidrecError(f"prepared data is incomplete: its stage record lacks {name} (re-run `sidrec prepare`)")
        self.manifest: dict[str, Any] = read_json(root / "manifest.json", "prepared data manifest (run `sidrec prepare` first)")
        try:
            items = pq.read_table(root / "items.parquet")
            seqs = pq.read_table(root / "sequences.parquet")
        except Exception as e:  # pyarrow's own error types
            raise SidrecError(f"{root}: unreadable prepared data ({str(e).splitlines()[0]}); re-run `sidrec prepare`") from None
        self.item_ids: list[str] = items.column("item_id").to_pylist()
        self._items = items
        self.user_ids: list[str] = seqs.column("user_id").to_pylist()
        flat = seqs.column("items").combine_chunks()
        offsets = flat.offsets.to_numpy()
        values = flat.values.to_numpy().astype(np.int64)
        self.sequences: list[np.ndarray] = [values[offsets[i] : offsets[i + 1]] for i in range(len(self.user_ids))]
        self.max_history: int = int(self.manifest["params"]["max_history"])

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def text_columns(self) -> list[str]:
        """The items table's text columns: the Amazon fields, then the catalogue's own."""
        return [c for c in self._items.column_names if c not in ("item_idx", "item_id")]

    def item_texts(self) -> list[dict[str, Any]]:
        """Text fields per item_idx (structured values decoded from JSON)."""
        names = self.text_columns
        cols = {f: self._items.column(f).to_pylist() for f in names}
        out = []
        for n in range(self.n_items):
            rec = {}
            for f in names:
                v = cols[f][n]
                if isinstance(v, str) and v[:1] in "[{":
                    try:
                        v = json.loads(v)
                    except json.JSONDecodeError:
                        pass
                rec[f] = v
            out.append(rec)
        return out

    def train_sequences(self) -> list[np.ndarray]:
        """Each user's train part: the sequence without its last two items."""
        return [s[:-2] for s in self.sequences]

    def eval_examples(self, split: str) -> EvalExamples:
        """Histories and targets for ``"valid"`` (second-to-last) or ``"test"`` (last)."""
        if split not in SPLITS:
            raise SidrecError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        cut = 2 if split == "valid" else 1
        hist = [s[:-cut][-self.max_history :] for s in self.sequences]
        targets = np.array([s[-cut] for s in self.sequences], dtype=np.int64)
        return EvalExamples(users=np.arange(self.n_users, dtype=np.int64), histories=hist, targets=targets)

    def item_index(self) -> dict[str, int]:
        """External item id -> item_idx."""
        return {i: n for n, i in enumerate(self.item_ids)}

    def history_items(self, history: list[str]) -> np.ndarray:
        """item_idx of a history of external item ids (oldest first), truncated to ``max_history``.

        Raises:
            SidrecError: for an empty history or ids that are not prepared items (named).
        """
        if not history:
            raise SidrecError("recommend needs a non-empty history of item ids (--history ID [ID ...])")
        index = self.item_index()
        unknown = [h for h in history if h not in index]
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise SidrecError(f"unknown item ids {shown}: not among the {self.n_items} prepared items")
        return np.array([index[h] for h in history], dtype=np.int64)[-self.max_history :]
