"""Encoder-decoder SID generator (TIGER, Rajput et al. 2023; GRID §3.1/§4 defaults).

The encoder reads the user's history bidirectionally; the decoder generates the
next item's SID one position at a time from a BOS token, attending to the encoder
output. One embedding table holds every SID position's vocabulary at its own
offset (plus BOS and the optional hashed user tokens); output logits are inner
products with that table's slice for the position (UniGRec §2.2, eq. 13).

``history_tokens`` selects how the encoder sees a history item:

- ``"sid"``: one token per SID position (TIGER/GRID; encoder length H*T).
- ``"item"``: one token per item = sum of its SID token embeddings + position
  (encoder length H, ~T x cheaper; see BENCHMARKS.md for the quality trade).
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
from sidrec.models.layers import DecoderBlock, EncoderBlock, key_padding_mask
from sidrec.models.registry import register_model

HISTORY_TOKENS = ("item", "sid")

KV = tuple[torch.Tensor, torch.Tensor]


@dataclass
class EncDecCache:
    """Decoding state for B users x K beams.

    Attributes:
        memory: per decoder layer, cross-attention k, v (B, nh, S, hd), shared by beams.
        memory_mask: (B, 1, 1, S) encoder key mask, or None if nothing is padded.
        past: per decoder layer, self-attention k, v (B, K, nh, t, hd); None before step 0.
        beam_size: K.
        steps: SID positions generated so far.
    """

    memory: list[KV]
    memory_mask: torch.Tensor | None
    past: list[KV] | None
    beam_size: int
    steps: int = 0


@register_model("encdec")
class EncoderDecoder(nn.Module):
    """TIGER/GRID encoder-decoder over SID tokens (implements ``SIDGenerator``)."""

    def __init__(
        self,
        vocab_sizes: list[int],
        max_history: int = 20,
        n_enc_layers: int = 4,
        n_dec_layers: int = 4,
        n_heads: int = 6,
        d_model: int = 128,
        head_dim: int = 64,
        d_ff: int = 1024,
        dropout: float = 0.1,
        user_tokens: int = 0,
        history_tokens: str = "item",
    ):
        super().__init__()
        if history_tokens not in HISTORY_TOKENS:
            raise SidrecError(f"model.history_tokens must be one of {', '.join(HISTORY_TOKENS)}, got {history_tokens!r}")
        self._config = dict(
            vocab_sizes=[int(v) for v in vocab_sizes], max_history=max_history, n_enc_layers=n_enc_layers,
            n_dec_layers=n_dec_layers, n_heads=n_heads, d_model=d_model, head_dim=head_dim, d_ff=d_ff,
            dropout=dropout, user_tokens=user_tokens, history_tokens=history_tokens,
        )  # fmt: skip
        self.vocab_sizes = list(self._config["vocab_sizes"])
        self.max_history, self.user_tokens, self.history_tokens = max_history, user_tokens, history_tokens
        T = len(vocab_sizes)
        starts = [0]
        for v in vocab_sizes:
            starts.append(starts[-1] + v)
        self._starts = starts
        self.register_buffer("offsets", torch.tensor(starts[:-1]), persistent=False)  # (T,)
        self.bos = starts[-1]
        self.user_base = self.bos + 1
        self.tok = nn.Embedding(self.user_base + user_tokens, d_model)
        self.enc_pos = nn.Embedding(max_history, d_model)  # distance from the most recent item
        self.dec_pos = nn.Embedding(T, d_model)
        block = (d_model, n_heads, head_dim, d_ff, dropout)
        self.encoder = nn.ModuleList(EncoderBlock(*block) for _ in range(n_enc_layers))
        self.decoder = nn.ModuleList(DecoderBlock(*block) for _ in range(n_dec_layers))
        self.enc_norm = nn.LayerNorm(d_model)
        self.dec_norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.apply(_init_weights)

    @classmethod
    def from_config(cls, cfg: ModelConfig, vocab_sizes: list[int], max_history: int) -> EncoderDecoder:
        """Build from the ``model`` config section."""
        return cls(
            vocab_sizes, max_history, cfg.n_enc_layers, cfg.n_dec_layers, cfg.n_heads, cfg.d_model,
            cfg.head_dim, cfg.d_ff, cfg.dropout, cfg.user_tokens, cfg.history_tokens,
        )  # fmt: skip

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    # ------------------------------------------------------------------ encoder

    def encode(self, history: HistoryBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """History -> encoder output (B, S, D) and its key mask (B, 1, 1, S) or None."""
        codes = history.codes[:, -self.max_history :]
        T = codes.shape[2]
        assert T == len(self.vocab_sizes), f"history has {T} tokens per item, model expects {len(self.vocab_sizes)}"
        enc, kpm, _ = self.encode_embedded(self.tok(codes + self.offsets), history.mask, history.user_bins)
        return enc, kpm

    def encode_embedded(
        self, e: torch.Tensor, mask: torch.Tensor, user_bins: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The encoder from token embeddings (UniGRec feeds soft ones, eq. 15).

        Args:
            e: (B, H, T, D) embeddings of the history items' SID tokens.
            mask: (B, H) bool, True for real items.
            user_bins: (B,) hashed user tokens, required when ``user_tokens`` > 0.

        Returns:
            Encoder output (B, S, D), its SDPA key mask (B, 1, 1, S) or None, and the (B, S) bool mask.
        """
        e, mask = e[:, -self.max_history :], mask[:, -self.max_history :]
        B, H, T, _ = e.shape
        pos = self.enc_pos(torch.arange(H - 1, -1, -1, device=e.device))  # (H, D)
        if self.history_tokens == "item":
            x = e.sum(2) + pos  # (B, H, D)
        else:
            x = (e + pos[:, None]).reshape(B, H * T, -1)  # (B, H*T, D)
            mask = mask.repeat_interleave(T, dim=1)
        if self.user_tokens:
            if user_bins is None:
                raise SidrecError("this model was trained with user tokens; HistoryBatch.user_bins is required")
            u = self.tok(self.user_base + user_bins)[:, None]  # (B, 1, D)
            x = torch.cat([u, x], dim=1)
            mask = torch.cat([mask.new_ones(B, 1), mask], dim=1)
        kpm = key_padding_mask(mask)
        x = self.drop(x)
        for blk in self.encoder:
            x = blk(x, kpm)
        return self.enc_norm(x), kpm, mask

    # ------------------------------------------------------------------ decoder

    def _decode(self, x: torch.Tensor, memory: list[KV], mask: torch.Tensor | None, past: list[KV] | None) -> tuple[torch.Tensor, list[KV]]:
        """x (B, N, t, D) -> normalised hidden (B, N, t, D) and per-layer self-attention k, v."""
        new_past = []
        for i, blk in enumerate(self.decoder):
            x, kv = blk(x, memory[i], mask, None if past is None else past[i])
            new_past.append(kv)
        return self.dec_norm(x), new_past

    def _logits(self, h: torch.Tensor, t: int) -> torch.Tensor:
        """Hidden (..., D) at SID position t -> logits (..., V_t) (tied to the token table)."""
        return h @ self.tok.weight[self._starts[t] : self._starts[t + 1]].T

    def decode_embedded(self, enc: torch.Tensor, kpm: torch.Tensor | None, target_emb: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoder hidden states from the targets' token embeddings.

        Input position t is BOS (t = 0) or the embedding of target token t-1. UniGRec
        passes soft embeddings (eq. 15); :meth:`_teacher_forced` looks them up.

        Args:
            enc: (B, S, D) encoder output; kpm: its SDPA key mask or None.
            target_emb: (B, N, T, D) embeddings of N candidate SIDs per user.

        Returns:
            (B, N, T, D) hidden states; position t predicts SID token t.
        """
        memory = [blk.cross_attn.memory(enc) for blk in self.decoder]
        B, N, _, D = target_emb.shape
        bos = self.tok.weight[self.bos].expand(B, N, 1, D)
        x = self.drop(torch.cat([bos, target_emb[:, :, :-1]], dim=2) + self.dec_pos.weight)  # (B, N, T, D)
        h, _ = self._decode(x, memory, kpm, None)
        return h

    def _teacher_forced(self, history: HistoryBatch, sids: torch.Tensor) -> torch.Tensor:
        """sids (B, N, T) -> decoder hidden (B, N, T, D) predicting each position."""
        enc, kpm = self.encode(history)
        return self.decode_embedded(enc, kpm, self.tok(sids + self.offsets))

    def loss(self, history: HistoryBatch, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy averaged over the batch and the T positions (sum over positions / T)."""
        h = self._teacher_forced(history, targets[:, None])[:, 0]  # (B, T, D)
        total = h.new_zeros(())
        for t in range(len(self.vocab_sizes)):
            total = total + F.cross_entropy(self._logits(h[:, t], t), targets[:, t])
        return total / len(self.vocab_sizes)

    def score(self, history: HistoryBatch, candidates: torch.Tensor) -> torch.Tensor:
        h = self._teacher_forced(history, candidates)  # (B, C, T, D)
        out = h.new_zeros(candidates.shape[:2])
        for t in range(len(self.vocab_sizes)):
            logp = F.log_softmax(self._logits(h[:, :, t], t), dim=-1)  # (B, C, V_t)
            out = out + logp.gather(-1, candidates[:, :, t : t + 1]).squeeze(-1)
        return out

    # ------------------------------------------------------------------ incremental decoding

    def start(self, history: HistoryBatch, beam_size: int) -> EncDecCache:
        enc, kpm = self.encode(history)
        memory = [blk.cross_attn.memory(enc) for blk in self.decoder]
        return EncDecCache(memory, kpm, None, beam_size)

    def step(self, cache: EncDecCache, tokens: torch.Tensor | None) -> torch.Tensor:
        t, K = cache.steps, cache.beam_size
        if t >= len(self.vocab_sizes):
            raise SidrecError(f"step called {t + 1} times; SIDs have {len(self.vocab_sizes)} positions")
        B = cache.memory[0][0].shape[0]
        if tokens is None:  # BOS: identical for all beams, so run one and broadcast
            assert t == 0, "tokens=None is only valid at the first step"
            inp = torch.full((B, 1, 1), self.bos, device=cache.memory[0][0].device)
        else:
            inp = (tokens + self.offsets[t - 1])[..., None]  # (B, K, 1)
        x = self.tok(inp) + self.dec_pos.weight[t]  # (B, N, 1, D)
        h, past = self._decode(x, cache.memory, cache.memory_mask, cache.past)
        logp = F.log_softmax(self._logits(h[:, :, 0], t), dim=-1)  # (B, N, V_t)
        if tokens is None:
            past = [(k.expand(-1, K, -1, -1, -1), v.expand(-1, K, -1, -1, -1)) for k, v in past]
            logp = logp.expand(-1, K, -1)
        cache.past, cache.steps = past, t + 1
        return logp

    def reorder(self, cache: EncDecCache, parents: torch.Tensor) -> None:
        if cache.past is None:
            return
        b = torch.arange(parents.shape[0], device=parents.device)[:, None]
        cache.past = [(k[b, parents], v[b, parents]) for k, v in cache.past]


def _init_weights(m: nn.Module) -> None:
    """GPT-2/nanoGPT init: N(0, 0.02) weights, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, std=0.02)
