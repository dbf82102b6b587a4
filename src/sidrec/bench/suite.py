"""Benchmark suite definitions.

A suite is a YAML file ``benchmarks/<name>.yaml``::

    name: grid
    title: GRID Table 1 — tokenizers
    paper: GRID (Ju et al., 2025), Table 1, Amazon Beauty
    dataset: amazon-beauty-2014          # directory under $SIDREC_DATA
    stages: [prepare, embed, tokenize, train, evaluate]
    config: ../configs/beauty.yaml       # base config file (relative to this file); default: Config()
    base: {tokenizer.method: rkmeans}    # overrides for every run
    quick: {train.max_steps: 30}         # extra overrides for --quick (synthetic data, tiny budget)
    # a run may add its own: quick: {tokenizer.params.epochs: 2}
    columns: [evaluate/recall@10, evaluate/ndcg@10]
    runs:
      - name: rkmeans
        overrides: {tokenizer.method: rkmeans}
        paper: {evaluate/recall@10: 0.0639}
      - name: free-beam                       # reuse rkmeans's trained model, only re-evaluate
        from: rkmeans
        stages: [evaluate]
        overrides: {eval.constrained: false}
      - name: speed
        script: tokenizer_speed.py      # a script run (path relative to this file): last stdout line is a JSON dict
        skip_quick: needs the real embeddings      # the reason is printed when --quick skips it
      - name: sasrec
        overrides: {train.method: sasrec}
        stages: [prepare, train, evaluate]
      - name: lambda-0.01                  # this very config is another suite's run: reuse its record
        same_as: tokenizers/r3vae
      - name: unigrec                      # "{run:NAME}": NAME's run directory, same seed
        overrides: {train.method: unigrec, tokenizer.method: soft-rqvae, unigrec.teacher: "{run:sasrec}/model"}
    derive: {kind: spearman, source: tokenizers, target: evaluate/recall@10}   # computed, no runs
    # source: [tokenizers, r3vae-ablation] pools suites (runs named SUITE/RUN; same_as runs counted once);
    # where: {tokenizer.n_levels: 3} ranks only the runs whose records have that config
    compare: {baseline: rkmeans, metrics: [evaluate/recall@10]}   # every run against one, in seed stds

Overrides use the config's dotted keys, so an unknown key fails when the suite is
loaded, not an hour into the run. A script is called as ``python SCRIPT --seed N
[--quick]`` from the working directory of ``sidrec bench``.

``{run:NAME}`` inside a string override value (in ``base``, ``overrides`` or ``quick``)
becomes the run directory of the suite's run NAME with the same seed and budget
(``WORK_ROOT/{quick,full}/SUITE/NAME-seedN``), e.g. a teacher model trained by an
earlier run. NAME must be an earlier run of the suite (checked at load time); the
runner fails the referring run if NAME's directory holds no finished run.

``same_as: SUITE/RUN`` declares that a run is another suite's run under another name
(e.g. Table 9's λ = 0.01 row is the default R³-VAE of the ``tokenizers`` suite). If that
run's record for the same seed exists and its resolved config equals this run's (the run
directory aside), the record is reused (``same_as`` names its file) instead of spending
hours on an identical run; otherwise the run runs, and the runner says why.

``compare`` adds a generated table under the suite's: each run's seed mean against the
``baseline`` run's, the difference in units of the seed standard deviation, and Welch's
t-test where both have several seeds, so "A beats B" is read off the records, not written by hand.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from sidrec.config import Config, apply_overrides, load_config
from sidrec.errors import SidrecError
from sidrec.io import read_yaml
from sidrec.pipeline import STAGES

SUITE_DIR = Path("benchmarks")
_SUITE_KEYS = {"name", "title", "paper", "dataset", "stages", "config", "base", "quick", "columns", "runs", "derive", "notes", "compare"}
_RUN_KEYS = {"name", "overrides", "paper", "script", "stages", "from", "skip_quick", "quick", "same_as"}
_RUN_REF = re.compile(r"\{run:([^{}]*)\}")  # "{run:NAME}" in an override value


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def safe_name(name: Any, what: str) -> str:
    """``name`` if it can be one path component (letters, digits, ``._-``; no ``..``), else a one-line error.

    Suite and run names become directory and file names; ``../x`` or ``a/b`` would
    write outside the results directory.
    """
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise SidrecError(f"{what} {name!r} is not a safe name: use 1-100 letters, digits, '.', '_' or '-' (no '..', no '/')")
    return name


def run_dir_name(run: str, seed: int) -> str:
    """Directory name of (run, seed) under ``WORK_ROOT/{quick,full}/SUITE/``."""
    return f"{run}-seed{seed}"


@dataclass(frozen=True)
class Run:
    """One configuration of a suite (a pipeline run, or a script that prints JSON)."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, float] = field(default_factory=dict)
    script: str = ""
    stages: tuple[str, ...] = ()
    source: str = ""  # "from": start from a copy of this run's directory (e.g. re-evaluate its model)
    skip_quick: str = ""  # why this run cannot run on --quick's synthetic catalogue (it is skipped there)
    quick: dict[str, Any] = field(default_factory=dict)  # this run's extra overrides under --quick
    same_as: str = ""  # "SUITE/RUN": reuse that run's record when the resolved configs are equal


