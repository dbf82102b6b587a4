import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sidrec.bench import load_suite, run_suite, write_report
from sidrec.bench.script import emit
from sidrec.errors import SidrecError

SUITE = """
name: toy
title: toy suite
paper: "Toy et al., Table 1"
stages: [prepare]
base: {data.min_count: 0}
columns: [prepare/counts/users, script/value]
runs:
  - name: small-history
    overrides: {data.max_history: 5}
    paper: {prepare/counts/users: 1000}
  - name: scripted
    script: SCRIPT
"""

SCRIPT = """
import argparse, json
p = argparse.ArgumentParser(); p.add_argument("--seed", type=int); p.add_argument("--quick", action="store_true")
a = p.parse_args()
print("noise line")
print(json.dumps({"value": 10 + a.seed, "quick": a.quick}))
"""


@pytest.fixture
def suite_dir(tmp_path: Path) -> Path:
    d = tmp_path / "benchmarks"
    d.mkdir()
    (d / "script.py").write_text(SCRIPT)
    (d / "toy.yaml").write_text(SUITE.replace("SCRIPT", str(d / "script.py")))
    return d


def test_suite_validation(suite_dir: Path):
    (suite_dir / "bad.yaml").write_text("runs:\n  - name: a\n    overrides: {train.lrr: 1}\n")
    with pytest.raises(SidrecError, match="unknown key 'train.lrr'"):
        load_suite("bad", suite_dir)
    (suite_dir / "bad.yaml").write_text("rnus: []\n")
    with pytest.raises(SidrecError, match="unknown key 'rnus'"):
        load_suite("bad", suite_dir)
    with pytest.raises(SidrecError, match="unknown benchmark suite 'nope'; available: bad, toy"):
        load_suite("nope", suite_dir)


def test_quick_run_writes_records_resumably_and_reports(suite_dir: Path, tmp_path: Path, capsys):
    suite = load_suite("toy", suite_dir)
    results, work = tmp_path / "results", tmp_path / "work"
    paths = run_suite(suite, seeds=2, quick=True, results_dir=results, work_root=work)
    assert len(paths) == 4 and all(p.parent == results / "quick" / "toy" for p in paths)
    rec = json.loads(paths[0].read_text())
    assert rec["quick"] is True and rec["config"]["data"]["max_history"] == 5
    assert rec["metrics"]["prepare/counts/users"] == 2000  # the synthetic catalogue's users
    assert set(rec["seconds"]) == {"prepare"} and rec["peak_memory_mb"] > 0
    assert len(rec["dataset"]["checksum"]) == 64 and rec["machine"]["cores"] >= 1
    assert json.loads(paths[3].read_text())["metrics"] == {"script/value": 11.0}
    mtimes = [p.stat().st_mtime_ns for p in paths]
    run_suite(suite, seeds=2, quick=True, results_dir=results, work_root=work)  # resumes: nothing re-run
    assert [p.stat().st_mtime_ns for p in paths] == mtimes
    assert "record exists, skipped" in capsys.readouterr().out

    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nhand-written text stays\n")
    write_report(md, results, suite_dir, ("toy",))
    text = md.read_text()
    assert "hand-written text stays" in text and "No full-budget records yet" in text  # quick records never reported

    # promote the quick records to full-budget ones to exercise the table
    (results / "toy").mkdir()
    for p in paths:
        r = json.loads(p.read_text())
        r["quick"] = False
        (results / "toy" / p.name).write_text(json.dumps(r))
    write_report(md, results, suite_dir, ("toy",))
    text = md.read_text()
    assert "| small-history | 2 | 2000 ± 0 (paper 1000, +100.0%) | — |" in text
    assert "| scripted | 2 | — | 10.5 ± 0.71 |" in text
    assert text.count("<!-- bench:toy -->") == 1
    write_report(md, results, suite_dir, ("toy",))  # idempotent
    assert md.read_text() == text

    # the suite's description is part of the generated block: editing its YAML updates the report
    assert "Toy et al., Table 1" in text and text.count("## Suite `toy`") == 1
    yaml_path = suite_dir / "toy.yaml"
    yaml_path.write_text(yaml_path.read_text().replace('"Toy et al., Table 1"', '"Toy et al., Table 2"\nnotes: budget B'))
    write_report(md, results, suite_dir, ("toy",))
    edited = md.read_text()
    assert "Table 1" not in edited and "Toy et al., Table 2" in edited and "budget B" in edited
    assert edited.count("## Suite `toy`") == 1 and "hand-written text stays" in edited


