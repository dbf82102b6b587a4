"""A run killed at any step and resumed ends exactly like the uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from sidrec.checkpoint import load_state

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

    a, b = load_state(tmp_path / "full" / LAST), load_state(tmp_path / "cut" / LAST)
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
        train(toy_model("deconly"), toy_data("deconly"), stub_validator, train_cfg(max_steps=4), tmp_path, seed=0, resume=True, progress=False)


def test_resume_with_changed_settings_lists_every_difference(tmp_path):
    from sidrec.errors import SidrecError

    torch.set_num_threads(1)
    train(toy_model(), toy_data(), stub_validator, train_cfg(max_steps=4), tmp_path, seed=0, progress=False)
    with pytest.raises(SidrecError, match=r"settings changed \(seed: 0 -> 1; train.batch_size: 16 -> 8; train.lr: 0.003 -> 0.001\)"):
        train(toy_model(), toy_data(), stub_validator, train_cfg(max_steps=4, lr=1e-3, batch_size=8), tmp_path, seed=1, resume=True, progress=False)
    # device and thread count do not change what is computed: a resume may change them
    again = train(toy_model(), toy_data(), stub_validator, train_cfg(max_steps=4, num_threads=1, device="cpu"), tmp_path, seed=0,
                  resume=True, progress=False)  # fmt: skip
    assert again["steps"] == 4


def test_a_finished_run_extended_by_resume_equals_the_longer_run(tmp_path):
    """More steps after an annealed cosine: resuming with a larger max_steps (same lr horizon) is the longer run."""
    from sidrec.errors import SidrecError

    torch.set_num_threads(1)
    long = train_cfg(max_steps=16, decay_steps=8, lr_schedule="cosine")
    full = train(toy_model(), toy_data(), stub_validator, long, tmp_path / "full", seed=3, progress=False)
    # the first run had no decay_steps: its horizon was max_steps (8), which the extension pins
    short = train(toy_model(), toy_data(), stub_validator, train_cfg(max_steps=8, lr_schedule="cosine"), tmp_path / "ext", seed=3,
                  progress=False)  # fmt: skip
    assert short["steps"] == 8 and short["stopped"] == "reached max_steps=8"
    with pytest.raises(SidrecError, match=r"settings changed \(train.lr_horizon: 8 -> 16\)"):  # would re-time the schedule
        train(toy_model(), toy_data(), stub_validator, train_cfg(max_steps=16, lr_schedule="cosine"), tmp_path / "ext", seed=3,
              resume=True, progress=False)  # fmt: skip
    ext = train(toy_model(), toy_data(), stub_validator, long, tmp_path / "ext", seed=3, resume=True, progress=False)
    assert ext["steps"] == 16 and ext["resumed_from_step"] == 8
    a, b = load_state(tmp_path / "full" / LAST), load_state(tmp_path / "ext" / LAST)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["val_ndcg@10"] for r in a["state"]["rows"]] == [r["val_ndcg@10"] for r in b["state"]["rows"]]


def test_an_early_stopped_run_goes_on_when_resumed_with_more_patience(tmp_path):
    torch.set_num_threads(1)
    scores = iter([0.3, 0.2, 0.1, 0.4, 0.1, 0.1, 0.1])

    def validate(model):
        return {"ndcg@10": next(scores)}

    out = train(toy_model(), toy_data(), validate, train_cfg(max_steps=100, eval_every=2, patience=2), tmp_path, seed=0, progress=False)
    assert out["steps"] == 6 and out["best_step"] == 2 and out["stopped"].startswith("early stop")
    more = train(toy_model(), toy_data(), validate, train_cfg(max_steps=100, eval_every=2, patience=3), tmp_path, seed=0, resume=True,
                 progress=False)  # fmt: skip
    assert more["best_step"] == 8 and more["steps"] == 14 and more["stopped"].startswith("early stop: no validation NDCG@10 gain in 3")


def test_an_extension_under_which_the_trained_steps_would_not_have_run_is_refused(tmp_path):
    from sidrec.errors import SidrecError

    torch.set_num_threads(1)
    scores = iter([0.3, 0.2, 0.1, 0.4])

    def validate(model):
        return {"ndcg@10": next(scores)}

    train(toy_model(), toy_data(), validate, train_cfg(max_steps=8, eval_every=2, patience=3), tmp_path, seed=0, progress=False)
    with pytest.raises(SidrecError, match="with train.patience=2 it would have stopped at step 6, before its 8 steps"):
        train(toy_model(), toy_data(), validate, train_cfg(max_steps=20, decay_steps=8, eval_every=2, patience=2), tmp_path, seed=0, resume=True,
              progress=False)  # fmt: skip
    with pytest.raises(SidrecError, match="at step 8, past train.max_steps=6"):
        train(toy_model(), toy_data(), validate, train_cfg(max_steps=6, decay_steps=8, eval_every=2, patience=3), tmp_path, seed=0, resume=True,
              progress=False)  # fmt: skip


def test_resume_with_nothing_to_resume_says_so(tmp_path):
    from sidrec.errors import SidrecError

    with pytest.raises(SidrecError, match="nothing to resume: .* has no checkpoint"):
        train(toy_model(), toy_data(), stub_validator, train_cfg(max_steps=4), tmp_path, seed=0, resume=True, progress=False)


class _Payload:
    """Unpickling this creates a file: what a crafted ``last.pt`` could do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    import pickle

    from sidrec.errors import SidrecError

    torch.set_num_threads(1)
    target = tmp_path / "pwned"
    evil = pickle.dumps({"model": _Payload(target)})
    # 1. a legacy pickled last.pt: refused without unpickling
    (tmp_path / "a").mkdir()
    torch.save({"model": _Payload(target)}, tmp_path / "a" / "last.pt")
    with pytest.raises(SidrecError, match="pickled checkpoint .* never loaded"):
        train(toy_model(), toy_data(), stub_validator, train_cfg(max_steps=4), tmp_path / "a", seed=0, resume=True, progress=False)
    # 2. pickle bytes where last.safetensors should be: a damaged file, not code
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / LAST).write_bytes(evil)
    with pytest.raises(SidrecError, match="damaged training checkpoint"):
        train(toy_model(), toy_data(), stub_validator, train_cfg(max_steps=4), tmp_path / "b", seed=0, resume=True, progress=False)
    # 3. a genuine checkpoint truncated mid-file: one line, not a traceback
    train(toy_model(), toy_data(), stub_validator, train_cfg(max_steps=4), tmp_path / "c", seed=0, progress=False)
    raw = (tmp_path / "c" / LAST).read_bytes()
    (tmp_path / "c" / LAST).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SidrecError, match="damaged training checkpoint"):
        train(toy_model(), toy_data(), stub_validator, train_cfg(max_steps=4), tmp_path / "c", seed=0, resume=True, progress=False)
    assert not target.exists()
    import pickletools  # the crafted payload really does run code when unpickled (the test's premise)

    assert any(op.name == "REDUCE" for op, _, _ in pickletools.genops(evil))
    pickle.loads(evil)
    assert target.exists()
