"""The foundation issue's acceptance numbers on the real Amazon 2014 5-core data."""

from pathlib import Path

import pytest

from sidrec.config import DataConfig
from sidrec.data import PreparedData, load_dataset, prepare
from tests.conftest import real_dataset


@pytest.mark.parametrize(
    "name, users, items, interactions",
    [("amazon-beauty-2014", 22_363, 12_101, 198_502), ("amazon-sports-2014", 35_598, 18_357, 296_337)],
)
def test_prepare_real_dataset_counts(tmp_path: Path, name, users, items, interactions):
    cfg = DataConfig(dataset="sequences", path=str(real_dataset(name)))
    man = prepare(load_dataset(cfg), cfg, tmp_path)
    assert man["counts"] == {"users": users, "items": items, "interactions": interactions}
    assert man["splits"]["train_interactions"] == interactions - 2 * users
    assert man["splits"]["sliding_window_samples"] == interactions - 3 * users
    data = PreparedData(tmp_path)
    test = data.eval_examples("test")
    assert len(test.targets) == users and max(len(h) for h in test.histories) == 20
