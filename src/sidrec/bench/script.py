"""Shared plumbing of the ``script:`` runs of a suite (``benchmarks/*_speed.py``).

The runner calls ``python SCRIPT --seed N [--quick]`` and keeps the script's last
stdout line, a flat JSON dict of numbers, as the run's metrics. A script therefore:

- parses its arguments with :func:`script_parser` (``--seed``, ``--quick``, ``-w/--workdir``);
- on the real data reads a prepared run directory: ``-w``, else ``$SIDREC_BENCH_RUN``,
  else ``runs/beauty`` relative to the working directory (:func:`default_run_dir`),
  checking its files with :func:`require`;
- under ``--quick`` builds its own tiny synthetic run (:func:`synthetic_run`), so the
  smoke check needs no dataset;
- wraps ``main`` in :func:`run_script` (a :class:`SidrecError` becomes one stderr
  line and exit status 2, not a traceback) and ends with :func:`emit`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from sidrec.config import Config, load_config
from sidrec.errors import SidrecError

RUN_ENV = "SIDREC_BENCH_RUN"

#: A tiny model and budget on the synthetic catalogue: a prepared, tokenized and trained
#: run in a few seconds on one thread.
QUICK_OVERRIDES = (
    "data.dataset=synthetic",
    "data.path=0",
    "tokenizer.method=rkmeans",
    "tokenizer.codebook_size=16",
    "model.n_enc_layers=1",
    "model.n_dec_layers=1",
    "model.d_model=32",
    "model.d_ff=64",
    "model.n_heads=2",
    "model.head_dim=16",
    "train.max_steps=20",
    "train.eval_every=20",
    "train.val_users=200",
    "train.num_threads=1",
    "train.device=cpu",
)


def default_run_dir() -> Path:
    """The real-data run the scripts read: ``$SIDREC_BENCH_RUN``, else ``runs/beauty``."""
    return Path(os.environ.get(RUN_ENV) or "runs/beauty")


def script_parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark script takes.

    Args:
        doc: the script's module docstring (its first line is the description).
    """
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    p.add_argument("--seed", type=int, default=0, help="seed of the data sample, k-means and model init")
    p.add_argument("--quick", action="store_true", help="tiny synthetic data and budget instead of the real run (smoke check)")
    p.add_argument("-w", "--workdir", type=Path, default=None,
                   help=f"prepared real-data run directory (default: ${RUN_ENV}, else runs/beauty)")  # fmt: skip
    return p


def run_dir(args: argparse.Namespace) -> Path:
    """``args.workdir`` if given, else :func:`default_run_dir`."""
    return args.workdir if args.workdir is not None else default_run_dir()


def require(*paths: Path, what: str) -> None:
    """Fail with one line if any of ``paths`` is missing.

    Args:
        paths: files or directories the script reads.
        what: what they are, for the message (e.g. "a trained SID model").

    Raises:
        SidrecError: naming the first missing path and how to point the script elsewhere.
    """
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise SidrecError(f"{missing[0]} not found: needs {what}; pass -w RUN or set ${RUN_ENV} to a prepared run, or use --quick")


def synthetic_run(root: Path, seed: int, stages: tuple[str, ...], overrides: tuple[str, ...] = ()) -> Config:
    """Prepare (and optionally tokenize / train) the synthetic catalogue under ``root``.

    Args:
        root: the run directory to create.
        seed: run and tokenizer seed.
        stages: pipeline stages to run, e.g. ``("prepare", "embed", "tokenize")``.
        overrides: extra ``key=value`` on top of :data:`QUICK_OVERRIDES`.

    Returns:
        The run's config (``cfg.paths`` locates its data, SIDs and model).
    """
    from sidrec.pipeline import run_pipeline

    cfg = load_config(None, [*QUICK_OVERRIDES, f"workdir={root}", f"seed={seed}", f"tokenizer.seed={seed}", *overrides])
    run_pipeline(cfg, progress=False, stages=stages)
    return cfg


def emit(metrics: dict[str, float]) -> None:
    """Print ``metrics`` as the one-line JSON dict the runner parses (must be the last stdout line).

    Raises:
        SidrecError: if a value is not a finite number (the runner keeps numbers only).
    """
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise SidrecError(f"benchmark metric {k!r} must be a finite number, got {v!r}")
    print(json.dumps(metrics), flush=True)


def run_script(main: Callable[[], None]) -> None:
    """Call ``main``; a :class:`SidrecError` ends the script with one stderr line and status 2."""
    try:
        main()
    except SidrecError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
