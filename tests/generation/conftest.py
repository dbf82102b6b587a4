"""Fixtures for decoding tests."""

from __future__ import annotations

import numpy as np
import pytest

from sidrec.tokenizers.sid_table import SIDTable
from tests.generation.toy_generator import ToyGRUGenerator, toy_sid_table, train_toy


@pytest.fixture
def small_setup() -> tuple[ToyGRUGenerator, SIDTable, list[np.ndarray]]:
    """A trained toy model over 40 items with 2-level codes (4 x 5) + de-dup digit."""
    sids = toy_sid_table(40, [4, 5], "digit")
    model = ToyGRUGenerator(sids.vocab_sizes, d=16)
    hists = train_toy(model, sids, steps=20)
    return model, sids, hists


@pytest.fixture
def prepared_setup(tmp_path):
    """A trained toy model on a tiny prepared dataset (30 items, 40 users, 2 levels + de-dup)."""
    from tests.generation.toy_generator import toy_sids_for, train_on_prepared, write_toy_prepared

    data = write_toy_prepared(tmp_path / "data")
    sids = toy_sids_for(data, [4, 4], "digit")
    model = ToyGRUGenerator(sids.vocab_sizes, d=16)
    train_on_prepared(model, data, sids, steps=40)
    return model, data, sids
