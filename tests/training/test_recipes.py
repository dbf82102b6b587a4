"""`sidrec train --method ...` dispatch: SASRec through the CLI, recorded for evaluate/recommend."""

import json
from pathlib import Path

from sidrec.cli import main
from sidrec.io import read_json


def test_sasrec_through_the_cli(tmp_path: Path, capsys):
    wd = str(tmp_path / "run")
    assert main(["prepare", "-w", wd, "data.dataset=synthetic"]) == 0
    small = ["sasrec.max_epochs=2", "sasrec.d_model=16", "sasrec.n_layers=1", "sasrec.n_heads=1"]
    assert main(["train", "-q", "-w", wd, "--method", "sasrec", *small]) == 0
    assert read_json(tmp_path / "run" / "model" / "recipe.json") == {"method": "sasrec"}
    assert (tmp_path / "run" / "model" / "item_embeddings.npy").is_file()  # the UniGRec teacher
    capsys.readouterr()
    # evaluate/recommend follow the recorded recipe, whatever train.method says now
    assert main(["evaluate", "-q", "-w", wd]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["method"] == "sasrec" and 0.0 <= metrics["metrics"]["recall@10"] <= 1.0
    assert read_json(tmp_path / "run" / "eval" / "metrics.json") == metrics
    assert main(["recommend", "-w", wd, "--history", "P0001", "P0002", "-k", "3"]) == 0
    recs = json.loads(capsys.readouterr().out)["recommendations"]
    assert len(recs) == 3 and recs[0]["score"] >= recs[-1]["score"]
    assert main(["recommend", "-w", wd, "--history", "nope"]) == 2
    assert "unknown item ids 'nope'" in capsys.readouterr().err
    assert main(["evaluate", "-w", wd, "--save-predictions"]) == 2


def test_unknown_method_is_a_one_line_error(tmp_path: Path, capsys):
    assert main(["train", "-w", str(tmp_path), "--method", "bert4rec"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown train.method 'bert4rec'; valid methods: sid, sasrec, unigrec"


def test_pipeline_skips_text_stages_for_sasrec(tmp_path: Path):
    from sidrec.config import load_config
    from sidrec.pipeline import run_pipeline

    cfg = load_config(None, [f"workdir={tmp_path}", "data.dataset=synthetic", "train.method=sasrec", "sasrec.max_epochs=1", "sasrec.d_model=16"])
    summary = run_pipeline(cfg, progress=False)
    assert list(summary["seconds"]) == ["prepare", "train", "evaluate"]
    assert not (tmp_path / "embeddings").exists()
