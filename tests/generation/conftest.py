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
