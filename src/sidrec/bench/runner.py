"""Run a suite: each (run, seed) in a fresh process, one JSON record each.

Runs are resumable: a (run, seed) whose record exists is skipped (``force`` re-runs
it), so an interrupted ``sidrec bench`` continues where it stopped; inside a run,
training resumes from its last checkpoint. A fresh process per full-budget run gives an
honest peak-memory figure and isolates a crash to its own run (quick smoke runs stay
in-process, so their peak memory is the harness's own).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sidrec.bench.suite import Run, Suite, load_suite, run_dir_name
from sidrec.config import config_to_dict, dotted
from sidrec.errors import SidrecError
from sidrec.io import read_json, sha256_text, write_json


def record_path(results_dir: Path, suite: Suite, run: Run, seed: int) -> Path:
    """Where the record of (run, seed) lives."""
    return results_dir / suite.name / f"{run.name}-seed{seed}.json"


def run_suite(
    suite: Suite,
    seeds: int | Sequence[int] = 1,
    quick: bool = False,
    results_dir: Path = Path("benchmarks/results"),
    work_root: Path = Path("runs/bench"),
    force: bool = False,
    only: tuple[str, ...] = (),
) -> list[Path]:
    """Run every (run, seed) of ``suite`` that has no record yet; returns the record paths.

    ``seeds`` is N for seeds 0..N-1, or the seeds themselves (``sidrec bench --seed K``: one seed,
    so that the seeds of a run can train side by side on different machines or lanes).

    ``quick`` records go to ``results_dir/quick`` so they never mix with full-budget ones.

    Raises:
        SidrecError: if any run failed (the others still ran and kept their records).
    """
    seeds = range(seeds) if isinstance(seeds, int) else tuple(seeds)
    if not seeds or min(seeds) < 0:
        raise SidrecError(f"seeds must be --seeds N >= 1 or --seed K >= 0; got {list(seeds)}")
    if quick:
        results_dir = results_dir / "quick"
    unknown = set(only) - {r.name for r in suite.runs}
    if unknown:
        raise SidrecError(f"suite {suite.name!r} has no run {sorted(unknown)[0]!r}; runs: {', '.join(r.name for r in suite.runs)}")
    paths, failures = [], []
    for run in suite.runs:
        if only and run.name not in only:
            continue
        if quick and run.skip_quick:
            print(f"[{suite.name}] {run.name}: skipped in --quick ({run.skip_quick})", flush=True)
            continue
        for seed in seeds:
            path = record_path(results_dir, suite, run, seed)
            paths.append(path)
            if path.is_file() and not force:
                print(f"[{suite.name}] {run.name} seed {seed}: record exists, skipped ({path})", flush=True)
                continue
            workdir = work_root / ("quick" if quick else "full") / suite.name / run_dir_name(run.name, seed)
            if run.same_as and _reuse_same(suite, run, seed, quick, results_dir, workdir, path):
                continue
            if run.source:
                _copy_run_dir(workdir.parent / run_dir_name(run.source, seed), workdir)
            print(f"[{suite.name}] {run.name} seed {seed}: running in {workdir}", flush=True)
            args = (str(suite.path), run.name, seed, quick, str(workdir))
            if quick:  # smoke runs: no fresh interpreter (imports cost more than the run)
                status, payload = _worker(*args)
            else:
                with mp.get_context("spawn").Pool(1) as pool:
                    status, payload = pool.apply(_worker, args)
            if status != "ok":
                failures.append(f"{run.name} seed {seed}: {payload}")
                print(f"[{suite.name}] {run.name} seed {seed}: FAILED: {payload}", file=sys.stderr, flush=True)
                continue
            payload["quick"] = quick
            write_json(path, payload)
            print(f"[{suite.name}] {run.name} seed {seed}: record -> {path}", flush=True)
    if failures:
        raise SidrecError(f"{len(failures)} run(s) of suite {suite.name!r} failed; first: {failures[0]}")
    return paths


def _reuse_same(suite: Suite, run: Run, seed: int, quick: bool, results_dir: Path, workdir: Path, path: Path) -> bool:
    """Write ``path`` from the record of ``run.same_as`` (same seed) if their resolved configs are equal."""
    other_suite, other_run = run.same_as.split("/")
    src = results_dir / other_suite / f"{other_run}-seed{seed}.json"
    tag = f"[{suite.name}] {run.name} seed {seed}"
    if not src.is_file():
        print(f"{tag}: same_as {run.same_as} has no record for seed {seed} yet; running it here", flush=True)
        return False
    rec = read_json(src, "benchmark record")
    mine, theirs = dotted(_effective(config_to_dict(suite.config(run, seed, quick, workdir)))), dotted(_effective(rec.get("config") or {}))
    differ = sorted(k for k in set(mine) | set(theirs) if k != "workdir" and mine.get(k, "<unset>") != theirs.get(k, "<unset>"))
    if differ:
        k = differ[0]
        print(f"{tag}: not the run of {src} ({k} = {mine.get(k, '<unset>')!r} here, {theirs.get(k, '<unset>')!r} there); running it",
              flush=True)  # fmt: skip
        return False
    write_json(path, {**rec, "suite": suite.name, "run": run.name, "paper": run.paper, "same_as": str(src)})
    print(f"{tag}: the run of {src} (same config); record -> {path}", flush=True)
    return True


def _effective(cfg: dict[str, Any]) -> dict[str, Any]:
    """A config dict with the tokenizer's params completed by its defaults: an explicit
    ``tokenizer.params.reg_weight: 0.01`` and the default 0.01 are one configuration."""
    from sidrec.config import TokenizerConfig
    from sidrec.tokenizers import build_tokenizer

    tok = cfg.get("tokenizer")
    try:
        params = build_tokenizer(TokenizerConfig(**tok)).get_params()
    except (TypeError, SidrecError):  # not a tokenizer config this sidrec can build: compare as written
        return cfg
    return {**cfg, "tokenizer": {**tok, "params": json.loads(json.dumps(params))}}


def _copy_run_dir(src: Path, dst: Path) -> None:
    """Start ``dst`` as a copy of another run's directory (its data, SIDs and trained model)."""
    if not (src / "run_summary.json").is_file():
        raise SidrecError(f"run directory {src} is incomplete; run its suite entry first")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def _worker(suite_path: str, run_name: str, seed: int, quick: bool, workdir: str) -> tuple[str, Any]:
    try:
        suite = load_suite(Path(suite_path).stem, Path(suite_path).parent)
        run = next(r for r in suite.runs if r.name == run_name)
        return "ok", _execute(suite, run, seed, quick, Path(workdir))
    except SidrecError as e:
        return "error", str(e)
    except Exception:  # a crash in one run must not take the suite down; keep its traceback
        return "error", traceback.format_exc(limit=8)


