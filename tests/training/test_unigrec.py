"""UniGRec recipe end to end on a tiny prepared dataset: serving checkpoint, SIDs, resume."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from sidrec.config import load_config
from sidrec.errors import SidrecError
from sidrec.generation.evaluate import evaluate_split
from sidrec.io import write_json
from sidrec.tokenizers import available_tokenizers
from sidrec.tokenizers.sid_table import SIDTable
from sidrec.checkpoint import load_state
from sidrec.models.base import HistoryBatch
from sidrec.models.unigrec import soft_token_embeddings
from sidrec.rundir import record_stage
from sidrec.tokenizers.base import Tokenizer
from sidrec.training.loop import LAST, Interrupted
from sidrec.training.stage import item_codes, load_trained_model
from sidrec.training.unigrec import UniGRecConfig, _changed, _lambdas, check_unigrec, run_unigrec
from tests.generation.toy_generator import write_toy_prepared

# stage 1 runs the soft-rqvae tokenizer when it is registered; any RQ-VAE-style module works for stage 2
METHOD = "soft-rqvae" if "soft-rqvae" in available_tokenizers() else "rqvae"


def _workdir(root, n_items=30):
    data = write_toy_prepared(root / "data", n_items=n_items, n_users=40)
    rng = np.random.default_rng(0)
    (root / "embeddings").mkdir()
    np.save(root / "embeddings" / "embeddings.npy", rng.normal(size=(data.n_items, 16)).astype(np.float32))
    write_json(root / "embeddings" / "meta.json", {"n_items": data.n_items, "dim": 16, "item_ids": list(data.item_ids)})
    record_stage(root / "embeddings", inputs=("data",))  # as `sidrec embed` records it
    np.save(root / "teacher.npy", rng.normal(size=(data.n_items, 8)).astype(np.float32))
    return data


def _cfg(root, *extra):
    return load_config(None, [
        f"workdir={root}", f"tokenizer.method={METHOD}", "tokenizer.n_levels=2", "tokenizer.codebook_size=4",
        "tokenizer.params={dims: [8, 4], epochs: 2, batch_size: 16, device: cpu}",
        "model.n_enc_layers=1", "model.n_dec_layers=1", "model.n_heads=2", "model.d_model=16", "model.head_dim=8",
        "model.d_ff=32", "train.batch_size=16", "train.max_steps=6", "train.eval_every=3", "train.warmup_steps=2",
        "train.device=cpu", "train.num_threads=1", "eval.beam_size=5", "eval.ks=5,10", *extra,
    ])  # fmt: skip


def _ucfg(root, **kw):
    # distillation from the first epoch (the toy run is shorter than the authors' 10-epoch warm-up)
    return UniGRecConfig(**{"teacher": str(root / "teacher.npy"), "tau": 0.05, "tokenizer_lr": 1e-3, "distill_warmup_epochs": 0, **kw})


def test_end_to_end_serves_with_the_soft_history_it_trained_on(tmp_path, monkeypatch):
    data = _workdir(tmp_path)
    cfg = _cfg(tmp_path)
    # a validator whose score rises every pass: the best checkpoint is the last step's
    calls = []

    def validator(cfg_, data_, sids):
        def validate(model):
            calls.append(model.arch)
            return {"ndcg@10": float(len(calls)), "recall@10": 0.0}

        return validate

    monkeypatch.setattr("sidrec.training.unigrec.make_validator", validator)
    summary = run_unigrec(cfg, progress=False, ucfg=_ucfg(tmp_path, finetune_steps=3))
    assert summary["steps"] == 9 and summary["best_step"] == 9 and summary["served_arch"] == "encdec-soft"
    assert set(calls) == {"encdec-soft"}  # validated as trained, too
    assert (tmp_path / "tokenizer" / "stage1" / "sids.csv").is_file()
    model, sids, data2 = load_trained_model(cfg)
    assert model.arch == "encdec-soft" and sids.collision == "digit"
    assert len({tuple(r) for r in sids.codes.tolist()}) == data.n_items  # unique SIDs
    # the served encoder input of every item = its soft identifier (eq. 15) from the trained tokenizer
    tok = Tokenizer.load(tmp_path / "model" / "tokenizer")  # frozen during the fine-tune: the last = the best step's
    emb = torch.from_numpy(np.load(tmp_path / "embeddings" / "embeddings.npy"))
    L = tok.n_levels
    with torch.no_grad():
        trained = soft_token_embeddings(tok.probabilities(emb, summary["tau"]), model.tok.weight, model.offsets[:L])
    torch.testing.assert_close(model.item_inputs, trained, atol=1e-5, rtol=1e-4)
    codes = torch.from_numpy(item_codes(data2, sids))
    hist = codes[torch.arange(12).view(3, 4) % data.n_items]  # (3, 4, T)
    mask = torch.ones(3, 4, dtype=torch.bool)
    e = torch.cat([trained[torch.arange(12).view(3, 4) % data.n_items], model.tok(hist[..., L:] + model.offsets[L:])], 2)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(HistoryBatch(hist, mask))[0], model.encode_embedded(e, mask)[0])
    metrics = evaluate_split(model, data2, sids, "test", beam_size=5, ks=(5, 10))
    assert metrics["n_users"] == data.n_users and 0.0 <= metrics["recall@10"] <= 1.0
    # the published table is the one the best checkpoint was validated with
    best = SIDTable.load(tmp_path / "model" / "best_sids")
    assert np.array_equal(best.codes, sids.codes)
    # SID churn: one entry per rebuild (every joint epoch after the first, and the fine-tune's start)
    changed = summary["sid_changed_per_rebuild"]
    assert len(changed) == len(summary["collision_per_epoch"]) and all(0.0 <= c <= 1.0 for c in changed)


def test_sid_churn_counts_items_whose_full_sid_changed():
    ids = [f"i{k}" for k in range(4)]
    old = SIDTable.build(ids, np.array([[0, 0], [0, 0], [1, 2], [3, 3]]), [4, 4], "digit")  # items 0, 1 collide
    new = SIDTable.build(ids, np.array([[1, 1], [0, 0], [1, 2], [3, 3]]), [4, 4], "digit")  # item 0 moves
    assert old.codes[:2, -1].tolist() == [0, 1] and new.codes[1].tolist() == [0, 0, 0]
    # item 0's code changed, and item 1's de-dup digit shifted from 1 to 0 with it: 2 of 4 items
    assert _changed(old, new) == 0.5 and _changed(old, old) == 0.0


def test_hard_ids_serve_the_plain_encoder_decoder_and_the_finetune_has_its_lr(tmp_path):
    _workdir(tmp_path)
    cfg = _cfg(tmp_path)
    u = _ucfg(tmp_path, soft_ids=False, joint=False, lambda_cd_t=0, lambda_cd_r=0, finetune_steps=3, finetune_lr=1e-3)
    summary = run_unigrec(cfg, progress=False, ucfg=u)
    assert summary["served_arch"] == "encdec" and load_trained_model(cfg)[0].arch == "encdec"
    rows = list(csv.DictReader(open(tmp_path / "model" / "metrics.csv")))
    assert [r["phase"] for r in rows] == ["joint", "joint", "finetune"]
    assert float(rows[-1]["lr"]) == pytest.approx(1e-3)


def test_stage2_sees_items_as_a_whitening_stage1_does(tmp_path):
    # M0 (TIGER): a frozen rqvae, which whitens its input; stage 2 runs its module directly, so
    # unless the embeddings are whitened there too the SIDs it trains on are not stage 1's
    _workdir(tmp_path)
    cfg = _cfg(tmp_path, "tokenizer.method=rqvae")
    u = _ucfg(tmp_path, soft_ids=False, joint=False, lambda_cd_t=0, lambda_cd_r=0, finetune_steps=0)
    run_unigrec(cfg, progress=False, ucfg=u)
    tok = Tokenizer.load(tmp_path / "tokenizer")
    assert tok.whiten and tok.white_w_ is not None
    stage1 = SIDTable.load(tmp_path / "tokenizer" / "stage1")
    np.testing.assert_array_equal(SIDTable.load(tmp_path / "model" / "best_sids").codes, stage1.codes)


def test_a_stage1_tokenizer_without_a_module_is_a_one_line_error(tmp_path):
    _workdir(tmp_path)
    cfg = _cfg(tmp_path)
    cfg = dataclasses.replace(cfg, tokenizer=dataclasses.replace(cfg.tokenizer, method="rkmeans", params={}))
    with pytest.raises(SidrecError, match="RQ-VAE-style tokenizer"):
        run_unigrec(cfg, progress=False, ucfg=_ucfg(tmp_path, soft_ids=False, joint=False, lambda_cd_t=0, lambda_cd_r=0))


def test_distillation_waits_for_its_warmup_and_the_finetune_drops_every_extra_term():
    u = UniGRecConfig(distill_warmup_epochs=1.5, lambda_recon=0.5, lambda_cd_t=0.01, lambda_cd_r=0.1)
    assert _lambdas(u, "joint", 1.49) == (0.5, 0.0, 0.0)
    assert _lambdas(u, "joint", 1.5) == (0.5, 0.01, 0.1)
    assert _lambdas(u, "finetune", 5.0) == (0.0, 0.0, 0.0)
    assert _lambdas(dataclasses.replace(u, joint=False), "joint", 3.0) == (0.0, 0.01, 0.1)
    with pytest.raises(SidrecError, match="unigrec.grad_clip"):
        check_unigrec(dataclasses.replace(u, grad_clip=-1.0))


def test_resume_replays_the_uninterrupted_run(tmp_path):
    _workdir(tmp_path / "a")
    _workdir(tmp_path / "b")
    u = _ucfg(tmp_path / "a", finetune_steps=3)
    big = "train.batch_size=48"  # a few batches per epoch: the run crosses epochs (SID rebuilds)
    full = run_unigrec(_cfg(tmp_path / "a", big), progress=False, ucfg=u)
    assert len(full["collision_per_epoch"]) >= 3
    cfg_b = _cfg(tmp_path / "b", big)
    with pytest.raises(Interrupted):
        run_unigrec(cfg_b, progress=False, ucfg=u, interrupt_at=7)  # in the fine-tune: resumes from its first step
    resumed = run_unigrec(cfg_b, resume=True, progress=False, ucfg=u)
    timing = {"seconds", "users_per_second"}
    strip = lambda m: {k: v for k, v in m.items() if k not in timing}  # noqa: E731
    assert strip(resumed["best_valid"]) == strip(full["best_valid"]) and resumed["steps"] == full["steps"]
    assert resumed["collision_per_epoch"] == full["collision_per_epoch"]
    assert full["resumed_from_step"] == 0 < resumed["resumed_from_step"] <= 7
    wa = load_state(tmp_path / "a" / "model" / LAST)["model"]
    wb = load_state(tmp_path / "b" / "model" / LAST)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = SIDTable.load(tmp_path / "a" / "tokenizer"), SIDTable.load(tmp_path / "b" / "tokenizer")
    assert np.array_equal(sa.codes, sb.codes)
    assert json.loads((tmp_path / "b" / "model" / "best.json").read_text())["step"] == full["best_step"]


def test_distillation_without_teacher_is_a_one_line_error(tmp_path):
    _workdir(tmp_path)
    with pytest.raises(SidrecError, match="needs a teacher"):
        run_unigrec(_cfg(tmp_path), progress=False, ucfg=UniGRecConfig(teacher=""))
