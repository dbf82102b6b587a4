"""The SID <-> item mapping that the recommender consumes.

A tokenizer gives each item a code per level; items can collide. Two policies
(GRID Table 7):

- ``"digit"`` (TIGER): append one more token, 0 for the first item of a colliding
  group, 1, 2, ... for the others, so every item has a unique SID.
- ``"random"`` (GRID): keep the codes as they are; a generated SID maps to one item
  of its group chosen at random (seeded) when the table is built.

Written by ``sidrec tokenize`` as ``sids.csv`` (``item_id, c0 … c{L-1}[, dedup]``)
plus ``sid_table.json`` (vocabulary size per position, policy, seed).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sidrec.errors import SidrecError
from sidrec.io import atomic_open, read_json, write_json

COLLISION_POLICIES = ("digit", "random")


@dataclass
class SIDTable:
    """Per-item token sequences.

    Attributes:
        item_ids: external id of row n.
        codes: (n_items, n_tokens) int64; token t of item n, in [0, vocab_sizes[t]).
        vocab_sizes: size of each position's vocabulary (the de-dup digit included).
        collision: "digit" or "random".
        representative: (n_items,) bool; True for the item a generated SID maps to.
            All True under "digit" (SIDs are unique).
    """

    item_ids: list[str]
    codes: np.ndarray
    vocab_sizes: list[int]
    collision: str
    representative: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.codes.shape[1])

    @classmethod
    def build(cls, item_ids: list[str], codes: np.ndarray, codebook_sizes: list[int], collision: str, seed: int = 0) -> SIDTable:
        """Resolve collisions of raw tokenizer codes (n_items, n_levels)."""
        if collision not in COLLISION_POLICIES:
            raise SidrecError(f"tokenizer.collision must be one of {', '.join(COLLISION_POLICIES)}, got {collision!r}")
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] != len(item_ids):
            raise SidrecError(f"codes must have shape ({len(item_ids)}, n_levels), got {codes.shape}")
        _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        if collision == "digit":
            # rank of each item inside its colliding group, in item order (stable)
            order = np.argsort(inverse, kind="stable")
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            rank = np.empty(len(codes), dtype=np.int64)
            rank[order] = np.arange(len(codes)) - np.repeat(starts, counts)
            codes = np.concatenate([codes, rank[:, None]], axis=1)
            vocab = list(codebook_sizes) + [int(counts.max())]
            rep = np.ones(len(codes), dtype=bool)
        else:
            rng = np.random.default_rng(seed)
            rep = np.zeros(len(codes), dtype=bool)
            perm = rng.permutation(len(codes))  # first item of each group in a random order wins
            first = np.full(len(counts), -1, dtype=np.int64)
            for n in perm:
                if first[inverse[n]] < 0:
                    first[inverse[n]] = n
            rep[first] = True
            vocab = list(codebook_sizes)
        return cls(list(item_ids), codes, [int(v) for v in vocab], collision, rep)

    def save(self, root: str | Path) -> None:
        """Write ``sids.csv`` and ``sid_table.json`` atomically."""
        root = Path(root)
        n_levels = self.n_tokens - (1 if self.collision == "digit" else 0)
        header = ["item_id"] + [f"c{i}" for i in range(n_levels)] + (["dedup"] if self.collision == "digit" else [])
        with atomic_open(root / "sids.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            for item, row in zip(self.item_ids, self.codes.tolist()):
                w.writerow([item, *row])
        write_json(
            root / "sid_table.json",
            {
                "collision": self.collision,
                "vocab_sizes": self.vocab_sizes,
                "representative": np.flatnonzero(self.representative).tolist(),
            },
        )

    @classmethod
    def load(cls, root: str | Path) -> SIDTable:
        """Read a table written by :meth:`save`."""
        root = Path(root)
        meta = read_json(root / "sid_table.json", "SID table (run `sidrec tokenize` first)")
        path = root / "sids.csv"
        if not path.is_file():
            raise SidrecError(f"SID file not found: {path} (run `sidrec tokenize` first)")
        item_ids, rows = [], []
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise SidrecError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); re-run `sidrec tokenize`") from None
        with io.StringIO(text, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or header[0] != "item_id":
                raise SidrecError(f"{path}:1: expected a header starting with 'item_id'")
            for lineno, rec in enumerate(reader, 2):
                if len(rec) != len(header):
                    raise SidrecError(f"{path}:{lineno}: expected {len(header)} columns, got {len(rec)}")
                try:
                    rows.append([int(x) for x in rec[1:]])
                except ValueError:
                    raise SidrecError(f"{path}:{lineno}: SID codes must be integers") from None
                item_ids.append(rec[0])
        codes = np.array(rows, dtype=np.int64).reshape(len(rows), len(header) - 1)
        rep = np.zeros(len(item_ids), dtype=bool)
        try:
            rep[np.asarray(meta["representative"], dtype=np.int64)] = True
            vocab, collision = [int(v) for v in meta["vocab_sizes"]], str(meta["collision"])
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise SidrecError(f"{root / 'sid_table.json'}: damaged SID table ({type(e).__name__}: {e}); re-run `sidrec tokenize`") from None
        if len(vocab) != codes.shape[1] or (codes.size and (codes.min() < 0 or (codes >= np.array(vocab)).any())):
            raise SidrecError(f"{path}: SID codes do not fit the vocabulary sizes {vocab} of {root / 'sid_table.json'}; re-run `sidrec tokenize`")
        return cls(item_ids, codes, vocab, collision, rep)