@dataclass(frozen=True)
class Suite:
    """A named list of runs plus how to show them."""

    name: str
    title: str
    paper: str
    dataset: str
    stages: tuple[str, ...]
    base: dict[str, Any]
    quick: dict[str, Any]
    columns: tuple[str, ...]
    runs: tuple[Run, ...]
    derive: dict[str, Any]
    notes: str
    path: Path
    compare: dict[str, Any] = field(default_factory=dict)  # {baseline: RUN, metrics: [...]}
    start: Config = field(default_factory=Config)  # the suite's ``config:`` file, parsed once: every run starts here

    def config(self, run: Run, seed: int, quick: bool, workdir: Path) -> Config:
        """The fully resolved config of ``run`` with ``seed`` (``{run:NAME}`` replaced by NAME's run directory).

        Raises:
            SidrecError: an unknown override key, or a ``{run:NAME}`` that is not an earlier run.
        """
        def run_dir(ref: re.Match[str]) -> str:  # a sibling of workdir, as the runner lays them out
            return str(workdir.parent / run_dir_name(self._earlier(run, ref[1]), seed))

        items = {k: _RUN_REF.sub(run_dir, v) if isinstance(v, str) else v for k, v in self._items(run, quick).items()}
        items.update({"workdir": str(workdir), "seed": seed, "tokenizer.seed": seed})
        return apply_overrides(self.start, [f"{k}={_fmt(v)}" for k, v in items.items()])

    def references(self, run: Run, quick: bool) -> list[str]:
        """Names of the runs whose directories ``run``'s overrides name with ``{run:NAME}``."""
        refs = [m for v in self._items(run, quick).values() if isinstance(v, str) for m in _RUN_REF.findall(v)]
        return [self._earlier(run, name) for name in dict.fromkeys(refs)]

    def _items(self, run: Run, quick: bool) -> dict[str, Any]:
        """Every override of ``run`` before ``{run:...}`` resolution, later sources winning."""
        items: dict[str, Any] = {}
        if quick:
            items.update({"data.dataset": "synthetic", "data.path": "0"})
        else:
            items.update({"data.dataset": "sequences", "data.path": str(data_root() / self.dataset)})
        items.update(self.base)
        items.update(run.overrides)
        if quick:
            items.update(self.quick)
            items.update(run.quick)
        return items

    def _earlier(self, run: Run, name: str) -> str:
        """``name`` if it is a run before ``run`` in this suite (it must have run first)."""
        names = [r.name for r in self.runs]
        if name not in names[: names.index(run.name)]:
            raise SidrecError(f"{self.path}: run {run.name!r} refers to {{run:{name}}}, which must name an earlier run of the suite")
        return name


def _fmt(v: Any) -> str:
    """An override value as the ``key=value`` text :func:`apply_overrides` parses (as YAML)."""
    if isinstance(v, list | tuple | dict):
        return json.dumps(v)  # JSON is YAML flow syntax: lists stay lists (tokenizer.params.dims), tuples parse too
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _suite_file(path: Path, value: str, what: str) -> Path:
    """A file named in suite ``path``, resolved against the suite's directory.

    Raises:
        SidrecError: if the file does not exist.
    """
    f = path.parent / value
    if not f.is_file():
        raise SidrecError(f"{path}: {what} {f} not found")
    return f


def _compare(path: Path, raw: Any, names: list[str]) -> dict[str, Any]:
    """The suite's ``compare`` block, checked: a ``baseline`` that is one of its runs and a list of ``metrics``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or set(raw) != {"baseline", "metrics"}:
        raise SidrecError(f"{path}: compare must be {{baseline: RUN, metrics: [METRIC, ...]}}, got {raw!r}")
    if raw["baseline"] not in names:
        raise SidrecError(f"{path}: compare.baseline {raw['baseline']!r} is not a run of the suite; runs: {', '.join(names)}")
    metrics = raw["metrics"]
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise SidrecError(f"{path}: compare.metrics must be a non-empty list of metric names, got {metrics!r}")
    return {"baseline": raw["baseline"], "metrics": list(metrics)}


def _derive(path: Path, raw: Any) -> dict[str, Any]:
    """The suite's ``derive`` block with ``source`` as a list of suite names and ``where`` checked."""
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise SidrecError(f"{path}: derive must be {{kind: spearman, source: SUITE or [SUITE, ...], target: METRIC, ...}}, got {raw!r}")
    source = raw.get("source")
    sources = [source] if isinstance(source, str) else source
    if not isinstance(sources, list) or not sources or not all(isinstance(x, str) for x in sources):
        raise SidrecError(f"{path}: derive.source must be a suite name or a list of them, got {source!r}")
    where = raw.get("where") or {}  # {dotted config key: value}: rank only the runs configured so
    if not isinstance(where, dict):
        raise SidrecError(f"{path}: derive.where must map config keys to values, got {where!r}")
    return {**raw, "source": [safe_name(x, f"{path}: derive.source") for x in sources], "where": where}


