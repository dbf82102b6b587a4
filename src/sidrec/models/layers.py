"""Transformer building blocks shared by the architectures (pre-norm, T5-style widths).

Norms are LayerNorm rather than T5's RMSNorm: on CPU torch 2.13 has a fused LayerNorm
kernel while RMSNorm runs as composite ops (measured 4x slower forward, 2x fwd+bwd).

Attention width is ``n_heads * head_dim`` and need not equal ``d_model`` (T5; GRID §4
uses 6 heads on d_model 128). All attention goes through
``F.scaled_dot_product_attention``, which accepts any number of leading batch dims.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Position-wise feed-forward: d_model -> d_ff -> d_model."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.up = nn.Linear(d_model, d_ff)
        self.down = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.down(F.gelu(self.up(x))))


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection."""

    def __init__(self, d_model: int, n_heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = n_heads, head_dim, dropout
        self.qkv = nn.Linear(d_model, 3 * n_heads * head_dim, bias=False)
        self.out = nn.Linear(n_heads * head_dim, d_model, bias=False)
        self.drop = nn.Dropout(dropout)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(..., L, D) -> q, k, v each (..., nh, L, hd)."""
        qkv = self.qkv(x).unflatten(-1, (3, self.n_heads, self.head_dim))  # (..., L, 3, nh, hd)
        q, k, v = qkv.movedim(-3, 0).transpose(-2, -3).unbind(0)
        return q, k, v

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """(..., nh, L, hd) -> (..., L, D)."""
        return self.drop(self.out(y.transpose(-2, -3).flatten(-2)))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        q, k, v = self.project(x)
        return self.merge(self.attend(q, k, v, mask, causal))


class CrossAttention(nn.Module):
    """Decoder-to-encoder attention; K/V are computed once per user (:meth:`memory`)."""

    def __init__(self, d_model: int, n_heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = n_heads, head_dim, dropout
        self.q = nn.Linear(d_model, n_heads * head_dim, bias=False)
        self.kv = nn.Linear(d_model, 2 * n_heads * head_dim, bias=False)
        self.out = nn.Linear(n_heads * head_dim, d_model, bias=False)
        self.drop = nn.Dropout(dropout)

    def memory(self, enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output (B, S, D) -> k, v each (B, nh, S, hd)."""
        kv = self.kv(enc).unflatten(-1, (2, self.n_heads, self.head_dim))  # (B, S, 2, nh, hd)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        return k, v

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, M, D) queries of all of a user's beams/positions; mask (B, 1, 1, S) or None."""
        q = self.q(x).unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)  # (B, nh, M, hd)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask, dropout_p=p)  # (B, nh, M, hd)
        return self.drop(self.out(y.transpose(1, 2).flatten(-2)))


class EncoderBlock(nn.Module):
    """Pre-norm block: bidirectional (or causal) self-attention + MLP."""

    def __init__(self, d_model: int, n_heads: int, head_dim: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, head_dim, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, d_ff, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask, causal)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Pre-norm block: causal self-attention (KV-cached) + cross-attention + MLP.

    Works on (B, N, t, D): N candidate/beam continuations per user that share the
    user's encoder memory. Cross-attention folds them into one (B, N*t) query axis so
    encoder K/V stay (B, ...) and are never copied per beam.
    """

    def __init__(self, d_model: int, n_heads: int, head_dim: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = SelfAttention(d_model, n_heads, head_dim, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.cross_attn = CrossAttention(d_model, n_heads, head_dim, dropout)
        self.norm3 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, d_ff, dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: tuple[torch.Tensor, torch.Tensor],
        memory_mask: torch.Tensor | None,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, N, t, D); past k, v (B, N, nh, t_past, hd). Returns x and the grown k, v."""
        B, N, t, D = x.shape
        q, k, v = self.self_attn.project(self.norm1(x))  # (B, N, nh, t, hd)
        if past is not None:
            assert t == 1, "incremental decoding feeds one token per step"
            k, v = torch.cat([past[0], k], dim=-2), torch.cat([past[1], v], dim=-2)
            y = self.self_attn.attend(q, k, v, None, causal=False)  # the new token sees all past tokens
        else:
            y = self.self_attn.attend(q, k, v, None, causal=t > 1)
        x = x + self.self_attn.merge(y)
        h = self.cross_attn(self.norm2(x).reshape(B, N * t, D), memory, memory_mask)  # (B, N*t, D)
        x = x + h.view(B, N, t, D)
        x = x + self.mlp(self.norm3(x))
        return x, (k, v)


def key_padding_mask(mask: torch.Tensor) -> torch.Tensor | None:
    """(B, S) bool -> (B, 1, 1, S) SDPA mask, or None when nothing is padded (fast path)."""
    if bool(mask.all()):
        return None
    return mask[:, None, None, :]
