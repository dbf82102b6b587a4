"""The Python API: one object that serves a trained run.

    from sidrec import Recommender

    rec = Recommender.load("runs/demo")                      # loads the run once
    rec.recommend([["i3", "i17"], ["i5"]], k=10)              # [[Recommendation(item_id, score), ...], ...]
    rec.add_items([{"item_id": "new-1", "title": "..."}])    # cold start: recommendable at once

``sidrec recommend``, ``sidrec evaluate --save-predictions`` and ``sidrec serve`` all go
through this object, so they cannot disagree. The method that trained the run
(``model/recipe.json``) picks the backend: ``sid`` and ``unigrec`` decode SIDs by beam
search (:mod:`sidrec.serve.backends`), ``sasrec`` ranks its item ids.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidrec.config import Config, load_config
from sidrec.errors import SidrecError


@dataclass(frozen=True)
class Recommendation:
    """One recommended item: its external id and its score (summed SID log-probability for
    SID models, a logit for SASRec; higher is better)."""

    item_id: str
    score: float


@dataclass(frozen=True)
class AddedItems:
    """What :meth:`Recommender.add_items` did.

    Attributes:
        item_ids: the added items, in request order.
        sids: their SIDs (de-dup digit included).
        unreachable: added items the model cannot generate (their SID is held by another
            item of a full collision group; see :mod:`sidrec.generation.catalog`).
    """

    item_ids: list[str]
    sids: list[list[int]]
    unreachable: list[str]

    @property
    def added(self) -> int:
        return len(self.item_ids)


def run_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> Config:
    """The config a run was made with (``model/config.yaml``, else ``run_config.yaml``), rooted at ``run_dir``."""
    root = Path(run_dir)
    if not root.is_dir():
        raise SidrecError(f"run directory not found: {root}")
    for name in ("model/config.yaml", "run_config.yaml"):
        if (root / name).is_file():
            return load_config(str(root / name), [*overrides, f"workdir={root}"])
    if (root / "model" / "recipe.json").is_file():  # `sidrec train --method sasrec` keeps its config in model/config.json
        return load_config(None, [*overrides, f"workdir={root}"])
    raise SidrecError(f"{root} has no model/config.yaml or run_config.yaml: not a trained sidrec run (run `sidrec train -w {root}`)")


class Recommender:
    """A trained run, loaded once, that recommends item ids for histories of item ids.

    Thread-safe: decoding and adding items take one lock, so a service can call it from
    a worker thread while another adds items.

    Args:
        backend: the method's backend (see :func:`sidrec.serve.backends.load_backend`).
        cfg: the run's config (``eval.beam_size``, ``eval.constrained`` are the decoding settings).
    """

    def __init__(self, backend: Any, cfg: Config):
        self._backend = backend
        self.cfg = cfg
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, run_dir: str | Path, beam_size: int | None = None, device: str = "cpu", overrides: Sequence[str] = ()) -> Recommender:
        """Load a trained run directory (any method: sid, unigrec, sasrec).

        Args:
            run_dir: the run's workdir (``sidrec train -w RUN``).
            beam_size: beams per history (default: the run's ``eval.beam_size``); a request for
                more than ``beam_size`` items decodes with ``k`` beams.
            device: torch device of the model.
            overrides: extra ``key=value`` config overrides (e.g. ``eval.constrained=false``).
        """
        extra = [*overrides, *([f"eval.beam_size={beam_size}"] if beam_size is not None else [])]
        return cls.from_config(run_config(run_dir, extra), device)

    @classmethod
    def from_config(cls, cfg: Config, device: str = "cpu") -> Recommender:
        """Load the run ``cfg.workdir`` with the settings of ``cfg`` (what the CLI does)."""
        from sidrec.serve.backends import load_backend

        if cfg.eval.beam_size < 1:
            raise SidrecError(f"eval.beam_size must be >= 1, got {cfg.eval.beam_size}")
        return cls(load_backend(cfg, device), cfg)

    # ------------------------------------------------------------------ queries

    @property
    def method(self) -> str:
        """The training method of the run: "sid", "unigrec" or "sasrec"."""
        return self._backend.method

    @property
    def n_items(self) -> int:
        """Items that can appear in a history (trained + added)."""
        return len(self._backend.item_ids)

    @property
    def item_ids(self) -> list[str]:
        """External id of each item_idx (trained items first, then added ones); do not modify."""
        return self._backend.item_ids

    @property
    def text_fields(self) -> tuple[str, ...]:
        """The item text fields the run was embedded with (what :meth:`add_items` takes)."""
        return tuple(self._backend.text_fields)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._backend.index

    def item(self, item_id: str) -> dict[str, Any]:
        """An item's record: ``item_id``, ``sid`` (None for SASRec), ``added`` (cold start) and its text fields.

        Raises:
            SidrecError: for an unknown id.
        """
        if item_id not in self._backend.index:
            raise SidrecError(f"unknown item id {item_id!r}")
        return self._backend.item_record(item_id)

    def item_indices(self, history: Sequence[str]) -> np.ndarray:
        """item_idx of a history of item ids (oldest first), the most recent ``max_history`` kept.

        Raises:
            SidrecError: for an empty history or unknown ids (named).
        """
        if len(history) == 0:
            raise SidrecError("a history needs at least one item id")
        index = self._backend.index
        unknown = [h for h in history if h not in index]
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise SidrecError(f"unknown item ids {shown}: not among the {len(index)} items of this run")
        return np.array([index[h] for h in history], dtype=np.int64)[-self._backend.max_history :]

    def recommend(
        self, histories: Sequence[Sequence[str]], k: int = 10, exclude_seen: bool = False, user_ids: Sequence[str] | None = None
    ) -> list[list[Recommendation]]:
        """Top-``k`` items for each history of item ids (oldest first).

        Args:
            histories: B histories; each non-empty, every id known to the run.
            k: items per history (1 <= k <= number of items).
            exclude_seen: drop each history's own items from its list.
            user_ids: B external user ids, for models with hashed user tokens; None = anonymous.

        Returns:
            Per history, up to ``k`` :class:`Recommendation` best first (fewer when constrained
            decoding finds fewer valid SIDs; free-decoded SIDs that match no item are left out).

        Raises:
            SidrecError: naming the bad history, id or ``k``.
        """
        if not histories:
            return []
        if isinstance(k, int) and not isinstance(k, bool) and k > self.n_items:
            raise SidrecError(f"k must be at most the number of items ({self.n_items}), got {k}")
        idx = []
        for n, h in enumerate(histories):
            if isinstance(h, str):
                raise SidrecError(f"history {n} must be a list of item ids, got the string {h!r}")
            try:
                idx.append(self.item_indices(h))
            except SidrecError as e:
                raise SidrecError(f"history {n}: {e}") from None
        items, scores = self.rank_indices(idx, k, exclude_seen, user_ids)
        return self.as_lists(items, scores, k)

    def as_lists(self, items: torch.Tensor, scores: torch.Tensor, k: int) -> list[list[Recommendation]]:
        """:meth:`rank_indices`' output as :meth:`recommend` returns it: misses and empty slots
        dropped, scores rounded to 5 decimals, ``k`` per history."""
        ids = self.item_ids
        return [
            [Recommendation(ids[i], round(s, 5)) for i, s in zip(row_i, row_s) if i >= 0][:k]
            for row_i, row_s in zip(items.tolist(), scores.tolist())
        ]

    def rank_indices(
        self, histories: Sequence[np.ndarray], k: int, exclude_seen: bool = False, user_ids: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ranking behind :meth:`recommend`, on item_idx histories (``sidrec evaluate`` uses it).

        Returns:
            items (B, K) long item_idx, -1 for a free-decoding miss (finite score) or an empty
            slot (-inf); scores (B, K). K = max(beam_size, k) for SID runs, k for SASRec.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise SidrecError(f"k must be a positive integer, got {k!r}")
        if user_ids is not None and len(user_ids) != len(histories):
            raise SidrecError(f"got {len(user_ids)} user ids for {len(histories)} histories")
        with self._lock:
            return self._backend.rank(list(histories), int(k), bool(exclude_seen), user_ids)

    # ------------------------------------------------------------------ cold start

    def add_items(self, items: Sequence[Mapping[str, Any]]) -> AddedItems:
        """Add items by their text, recommendable at once and kept across restarts.

        Each item is a mapping with ``item_id`` and some of :attr:`text_fields`. Its text is
        embedded with the run's encoder, encoded by the *fitted* tokenizer (never refit) and
        given a SID by the run's collision policy; the SID table and the trie are updated
        and the items are written to ``RUN/serve/items.jsonl`` (atomically).

        Raises:
            SidrecError: for a run whose method cannot take new items (SASRec, UniGRec: the
                message says why), an item without ``item_id`` or without any of the run's
                text fields, an unknown field, or an id the run already has.
        """
        ids, records, codes = self._backend.encode_items(list(items))  # the encoder runs outside the lock
        with self._lock:
            return self._backend.insert_items(ids, records, codes)
