from pathlib import Path

import pytest

from sidrec.config import Config, apply_overrides, dump_config, load_config
from sidrec.errors import SidrecError


def test_defaults_follow_grid():
    cfg = Config()
    assert (cfg.model.n_enc_layers, cfg.model.n_dec_layers, cfg.model.n_heads, cfg.model.d_model, cfg.model.d_ff) == (4, 4, 6, 128, 1024)
    assert (cfg.train.lr, cfg.train.batch_size) == (5e-4, 256)
    assert (cfg.tokenizer.n_levels, cfg.tokenizer.codebook_size) == (3, 256)
    assert cfg.data.max_history == 20 and cfg.data.min_count == 5


def test_overrides_are_typed():
    cfg = apply_overrides(Config(), ["train.lr=1e-3", "model.d_model=64", "eval.constrained=false", "eval.ks=5,10", "tokenizer.params.normalize=true"])
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.model.d_model == 64
    assert cfg.eval.constrained is False
    assert cfg.eval.ks == (5, 10)
    assert cfg.tokenizer.params == {"normalize": True}


def test_unknown_key_lists_valid_keys():
    with pytest.raises(SidrecError, match=r"unknown key 'train.lrr'; valid keys: .*train.lr.*train.batch_size"):
        apply_overrides(Config(), ["train.lrr=1"])


def test_bad_values_are_errors():
    with pytest.raises(SidrecError, match="'model.d_model' expects int, got 'big'"):
        apply_overrides(Config(), ["model.d_model=big"])
    with pytest.raises(SidrecError, match="'train.batch_size' expects int, got 1.5"):
        apply_overrides(Config(), ["train.batch_size=1.5"])
    with pytest.raises(SidrecError, match="key=value"):
        apply_overrides(Config(), ["train.lr"])
    with pytest.raises(SidrecError, match="is a section"):
        apply_overrides(Config(), ["train=3"])


def test_yaml_round_trip(tmp_path: Path):
    cfg = apply_overrides(Config(), ["workdir=/x", "model.arch=deconly", "eval.ks=5,10,20"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg
    assert load_config(path, ["seed=3"]).seed == 3


def test_yaml_errors(tmp_path: Path):
    with pytest.raises(SidrecError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {dataset: [\n")
    with pytest.raises(SidrecError, match="malformed YAML"):
        load_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("data:\n  datset: x\n")
    with pytest.raises(SidrecError, match=r"unknown key 'data.datset'.*data.dataset"):
        load_config(unknown)


def test_shipped_configs_load():
    for path in sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")):
        load_config(path)


def test_demo_yaml_mirrors_demo_defaults():
    from sidrec.demo import demo_config

    path = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    assert load_config(path) == demo_config()
