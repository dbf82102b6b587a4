"""The items a served SID model can recommend: the trained SID table plus cold-start items.

A cold-start item arrives as tokenizer codes (its text -> the run's encoder -> the
*fitted* tokenizer's ``encode``; never a refit). Its SID then follows the run's
collision policy, applied incrementally:

- ``"digit"`` (TIGER): the de-dup digit is the number of items already holding the same
  codes, as :meth:`SIDTable.build` numbers a group in item order (a new item comes last).
  The model's last position only knows digits ``< vocab_sizes[-1]`` (the largest group
  at training); an item past that cannot be generated. It is still added (a history may
  contain it, encoded with the group's last digit) but marked *unreachable*.
- ``"random"`` (GRID): the codes stay as they are; a generated SID maps to one member of
  its group chosen uniformly at random. Adding the (n+1)-th member makes it the
  representative with probability 1/(n+1) (seeded), which keeps the pick uniform over
  the grown group.

Added items are persisted as ``RUN/serve/items.jsonl`` (rewritten atomically), one
object per item: ``item_id``, ``sid``, ``representative``, ``fields``. Reloading replays
the stored SIDs, so a restart serves exactly the same table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sidrec.errors import SidrecError
from sidrec.generation.trie import SIDTrie
from sidrec.io import atomic_open
from sidrec.tokenizers.sid_table import SIDTable

ADDED_FILE = "items.jsonl"


@dataclass(frozen=True)
class NewItem:
    """One cold-start item as the catalogue stores it."""

    item_id: str
    sid: tuple[int, ...]
    representative: bool
    fields: dict[str, Any]

    @property
    def reachable(self) -> bool:
        return self.representative


class Catalog:
    """Item ids, their SIDs (rows in item_idx order) and the trie beam search decodes against.

    Args:
        item_ids: external id of each trained item, in the model's item_idx order.
        sids: the SID table aligned with ``item_ids``.
        store: directory of the persisted cold-start items (None = keep them in memory).
        seed: seed of GRID's random representative rule for added items.
    """

    def __init__(self, item_ids: Sequence[str], sids: SIDTable, store: Path | None = None, seed: int = 0):
        if list(item_ids) != list(sids.item_ids):
            raise SidrecError("the SID table's rows are not in the model's item order")
        self.item_ids: list[str] = list(item_ids)
        self.n_trained = len(self.item_ids)
        self.sids = sids
        self.index = {i: n for n, i in enumerate(self.item_ids)}
        self.store = store
        self.seed = seed
        self.added: list[NewItem] = []
        self._groups = self._group_sizes()
        if store is not None and (store / ADDED_FILE).is_file():
            self._append([_parse(line, store / ADDED_FILE, n) for n, line in enumerate(open(store / ADDED_FILE, encoding="utf-8"), 1) if line.strip()])
        self.trie = SIDTrie.build(self.sids.codes, self.sids.vocab_sizes, self.sids.representative)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_levels(self) -> int:
        """Tokenizer levels (the SID without its de-dup digit)."""
        return self.sids.n_tokens - (1 if self.sids.collision == "digit" else 0)

    def _group_sizes(self) -> dict[tuple[int, ...], int]:
        keys, counts = np.unique(self.sids.codes[:, : self.n_levels], axis=0, return_counts=True)
        return {tuple(k): int(c) for k, c in zip(keys.tolist(), counts.tolist())}

    def assign(self, item_ids: Sequence[str], codes: np.ndarray, fields: Sequence[dict[str, Any]]) -> list[NewItem]:
        """SIDs for new items from their tokenizer codes (n, n_levels); nothing is stored yet.

        Raises:
            SidrecError: for an id already in the catalogue (or repeated), or codes of the wrong shape.
        """
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape != (len(item_ids), self.n_levels):
            raise SidrecError(f"expected codes of shape ({len(item_ids)}, {self.n_levels}), got {codes.shape}")
        seen: set[str] = set()
        for i in item_ids:
            if i in self.index or i in seen:
                raise SidrecError(f"item id {i!r} is already in the catalogue; an added item needs a new id")
            seen.add(i)
        rng = np.random.default_rng([self.seed, self.n_items])  # stable across restarts
        groups = dict(self._groups)
        out = []
        for item, c, f in zip(item_ids, codes.tolist(), fields):
            key = tuple(c)
            n = groups.get(key, 0)
            groups[key] = n + 1
            if self.sids.collision == "digit":
                last = self.sids.vocab_sizes[-1] - 1
                out.append(NewItem(item, (*key, min(n, last)), n <= last, dict(f)))
            else:
                out.append(NewItem(item, key, n == 0 or bool(rng.random() < 1.0 / (n + 1)), dict(f)))
        return out

    def add(self, items: list[NewItem]) -> None:
        """Append items (from :meth:`assign`), rebuild the trie, persist."""
        self._append(items)
        self.trie = SIDTrie.build(self.sids.codes, self.sids.vocab_sizes, self.sids.representative)
        if self.store is not None:
            self.store.mkdir(parents=True, exist_ok=True)
            with atomic_open(self.store / ADDED_FILE, "w", encoding="utf-8") as f:
                for it in self.added:
                    rec = {"item_id": it.item_id, "sid": list(it.sid), "representative": it.representative, "fields": it.fields}
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def _append(self, items: list[NewItem]) -> None:
        if not items:
            return
        codes = np.array([it.sid for it in items], dtype=np.int64)
        if codes.shape[1] != self.sids.n_tokens or (codes < 0).any() or (codes >= np.array(self.sids.vocab_sizes)).any():
            raise SidrecError(f"added item SIDs must have {self.sids.n_tokens} tokens within {self.sids.vocab_sizes}")
        rep = self.sids.representative.copy()
        if self.sids.collision == "random":
            # a new representative takes over its group: the old one stops being generated
            won = {it.sid for it in items if it.representative}
            if won:
                for n in np.flatnonzero(rep):
                    if tuple(self.sids.codes[n].tolist()) in won:
                        rep[n] = False
        new_rep = np.array([it.representative for it in items], dtype=bool)
        ids = [it.item_id for it in items]
        self.sids = SIDTable(self.item_ids + ids, np.concatenate([self.sids.codes, codes]), self.sids.vocab_sizes,
                             self.sids.collision, np.concatenate([rep, new_rep]))  # fmt: skip
        for it in items:
            self.index[it.item_id] = len(self.item_ids)
            self.item_ids.append(it.item_id)
            key = it.sid[: self.n_levels]
            self._groups[key] = self._groups.get(key, 0) + 1
        self.added.extend(items)

    def added_item(self, item_id: str) -> NewItem | None:
        """The stored record of an added item (None for a trained one)."""
        n = self.index.get(item_id)
        return None if n is None or n < self.n_trained else self.added[n - self.n_trained]


def _parse(line: str, path: Path, lineno: int) -> NewItem:
    try:
        rec = json.loads(line)
        return NewItem(str(rec["item_id"]), tuple(int(x) for x in rec["sid"]), bool(rec["representative"]), dict(rec.get("fields") or {}))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SidrecError(f"{path}:{lineno}: damaged added-item record ({type(e).__name__})") from None
