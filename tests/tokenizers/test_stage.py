"""``sidrec tokenize`` end to end through the CLI on a tiny prepared dataset."""

from __future__ import annotations

import json

import numpy as np

from sidrec.cli import main
from sidrec.data import PreparedData
from sidrec.tokenizers import SIDTable, Tokenizer

from .conftest import make_workdir


def test_tokenize_writes_tokenizer_sids_metrics_and_plot(tmp_path, capsys):
    wd = make_workdir(tmp_path / "run")
    rc = main(["tokenize", "-w", str(wd), "-q", "tokenizer.n_levels=2", "tokenizer.codebook_size=8", "tokenizer.seed=1"])
    assert rc == 0
    out = wd / "tokenizer"
    printed = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "sid_metrics.json").read_text())
    assert printed == metrics and metrics["method"] == "rkmeans" and metrics["fit_seconds"] >= 0
    assert metrics["codebook_sizes"] == [8, 8] and len(metrics["usage"]) == 2
    assert (out / "codebook_usage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    data = PreparedData(wd / "data")
    table = SIDTable.load(out)
    assert table.item_ids == data.item_ids and table.collision == "digit"
    emb = np.load(wd / "embeddings" / "embeddings.npy")
    codes = Tokenizer.load(out).encode(emb)
    np.testing.assert_array_equal(table.codes[:, :2], codes)  # the saved tokenizer reproduces sids.csv
    unique = len(np.unique(codes, axis=0))
    assert metrics["items_per_sid"] == len(codes) / unique


def test_tokenize_reports_bad_params_in_one_line(tmp_path, capsys):
    wd = make_workdir(tmp_path / "run")
    rc = main(["tokenize", "-w", str(wd), "-q", "tokenizer.codebook_size=8", "tokenizer.params.normalise=true"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: unknown key 'tokenizer.params.normalise' for rkmeans; valid keys:")
    rc = main(["tokenize", "-w", str(wd), "-q", "tokenizer.codebook_size=64"])
    assert rc == 2 and "needs at least 64 items" in capsys.readouterr().err


def test_a_resumed_pipeline_keeps_a_fit_of_the_same_config_and_inputs(tmp_path):
    from sidrec.config import apply_overrides, load_config
    from sidrec.rundir import record_stage
    from sidrec.tokenizers.stage import run_tokenize

    wd = make_workdir(tmp_path / "run")
    cfg = load_config(overrides=[f"workdir={wd}", "tokenizer.n_levels=2", "tokenizer.codebook_size=8"])
    first = run_tokenize(cfg, progress=False, reuse=True)  # nothing to keep yet: a fit
    assert "reused" not in first
    sids = (wd / "tokenizer" / "sids.csv").read_bytes()
    again = run_tokenize(cfg, progress=False, reuse=True)
    assert again["reused"] is True and again["fit_seconds"] == first["fit_seconds"]
    assert (wd / "tokenizer" / "sids.csv").read_bytes() == sids

    from sidrec.rundir import commit_stage

    with commit_stage(wd / "tokenizer", inputs=("embeddings",), keep=True) as tmp:  # a later stage publishes
        table = SIDTable.load(tmp)  # its own table here (UniGRec's jointly trained SIDs)
        SIDTable.build(table.item_ids, table.codes[::-1, :2].copy(), [8, 8], "digit").save(tmp)
    assert "reused" not in run_tokenize(cfg, progress=False, reuse=True)  # not this fit's table: refit
    assert (wd / "tokenizer" / "sids.csv").read_bytes() == sids

    other = apply_overrides(cfg, ["tokenizer.seed=5"])  # another config: refit
    assert "reused" not in run_tokenize(other, progress=False, reuse=True)
    assert "reused" not in run_tokenize(other, progress=False)  # `sidrec tokenize` always fits

    emb = np.load(wd / "embeddings" / "embeddings.npy")  # re-embedded items: refit, never a stale fit
    np.save(wd / "embeddings" / "embeddings.npy", emb[:, ::-1].copy())
    record_stage(wd / "embeddings", inputs=("data",))
    assert "reused" not in run_tokenize(other, progress=False, reuse=True)
