from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sidrec.config import DataConfig
from sidrec.data import PreparedData, RawDataset, k_core, prepare
from sidrec.errors import SidrecError
from sidrec.io import sha256_file


def test_k_core_iterates_to_fixed_point():
    # k=2: item c occurs once -> dropped; then user u3 has one item left -> dropped,
    # which leaves item d with one interaction -> dropped; u1, u2 survive.
    seqs = {"u1": ["a", "b", "a"], "u2": ["a", "b"], "u3": ["c", "d"], "u4": ["d"]}
    assert k_core(seqs, 2) == {"u1": ["a", "b", "a"], "u2": ["a", "b"]}
    # one pass would have kept u3 with ["d"] (d had 2 interactions before u4 went)
    out = k_core(seqs, 2)
    for s in out.values():
        assert len(s) >= 2


def test_k_core_off_and_everything_removed():
    seqs = {"u1": ["a"], "u2": []}
    assert k_core(seqs, 0) == {"u1": ["a"]}
    assert k_core({"u": ["a", "b"]}, 5) == {}


def _raw(seqs):
    items = {i: {"title": f"t{i}"} for s in seqs.values() for i in s}
    return RawDataset(name="toy", items=items, sequences=seqs)


def test_prepare_writes_parquet_manifest_and_splits(tmp_path: Path):
    seqs = {"2": list("abcdef"), "10": list("bcdea"), "1": list("cdeab")}
    cfg = DataConfig(min_count=0, max_history=3)
    man = prepare(_raw(seqs), cfg, tmp_path)
    assert man["counts"] == {"users": 3, "items": 6, "interactions": 16}
    # train parts: 4, 3, 3 items -> sliding windows 3 + 2 + 2
    assert man["splits"]["train_interactions"] == 10
    assert man["splits"]["sliding_window_samples"] == 7
    for name, digest in man["outputs"].items():
        assert sha256_file(tmp_path / name) == digest
    data = PreparedData(tmp_path)
    assert data.user_ids == ["1", "2", "10"]  # numeric ids sort numerically
    assert data.item_ids == list("abcdef")
    u = data.user_ids.index("2")
    seq = [data.item_ids[i] for i in data.sequences[u]]
    assert seq == list("abcdef")
    assert [data.item_ids[i] for i in data.train_sequences()[u]] == list("abcd")
    val, test = data.eval_examples("valid"), data.eval_examples("test")
    assert data.item_ids[val.targets[u]] == "e" and data.item_ids[test.targets[u]] == "f"
    # histories are truncated to the most recent max_history items
    assert [data.item_ids[i] for i in val.histories[u]] == list("bcd")
    assert [data.item_ids[i] for i in test.histories[u]] == list("cde")
    assert pq.read_table(tmp_path / "items.parquet").column("title").to_pylist()[0] == "ta"


def test_users_too_short_for_leave_one_out_are_dropped(tmp_path: Path):
    man = prepare(_raw({"u1": ["a", "b"], "u2": ["a", "b", "c"]}), DataConfig(min_count=0), tmp_path)
    assert man["counts"]["users"] == 1


def test_nothing_left_after_k_core_is_an_error(tmp_path: Path):
    with pytest.raises(SidrecError, match="no user is left after 5-core filtering"):
        prepare(_raw({"u1": list("abc")}), DataConfig(min_count=5), tmp_path)


def test_unknown_split_and_missing_prepared_data(tmp_path: Path):
    with pytest.raises(SidrecError, match="run `sidrec prepare` first"):
        PreparedData(tmp_path)
    prepare(_raw({"u": list("abcd")}), DataConfig(min_count=0), tmp_path)
    with pytest.raises(SidrecError, match="unknown split 'train'"):
        PreparedData(tmp_path).eval_examples("train")
    (tmp_path / "sequences.parquet").unlink()
    with pytest.raises(SidrecError, match="sequences.parquet is missing"):
        PreparedData(tmp_path)


def test_structured_fields_round_trip(tmp_path: Path):
    raw = _raw({"u": list("abcd")})
    raw.items["a"]["categories"] = [["Beauty", "Nails"]]
    prepare(raw, DataConfig(min_count=0), tmp_path)
    texts = PreparedData(tmp_path).item_texts()
    assert texts[0]["categories"] == [["Beauty", "Nails"]]
    assert texts[1]["categories"] is None and np.isscalar(len(texts))