def test_failed_run_is_reported_and_others_kept(suite_dir: Path, tmp_path: Path):
    (suite_dir / "broken.yaml").write_text(textwrap.dedent("""
        stages: [prepare]
        runs:
          - name: ok
          - name: broken
            overrides: {data.dataset: sequences, data.path: /nonexistent}
    """))
    suite = load_suite("broken", suite_dir)
    with pytest.raises(SidrecError, match="1 run\\(s\\) of suite 'broken' failed; first: broken seed 0: .*not found"):
        run_suite(suite, quick=False, results_dir=tmp_path / "r", work_root=tmp_path / "w", only=("broken",))


def test_script_path_is_relative_to_the_suite_file(suite_dir: Path, tmp_path: Path, monkeypatch):
    (suite_dir / "rel.yaml").write_text("runs:\n  - name: s\n    script: script.py\n")
    monkeypatch.chdir(tmp_path)  # any working directory
    suite = load_suite("rel", suite_dir)
    assert suite.runs[0].script == str(suite_dir / "script.py")
    paths = run_suite(suite, quick=True, results_dir=tmp_path / "r", work_root=tmp_path / "w")
    assert json.loads(paths[0].read_text())["metrics"] == {"script/value": 10.0}
    (suite_dir / "rel.yaml").write_text("runs:\n  - name: s\n    script: nope.py\n")
    with pytest.raises(SidrecError, match=f"run 's': script {suite_dir / 'nope.py'} not found"):
        load_suite("rel", suite_dir)


def test_benchmark_script_without_its_run_fails_in_one_line(tmp_path: Path):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "tokenizer_speed.py"
    env = {**os.environ, "SIDREC_BENCH_RUN": str(tmp_path / "missing")}
    proc = subprocess.run([sys.executable, str(script), "--seed", "0"], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"tokenizer_speed.py: error: {tmp_path / 'missing' / 'embeddings' / 'embeddings.npy'} not found: needs item embeddings "
        "(.npy) of a prepared run; pass -w RUN or set $SIDREC_BENCH_RUN to a prepared run, or use --quick"
    )


def test_emit_keeps_numbers_only(capsys):
    emit({"a": 1, "b": 0.5})
    assert capsys.readouterr().out == '{"a": 1, "b": 0.5}\n'
    for bad in ("x", True, float("nan"), [1]):
        with pytest.raises(SidrecError, match="benchmark metric 'c' must be a finite number"):
            emit({"c": bad})


REFS = """
stages: [prepare]
base: {tokenizer.params.dims: [8, 4]}
runs:
  - name: teacher
  - name: student
    overrides: {unigrec.teacher: "{run:teacher}/model"}
"""


def test_run_reference_resolves_to_the_earlier_runs_directory(suite_dir: Path, tmp_path: Path):
    (suite_dir / "refs.yaml").write_text(REFS)
    suite = load_suite("refs", suite_dir)
    student = suite.runs[1]
    cfg = suite.config(student, 3, quick=True, workdir=tmp_path / "quick" / "refs" / "student-seed3")
    assert cfg.unigrec.teacher == str(tmp_path / "quick" / "refs" / "teacher-seed3" / "model")
    assert cfg.tokenizer.params["dims"] == [8, 4]  # a list override stays a list
    assert suite.references(student, quick=True) == ["teacher"] and suite.references(suite.runs[0], quick=False) == []

    results, work = tmp_path / "results", tmp_path / "work"
    with pytest.raises(SidrecError, match="run 'student' uses the directory of run 'teacher' \\(seed 0\\), which has no finished run"):
        run_suite(suite, quick=True, results_dir=results, work_root=work, only=("student",))
    paths = run_suite(suite, quick=True, results_dir=results, work_root=work)
    rec = json.loads(paths[1].read_text())
    assert rec["config"]["unigrec"]["teacher"] == str(work / "quick" / "refs" / "teacher-seed0" / "model")


