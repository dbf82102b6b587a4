"""`sidrec bench SUITE --quick` for every suite shipped in benchmarks/ (issue 6's smoke check)."""

import json
import shutil
from pathlib import Path

import pytest

from sidrec.bench import load_suite, run_suite, write_report
from sidrec.bench.suite import available_suites

SUITE_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
RUN_SUITES = [n for n in available_suites(SUITE_DIR) if not load_suite(n, SUITE_DIR).derive]
DERIVED = [n for n in available_suites(SUITE_DIR) if load_suite(n, SUITE_DIR).derive]


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.mark.parametrize("name", RUN_SUITES)
def test_quick_suite_runs_every_run(name: str, quick_results: Path):
    suite = load_suite(name, SUITE_DIR)
    paths = run_suite(suite, quick=True, results_dir=quick_results / "results", work_root=quick_results / "runs")
    expected = [r for r in suite.runs if not r.skip_quick]
    assert len(paths) == len(expected)
    for run, path in zip(expected, paths):
        rec = json.loads(path.read_text())
        assert rec["quick"] is True and rec["run"] == run.name
        if not run.script:
            assert set(rec["seconds"]) == set(run.stages or suite.stages)
        for column in suite.columns:  # every ranking column the report shows was measured
            # (SID metrics may be undefined on a 2-epoch smoke tokenizer, e.g. PD with one cluster)
            if not run.script and column.startswith(("evaluate/", "train/")) and column.split("/")[0] in rec["seconds"]:
                assert column in rec["metrics"], (run.name, column)


@pytest.mark.parametrize("name", DERIVED)
def test_derived_suite_reports_from_quick_records(name: str, quick_results: Path, tmp_path: Path):
    suite = load_suite(name, SUITE_DIR)
    results = tmp_path / "results"
    for source in suite.derive["source"]:  # a derived suite may pool several
        quick = quick_results / "results" / "quick" / source
        if not quick.is_dir():
            run_suite(load_suite(source, SUITE_DIR), quick=True, results_dir=quick_results / "results", work_root=quick_results / "runs")
        # the report ignores quick records, so present copies of them as full-budget ones
        shutil.copytree(quick, results / source)
        for p in (results / source).glob("*.json"):
            rec = json.loads(p.read_text())
            rec["quick"] = False
            p.write_text(json.dumps(rec))
    md = tmp_path / "BENCHMARKS.md"
    write_report(md, results, SUITE_DIR, (name,))
    text = md.read_text()
    assert "Spearman ρ with" in text
    for metric in suite.derive["metrics"]:
        assert f"| {metric} | " in text
