"""`sidrec train` -> `sidrec evaluate` / `sidrec recommend` on a tiny synthetic run, through the CLI."""

import json

import pytest

from sidrec.cli import main
from sidrec.rundir import record_stage
from tests.generation.toy_generator import toy_sids_for, write_toy_prepared

TINY = [
    "model.n_enc_layers=1", "model.n_dec_layers=1", "model.n_heads=2", "model.d_model=16", "model.head_dim=8",
    "model.d_ff=32", "train.max_steps=6", "train.eval_every=3", "train.batch_size=16", "train.device=cpu",
    "train.num_threads=1", "eval.beam_size=10", "eval.ks=1,5", "eval.batch_size=16",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = write_toy_prepared(root / "data")
    toy_sids_for(data, [4, 4], "digit").save(root / "tokenizer")
    record_stage(root / "tokenizer")  # a hand-made stage: recorded as `sidrec tokenize` would
    assert main(["train", "-w", str(root), "-q", *TINY]) == 0
    return root, data


def test_evaluate_and_recommend_after_training(trained_run, capsys):
    root, data = trained_run
    capsys.readouterr()
    assert main(["evaluate", "-w", str(root), "-q", "--save-predictions", "--exact", "4", *TINY]) == 0
    printed = json.loads(capsys.readouterr().out)
    on_disk = json.loads((root / "eval" / "metrics.json").read_text())
    assert printed == on_disk
    assert on_disk["metrics"]["n_users"] == data.n_users and 0.0 <= on_disk["metrics"]["recall@5"] <= 1.0
    assert on_disk["exact"]["users"] == 4
    assert len((root / "eval" / "predictions.jsonl").read_text().splitlines()) == data.n_users
    assert main(["recommend", "-w", str(root), "--history", data.item_ids[2], data.item_ids[3], "-k", "3", *TINY]) == 0
    recs = json.loads(capsys.readouterr().out)["recommendations"]
    assert len(recs) == 3 and all(r["item_id"] in data.item_ids for r in recs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recommend", "--history", "ghost-1", "ghost-2"], "error: unknown item ids 'ghost-1', 'ghost-2': not among the"),
        (["recommend", "--history", ","], "error: recommend needs a non-empty history"),
        (["evaluate", "eval.split=holdout"], "error: unknown split 'holdout'"),
    ],
)
def test_bad_inputs_after_training_are_one_line_errors(trained_run, capsys, args, message):
    root, _ = trained_run
    capsys.readouterr()
    assert main([*args, "-w", str(root), "-q", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_missing_model_dir_is_a_one_line_error(tmp_path, capsys):
    data = write_toy_prepared(tmp_path / "data")
    toy_sids_for(data, [4, 4], "digit").save(tmp_path / "tokenizer")
    record_stage(tmp_path / "tokenizer")
    assert main(["evaluate", "-w", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: trained model (run `sidrec train` first) not found") and err.count("\n") == 1
