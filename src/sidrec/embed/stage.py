"""``sidrec embed``: embeddings for every prepared item, cached by content."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from sidrec.config import Config
from sidrec.data.prepared import PreparedData
from sidrec.embed.encoder import embed_texts, resolve_model
from sidrec.embed.text import check_text_fields, render_item_text
from sidrec.errors import SidrecError
from sidrec.io import load_npy, read_json, save_npy, sha256_text, sidrec_home, write_json
from sidrec.rundir import check_stage, commit_stage, lock


def run_embed(cfg: Config, progress: bool = True) -> dict[str, Any]:
    """Embed the items of ``workdir/data`` into ``workdir/embeddings``.

    The cache key is (items.parquet sha256, model, fields, template): re-running with the
    same inputs copies the cached vectors instead of re-encoding.
    """
    with lock(cfg.paths.root):  # no other writer between reading the data and committing the vectors
        return _embed(cfg, progress)


def _embed(cfg: Config, progress: bool) -> dict[str, Any]:
    data = PreparedData(cfg.paths.data)
    check_text_fields(cfg.embed.fields, cfg.embed.template, data.text_columns)
    model_id = resolve_model(cfg.embed.model)
    items_sha = data.manifest["outputs"]["items.parquet"]
    parts = [items_sha, cfg.embed.model, ",".join(cfg.embed.fields)] + ([cfg.embed.template] if cfg.embed.template else [])
    key = sha256_text(*parts)  # no template: the key of runs made before templates existed
    cache = sidrec_home() / "embeddings" / key
    out = cfg.paths.embeddings
    if (cache / "embeddings.npy").is_file() and (cache / "meta.json").is_file():
        with commit_stage(out, inputs=("data",)) as tmp:
            for name in ("embeddings.npy", "meta.json"):
                shutil.copyfile(cache / name, tmp / name)
            _check(tmp, data.item_ids)  # a damaged cache entry must not become a run's embeddings
        meta = read_json(out / "meta.json")
        meta["cached"] = True
        return meta
    texts = [render_item_text(r, cfg.embed.fields, cfg.embed.template) for r in data.item_texts()]
    t0 = time.perf_counter()
    emb = embed_texts(texts, cfg.embed.model, cfg.embed.batch_size, cfg.embed.device, progress)
    seconds = time.perf_counter() - t0
    if not np.isfinite(emb).all():
        raise SidrecError(f"encoder {cfg.embed.model!r} produced NaN/inf embeddings")
    meta = {
        "model": cfg.embed.model,
        "model_path": model_id,
        "fields": list(cfg.embed.fields),
        "template": cfg.embed.template,
        "n_items": int(emb.shape[0]),
        "dim": int(emb.shape[1]),
        "dtype": "float32",
        "items_sha256": items_sha,
        "cache_key": key,
        "seconds": round(seconds, 3),
        "items_per_second": round(emb.shape[0] / max(seconds, 1e-9), 1),
        "item_ids": data.item_ids,  # row n of embeddings.npy is item_ids[n]
        "example_text": texts[0] if texts else "",
    }
    cache.mkdir(parents=True, exist_ok=True)
    save_npy(cache / "embeddings.npy", emb)
    write_json(cache / "meta.json", meta)
    with commit_stage(out, inputs=("data",)) as tmp:
        save_npy(tmp / "embeddings.npy", emb)
        write_json(tmp / "meta.json", meta)
    meta["cached"] = False
    return meta


def load_embeddings(root: str | Path, item_ids: list[str] | None = None) -> np.ndarray:
    """Load ``embeddings.npy`` from an embeddings directory and check it.

    Args:
        root: directory written by ``sidrec embed``.
        item_ids: if given, the rows must be in exactly this item order.
    """
    root = Path(root)
    read_json(root / "meta.json", "embeddings metadata (run `sidrec embed` first)")
    if not (root / "embeddings.npy").is_file():
        raise SidrecError(f"embeddings not found: {root / 'embeddings.npy'} (run `sidrec embed` first)")
    check_stage(root)  # whole, and built from the prepared data now in the run directory
    return _check(root, item_ids)


def _check(root: Path, item_ids: list[str] | None) -> np.ndarray:
    """Load ``root/embeddings.npy`` and check it against ``meta.json`` (shape, width, item order, finite)."""
    meta = read_json(root / "meta.json", "embeddings metadata (run `sidrec embed` first)")
    path = root / "embeddings.npy"
    emb = load_npy(path, "embeddings")
    if emb.ndim != 2 or emb.shape[0] != meta.get("n_items"):
        raise SidrecError(f"{path}: expected shape ({meta.get('n_items')}, d), got {emb.shape}")
    if emb.shape[1] != meta.get("dim"):
        raise SidrecError(f"{path}: rows have width {emb.shape[1]}, but {root / 'meta.json'} says dim {meta.get('dim')}; re-run `sidrec embed`")
    if item_ids is not None and meta.get("item_ids") != list(item_ids):
        raise SidrecError(f"{path}: item order differs from the prepared data; re-run `sidrec embed`")
    if not np.isfinite(emb).all():
        bad = int(np.flatnonzero(~np.isfinite(emb).all(axis=1))[0])
        raise SidrecError(f"{path}: row {bad} (item {meta['item_ids'][bad]!r}) has NaN/inf values")
    return emb.astype(np.float32, copy=False)
