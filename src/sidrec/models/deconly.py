"""Decoder-only (GPT-style) SID generator of the encoder-decoder's size (GRID §4.2, Table 5).

The history's SID tokens are flattened into one causal sequence and the next
item's tokens continue it: the hidden state at an item's last token predicts the
next item's first token. Training runs one causal pass per user window and learns
every prefix's next item at once (:meth:`sequence_loss`), which equals sliding-window
training without recomputing shared prefixes.

Decoding keeps the history's K/V (B, ...) shared by a user's beams and only the
generated tokens' K/V per beam; attention over the two parts is one softmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sidrec.config import ModelConfig
from sidrec.errors import SidrecError
from sidrec.models.base import HistoryBatch
from sidrec.models.encdec import _init_weights
from sidrec.models.layers import EncoderBlock
from sidrec.models.registry import register_model

KV = tuple[torch.Tensor, torch.Tensor]


@dataclass
class DecOnlyCache:
    """Decoding state for B users x K beams.

    Attributes:
        prefix: per layer, history k, v (B, nh, S, hd), shared by beams.
        prefix_mask: (B, S) bool, True for real history tokens.
        past: per layer, generated tokens' k, v (B, K, nh, t, hd); None before step 1.
        first: (B, V_0) log-probs of the first SID position (from the history pass).
        item_pos: (B,) position index of the item being generated.
        beam_size: K.
        steps: SID positions generated so far.
    """

    prefix: list[KV]
    prefix_mask: torch.Tensor
    past: list[KV] | None
    first: torch.Tensor
    item_pos: torch.Tensor
    beam_size: int
    steps: int = 0


@register_model("deconly")
class DecoderOnly(nn.Module):
    """GPT-style causal transformer over flattened SID tokens (implements ``SIDGenerator``)."""

    train_unit = "sequence"  # trainer feeds whole user windows to sequence_loss

    def __init__(
        self,
        vocab_sizes: list[int],
        max_history: int = 20,
        n_layers: int = 8,
        n_heads: int = 6,
        d_model: int = 128,
        head_dim: int = 64,
        d_ff: int = 1024,
        dropout: float = 0.1,
        user_tokens: int = 0,
    ):
        super().__init__()
        self._config = dict(
            vocab_sizes=[int(v) for v in vocab_sizes], max_history=max_history, n_layers=n_layers, n_heads=n_heads,
            d_model=d_model, head_dim=head_dim, d_ff=d_ff, dropout=dropout, user_tokens=user_tokens,
        )  # fmt: skip
        self.vocab_sizes = list(self._config["vocab_sizes"])
        self.max_history, self.user_tokens = max_history, user_tokens
        starts = [0]
        for v in vocab_sizes:
            starts.append(starts[-1] + v)
        self._starts = starts
        self.register_buffer("offsets", torch.tensor(starts[:-1]), persistent=False)  # (T,)
        self.user_base = starts[-1]
        self.tok = nn.Embedding(self.user_base + user_tokens, d_model)
        self.pos = nn.Embedding(max_history + 1, d_model)  # item index from the window start
        self.blocks = nn.ModuleList(EncoderBlock(d_model, n_heads, head_dim, d_ff, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.apply(_init_weights)

    @classmethod
    def from_config(cls, cfg: ModelConfig, vocab_sizes: list[int], max_history: int) -> DecoderOnly:
        """Build from the ``model`` section: n_layers = n_enc_layers + n_dec_layers (same depth as encdec)."""
        return cls(
            vocab_sizes, max_history, cfg.n_enc_layers + cfg.n_dec_layers, cfg.n_heads, cfg.d_model,
            cfg.head_dim, cfg.d_ff, cfg.dropout, cfg.user_tokens,
        )  # fmt: skip

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def _logits(self, h: torch.Tensor, t: int) -> torch.Tensor:
        return h @ self.tok.weight[self._starts[t] : self._starts[t + 1]].T

    def _user(self, user_bins: torch.Tensor | None, B: int) -> torch.Tensor | None:
        if not self.user_tokens:
            return None
        if user_bins is None:
            raise SidrecError("this model was trained with user tokens; HistoryBatch.user_bins is required")
        return self.tok(self.user_base + user_bins)[:, None]  # (B, 1, D)

    # ------------------------------------------------------------------ training on whole windows

    def sequence_loss(self, codes: torch.Tensor, lengths: torch.Tensor, user_bins: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """Next-item loss for every prefix of right-padded windows in one causal pass.

        Args:
            codes: (B, L, T) SIDs of window items, padding on the right.
            lengths: (B,) real items per window (>= 2); item i >= 1 is predicted from items < i.

        Returns:
            Cross-entropy summed over targets and positions / T, and the number of targets.
        """
        B, L, T = codes.shape
        x = self.tok(codes + self.offsets) + self.pos.weight[:L, None]  # (B, L, T, D)
        x = x.reshape(B, L * T, -1)
        u = self._user(user_bins, B)
        if u is not None:
            x = torch.cat([u, x], dim=1)
        x = self.drop(x)
        for blk in self.blocks:
            x = blk(x, causal=True)  # right padding never influences real positions
        h = self.norm(x[:, x.shape[1] - L * T :])  # (B, L*T, D)
        pred = h[:, T - 1 : L * T - 1].reshape(B, L - 1, T, -1)  # pred[b, i, t] -> codes[b, i+1, t]
        valid = torch.arange(1, L, device=codes.device)[None] < lengths[:, None]  # (B, L-1)
        pred, tgt = pred[valid], codes[:, 1:][valid]  # (N, T, D), (N, T)
        total = h.new_zeros(())
        for t in range(T):
            total = total + F.cross_entropy(self._logits(pred[:, t], t), tgt[:, t], reduction="sum")
        return total / T, int(tgt.shape[0])

    # ------------------------------------------------------------------ history pass + incremental decoding

    def _prefill(self, history: HistoryBatch) -> tuple[list[KV], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded history -> per-layer k, v, token mask (B, S), first-position log-probs, item_pos."""
        codes, mask = history.codes[:, -self.max_history :], history.mask[:, -self.max_history :]
        B, H, T = codes.shape
        n = mask.sum(1)  # (B,)
        pos = (torch.arange(H, device=codes.device)[None] - (H - n)[:, None]).clamp(min=0)  # (B, H)
        x = (self.tok(codes + self.offsets) + self.pos(pos)[:, :, None]).reshape(B, H * T, -1)
        m = mask.repeat_interleave(T, dim=1)  # (B, H*T)
        u = self._user(history.user_bins, B)
        if u is not None:
            x = torch.cat([u, x], dim=1)
            m = torch.cat([m.new_ones(B, 1), m], dim=1)
        S = x.shape[1]
        eye = torch.eye(S, dtype=torch.bool, device=x.device)
        causal = torch.ones(S, S, dtype=torch.bool, device=x.device).tril()
        attn_mask = ((causal & m[:, None, :]) | eye)[:, None]  # (B, 1, S, S); pads see themselves only
        x = self.drop(x)
        kvs = []
        for blk in self.blocks:
            q, k, v = blk.attn.project(blk.norm1(x))  # (B, nh, S, hd)
            x = x + blk.attn.merge(blk.attn.attend(q, k, v, attn_mask, causal=False))
            x = x + blk.mlp(blk.norm2(x))
            kvs.append((k, v))
        first = F.log_softmax(self._logits(self.norm(x[:, -1]), 0), dim=-1)  # (B, V_0)
        return kvs, m, first, n

    def _extend(self, x: torch.Tensor, prefix: list[KV], prefix_mask: torch.Tensor, past: list[KV] | None) -> tuple[torch.Tensor, list[KV]]:
        """Run new tokens x (B, N, t, D) of N continuations per user; causal among them."""
        t = x.shape[2]
        new_past = []
        pm = prefix_mask[:, None, None, None, :]  # (B, 1, 1, 1, S)
        for i, blk in enumerate(self.blocks):
            attn = blk.attn
            q, k, v = attn.project(blk.norm1(x))  # (B, N, nh, t, hd)
            if past is not None:
                k, v = torch.cat([past[i][0], k], dim=-2), torch.cat([past[i][1], v], dim=-2)
            kp, vp = prefix[i]  # (B, nh, S, hd)
            scale = attn.head_dim**-0.5
            s_pre = torch.einsum("bnhqd,bhsd->bnhqs", q, kp).mul(scale).masked_fill(~pm, float("-inf"))
            s_own = (q @ k.transpose(-1, -2)).mul(scale)  # (B, N, nh, t, t_all)
            t_all = k.shape[-2]
            own_ok = torch.arange(t_all, device=x.device)[None] <= torch.arange(t_all - t, t_all, device=x.device)[:, None]
            s_own = s_own.masked_fill(~own_ok, float("-inf"))
            p = torch.softmax(torch.cat([s_pre, s_own], dim=-1), dim=-1)
            p = F.dropout(p, attn.dropout, self.training)
            S = kp.shape[-2]
            y = torch.einsum("bnhqs,bhsd->bnhqd", p[..., :S], vp) + p[..., S:] @ v  # (B, N, nh, t, hd)
            x = x + attn.merge(y)
            x = x + blk.mlp(blk.norm2(x))
            new_past.append((k, v))
        return self.norm(x), new_past

    def score(self, history: HistoryBatch, candidates: torch.Tensor) -> torch.Tensor:
        prefix, pm, first, n = self._prefill(history)
        out = first.gather(-1, candidates[:, :, 0])  # (B, C)
        T = candidates.shape[-1]
        if T > 1:
            x = self.tok(candidates[..., :-1] + self.offsets[:-1]) + self.pos(n)[:, None, None]  # (B, C, T-1, D)
            h, _ = self._extend(self.drop(x), prefix, pm, None)
            for t in range(1, T):
                logp = F.log_softmax(self._logits(h[:, :, t - 1], t), dim=-1)
                out = out + logp.gather(-1, candidates[:, :, t : t + 1]).squeeze(-1)
        return out

    def loss(self, history: HistoryBatch, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy averaged over the batch and the T positions."""
        return -self.score(history, targets[:, None]).mean() / targets.shape[-1]

    def start(self, history: HistoryBatch, beam_size: int) -> DecOnlyCache:
        prefix, pm, first, n = self._prefill(history)
        return DecOnlyCache(prefix, pm, None, first, n, beam_size)

    def step(self, cache: DecOnlyCache, tokens: torch.Tensor | None) -> torch.Tensor:
        t, K = cache.steps, cache.beam_size
        if t >= len(self.vocab_sizes):
            raise SidrecError(f"step called {t + 1} times; SIDs have {len(self.vocab_sizes)} positions")
        cache.steps = t + 1
        if tokens is None:
            assert t == 0, "tokens=None is only valid at the first step"
            return cache.first[:, None].expand(-1, K, -1)
        x = self.tok(tokens + self.offsets[t - 1])[:, :, None] + self.pos(cache.item_pos)[:, None, None]  # (B, K, 1, D)
        h, cache.past = self._extend(x, cache.prefix, cache.prefix_mask, cache.past)
        return F.log_softmax(self._logits(h[:, :, 0], t), dim=-1)  # (B, K, V_t)

    def reorder(self, cache: DecOnlyCache, parents: torch.Tensor) -> None:
        if cache.past is None:
            return
        b = torch.arange(parents.shape[0], device=parents.device)[:, None]
        cache.past = [(k[b, parents], v[b, parents]) for k, v in cache.past]