def data_root() -> Path:
    """Where the real datasets live: ``$SIDREC_DATA`` or ``../shared/data``."""
    return Path(os.environ.get("SIDREC_DATA", "../shared/data"))


def available_suites(suite_dir: Path = SUITE_DIR) -> list[str]:
    """Names of the suites under ``suite_dir``."""
    return sorted(p.stem for p in suite_dir.glob("*.yaml"))


def load_suite(name: str, suite_dir: Path = SUITE_DIR) -> Suite:
    """Load and validate ``suite_dir/<name>.yaml`` (every run's config is resolved once)."""
    safe_name(name, "benchmark suite name")
    path = suite_dir / f"{name}.yaml"
    if not path.is_file():
        raise SidrecError(f"unknown benchmark suite {name!r}; available: {', '.join(available_suites(suite_dir)) or 'none'} (in {suite_dir})")
    raw = read_yaml(path, "benchmark suite")
    unknown = set(raw) - _SUITE_KEYS
    if unknown:
        raise SidrecError(f"{path}: unknown key {sorted(unknown)[0]!r}; valid keys: {', '.join(sorted(_SUITE_KEYS))}")
    runs = []
    for n, r in enumerate(raw.get("runs") or []):
        bad = set(r) - _RUN_KEYS
        if bad or "name" not in r:
            raise SidrecError(f"{path}: run {n}: needs a 'name' and only keys {', '.join(sorted(_RUN_KEYS))}")
        safe_name(r["name"], f"{path}: run")
        stages = tuple(r.get("stages") or ())
        script = r.get("script", "")
        if script:  # relative to the suite file, so a suite runs from any working directory
            script = str(_suite_file(path, script, f"run {r['name']!r}: script"))
        same_as = r.get("same_as", "")
        if same_as and (not isinstance(same_as, str) or same_as.count("/") != 1 or script):
            raise SidrecError(f"{path}: run {r['name']!r}: same_as must be 'SUITE/RUN' (and the run not a script), got {same_as!r}")
        for part in same_as.split("/") if same_as else ():
            safe_name(part, f"{path}: run {r['name']!r}: same_as")
        runs.append(Run(r["name"], dict(r.get("overrides") or {}), dict(r.get("paper") or {}), script, stages, r.get("from", ""),
                        r.get("skip_quick", ""), dict(r.get("quick") or {}), same_as))  # fmt: skip
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise SidrecError(f"{path}: run names must be unique")
    for r in runs:
        if r.source and (r.source not in names or names.index(r.source) >= names.index(r.name)):
            raise SidrecError(f"{path}: run {r.name!r} starts 'from' {r.source!r}, which must be an earlier run of the suite")
    stages = tuple(raw.get("stages") or STAGES)
    for s in stages + tuple(s for r in runs for s in r.stages):
        if s not in STAGES:
            raise SidrecError(f"{path}: unknown stage {s!r}; valid stages: {', '.join(STAGES)}")
    compare = _compare(path, raw.get("compare"), names)
    suite = Suite(
        name=safe_name(raw.get("name", name), f"{path}: suite name"),
        title=raw.get("title", name),
        paper=raw.get("paper", ""),
        dataset=raw.get("dataset", "amazon-beauty-2014"),
        stages=stages,
        base=dict(raw.get("base") or {}),
        quick=dict(raw.get("quick") or {}),
        columns=tuple(raw.get("columns") or ()),
        runs=tuple(runs),
        derive=_derive(path, raw.get("derive")),
        notes=raw.get("notes", ""),
        path=path,
        start=load_config(_suite_file(path, str(raw["config"]), "config file")) if raw.get("config") else Config(),
        compare=compare,
    )
    for run in suite.runs:  # fail now on a bad key, not after an hour of benchmarks
        if not run.script:
            suite.config(run, 0, quick=False, workdir=Path("_"))
            suite.config(run, 0, quick=True, workdir=Path("_"))
    return suite
