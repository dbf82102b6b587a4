"""Stage functions and CLI paths of evaluate / recommend, with the toy model standing in for a trained one."""

import json

import pytest

import sidrec.training.stage as training_stage
from sidrec.cli import main
from sidrec.config import load_config
from sidrec.generation.stage import run_evaluate, run_recommend


@pytest.fixture
def run_dir(tmp_path, prepared_setup, monkeypatch):
    model, data, sids = prepared_setup
    monkeypatch.setattr(training_stage, "load_trained_model", lambda cfg, device="cpu": (model, sids, data))
    return tmp_path / "run", data


def test_evaluate_writes_metrics_and_predictions(run_dir):
    workdir, data = run_dir
    cfg = load_config(None, [f"workdir={workdir}", "eval.beam_size=10", "eval.ks=5,10", "eval.batch_size=16"])
    rec = run_evaluate(cfg, save_predictions=True, exact_users=5, progress=False)
    on_disk = json.loads((workdir / "eval" / "metrics.json").read_text())
    assert on_disk["metrics"] == pytest.approx(rec["metrics"])
    assert rec["metrics"]["n_users"] == data.n_users and rec["split"] == "test"
    lines = [json.loads(x) for x in (workdir / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == data.n_users
    assert {ln["user_id"] for ln in lines} == set(data.user_ids)
    for ln in lines:
        assert len(ln["items"]) == len(ln["scores"]) <= 10
        assert ln["scores"] == sorted(ln["scores"], reverse=True)
    # recall@5 recomputed from the saved lists
    hits = sum(ln["target"] in ln["items"][:5] for ln in lines)
    assert rec["metrics"]["recall@5"] == pytest.approx(hits / len(lines))
    # the same numbers without saving predictions
    plain = run_evaluate(cfg, progress=False)["metrics"]
    for key in ("recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr"):
        assert plain[key] == pytest.approx(rec["metrics"][key])
    ex = rec["exact"]
    assert ex["users"] == 5 and 0.0 <= ex["overlap@5"] <= 1.0


def test_recommend_returns_k_items_with_scores(run_dir):
    workdir, data = run_dir
    cfg = load_config(None, [f"workdir={workdir}", "eval.beam_size=4"])
    out = run_recommend(cfg, [data.item_ids[3], data.item_ids[4]], k=7)  # k > beam: the beam widens
    assert out["history"] == [data.item_ids[3], data.item_ids[4]]
    recs = out["recommendations"]
    assert len(recs) == 7 and all(r["item_id"] in set(data.item_ids) for r in recs)
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    seen = load_config(None, [f"workdir={workdir}", "eval.filter_seen=true"])
    assert not {data.item_ids[3], data.item_ids[4]} & {r["item_id"] for r in run_recommend(seen, [data.item_ids[3], data.item_ids[4]], k=20)["recommendations"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recommend", "--history", "nope", "i3", "also-nope"], "error: unknown item ids 'nope', 'also-nope': not among the"),
        (["recommend", "--history", ""], "error: recommend needs a non-empty history"),
        (["recommend", "--history", "i3", "-k", "0"], "error: recommend needs k >= 1, got 0"),
        (["evaluate", "--exact", "-1"], "error: --exact expects a number of users >= 0, got -1"),
        (["evaluate", "eval.beam_size=0"], "error: eval.beam_size must be >= 1, got 0"),
        (["evaluate", "eval.split=train"], "error: unknown split 'train'"),
    ],
)
def test_cli_bad_inputs_are_one_line_errors(run_dir, capsys, args, message):
    workdir, _ = run_dir
    assert main([*args, "-w", str(workdir), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_cli_missing_model_dir(tmp_path, capsys):
    assert main(["evaluate", "-w", str(tmp_path / "nothing"), "-q"]) == 2
    assert main(["recommend", "-w", str(tmp_path / "nothing"), "--history", "a"]) == 2
    errs = capsys.readouterr().err.splitlines()
    assert len(errs) == 2 and all(e.startswith("error: ") and "not found" in e for e in errs)