def _execute(suite: Suite, run: Run, seed: int, quick: bool, workdir: Path) -> dict[str, Any]:
    started = time.time()
    record: dict[str, Any] = {
        "suite": suite.name,
        "run": run.name,
        "seed": seed,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "git": git_state(),
        "machine": machine(),
        "paper": run.paper,
    }
    if run.script:
        cmd = [sys.executable, run.script, "--seed", str(seed)] + (["--quick"] if quick else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SidrecError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
        lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
        record.update(
            command=" ".join(cmd),
            seconds={"script": round(time.perf_counter() - t0, 2)},
            metrics=_flatten({"script": json.loads(lines[-1])}),
            peak_memory_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        )
    else:
        from sidrec.pipeline import run_pipeline

        for ref in suite.references(run, quick):  # "{run:NAME}" in an override: NAME must have finished
            if not (workdir.parent / run_dir_name(ref, seed) / "run_summary.json").is_file():
                raise SidrecError(f"run {run.name!r} uses the directory of run {ref!r} (seed {seed}), which has no finished run; run {ref!r} first")
        cfg = suite.config(run, seed, quick, workdir)
        summary = run_pipeline(cfg, progress=False, stages=run.stages or suite.stages)
        manifest = read_json(cfg.paths.data / "manifest.json")
        record.update(
            command=reproduce_command(suite.name, run.name, seed, quick),
            config=config_to_dict(cfg),
            dataset={"name": manifest["dataset"], "inputs": manifest["inputs"], "checksum": sha256_text(*sorted(manifest["inputs"].values()))},
            seconds=summary["seconds"],
            metrics=_flatten(summary["results"]),
            peak_memory_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        )
    record["wall_seconds"] = round(time.time() - started, 2)
    return record


def reproduce_command(suite: str, run: str, seed: int, quick: bool) -> str:
    """The ``sidrec bench`` line that (re)makes this record, and only it (``--seed k``)."""
    return f"sidrec bench {suite} --only {run}" + (f" --seed {seed}" if seed else "") + (" --quick" if quick else "")


def _flatten(results: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves as ``stage/key`` (nested dicts joined with '/'); strings dropped.

    A nested ``metrics`` dict adds no level (``evaluate/recall@10``, not ``evaluate/metrics/recall@10``).
    A list of numbers (per-level values such as ``sc_prefix``) becomes ``key/0``, ``key/1``, ...
    """
    out: dict[str, float] = {}
    for k, v in results.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, prefix if k == "metrics" else key + "/"))
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int | float):
            out[key] = float(v)
        elif isinstance(v, list) and v and all(isinstance(e, int | float) and not isinstance(e, bool) for e in v):
            out.update({f"{key}/{i}": float(e) for i, e in enumerate(v)})
    return out


def git_state() -> dict[str, Any]:
    """Commit and dirtiness of the working tree (``unknown`` outside a git checkout)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": dirty}


def machine() -> dict[str, Any]:
    """CPU model, cores, torch and Python versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
