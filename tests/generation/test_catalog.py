"""Cold-start SIDs: the run's collision rule applied to new items, persisted and replayed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidrec.errors import SidrecError
from sidrec.generation.catalog import Catalog
from sidrec.tokenizers.sid_table import SIDTable

CODES = np.array([[0, 1], [0, 1], [0, 2], [1, 0]])  # items a, b collide on (0, 1)
IDS = ["a", "b", "c", "d"]


def test_digit_rule_numbers_a_new_item_after_its_group_and_flags_overflow(tmp_path):
    table = SIDTable.build(IDS, CODES, [2, 3], "digit")
    assert table.vocab_sizes == [2, 3, 2]  # the largest group has 2 items: digits 0, 1
    cat = Catalog(IDS, table, tmp_path)
    new = cat.assign(["e", "f", "g"], np.array([[0, 2], [1, 1], [0, 1]]), [{}, {}, {}])
    assert [n.sid for n in new] == [(0, 2, 1), (1, 1, 0), (0, 1, 1)]  # (0,1) is full: g is unreachable
    assert [n.reachable for n in new] == [True, True, False]
    cat.add(new)
    assert cat.trie.items_of(torch.tensor([[0, 2, 1]])).item() == cat.index["e"]
    assert cat.trie.items_of(torch.tensor([[0, 1, 1]])).item() == cat.index["b"]  # still b's SID
    again = Catalog(IDS, SIDTable.build(IDS, CODES, [2, 3], "digit"), tmp_path)  # a restart replays the file
    assert again.item_ids == IDS + ["e", "f", "g"] and np.array_equal(again.sids.codes, cat.sids.codes)
    with pytest.raises(SidrecError, match="item id 'e' is already in the catalogue"):
        again.assign(["e"], np.array([[0, 0]]), [{}])


def test_random_rule_keeps_one_uniform_representative_per_group(tmp_path):
    wins = 0
    for seed in range(200):
        table = SIDTable.build(IDS, CODES, [2, 3], "random", seed=seed)
        cat = Catalog(IDS, table, None, seed=seed)
        (new,) = cat.assign(["e"], np.array([[0, 1]]), [{}])
        cat.add([new])
        group = [cat.index[i] for i in ("a", "b", "e")]
        assert cat.sids.representative[group].sum() == 1  # exactly one item answers the SID
        wins += new.representative
    assert 40 < wins < 95  # joins a group of 2: wins 1/3 of the time (about 67 of 200)


def test_a_damaged_store_is_one_line(tmp_path):
    (tmp_path / "items.jsonl").write_text('{"item_id": "e", "sid": [0, 2]}\n')
    with pytest.raises(SidrecError, match=r"items.jsonl:1: damaged added-item record \(KeyError\)"):
        Catalog(IDS, SIDTable.build(IDS, CODES, [2, 3], "digit"), tmp_path)
