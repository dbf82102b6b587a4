"""Two DDP ranks on gloo/CPU train exactly the single-process model, with correct metric sums."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sidrec.checkpoint import load_state, save_state
from sidrec.training.loop import LAST, train
from tests.training.helpers import stub_validator, toy_data, toy_model, train_cfg

CFG = dict(max_steps=8, eval_every=4, batch_size=16)
ARCHS = ("encdec", "deconly")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for arch in ARCHS:  # one spawn for both architectures (process start-up dominates)
            model = toy_model(arch, dropout=0.0)
            summary = train(model, toy_data(arch), stub_validator, train_cfg(**CFG), Path(out) / arch, seed=0, progress=False)
            save_state(Path(out) / arch / f"rank{rank}.safetensors", {"model": model.state_dict(), "summary": summary})
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(2, _free_port(), str(out)), nprocs=2, start_method="spawn")
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_two_gloo_ranks_match_single_process(tmp_path, ddp_run, arch):
    torch.set_num_threads(1)
    single = toy_model(arch, dropout=0.0)
    ref = train(single, toy_data(arch), stub_validator, train_cfg(**CFG), tmp_path / "single", seed=0, progress=False)
    r0, r1 = (load_state(ddp_run / arch / f"rank{r}.safetensors") for r in range(2))
    for k in r0["model"]:
        assert torch.equal(r0["model"][k], r1["model"][k]), f"ranks diverged at {k}"
        torch.testing.assert_close(r0["model"][k], single.state_dict()[k], rtol=1e-4, atol=1e-5)
    data = toy_data(arch)
    order = [u for epoch in range(CFG["max_steps"]) for u in data.epoch_batches(epoch)][: CFG["max_steps"]]
    expected_samples = sum(data._targets(u) for u in order)
    assert r0["summary"]["train_samples"] == r1["summary"]["train_samples"] == ref["train_samples"] == expected_samples
    rows_ddp = load_state(ddp_run / arch / LAST)["state"]["rows"]
    rows_one = load_state(tmp_path / "single" / LAST)["state"]["rows"]
    for a, b in zip(rows_ddp, rows_one, strict=True):  # all-reduced loss sums = the single-process mean
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_ndcg@10"] == pytest.approx(b["val_ndcg@10"], rel=1e-5)
