"""``run_train`` end to end on a tiny prepared dataset, and ``load_trained_model``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sidrec.checkpoint import load_state
from sidrec.config import load_config
from sidrec.data import load_dataset, prepare
from sidrec.errors import SidrecError
from sidrec.models.base import HistoryBatch
from sidrec.tokenizers.sid_table import SIDTable
from sidrec.training.stage import item_codes, load_trained_model, run_train
from sidrec.rundir import record_stage
from tests.conftest import write_sequences_dataset
from tests.training.helpers import stub_validator

TINY = ["model.n_enc_layers=1", "model.n_dec_layers=1", "model.n_heads=2", "model.d_model=16", "model.head_dim=8", "model.d_ff=32"]


@pytest.fixture
def run_dir(tmp_path):
    rng = np.random.default_rng(0)
    seqs = {f"u{u}": [str(i) for i in (rng.integers(0, 20) + np.arange(rng.integers(5, 9))) % 20] for u in range(30)}
    src = write_sequences_dataset(tmp_path / "src", seqs)
    cfg = load_config(None, [f"workdir={tmp_path / 'run'}", f"data.path={src}", "data.min_count=0"])
    prepare(load_dataset(cfg.data), cfg.data, cfg.paths.data)
    from sidrec.data.prepared import PreparedData

    items = PreparedData(cfg.paths.data).item_ids
    codes = np.stack([np.arange(len(items)) % 4, np.arange(len(items)) // 4 % 5], axis=1)
    SIDTable.build(items, codes, [4, 5], "digit").save(cfg.paths.tokenizer)
    record_stage(cfg.paths.tokenizer)  # a hand-made stage: recorded as `sidrec tokenize` would
    return tmp_path / "run"


@pytest.mark.parametrize("arch", ["encdec", "deconly"])
def test_run_train_writes_artifacts_and_the_best_model_reloads(run_dir, arch):
    cfg = load_config(None, [f"workdir={run_dir}", f"model.arch={arch}", "train.max_steps=6", "train.eval_every=3", "train.batch_size=8", "train.num_threads=1", *TINY])
    summary = run_train(cfg, progress=False, validate=stub_validator)
    out = cfg.paths.model
    for name in ("best.safetensors", "best.json", "last.safetensors", "metrics.csv", "curves.png", "train_summary.json", "config.yaml"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    assert json.loads((out / "train_summary.json").read_text())["steps"] == summary["steps"] == 6

    model, sids, data = load_trained_model(cfg)
    assert not model.training and model.arch == arch
    best = load_state(out / "last.safetensors")
    if summary["best_step"] == 6:  # then best and last weights coincide
        assert all(torch.equal(best["model"][k], v) for k, v in model.state_dict().items())
    codes = torch.from_numpy(item_codes(data, sids))
    hist = HistoryBatch(codes[None, :3], torch.ones(1, 3, dtype=torch.bool))
    with torch.no_grad():
        lp = model.score(hist, codes[None, :5])
    assert lp.shape == (1, 5) and bool((lp < 0).all())


def test_run_train_user_errors(run_dir, tmp_path):
    with pytest.raises(SidrecError, match="train.batch_size must be >= 1, got 0"):  # refused at load, before any file is touched
        load_config(None, [f"workdir={run_dir}", "train.batch_size=0"])
    empty = load_config(None, [f"workdir={tmp_path / 'nowhere'}"])
    with pytest.raises(SidrecError, match="trained model"):
        load_trained_model(empty)