@pytest.mark.parametrize("ref, where", [("nobody", "overrides"), ("student", "overrides"), ("teacher", "base")])
def test_run_reference_must_name_an_earlier_run(suite_dir: Path, ref: str, where: str):
    text = REFS.replace("{run:teacher}", f"{{run:{ref}}}")
    if where == "base":  # in base, the first run would refer to itself
        text = text.replace("base: {", 'base: {unigrec.teacher: "{run:teacher}", ')
    (suite_dir / "refs.yaml").write_text(text)
    first = "teacher" if where == "base" else "student"
    with pytest.raises(SidrecError, match=f"run '{first}' refers to \\{{run:{ref}\\}}, which must name an earlier run of the suite"):
        load_suite("refs", suite_dir)


def test_suite_config_file_is_the_base_of_every_run(suite_dir: Path, tmp_path: Path):
    (suite_dir / "recipe.yaml").write_text("train:\n  lr: 0.003\n  max_steps: 77\nmodel:\n  d_model: 64\n")
    (suite_dir / "cfg.yaml").write_text(
        "config: recipe.yaml\nbase: {train.max_steps: 55}\nruns:\n  - name: a\n    overrides: {model.d_model: 32}\n"
    )
    suite = load_suite("cfg", suite_dir)
    cfg = suite.config(suite.runs[0], 0, quick=False, workdir=tmp_path / "a")
    # the file sets the start; the suite's base and the run's overrides still win
    assert (cfg.train.lr, cfg.train.max_steps, cfg.model.d_model) == (0.003, 55, 32)
    (suite_dir / "cfg.yaml").write_text("config: nope.yaml\nruns: []\n")
    with pytest.raises(SidrecError, match=f"config file {suite_dir / 'nope.yaml'} not found"):
        load_suite("cfg", suite_dir)


def test_flatten_expands_per_level_lists():
    from sidrec.bench.runner import _flatten

    out = _flatten({"tokenize": {"sc_prefix": [0.5, 0.75], "usage": [], "method": "x", "flag": True, "mixed": [1, "a"]}})
    assert out == {"tokenize/sc_prefix/0": 0.5, "tokenize/sc_prefix/1": 0.75}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("quick", [False, True])
def test_a_records_command_reruns_that_seed(seed: int, quick: bool):
    """The command stored with seed k's record makes that record and no other seed's."""
    import shlex

    from sidrec.bench.runner import reproduce_command
    from sidrec.cli import build_parser

    args = build_parser().parse_args(shlex.split(reproduce_command("tokenizers", "rkmeans", seed, quick))[1:])
    assert (args.suite, args.only, args.quick) == ("tokenizers", ["rkmeans"], quick)
    assert (args.seed or 0) == seed and args.seeds == 1


def test_one_seed_runs_alone_and_bad_seeds_are_refused(suite_dir: Path, tmp_path: Path):
    """``--seed K`` trains seed K only, so a run's seeds can go to different machines."""
    suite, results = load_suite("toy", suite_dir), tmp_path / "results"
    paths = run_suite(suite, seeds=(2,), quick=True, results_dir=results, work_root=tmp_path / "w", only=("scripted",))
    assert [p.name for p in paths] == ["scripted-seed2.json"] and sorted(p.name for p in (results / "quick" / "toy").iterdir()) == [
        "scripted-seed2.json"
    ]
    assert json.loads(paths[0].read_text())["metrics"] == {"script/value": 12.0}
    for bad in (0, (), (-1,)):
        with pytest.raises(SidrecError, match="seeds must be --seeds N >= 1 or --seed K >= 0"):
            run_suite(suite, seeds=bad, quick=True, results_dir=results, work_root=tmp_path / "w")


def test_spearman_table_skips_metrics_older_records_lack(tmp_path: Path):
    d = tmp_path / "benchmarks"
    d.mkdir()
    (d / "src.yaml").write_text("name: src\ntitle: s\nstages: [prepare]\nruns:\n" + "".join(f"  - name: r{i}\n" for i in range(4)))
    (d / "corr.yaml").write_text(
        "name: corr\ntitle: c\nderive: {kind: spearman, source: src, target: evaluate/recall@10, metrics: [m/a, m/new]}\n"
    )
    results = tmp_path / "results" / "src"
    results.mkdir(parents=True)
    for i in range(4):  # m/a rises with recall (rho = +1); only two records have m/new
        metrics = {"evaluate/recall@10": 0.01 * i, "m/a": float(i)} | ({"m/new": float(-i)} if i < 2 else {})
        (results / f"r{i}-seed0.json").write_text(json.dumps({"run": f"r{i}", "quick": False, "metrics": metrics}))
    md = tmp_path / "BENCHMARKS.md"
    write_report(md, tmp_path / "results", d, ("corr",))
    text = md.read_text()
    assert "| m/a | +1.000 | 0.08 | 4 | — |" in text  # exact: 2 of the 4! = 24 pairings reach |rho| = 1
    assert "| m/new | — | — | 2 | — |" in text


