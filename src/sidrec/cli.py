"""The ``sidrec`` command line: one subcommand per pipeline stage.

Every stage takes ``-c CONFIG`` (YAML mirroring :class:`sidrec.config.Config`),
``-w WORKDIR`` and ``key=value`` overrides. User mistakes print one line
(``error: …``) and exit with status 2; set ``SIDREC_DEBUG=1`` for a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sidrec import __version__
from sidrec.config import Config, dump_config, load_config
from sidrec.errors import SidrecError


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = [o for o in args.overrides if "=" in o]
    positional = [o for o in args.overrides if "=" not in o]
    source = getattr(args, "source", None)
    if positional:
        # `sidrec prepare PATH`: a bare argument is the dataset path
        if args.command != "prepare" or len(positional) > 1 or source:
            raise SidrecError(f"unexpected argument {positional[0]!r}; overrides look like key=value")
        source = positional[0]
    if source:
        overrides.insert(0, f"data.path={source}")
    if getattr(args, "workdir", None):
        overrides.insert(0, f"workdir={args.workdir}")
    if getattr(args, "method", None):
        overrides.insert(0, f"train.method={args.method}")
    return overrides


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, _overrides(args))


def print_table(title: str, rows: Sequence[tuple[str, Any]]) -> None:
    """Print a two-column table."""
    width = max(len(k) for k, _ in rows)
    vals = [f"{v:,}" if isinstance(v, int) else str(v) for _, v in rows]
    vwidth = max(len(v) for v in vals)
    line = "+" + "-" * (width + 2) + "+" + "-" * (vwidth + 2) + "+"
    print(title)
    print(line)
    for (k, _), v in zip(rows, vals):
        print(f"| {k:<{width}} | {v:>{vwidth}} |")
    print(line)


# ------------------------------------------------------------------ stage commands


def cmd_prepare(args: argparse.Namespace) -> None:
    from sidrec.data import load_dataset, prepare

    cfg = _config(args)
    manifest = prepare(load_dataset(cfg.data), cfg.data, cfg.paths.data)
    c, s = manifest["counts"], manifest["splits"]
    print_table(
        f"prepared {manifest['dataset']} -> {cfg.paths.data}",
        [
            ("users", c["users"]),
            ("items", c["items"]),
            ("interactions", c["interactions"]),
            ("train users", s["train_users"]),
            ("valid users", s["valid_users"]),
            ("test users", s["test_users"]),
            ("train interactions", s["train_interactions"]),
            ("sliding-window samples", s["sliding_window_samples"]),
        ],
    )


def cmd_embed(args: argparse.Namespace) -> None:
    from sidrec.embed import run_embed

    cfg = _config(args)
    meta = run_embed(cfg, progress=not args.quiet)
    print_table(
        f"embedded items -> {cfg.paths.embeddings}",
        [
            ("model", meta["model"]),
            ("items", meta["n_items"]),
            ("dimension", meta["dim"]),
            ("items/s", "cached" if meta["cached"] else meta["items_per_second"]),
        ],
    )


def cmd_tokenize(args: argparse.Namespace) -> None:
    from sidrec.tokenizers.stage import run_tokenize

    cfg = _config(args)
    metrics = run_tokenize(cfg, progress=not args.quiet)
    print(json.dumps(metrics, indent=2))


def cmd_train(args: argparse.Namespace) -> None:
    from sidrec.training.recipes import train

    cfg = _config(args)
    result = train(cfg, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    print(json.dumps(result, indent=2))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from sidrec.training.recipes import evaluate

    cfg = _config(args)
    result = evaluate(cfg, save_predictions=args.save_predictions, exact_users=args.exact, progress=not args.quiet)
    print(json.dumps(result, indent=2))


def cmd_recommend(args: argparse.Namespace) -> None:
    from sidrec.training.recipes import recommend

    cfg = _config(args)
    history = [h for part in args.history for h in part.replace(",", " ").split()]
    print(json.dumps(recommend(cfg, history, k=args.k), indent=2))


def cmd_run(args: argparse.Namespace) -> None:
    from sidrec.pipeline import run_pipeline

    cfg = _config(args)
    run_pipeline(cfg, progress=not args.quiet)


def cmd_demo(args: argparse.Namespace) -> None:
    from sidrec.demo import demo_config, run_demo

    cfg = demo_config(args.config, _overrides(args))
    run_demo(cfg, progress=not args.quiet)


def cmd_bench(args: argparse.Namespace) -> None:
    from pathlib import Path

    from sidrec.bench import load_suite, run_suite, write_report
    from sidrec.bench.suite import available_suites

    suite_dir, results = Path(args.suite_dir), Path(args.results_dir)
    if args.suite:
        seeds = args.seeds if args.seed is None else (args.seed,)
        paths = run_suite(
            load_suite(args.suite, suite_dir), seeds=seeds, quick=args.quick, results_dir=results,
            work_root=Path(args.work_root), force=args.force, only=tuple(args.only),
        )
        print(f"{len(paths)} record(s) under {results / ('quick' if args.quick else '') / args.suite}")
    if args.report:
        written = write_report(Path(args.benchmarks_md), results, suite_dir, (args.suite,) if args.suite else ())
        print(f"regenerated {', '.join(written)} in {args.benchmarks_md}")
    if not args.suite and not args.report:
        print("suites:", ", ".join(available_suites(suite_dir)))


def cmd_serve(args: argparse.Namespace) -> None:
    from sidrec.serve.app import ServeSettings
    from sidrec.serve.run import serve

    if not args.workdir:
        raise SidrecError("serve needs the run directory: sidrec serve -w RUN")
    settings = ServeSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_k=args.max_k)
    serve(args.workdir, args.host, args.port, settings, [o for o in args.overrides if "=" in o])


def cmd_config(args: argparse.Namespace) -> None:
    print(dump_config(_config(args)), end="")


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidrec",
        description="Generative recommendation with semantic IDs. "
        "Pipeline: prepare -> embed -> tokenize -> train -> evaluate -> recommend.",
    )
    parser.add_argument("--version", action="version", version=f"sidrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], None], help: str, config_positional: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if config_positional:
            p.add_argument("config", metavar="CONFIG", help="YAML config file")
        else:
            p.add_argument("-c", "--config", default=None, help="YAML config file")
        p.add_argument("-w", "--workdir", default=None, help="run directory (default: config's workdir)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-3"
                       + (" (a bare PATH is the dataset path)" if name == "prepare" else ""))
        p.set_defaults(fn=fn)
        return p

    p = add("prepare", cmd_prepare, "load a dataset, k-core filter, split leave-one-out, write Parquet + manifest")
    p.add_argument("--source", "--data-dir", dest="source", default=None,
                   help="dataset files already on disk (same as data.path=...); downloadable datasets skip the download")
    add("embed", cmd_embed, "embed item text with a sentence-transformers encoder")
    add("tokenize", cmd_tokenize, "fit a SID tokenizer and write SIDs + SID quality metrics")
    p = add("train", cmd_train, "train the generative recommender (early stopping on validation NDCG@10)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint (same settings and inputs)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous training run in this run directory")
    p.add_argument("--method", default=None, help="training recipe: sid (default), sasrec, unigrec (same as train.method=...)")
    p = add("evaluate", cmd_evaluate, "beam-search evaluation of the best checkpoint; writes metrics.json")
    p.add_argument("--save-predictions", action="store_true", help="also write predictions.jsonl")
    p.add_argument("--exact", type=int, default=0, metavar="N", help="also score N users exactly and report beam agreement")
    p = add("recommend", cmd_recommend, "top-K item ids for a history of item ids, as JSON")
    p.add_argument("--history", nargs="+", required=True, help="item ids, oldest first")
    p.add_argument("-k", type=int, default=10, help="number of items to return")
    p = add("serve", cmd_serve, "serve a trained run over HTTP (POST /recommend, POST /items, GET /items/ID, /docs)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=32, help="histories decoded together at most (micro-batching)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for others to batch with")
    p.add_argument("--max-k", type=int, default=100, help="largest k a client may ask for")
    add("run", cmd_run, "run prepare -> embed -> tokenize -> train -> evaluate from one config", config_positional=True)
    add("demo", cmd_demo, "the whole pipeline on a built-in synthetic catalogue (a few minutes on CPU)")
    add("config", cmd_config, "print the resolved config as YAML")
    p = sub.add_parser("bench", help="run a benchmark suite (benchmarks/SUITE.yaml) and/or regenerate BENCHMARKS.md")
    p.add_argument("suite", nargs="?", default=None, help="suite name; omit with --report to regenerate all")
    p.add_argument("--quick", action="store_true", help="reduced budget on the synthetic catalogue (smoke check)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (tables show mean ± std)")
    seeds.add_argument("--seed", type=int, default=None, metavar="K", help="only seed K (to spread a run's seeds over machines)")
    p.add_argument("--only", nargs="+", default=[], metavar="RUN", help="only these runs of the suite")
    p.add_argument("--force", action="store_true", help="re-run runs that already have a record")
    p.add_argument("--report", action="store_true", help="regenerate the tables of BENCHMARKS.md from the records")
    p.add_argument("--suite-dir", default="benchmarks")
    p.add_argument("--results-dir", default="benchmarks/results")
    p.add_argument("--work-root", default="runs/bench")
    p.add_argument("--benchmarks-md", default="BENCHMARKS.md")
    p.set_defaults(fn=cmd_bench, overrides=[])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sidrec`` console script."""
    parser = build_parser()
    # overrides may come before and after options (`prepare PATH -w DIR key=value`)
    args, extra = parser.parse_known_args(argv)
    unknown = [x for x in extra if x.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = list(getattr(args, "overrides", [])) + extra
    try:
        args.fn(args)
    except (SidrecError, OSError, UnicodeDecodeError) as e:
        # OSError: a path that is a file, a directory, missing or not ours (errno + path);
        # UnicodeDecodeError reaching here is a text input the loaders did not name.
        if os.environ.get("SIDREC_DEBUG"):
            raise
        if isinstance(e, SidrecError):
            msg = str(e)
        elif isinstance(e, UnicodeDecodeError):
            msg = f"input is not UTF-8 text ({e.reason} at byte {e.start})"
        else:
            msg = f"{e.strerror or e}: {e.filename}" if e.filename else str(e)
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
