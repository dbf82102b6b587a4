"""Benchmark harness: named suites (YAML under ``benchmarks/``), one JSON record per run,
and ``BENCHMARKS.md`` tables regenerated from those records."""

from sidrec.bench.suite import Suite, load_suite
from sidrec.bench.runner import run_suite
from sidrec.bench.report import write_report

__all__ = ["Suite", "load_suite", "run_suite", "write_report"]
