import itertools

import numpy as np
import pytest
import torch

from sidrec.errors import SidrecError
from sidrec.generation.trie import SIDTrie


def brute_children(codes: np.ndarray, prefix: tuple[int, ...]) -> set[int]:
    t = len(prefix)
    return {int(r[t]) for r in codes if tuple(r[:t]) == prefix}


def test_hand_built_trie():
    codes = np.array([[0, 1], [0, 2], [1, 0]])
    trie = SIDTrie.build(codes, [2, 3])
    root = torch.zeros(1, dtype=torch.long)
    assert trie.allowed(0, root).tolist() == [[True, True]]
    n0 = trie.child(0, root, torch.tensor([0]))
    assert trie.allowed(1, n0).tolist() == [[False, True, True]]
    n1 = trie.child(0, root, torch.tensor([1]))
    assert trie.allowed(1, n1).tolist() == [[True, False, False]]
    assert trie.items_of(torch.tensor([[0, 2], [1, 0], [0, 1], [1, 1], [0, 0]])).tolist() == [1, 2, 0, -1, -1]
    # dead prefixes allow nothing, out-of-vocabulary tokens lead nowhere
    assert not trie.allowed(1, torch.tensor([-1])).any()
    assert trie.child(0, root, torch.tensor([5])).tolist() == [-1]


def test_allowed_matches_brute_force_at_every_prefix():
    rng = np.random.default_rng(1)
    vocab = [3, 4, 2]
    codes = np.unique(rng.integers(0, 4, size=(30, 3)) % np.array(vocab), axis=0)
    trie = SIDTrie.build(codes, vocab)
    for t in range(3):
        prefixes = list(itertools.product(*[range(v) for v in vocab[:t]]))
        nodes = trie.lookup_prefix(torch.tensor(prefixes, dtype=torch.long).reshape(len(prefixes), t)) if t else torch.zeros(1, dtype=torch.long)
        mask = trie.allowed(t, nodes)
        for p, row in zip(prefixes, mask):
            assert {int(v) for v in torch.nonzero(row).flatten()} == brute_children(codes, p)
    assert trie.n_leaves == len(codes)


def test_colliding_sids_map_to_the_representative():
    codes = np.array([[1, 1], [0, 0], [1, 1], [1, 1]])
    rep = np.array([False, True, False, True])
    trie = SIDTrie.build(codes, [2, 2], rep)
    assert trie.n_leaves == 2
    assert trie.items_of(torch.tensor([[1, 1], [0, 0]])).tolist() == [3, 1]
    # without representatives the first item of the group wins
    assert SIDTrie.build(codes, [2, 2]).items_of(torch.tensor([[1, 1]])).tolist() == [0]


def test_bad_codes_are_user_errors():
    with pytest.raises(SidrecError, match="vocab"):
        SIDTrie.build(np.array([[0, 3]]), [2, 2])
    with pytest.raises(SidrecError, match="vocabulary sizes"):
        SIDTrie.build(np.array([[0, 1]]), [2])


def test_scales_to_a_million_items_with_linear_memory():
    rng = np.random.default_rng(0)
    n, vocab = 1_000_000, [256, 256, 256, 4]
    codes = np.stack([rng.integers(0, v, n) for v in vocab], axis=1)
    trie = SIDTrie.build(codes, vocab)
    T = len(vocab)
    # CSR offsets + tokens + keys per level, and the leaf map: a small constant x items x T words
    assert trie.nbytes() <= 4 * n * T * 8
    flat = ((codes[:, 0] * 256 + codes[:, 1]) * 256 + codes[:, 2]) * 4 + codes[:, 3]
    assert trie.n_leaves == len(np.unique(flat))
    assert trie.n_nodes(1) == 256
    sample = rng.integers(0, n, 2000)
    sids = torch.from_numpy(codes[sample])
    items = trie.items_of(sids)
    assert (torch.from_numpy(codes)[items] == sids).all()
    # a batch of (B*K) prefixes at the last level: every true next token is allowed
    nodes = trie.lookup_prefix(sids[:, : T - 1])
    mask = trie.allowed(T - 1, nodes)
    assert mask.shape == (2000, vocab[-1])
    assert mask[torch.arange(2000), sids[:, T - 1]].all()
