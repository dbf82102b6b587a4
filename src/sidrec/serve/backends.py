"""What :class:`sidrec.api.Recommender` runs, one backend per training method (a registry).

- ``sid``: the generative model from ``load_trained_model`` (the only loader of SID
  models), constrained or free beam search over :class:`~sidrec.generation.catalog.Catalog`;
  cold-start items by text.
- ``unigrec``: decoded like ``sid``; refuses new items (see :class:`UniGRecBackend`).
- ``sasrec``: full ranking of the item-id model; refuses new items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sidrec.config import Config
from sidrec.errors import SidrecError

NEG_INF = float("-inf")


class SIDBackend:
    """Beam search of a trained SID model over the trained + added items."""

    method = "sid"

    def __init__(self, cfg: Config, model: Any, sids: Any, data: Any):
        from sidrec.generation.catalog import Catalog
        from sidrec.generation.evaluate import align_sids, n_user_bins

        self.cfg, self.model, self.data = cfg, model.eval(), data
        self.catalog = Catalog(data.item_ids, align_sids(data, sids), cfg.paths.root / "serve", seed=cfg.tokenizer.seed)
        self.n_user_bins = n_user_bins(model)
        self.max_history = data.max_history
        self._texts: list[dict[str, Any]] | None = None
        self._encoder_meta: dict[str, Any] | None = None
        self._tokenizer: Any = None

    @classmethod
    def load(cls, cfg: Config, device: str) -> SIDBackend:
        """Load the run's best checkpoint with ``load_trained_model`` (the one loader of SID models)."""
        from sidrec.threads import set_threads
        from sidrec.training.stage import load_trained_model

        set_threads(cfg.train.num_threads)  # same intra-op threads as training
        model, sids, data = load_trained_model(cfg, device)
        return cls(cfg, model, sids, data)

    @property
    def item_ids(self) -> list[str]:
        return self.catalog.item_ids

    @property
    def index(self) -> dict[str, int]:
        return self.catalog.index

    @property
    def text_fields(self) -> list[str]:
        return list(self._encoder()["fields"])

    def rank(self, histories: list[np.ndarray], k: int, exclude_seen: bool, user_ids: Sequence[str] | None) -> tuple[torch.Tensor, torch.Tensor]:
        from sidrec.generation.batching import make_history_batch
        from sidrec.generation.beam import beam_search, ranked_items
        from sidrec.generation.evaluate import _padded_items

        cat = self.catalog
        beam = max(self.cfg.eval.beam_size, k)
        batch = make_history_batch(histories, cat.sids, user_ids, self.n_user_bins)  # no user ids: bin 0
        with torch.inference_mode():
            res = beam_search(self.model, batch, cat.trie, beam, self.cfg.eval.constrained)
        exclude = torch.where(batch.mask, _padded_items(histories, batch.mask.shape[1]), -1) if exclude_seen else None
        return ranked_items(res, exclude)

    def item_record(self, item_id: str) -> dict[str, Any]:
        cat = self.catalog
        n = cat.index[item_id]
        new = cat.added_item(item_id)
        if new is not None:
            return {"item_id": item_id, "sid": list(new.sid), "added": True, "recommendable": new.reachable, "fields": new.fields}
        if self._texts is None:
            self._texts = self.data.item_texts()
        fields = {f: v for f, v in self._texts[n].items() if v not in (None, "", [])}
        return {"item_id": item_id, "sid": cat.sids.codes[n].tolist(), "added": False,
                "recommendable": bool(cat.sids.representative[n]), "fields": fields}  # fmt: skip

    # ------------------------------------------------------------------ cold start

    def _encoder(self) -> dict[str, Any]:
        """The run's ``embeddings/meta.json``: encoder model, fields and template it was embedded with."""
        from sidrec.io import read_json

        if self._encoder_meta is None:
            self._encoder_meta = read_json(self.cfg.paths.embeddings / "meta.json", "the run's embeddings metadata (the encoder of new items)")
        return self._encoder_meta

    def encode_items(self, items: list[Any]) -> tuple[list[str], list[dict[str, Any]], np.ndarray]:
        """Check new items and compute their tokenizer codes (slow: the encoder runs; no lock needed)."""
        from sidrec.embed.encoder import embed_texts
        from sidrec.embed.text import has_text, render_item_text
        from sidrec.tokenizers.base import Tokenizer

        meta = self._encoder()
        fields, template = list(meta["fields"]), meta.get("template", "")
        ids, records = check_new_items(items, fields)
        empty = [i for i, r in zip(ids, records) if not has_text(r, fields)]
        if empty:
            raise SidrecError(f"item {empty[0]!r} has none of the text fields this run was embedded with ({', '.join(fields)})")
        if not ids:
            return [], [], np.zeros((0, self.catalog.n_levels), dtype=np.int64)
        if self._tokenizer is None:
            self._tokenizer = Tokenizer.load(self.cfg.paths.tokenizer)  # the fitted tokenizer: encode only, never fit
        texts = [render_item_text(r, fields, template) for r in records]
        emb = embed_texts(texts, meta["model"], self.cfg.embed.batch_size, self.cfg.embed.device, progress=False)
        return ids, records, self._tokenizer.encode(emb)

    def insert_items(self, ids: list[str], records: list[dict[str, Any]], codes: np.ndarray) -> Any:
        """Give encoded items SIDs and add them to the catalogue (fast; call under the Recommender's lock)."""
        from sidrec.api import AddedItems

        if not ids:
            return AddedItems([], [], [])
        new = self.catalog.assign(ids, codes, records)
        self.catalog.add(new)
        return AddedItems([n.item_id for n in new], [list(n.sid) for n in new], [n.item_id for n in new if not n.reachable])