def test_spearman_pools_suites_counts_a_same_as_run_once_and_filters_on_config(tmp_path: Path):
    d = tmp_path / "benchmarks"
    d.mkdir()
    (d / "a.yaml").write_text("name: a\ntitle: a\nstages: [prepare]\nruns:\n  - name: r0\n  - name: r1\n")
    (d / "b.yaml").write_text(
        "name: b\ntitle: b\nstages: [prepare]\nruns:\n  - name: r1\n    same_as: a/r1\n  - name: own\n    same_as: a/r0\n  - name: v\n  - name: flat\n"
    )
    corr = "name: {}\ntitle: p\nderive: {{kind: spearman, source: {}, target: evaluate/recall@10, metrics: [m/a]{}}}\n"
    (d / "pool.yaml").write_text(corr.format("pool", "[a, b]", ""))
    (d / "deep.yaml").write_text(corr.format("deep", "[a, b]", ", where: {tokenizer.n_levels: 3}"))
    (d / "bad.yaml").write_text(corr.format("bad", "[]", ""))
    (d / "badwhere.yaml").write_text(corr.format("badwhere", "a", ", where: [3]"))
    # b/r1's record is the runner's copy of a/r1's (same_as, equal configs: it names its origin);
    # b/own declares same_as a/r0 but trained itself (its config differed), so its record is its own
    runs = (("a", "r0", 0, 3), ("a", "r1", 1, 3), ("b", "r1", 1, 3), ("b", "v", 2, 3), ("b", "flat", 3, 1), ("b", "own", 4, 3))
    for suite, run, i, levels in runs:
        (tmp_path / "results" / suite).mkdir(parents=True, exist_ok=True)
        record = {"run": run, "seed": 0, "quick": False, "config": {"tokenizer": {"n_levels": levels}},
                  "metrics": {"evaluate/recall@10": 0.01 * i, "m/a": float(-i) if levels == 3 else 9.0}}  # fmt: skip
        if (suite, run) == ("b", "r1"):
            record["same_as"] = str(tmp_path / "results" / "a" / "r1-seed0.json")
        (tmp_path / "results" / suite / f"{run}-seed0.json").write_text(json.dumps(record))
    md = tmp_path / "BENCHMARKS.md"
    write_report(md, tmp_path / "results", d, ("pool", "deep"))
    pool, deep = md.read_text().split("<!-- bench:deep -->")
    assert "| m/a | -0.400 | 0.52 | 5 | — |" in pool and "(a/r0, a/r1, b/flat, b/own, b/v)" in pool
    assert "| m/a | -1.000 | 0.08 | 4 | — |" in deep and "where `tokenizer.n_levels = 3` (a/r0, a/r1, b/own, b/v)" in deep
    with pytest.raises(SidrecError, match="derive.source must be a suite name or a list of them"):
        write_report(md, tmp_path / "results", d, ("bad",))
    with pytest.raises(SidrecError, match="derive.where must map config keys to values"):
        write_report(md, tmp_path / "results", d, ("badwhere",))


def test_spearman_p_is_exact_over_all_pairings_not_asymptotic():
    from sidrec.bench.report import _spearman

    # n = 3, perfect rank agreement: scipy's asymptotic p reads 0; exactly 2 of the 3! = 6 pairings reach |rho| = 1
    assert _spearman([1.0, 2.0, 3.0], [0.1, 0.5, 0.7]) == (1.0, 1 / 3)
    rho, p = _spearman([1.0, 2.0, 3.0, 4.0, 5.0], [0.2, 0.1, 0.3, 0.5, 0.4])
    assert abs(rho - 0.8) < 1e-12 and abs(p - 16 / 120) < 1e-12  # 16 of the 5! = 120 pairings have |rho| >= 0.8


