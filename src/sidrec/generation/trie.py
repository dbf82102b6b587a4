"""A tensorised prefix trie over the valid SIDs, for constrained beam search.

Level ``t`` of the trie holds the distinct prefixes of length ``t`` (level 0 is
the empty prefix, the root; level ``T`` holds the distinct full SIDs, the
leaves). Nodes of a level are numbered in lexicographic order, so the children
of a node are contiguous in the next level (CSR layout):

- ``child_start[t]``: (n_nodes_t + 1,) offsets; node ``n`` of level ``t`` has
  children ``child_start[t][n] : child_start[t][n + 1]`` in level ``t + 1``.
- ``child_token[t]``: (n_nodes_{t+1},) the token that leads to each child.
- ``child_key[t]``: (n_nodes_{t+1},) ``parent * V_t + token``, sorted, so the
  child reached by ``(node, token)`` is one ``searchsorted`` away.

Memory is O(distinct prefixes) <= O(items x T); nothing is dense over a
vocabulary except the per-step (M, V_t) boolean mask of allowed tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from sidrec.errors import SidrecError


class SIDTrie:
    """Prefix trie over item SIDs with vectorised child lookup.

    Attributes:
        vocab_sizes: V_t of each position (length T).
        child_start: per level t < T, (n_nodes_t + 1,) long CSR offsets.
        child_token: per level t < T, (n_nodes_{t+1},) long tokens.
        child_key: per level t < T, (n_nodes_{t+1},) long sorted ``parent * V_t + token``.
        leaf_item: (n_leaves,) long, the item a full SID (leaf) maps to.
    """

    def __init__(
        self,
        vocab_sizes: list[int],
        child_start: list[torch.Tensor],
        child_token: list[torch.Tensor],
        child_key: list[torch.Tensor],
        leaf_item: torch.Tensor,
    ):
        assert len(child_start) == len(child_token) == len(child_key) == len(vocab_sizes)
        self.vocab_sizes = list(vocab_sizes)
        self.child_start = child_start
        self.child_token = child_token
        self.child_key = child_key
        self.leaf_item = leaf_item

    # ------------------------------------------------------------------ build

    @classmethod
    def build(cls, codes: np.ndarray, vocab_sizes: list[int], representative: np.ndarray | None = None) -> SIDTrie:
        """Build the trie of the SIDs ``codes`` (n_items, T).

        Args:
            codes: token t of item n, in [0, vocab_sizes[t]).
            vocab_sizes: vocabulary size of each position.
            representative: (n_items,) bool; among items sharing a SID, the leaf maps to a
                representative one (the first in item order if none is marked). None: all.

        Returns:
            The trie; ``leaf_item[leaf]`` is an item index into ``codes``.
        """
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] == 0:
            raise SidrecError(f"SID codes must be a non-empty (n_items, T) array, got shape {codes.shape}")
        n, T = codes.shape
        if len(vocab_sizes) != T:
            raise SidrecError(f"expected {T} vocabulary sizes for {T}-token SIDs, got {len(vocab_sizes)}")
        vmax = np.asarray(vocab_sizes, dtype=np.int64)
        if (codes < 0).any() or (codes >= vmax[None, :]).any():
            raise SidrecError(f"SID codes must lie in [0, vocab_sizes) = {list(vocab_sizes)} per position")
        rep = np.ones(n, dtype=bool) if representative is None else np.asarray(representative, dtype=bool)
        # representatives first so that the first row of each SID group is the one to keep
        order = np.lexsort([np.arange(n), ~rep] + [codes[:, t] for t in range(T - 1, -1, -1)])
        s = codes[order]  # (n, T) lexicographically sorted
        new = np.zeros(n, dtype=bool)  # row starts a new prefix of the current length
        new[0] = True
        parent_id = np.zeros(n, dtype=np.int64)  # node id (level t) of each row's prefix
        starts, tokens, keys = [], [], []
        for t in range(T):
            if n > 1:
                new[1:] |= s[1:, t] != s[:-1, t]
            node_id = np.cumsum(new) - 1  # (n,) node id at level t+1
            first = np.flatnonzero(new)  # first row of each level-(t+1) node
            tok = s[first, t]
            par = parent_id[first]
            n_parents = int(parent_id[-1]) + 1
            counts = np.bincount(par, minlength=n_parents)
            starts.append(torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)))
            tokens.append(torch.from_numpy(tok.copy()))
            keys.append(torch.from_numpy(par * int(vocab_sizes[t]) + tok))
            parent_id = node_id
        leaf_item = torch.from_numpy(order[np.flatnonzero(new)].astype(np.int64))
        return cls(list(vocab_sizes), starts, tokens, keys, leaf_item)

    # ------------------------------------------------------------------ queries

    @property
    def n_tokens(self) -> int:
        return len(self.vocab_sizes)

    @property
    def n_leaves(self) -> int:
        return int(self.leaf_item.numel())

    def n_nodes(self, level: int) -> int:
        """Number of distinct prefixes of length ``level`` (0 = root)."""
        return 1 if level == 0 else int(self.child_token[level - 1].numel())

    def nbytes(self) -> int:
        """Bytes held by the trie's tensors."""
        ts = [*self.child_start, *self.child_token, *self.child_key, self.leaf_item]
        return sum(x.numel() * x.element_size() for x in ts)

    def allowed(self, level: int, nodes: torch.Tensor) -> torch.Tensor:
        """Mask of the tokens that extend each prefix to a valid one.

        Args:
            level: prefix length t of ``nodes`` (0 <= t < T).
            nodes: (M,) long node ids of level t; -1 marks a dead prefix (nothing allowed).

        Returns:
            (M, V_t) bool.
        """
        V = self.vocab_sizes[level]
        M = nodes.numel()
        mask = torch.zeros(M, V, dtype=torch.bool)
        alive = nodes >= 0
        safe = nodes.clamp(min=0)
        start = self.child_start[level][safe]  # (M,)
        count = torch.where(alive, self.child_start[level][safe + 1] - start, torch.zeros_like(start))
        total = int(count.sum())
        if total == 0:
            return mask
        rows = torch.repeat_interleave(torch.arange(M), count)  # (total,)
        # position of each child inside its parent's range: 0, 1, ..., count-1
        offs = torch.arange(total) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        toks = self.child_token[level][start[rows] + offs]
        mask[rows, toks] = True
        return mask

    def child(self, level: int, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Node id at level t+1 reached from ``nodes`` (level t) by ``tokens``; -1 if invalid.

        Args:
            level: t.
            nodes: (...) long node ids of level t, -1 for dead prefixes.
            tokens: (...) long tokens of position t (any value; out-of-vocab gives -1).
        """
        V = self.vocab_sizes[level]
        keys = self.child_key[level]
        q = nodes * V + tokens
        pos = torch.searchsorted(keys, q.reshape(-1)).reshape(q.shape)
        pos_c = pos.clamp(max=keys.numel() - 1)
        ok = (nodes >= 0) & (tokens >= 0) & (tokens < V) & (keys[pos_c] == q)
        return torch.where(ok, pos_c, torch.full_like(pos_c, -1))

    def lookup_prefix(self, prefixes: torch.Tensor) -> torch.Tensor:
        """Node id of each prefix (..., t) at level t, -1 where it is not a valid prefix."""
        node = torch.zeros(prefixes.shape[:-1], dtype=torch.long)
        for t in range(prefixes.shape[-1]):
            node = self.child(t, node, prefixes[..., t])
        return node

    def lookup(self, sids: torch.Tensor) -> torch.Tensor:
        """Leaf id of each full SID (..., T), -1 where the SID is not in the trie.

        Map leaves to items with ``leaf_item``.
        """
        assert sids.shape[-1] == self.n_tokens
        return self.lookup_prefix(sids)

    def items_of(self, sids: torch.Tensor) -> torch.Tensor:
        """Item index of each full SID (..., T); -1 for a SID that matches no item."""
        leaf = self.lookup(sids)
        return torch.where(leaf >= 0, self.leaf_item[leaf.clamp(min=0)], leaf)
