import math

import pytest
import torch

from sidrec.errors import SidrecError
from sidrec.metrics.ranking import RankingAccumulator, all_reduce_, target_ranks


def test_target_ranks_first_hit_and_misses():
    ranked = torch.tensor([[7, 3, 9], [-1, 5, 5], [1, 2, 4], [-1, -1, -1]])
    targets = torch.tensor([3, 5, 8, 0])
    assert target_ranks(ranked, targets).tolist() == [2, 2, 0, 0]


def test_hand_computed_metrics():
    # four users, targets at ranks 1, 3, 7 and absent; lists of length 10
    ranked = torch.arange(40).reshape(4, 10)
    targets = torch.tensor([0, 12, 26, 99])
    acc = RankingAccumulator(ks=(1, 5, 10))
    acc.add(ranked, targets)
    r = acc.result()
    assert r["n_users"] == 4
    assert r["recall@1"] == pytest.approx(1 / 4)
    assert r["recall@5"] == pytest.approx(2 / 4)
    assert r["recall@10"] == pytest.approx(3 / 4)
    assert r["ndcg@1"] == pytest.approx(1 / 4)
    assert r["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert r["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(8)) / 4)
    assert r["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 7) / 4)
    assert list(r) == ["recall@1", "recall@5", "recall@10", "ndcg@1", "ndcg@5", "ndcg@10", "mrr", "n_users"]


def test_sums_accumulate_across_batches_like_one_batch():
    ranks = torch.tensor([1, 0, 4, 2, 30, 11, 0, 6])
    whole = RankingAccumulator()
    whole.add_ranks(ranks)
    parts = RankingAccumulator()
    parts.add_ranks(ranks[:3])
    parts.add_ranks(ranks[3:])
    assert parts.count == whole.count == 8
    for key, value in whole.result().items():
        assert parts.result()[key] == pytest.approx(value)
    assert whole.result()["recall@30"] == pytest.approx(6 / 8)
    assert whole.result()["recall@5"] == pytest.approx(3 / 8)


def test_all_reduce_without_distributed_is_identity():
    acc = RankingAccumulator(ks=(5,))
    acc.add_ranks(torch.tensor([1, 6]))
    before = acc.result()
    assert all_reduce_(acc).result() == before


def _shard(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        acc = RankingAccumulator(ks=(5,))
        acc.add_ranks(torch.tensor([[1, 6], [0, 3, 2]][rank]))  # shards of unequal size
        all_reduce_(acc)
        torch.save({"count": acc.count, "result": acc.result()}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_over_two_processes(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "res")
    mp.spawn(_shard, args=(2, f"file://{tmp_path / 'pg'}", out), nprocs=2, join=True)
    single = RankingAccumulator(ks=(5,))
    single.add_ranks(torch.tensor([1, 6, 0, 3, 2]))
    for rank in range(2):
        got = torch.load(f"{out}.{rank}")
        assert got["count"] == 5
        for key, value in single.result().items():
            assert got["result"][key] == pytest.approx(value)


def test_bad_inputs():
    with pytest.raises(SidrecError, match="positive"):
        RankingAccumulator(ks=(0, 5))
    with pytest.raises(SidrecError, match="expected ranked lists"):
        target_ranks(torch.zeros(3, 2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