def test_same_as_reuses_the_record_of_an_identical_run_only(suite_dir: Path, tmp_path: Path, capsys):
    (suite_dir / "alias.yaml").write_text(textwrap.dedent("""
        stages: [prepare]
        base: {data.min_count: 0}
        runs:
          - name: same
            overrides: {data.max_history: 5}
            same_as: toy/small-history
          - name: other
            overrides: {data.max_history: 6}
            same_as: toy/small-history
    """))
    results, work = tmp_path / "results", tmp_path / "work"
    alias = load_suite("alias", suite_dir)
    run_suite(alias, quick=True, results_dir=results, work_root=work, only=("same",))  # nothing to reuse yet: it runs
    assert "has no record for seed 0 yet; running it here" in capsys.readouterr().out
    assert "same_as" not in json.loads((results / "quick" / "alias" / "same-seed0.json").read_text())

    run_suite(load_suite("toy", suite_dir), quick=True, results_dir=results, work_root=work, only=("small-history",))
    paths = run_suite(alias, quick=True, results_dir=results, work_root=work, force=True)
    out = capsys.readouterr().out
    source = results / "quick" / "toy" / "small-history-seed0.json"
    same, other = (json.loads(p.read_text()) for p in paths)
    assert same["same_as"] == str(source) and (same["suite"], same["run"]) == ("alias", "same")
    assert same["metrics"] == json.loads(source.read_text())["metrics"]
    assert "same_as" not in other and "not the run of" in out and "data.max_history = 6 here, 5 there" in out


@pytest.mark.parametrize("value", ["toy", "a/b/c", "../x/y"])
def test_same_as_must_name_one_suite_and_run(suite_dir: Path, value: str):
    (suite_dir / "bad.yaml").write_text(f"runs:\n  - name: a\n    same_as: {value!r}\n")
    with pytest.raises(SidrecError, match="same_as"):
        load_suite("bad", suite_dir)


def test_comparison_reads_each_run_against_the_baseline_in_seed_stds(tmp_path: Path):
    from scipy.stats import ttest_ind

    d = tmp_path / "benchmarks"
    d.mkdir()
    (d / "cmp.yaml").write_text(
        "name: cmp\ntitle: c\nstages: [prepare]\ncolumns: [m/r]\ncompare: {baseline: base, metrics: [m/r]}\n"
        "runs:\n  - name: base\n  - name: better\n  - name: close\n  - name: single\n"
    )
    values = {"base": [0.060, 0.062, 0.064], "better": [0.070, 0.071, 0.072], "close": [0.061, 0.063, 0.065], "single": [0.059]}
    results = tmp_path / "results" / "cmp"
    results.mkdir(parents=True)
    machine = {"cpu": "x", "cores": 2, "torch": "t"}
    for run, vals in values.items():
        for seed, v in enumerate(vals):
            rec = {"run": run, "quick": False, "git": {"commit": "abcdef0"}, "machine": machine, "metrics": {"m/r": v}}
            (results / f"{run}-seed{seed}.json").write_text(json.dumps(rec))
    md = tmp_path / "BENCHMARKS.md"
    write_report(md, tmp_path / "results", d, ("cmp",))
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in md.read_text().splitlines() if line.startswith("| ") and " m/r " in line}
    # better: Δ 0.01, σ = max(0.002, 0.001) = 0.002 -> +5 σ; Welch's p as scipy computes it
    p = ttest_ind(values["better"], values["base"], equal_var=False).pvalue
    assert rows["better"][5:9] == ["+0.0090 (+14.5%)", "+4.50", f"{p:.2f}", "above by more than 1 σ |"]
    assert rows["close"][6] == "+0.50" and rows["close"][8] == "within 1 σ |"
    # a one-seed run has no spread of its own: read against the baseline's, no Welch test
    assert rows["single"][1] == "1" and rows["single"][6:9] == ["-1.50", "—", "below by more than 1 σ |"]
    assert "base" not in rows


@pytest.mark.parametrize("compare", ["{baseline: nope, metrics: [m/r]}", "{baseline: a, metrics: []}", "{baseline: a}", "rkmeans"])
def test_compare_must_name_a_run_and_metrics(tmp_path: Path, compare: str):
    (tmp_path / "bad.yaml").write_text(f"name: bad\ntitle: b\nstages: [prepare]\ncompare: {compare}\nruns:\n  - name: a\n")
    with pytest.raises(SidrecError, match="compare"):
        load_suite("bad", tmp_path)
