"""SASRec: self-attentive sequential recommendation over item IDs (Kang & McAuley, ICDM 2018).

The ID-based baseline of the generative models and the collaborative teacher of
UniGRec (its §3.4 distils SASRec's item embeddings into the tokenizer and the
recommender). One causal pass over a user's sequence gives a hidden state per
position; the logits for the next item are that state dotted with the *shared*
item embedding table, so the exported item embeddings are the very vectors the
model ranks with.

Histories are item_idx in ``[0, n_items)``, oldest first, right-padded with
``pad_idx = n_items``. Because padding only ever follows real items, the causal
mask alone keeps it from influencing any real position (no key-padding mask),
and the learned position of an item is its offset from the oldest item shown.

Defaults follow RecBole's SASRec (the implementation UniGRec §4.1.4 used for its
baseline row): 2 blocks, 2 heads, d=64, FFN 256 with GELU, dropout 0.5 (the
SASRec paper's rate for the sparse Amazon sets, §4.2), N(0, 0.02) init.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sidrec.errors import SidrecError
from sidrec.models.layers import MLP


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a fused QKV projection."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise SidrecError(f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, L, hd)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, nh, L, hd)
        return self.drop(self.out(y.transpose(1, 2).reshape(B, L, D)))  # (B, L, D)



class Block(nn.Module):
    """Pre-norm residual block: x + Dropout(g(LayerNorm(x))) (SASRec §3.3, "Residual Connections")."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = MLP(d_model, d_ff, dropout)  # d -> d_ff -> d, GELU as in RecBole (SASRec §3.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))  # (B, L, D)


class SASRec(nn.Module):
    """Causal transformer over item IDs with a shared input/output item embedding table.

    Args:
        n_items: number of real items; item_idx ``n_items`` is padding.
        max_history: longest history (number of learned positions).
        d_model: embedding / hidden width.
        n_layers: transformer blocks.
        n_heads: attention heads.
        d_ff: feed-forward width (0 = 4 * d_model).
        dropout: dropout on the input embeddings, attention weights and residual branches.
    """

    def __init__(
        self,
        n_items: int,
        max_history: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        d_ff: int = 0,
        dropout: float = 0.5,
    ):
        super().__init__()
        if n_items < 1 or max_history < 1:
            raise SidrecError(f"SASRec needs n_items >= 1 and max_history >= 1, got {n_items} and {max_history}")
        self.n_items, self.max_history, self.pad_idx = n_items, max_history, n_items
        self.item_emb = nn.Embedding(n_items + 1, d_model, padding_idx=n_items)
        self.pos_emb = nn.Embedding(max_history, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff or 4 * d_model, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)  # the final LayerNorm of the reference implementation
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
            if name.endswith(("out.weight", "down.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)  # RecBole's initializer_range
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()

    def check_items(self, items: torch.Tensor) -> torch.Tensor:
        """Validate right-padded histories; return their lengths.

        Args:
            items: (B, L) long item_idx, real items first, then ``pad_idx``.

        Returns:
            (B,) long number of real items per row.

        Raises:
            SidrecError: wrong shape or dtype, L > max_history, an index outside
                ``[0, n_items]``, padding before a real item, or an empty history.
        """
        if items.dim() != 2 or items.dtype != torch.long:
            raise SidrecError(f"expected item histories as a (B, L) long tensor, got {tuple(items.shape)} {items.dtype}")
        if items.shape[1] > self.max_history:
            raise SidrecError(f"expected histories of at most {self.max_history} items, got length {items.shape[1]}")
        if items.numel() and (items.min() < 0 or items.max() > self.pad_idx):
            bad = items[(items < 0) | (items > self.pad_idx)][0].item()
            raise SidrecError(f"expected item indices in [0, {self.n_items}) (padding {self.pad_idx}), got {bad}")
        real = items != self.pad_idx  # (B, L)
        lengths = real.sum(dim=1)  # (B,)
        if items.shape[1] and (real[:, 1:] & ~real[:, :-1]).any():
            raise SidrecError("expected right-padded histories (padding only after the real items), got padding before an item")
        if (lengths == 0).any():
            row = int((lengths == 0).nonzero()[0, 0])
            raise SidrecError(f"expected a non-empty history for every row, got an empty one at row {row}")
        return lengths

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden state after each position.

        Args:
            items: (B, L) long right-padded item_idx, L <= max_history.

        Returns:
            (B, L, D) hidden states; position t has seen items[:, : t + 1] only.
        """
        L = items.shape[1]
        pos = torch.arange(L, device=items.device)  # (L,)
        x = self.drop(self.item_emb(items) + self.pos_emb(pos))  # (B, L, D)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)  # (B, L, D)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-item logits from hidden states via the shared item embeddings: (..., D) -> (..., n_items)."""
        return hidden @ self.item_emb.weight[: self.n_items].T

    def scores(self, history: torch.Tensor) -> torch.Tensor:
        """Logits for each user's next item given its history.

        Args:
            history: (B, L) long right-padded item_idx (validated by :meth:`check_items`).

        Returns:
            (B, n_items) logits, read at each row's last real position.
        """
        lengths = self.check_items(history)  # (B,)
        hidden = self(history)  # (B, L, D)
        last = hidden[torch.arange(len(history), device=history.device), lengths - 1]  # (B, D)
        return self.logits(last)  # (B, n_items)

    def item_embeddings(self) -> torch.Tensor:
        """(n_items, D) item embeddings in item_idx order (padding row dropped), detached."""
        return self.item_emb.weight[: self.n_items].detach().clone()


def pad_histories(histories: Sequence[Sequence[int] | np.ndarray], pad_idx: int, max_len: int) -> torch.Tensor:
    """Right-pad item_idx sequences into a (B, L) long tensor, keeping each one's last ``max_len`` items.

    Args:
        histories: B sequences of item_idx (lists or arrays), oldest first.
        pad_idx: the padding index (``n_items``).
        max_len: the most recent items kept per sequence.

    Returns:
        (B, L) long, L = the longest kept sequence (at least 1).
    """
    kept = [list(h)[-max_len:] if max_len > 0 else [] for h in histories]
    L = max([len(h) for h in kept] + [1])
    out = torch.full((len(kept), L), pad_idx, dtype=torch.long)
    for i, h in enumerate(kept):
        if h:
            out[i, : len(h)] = torch.as_tensor(h, dtype=torch.long)
    return out
