"""The one form every dataset loader produces, and the loader registry.

A loader reads some upstream layout and returns a :class:`RawDataset`: an items
table (item id -> text fields) and each user's chronologically ordered item ids.
Everything downstream (k-core, splits, embeddings) works on that form only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidrec.config import DataConfig
from sidrec.errors import SidrecError

#: Text fields an item record may carry (any may be missing / None).
TEXT_FIELDS = ("title", "categories", "brand", "description", "price")


@dataclass
class RawDataset:
    """Items and chronological user sequences, before filtering.

    Attributes:
        name: dataset name for manifests.
        items: item id -> {field: value}; values are str, list or None.
        sequences: user id -> item ids in chronological order (stable ties).
        sources: files that were read (their sha256 goes into the manifest).
        locations: user id -> where that user's data starts ("file:line" or "file, row N"), for errors.
        items_source: where item records come from, for errors.
    """

    name: str
    items: dict[str, dict[str, Any]]
    sequences: dict[str, list[str]]
    sources: list[Path] = field(default_factory=list)
    locations: dict[str, str] = field(default_factory=dict)
    items_source: str = "items table"

    def check(self) -> None:
        """Raise :class:`SidrecError` for empty data, empty histories or items with no record."""
        if not self.sequences:
            raise SidrecError(f"{self.name}: no user sequences were read")
        for user, seq in self.sequences.items():
            where = self.locations.get(user, f"user {user}")
            if not seq:
                raise SidrecError(f"{where}: user {user!r} has an empty history")
            for item in seq:
                if item not in self.items:
                    raise SidrecError(f"{where}: item {item!r} of user {user!r} has no record in {self.items_source}")


Loader = Callable[[DataConfig], RawDataset]
_LOADERS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Register a loader under ``name`` (``@register_dataset("movielens-1m")``)."""

    def deco(fn: Loader) -> Loader:
        if name in _LOADERS:
            raise RuntimeError(f"dataset loader {name!r} registered twice")
        _LOADERS[name] = fn
        return fn

    return deco


def available_datasets() -> list[str]:
    """Names of all registered dataset loaders."""
    return sorted(_LOADERS)


def load_dataset(cfg: DataConfig) -> RawDataset:
    """Run the loader named by ``cfg.dataset`` and validate its output."""
    if cfg.dataset not in _LOADERS:
        raise SidrecError(f"unknown dataset {cfg.dataset!r}; available: {', '.join(available_datasets())}")
    try:
        ds = _LOADERS[cfg.dataset](cfg)
    except UnicodeDecodeError as e:  # the loaders read text as UTF-8; name the input instead of a traceback
        raise SidrecError(f"{cfg.path or cfg.dataset}: input is not UTF-8 text ({e.reason} at byte {e.start}); "
                          "convert it to UTF-8") from None  # fmt: skip
    ds.check()
    return ds


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise a one-line error naming it."""
    if not path.is_file():
        raise SidrecError(f"{what} not found: {path}")
    return path


def natural_key(x: str) -> tuple[int, int | str]:
    """Sort numeric ids numerically and others lexicographically (numbers first)."""
    return (0, int(x)) if x.isdigit() else (1, x)
