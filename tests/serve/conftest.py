"""A small trained run on a catalogue with its own text columns (``genres``), shared by the serve tests.

Four genres x 10 items; every user listens within one genre, and an item's text is
mostly its genre, so the first SID token learns the genre and a new item's text lands
next to its genre-mates. Built once per session (real encoder, rkmeans, a tiny
encoder-decoder): a few seconds on one thread.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sidrec.cli import main

GENRES = ("jazz", "techno", "opera", "reggae")
TINY = [
    "tokenizer.method=rkmeans", "tokenizer.codebook_size=4", "tokenizer.n_levels=2",
    "model.n_enc_layers=1", "model.n_dec_layers=1", "model.d_model=32", "model.d_ff=64", "model.n_heads=2",
    "model.head_dim=16", "train.max_steps=150", "train.eval_every=150", "train.batch_size=64", "train.lr=5e-3",
    "train.val_users=50", "train.num_threads=1", "train.device=cpu", "eval.beam_size=12", "eval.batch_size=16",
    "embed.device=cpu",
]  # fmt: skip


def write_catalogue(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """An interactions log + an items table whose text columns are ``title`` and ``genres``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    items = [(f"{g[:2]}{n}", f"{g} record {n}", g) for g in GENRES for n in range(10)]
    with open(root / "items.csv", "w") as f:
        f.write("item,title,genres,label\n")  # `label` is a third column nobody embeds
        for item, title, genre in items:
            f.write(f"{item},{title},{genre},x\n")
    with open(root / "log.csv", "w") as f:
        f.write("user,item,timestamp\n")
        t = 0
        for u in range(120):
            g = GENRES[u % len(GENRES)]
            pool = [i for i, _, gg in items if gg == g]
            for item in rng.choice(pool, size=int(rng.integers(5, 9)), replace=False):
                f.write(f"u{u},{item},{t}\n")
                t += 1
    return root / "log.csv", root / "items.csv"


@pytest.fixture(scope="session")
def genre_run(tmp_path_factory) -> Path:
    """The trained run directory (do not modify it: copy it with ``run_copy``)."""
    root = tmp_path_factory.mktemp("genre")
    log, items = write_catalogue(root / "src")
    run = root / "run"
    common = ["-w", str(run), "-q", "data.dataset=interactions", f"data.path={log}", f"data.items_path={items}",
              "data.min_count=0", "embed.fields=[title,genres]", "embed.template={title}. Genres: {genres}", *TINY]  # fmt: skip
    for stage in ("prepare", "embed", "tokenize", "train"):
        assert main([stage, *common]) == 0, stage
    return run


@pytest.fixture
def run_copy(genre_run: Path, tmp_path: Path) -> Path:
    """A private copy of the trained run (tests that add items write into it)."""
    dst = tmp_path / "run"
    shutil.copytree(genre_run, dst)
    return dst