def check_new_items(items: list[Any], fields: Sequence[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Split new-item mappings into ids and text records; unknown fields are an error.

    Raises:
        SidrecError: naming the item and the problem.
    """
    ids, records = [], []
    for n, it in enumerate(items):
        if not isinstance(it, dict):
            raise SidrecError(f"item {n} must be an object with 'item_id' and text fields, got {type(it).__name__}")
        item_id = it.get("item_id")
        if not isinstance(item_id, str) or not item_id.strip():
            raise SidrecError(f"item {n} needs a non-empty string 'item_id'")
        unknown = [f for f in it if f != "item_id" and f not in fields]
        if unknown:
            raise SidrecError(f"item {item_id!r}: unknown field {unknown[0]!r}; this run embeds: {', '.join(fields)}")
        ids.append(item_id)
        records.append({f: it[f] for f in fields if it.get(f) not in (None, "", [])})
    return ids, records


class UniGRecBackend(SIDBackend):
    """UniGRec runs decode like SID runs; new items are refused."""

    method = "unigrec"

    def encode_items(self, items: list[Any]) -> Any:
        raise SidrecError(
            "add_items is not supported for UniGRec runs: their tokenizer was trained jointly with the recommender "
            "on the trained items' collaborative signal (and histories are encoded with soft IDs of those items), "
            "so a new item's text gives no SID the recommender was trained to read; use a `sid` run for cold-start items"
        )


class SASRecBackend:
    """Full-catalogue ranking of the ID-based SASRec."""

    method = "sasrec"

    @classmethod
    def load(cls, cfg: Config, device: str) -> SASRecBackend:
        return cls(cfg, device)

    def __init__(self, cfg: Config, device: str):
        from sidrec.data.prepared import PreparedData
        from sidrec.rundir import check_stage
        from sidrec.threads import set_threads
        from sidrec.training.sasrec import load_sasrec

        set_threads(cfg.train.num_threads)
        self.cfg = cfg
        check_stage(cfg.paths.model)  # whole, and trained on the prepared data now in the run directory
        self.data = PreparedData(cfg.paths.data)
        self.model = load_sasrec(cfg.paths.model).to(device)
        if self.model.n_items != self.data.n_items:
            raise SidrecError(f"{cfg.paths.model}: the model has {self.model.n_items} items, the prepared data {self.data.n_items}")
        self.item_ids = self.data.item_ids
        self.index = self.data.item_index()
        self.max_history = self.data.max_history
        self.text_fields: list[str] = []
        self._texts: list[dict[str, Any]] | None = None

    def rank(self, histories: list[np.ndarray], k: int, exclude_seen: bool, user_ids: Sequence[str] | None) -> tuple[torch.Tensor, torch.Tensor]:
        from sidrec.models.sasrec import pad_histories

        m = self.model
        dev = next(m.parameters()).device
        with torch.inference_mode():
            scores = m.scores(pad_histories(histories, m.pad_idx, m.max_history).to(dev)).cpu()  # (B, n_items)
        if exclude_seen:
            for b, h in enumerate(histories):
                scores[b, torch.from_numpy(h)] = NEG_INF
        top = torch.topk(scores, k, dim=1)
        items = torch.where(torch.isfinite(top.values), top.indices, torch.full_like(top.indices, -1))
        return items, top.values

    def item_record(self, item_id: str) -> dict[str, Any]:
        n = self.index[item_id]
        if self._texts is None:
            self._texts = self.data.item_texts()
        fields = {f: v for f, v in self._texts[n].items() if v not in (None, "", [])}
        return {"item_id": item_id, "sid": None, "added": False, "recommendable": True, "fields": fields}

    def encode_items(self, items: list[Any]) -> Any:
        raise SidrecError(
            "add_items is not supported for SASRec runs: SASRec learns one embedding per item id from interactions, "
            "so an item nobody interacted with has no trained embedding and can never be ranked; use a `sid` run "
            "(its items are SIDs of their text) for cold-start items"
        )


BACKENDS: dict[str, Callable[[Config, str], Any]] = {"sid": SIDBackend.load, "unigrec": UniGRecBackend.load, "sasrec": SASRecBackend.load}


def load_backend(cfg: Config, device: str = "cpu") -> Any:
    """The backend of the method that trained ``cfg.workdir`` (``model/recipe.json``)."""
    from sidrec.training.recipes import trained_method

    method = trained_method(cfg)
    if method not in BACKENDS:
        raise SidrecError(f"cannot serve train.method {method!r}; servable methods: {', '.join(BACKENDS)}")
    return BACKENDS[method](cfg, device)
