"""Regenerate ``BENCHMARKS.md`` tables from the JSON records.

Each suite's description (its ``paper`` and ``notes``) and table live between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` (appended as a new section the first
time); text outside the markers is hand-written and kept. Every cell comes from records: the mean
over seeds (± std when there are several), the paper's number beside it and the
relative difference; each row names its record files. Quick (smoke) records are
never reported.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

from sidrec.bench.suite import Suite, available_suites, load_suite
from sidrec.config import dotted
from sidrec.errors import SidrecError
from sidrec.io import atomic_open


def load_records(results_dir: Path, suite: str) -> dict[str, list[dict[str, Any]]]:
    """Full-budget records of ``suite``, grouped by run name (seed order)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((results_dir / suite).glob("*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        if rec.get("quick"):
            continue
        rec["_path"] = str(path)
        grouped.setdefault(rec["run"], []).append(rec)
    return grouped


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _cell(values: list[float], paper: float | None) -> str:
    if not values:
        return "—"
    mean, std = _mean_std(values)
    text = f"{mean:.4g}" + (f" ± {std:.2g}" if std is not None else "")
    if paper is not None:
        rel = (mean - paper) / paper * 100 if paper else float("nan")
        text += f" (paper {paper:.4g}, {rel:+.1f}%)"
    return text


def suite_table(suite: Suite, results_dir: Path) -> str:
    """Markdown for one suite, from its records."""
    if suite.derive:
        return _derived_table(suite, results_dir)
    records = load_records(results_dir, suite.name)
    if not records:
        return f"_No full-budget records yet: run `sidrec bench {suite.name}`._\n"
    columns = list(suite.columns) or sorted({k for recs in records.values() for k in recs[0]["metrics"]})
    lines = ["| run | seeds | " + " | ".join(columns) + " | records |", "|---|---:|" + "---|" * len(columns) + "---|"]
    commits = set()
    for run in suite.runs:
        recs = records.get(run.name, [])
        if not recs:
            continue
        commits.update(r["git"]["commit"][:7] for r in recs)
        cells = [_cell([r["metrics"][c] for r in recs if c in r["metrics"]], run.paper.get(c)) for c in columns]
        files = ", ".join(f"`{Path(r['_path']).name}`" for r in recs)
        lines.append(f"| {run.name} | {len(recs)} | " + " | ".join(cells) + f" | {files} |")
    machine = next(iter(records.values()))[0]["machine"]
    if suite.compare:
        lines += ["", _comparison_table(suite, records)]
    lines.append("")
    lines.append(
        f"Records: `{results_dir / suite.name}/`; commit(s) {', '.join(sorted(commits))}; "
        f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}. "
        f"Re-run: `sidrec bench {suite.name}` (add `--seeds N` for mean ± std)."
    )
    return "\n".join(lines) + "\n"


def _comparison_table(suite: Suite, records: dict[str, list[dict[str, Any]]]) -> str:
    """Each run's seed mean against the ``compare`` baseline's: Δ, Δ in seed stds, Welch's p.

    σ is the larger sample std of the two runs (a one-seed run has none, so a one-seed row is read
    against the baseline's spread alone): "above by more than 1 σ" is the bar issue 14 set for a claim
    that one tokenizer beats another, and a row within 1 σ is not told apart from seed noise.
    """
    base_name, metrics = suite.compare["baseline"], suite.compare["metrics"]
    base = records.get(base_name, [])
    if not base:
        return f"_Comparison against `{base_name}`: no records of it yet._"
    rows = []
    for run in suite.runs:
        recs = records.get(run.name, [])
        if run.name == base_name or not recs:
            continue
        for metric in metrics:
            a = [r["metrics"][metric] for r in recs if metric in r["metrics"]]
            b = [r["metrics"][metric] for r in base if metric in r["metrics"]]
            if not a or not b:
                continue
            (ma, sa), (mb, sb) = _mean_std(a), _mean_std(b)
            sigma = max((s for s in (sa, sb) if s), default=None)
            z = (ma - mb) / sigma if sigma else None
            reading = "no seed spread" if z is None else "above by more than 1 σ" if z > 1 else "below by more than 1 σ" if z < -1 else "within 1 σ"
            rel = f" ({(ma - mb) / mb * 100:+.1f}%)" if mb else ""
            rows.append(
                f"| {run.name} | {len(a)} | {metric} | {ma:.4g}" + (f" ± {sa:.2g}" if sa is not None else "") + f" | {mb:.4g}"
                + (f" ± {sb:.2g}" if sb is not None else "") + f" | {ma - mb:+.4f}{rel} | " + ("—" if z is None else f"{z:+.2f}")
                + f" | {_welch(a, b)} | {reading} |"
            )  # fmt: skip
    if not rows:
        return f"_Comparison against `{base_name}`: no other run has records yet._"
    return "\n".join([
        f"Against `{base_name}` ({len(base)} seed(s)): Δ = difference of the seed means; σ = the larger sample std of the "
        "two (one seed has none); Welch's t-test where both have ≥ 2 seeds.",
        "",
        "| run | seeds | metric | mean | baseline mean | Δ | Δ / σ | Welch p | reading |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
        *rows,
    ])


def _welch(a: list[float], b: list[float]) -> str:
    """Two-sided p of Welch's t-test, or "—" if either side has fewer than 2 seeds or no spread."""
    if len(a) < 2 or len(b) < 2 or (statistics.stdev(a) == 0 and statistics.stdev(b) == 0):
        return "—"
    from scipy.stats import ttest_ind

    return f"{float(ttest_ind(a, b, equal_var=False).pvalue):.2f}"


def _spearman(x: list[float], y: list[float]) -> tuple[float, float]:
    """Spearman's rho and its two-sided p from a permutation test over the pairings.

    scipy's own p-value is asymptotic (a t-distribution) and reads 0.00 for a perfect rank correlation at
    n = 3, where 2 of the 3! = 6 pairings reach |rho| = 1 (exact p = 1/3). With a handful of tokenizers
    the exact test over all n! pairings is cheap (n <= 8); beyond that 9,999 seeded random pairings, so
    the report stays reproducible.
    """
    from scipy.stats import permutation_test, spearmanr

    res = permutation_test(
        (x,), lambda a: spearmanr(a, y).statistic, permutation_type="pairings",
        n_resamples=math.inf if len(x) <= 8 else 9999, rng=0,
    )  # fmt: skip
    # a constant column has no rank correlation; the test would count no pairing at least as extreme (p 0)
    return float(res.statistic), math.nan if math.isnan(res.statistic) else float(res.pvalue)


def _pooled_records(suite: Suite, results_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Records of ``derive.source``'s suites by run; runs of several suites are named ``SUITE/RUN``.

    A record the runner copied from another suite's run (``same_as``, equal configs; the copy names its
    origin under ``same_as``) is that run's measurement: pooled, it would count one tokenizer twice.
    """
    sources = suite.derive["source"]
    if len(sources) == 1:
        return load_records(results_dir, sources[0])
    pooled: dict[str, list[dict[str, Any]]] = {}
    for name in sources:
        for run, recs in load_records(results_dir, name).items():
            if own := [x for x in recs if "same_as" not in x]:
                pooled[f"{name}/{run}"] = own
    return pooled


def _derived_table(suite: Suite, results_dir: Path) -> str:
    d = suite.derive
    if d.get("kind") != "spearman":
        raise SidrecError(f"{suite.path}: derive.kind must be 'spearman', got {d.get('kind')!r}")
    records = _pooled_records(suite, results_dir)
    named = ", ".join(f"`{x}`" for x in d["source"])
    if d["where"]:  # rank only the runs configured so
        configs = {r: [dotted(x.get("config", {})) for x in recs] for r, recs in records.items()}
        records = {r: recs for r, recs in records.items() if all(c.get(k) == v for c in configs[r] for k, v in d["where"].items())}
        named += " where " + ", ".join(f"`{k} = {v}`" for k, v in d["where"].items())
    runs = [r for r, recs in sorted(records.items()) if all(d["target"] in x["metrics"] for x in recs)]
    if len(runs) < 3:
        return f"_Needs full-budget records of at least 3 runs of {named} (have {len(runs)})._\n"
    target = [_mean_std([x["metrics"][d["target"]] for x in records[r]])[0] for r in runs]
    lines = [f"| SID metric | Spearman ρ with {d['target']} (ours) | p (permutation) | n | paper |", "|---|---:|---:|---:|---:|"]
    for metric in d.get("metrics", []):
        have = [i for i, r in enumerate(runs) if all(metric in x["metrics"] for x in records[r])]  # older records lack newer metrics
        paper = d.get("paper", {}).get(metric)
        paper_cell = "—" if paper is None else f"{paper:+.3f}"
        if len(have) < 3:
            lines.append(f"| {metric} | — | — | {len(have)} | {paper_cell} |")
            continue
        vals = [_mean_std([x["metrics"][metric] for x in records[runs[i]]])[0] for i in have]
        rho, p = _spearman(vals, [target[i] for i in have])
        p_cell = f"{p:.2f}" if not p < 0.01 else f"{p:.1g}"  # an exact p of 0.003 must not read 0.00
        lines.append(f"| {metric} | {rho:+.3f} | {p_cell} | {len(have)} | {paper_cell} |")
    lines.append("")
    lines.append(f"Computed from the records of {named} ({', '.join(runs)}); re-run: `sidrec bench --report`.")
    return "\n".join(lines) + "\n"


def write_report(benchmarks_md: Path = Path("BENCHMARKS.md"), results_dir: Path = Path("benchmarks/results"), suite_dir: Path = Path("benchmarks"), suites: tuple[str, ...] = ()) -> list[str]:
    """Rewrite each suite's block in ``benchmarks_md``; returns the suites written."""
    text = benchmarks_md.read_text(encoding="utf-8") if benchmarks_md.is_file() else "# Benchmarks\n"
    names = list(suites) or available_suites(suite_dir)
    for name in names:
        suite = load_suite(name, suite_dir)
        # the suite's description is generated too: an edit to its YAML notes must reach the report
        # (it used to be written once, above the block, and went stale when the suite changed)
        about = (f"{suite.paper}\n\n" if suite.paper else "") + (f"{suite.notes.strip()}\n\n" if suite.notes else "")
        body = f"<!-- bench:{name} -->\n{about}{suite_table(suite, results_dir)}<!-- /bench:{name} -->"
        pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: body, text)
        else:
            text = text.rstrip("\n") + f"\n\n## Suite `{name}`: {suite.title}\n\n" + body + "\n"
    with atomic_open(benchmarks_md, "w", encoding="utf-8") as f:
        f.write(text)
    return names
