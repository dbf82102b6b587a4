"""A run killed at any step and resumed ends exactly like the uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from sidrec.training.loop import BEST, LAST, Interrupted, train
from tests.training.helpers import stub_validator, toy_data, toy_model, train_cfg, weights


@pytest.mark.parametrize("arch,kill_at", [("encdec", 6), ("deconly", 9)])
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, arch, kill_at):
    torch.set_num_threads(1)
    cfg = train_cfg(max_steps=12, eval_every=4)  # with dropout on: RNG state must round-trip
    full = train(toy_model(arch), toy_data(arch), stub_validator, cfg, tmp_path / "full", seed=3, progress=False)

    with pytest.raises(Interrupted):
        train(toy_model(arch), toy_data(arch), stub_validator, cfg, tmp_path / "cut", seed=3, progress=False, interrupt_at=kill_at)
    assert (tmp_path / "cut" / LAST).is_file()  # last checkpoint is at step 4 or 8, before the kill
    resumed = train(toy_model(arch, seed=99), toy_data(arch), stub_validator, cfg, tmp_path / "cut", seed=3, resume=True, progress=False)

    a, b = torch.load(tmp_path / "full" / LAST, weights_only=False), torch.load(tmp_path / "cut" / LAST, weights_only=False)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    assert [r["val_ndcg@10"] for r in a["state"]["rows"]] == [r["val_ndcg@10"] for r in b["state"]["rows"]]
    assert [r["train_loss"] for r in a["state"]["rows"]] == [r["train_loss"] for r in b["state"]["rows"]]
    assert full["best_step"] == resumed["best_step"] and full["best_valid"] == resumed["best_valid"]
    assert full["train_samples"] == resumed["train_samples"]
    assert full["resumed_from_step"] == 0 and resumed["resumed_from_step"] == kill_at // 4 * 4  # the summary says it resumed
    wa, wb = weights(tmp_path / "full" / BEST), weights(tmp_path / "cut" / BEST)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_early_stopping_keeps_the_best_validation_checkpoint(tmp_path):
    torch.set_num_threads(1)
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.1, 0.9])

    def validate(model):
        return {"ndcg@10": next(scores)}

    out = train(toy_model(), toy_data(), validate, train_cfg(max_steps=100, eval_every=2, patience=3), tmp_path, seed=0, progress=False)
    assert out["best_step"] == 4 and out["steps"] == 10 and out["stopped"].startswith("early stop")
    assert out["best_valid"]["ndcg@10"] == 0.3
    again = train(toy_model(), toy_data(), validate, train_cfg(max_steps=100, eval_every=2, patience=3), tmp_path, seed=0, resume=True, progress=False)
    assert again["steps"] == 10  # a finished run resumes to its summary without training
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 6 and (tmp_path / "curves.png").stat().st_size > 0


def test_resuming_with_another_model_is_a_user_error(tmp_path):
    from sidrec.errors import SidrecError

    torch.set_num_threads(1)
    train(toy_model(), toy_data(), stub_validator, train_cfg(max_steps=4), tmp_path, seed=0, progress=False)
    with pytest.raises(SidrecError, match="different model"):
        train(toy_model("deconly"), toy_data("deconly"), stub_validator, train_cfg(max_steps=8), tmp_path, seed=0, resume=True, progress=False)
