"""The encoder-decoder as a UniGRec run trains it: soft-identifier history inputs (arch ``encdec-soft``).

UniGRec's encoder reads every history item as its soft identifier (eq. 15: the
codeword probabilities of each level weight that level's token embeddings); the
authors validate and test with the same soft input (``UniGRec.generate`` calls
``encode_soft``). A model trained on soft inputs but served on hard SID lookups
sees inputs it never saw in training (issue 13, point 5). This class is the
served form: an :class:`EncoderDecoder` that carries, per item, the SID it was
trained with (``item_codes``, (n_items, T)) and its soft level embeddings
(``item_inputs``, (n_items, L, D), computed from the tokenizer and token table of
the saved step), both saved with the weights. :meth:`encode` maps each history
SID back to its item (SIDs are unique: the de-dup digit) and feeds the soft
embeddings for the L levels and the looked-up de-dup digit; a SID that is no
item's (padding) gets the plain lookup. Decoding (the hard SID of the next item)
is the parent's.

Built only by ``train.method=unigrec`` (:meth:`wrap`); loaded by
``load_trained_model`` from the checkpoint's arch and config like any model, so
``sidrec evaluate``, ``sidrec recommend`` and the Python API all use it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sidrec.config import ModelConfig
from sidrec.errors import SidrecError
from sidrec.models.base import HistoryBatch
from sidrec.models.encdec import EncoderDecoder
from sidrec.models.registry import register_model


@register_model("encdec-soft")
class SoftHistoryEncoderDecoder(EncoderDecoder):
    """:class:`EncoderDecoder` whose history items enter as fixed soft-identifier embeddings.

    Args:
        vocab_sizes ... history_tokens: as :class:`EncoderDecoder`.
        n_items: items with a soft input (rows of ``item_codes`` / ``item_inputs``).
        n_soft_levels: L, the SID positions with soft inputs (the de-dup digit is looked up).
    """

    checkpoint_only = True  # saved by train.method=unigrec; not a model.arch choice

    def __init__(self, vocab_sizes: list[int], max_history: int = 20, n_enc_layers: int = 4, n_dec_layers: int = 4,
                 n_heads: int = 6, d_model: int = 128, head_dim: int = 64, d_ff: int = 1024, dropout: float = 0.1,
                 user_tokens: int = 0, history_tokens: str = "item", n_items: int = 0, n_soft_levels: int = 0):
        super().__init__(vocab_sizes, max_history, n_enc_layers, n_dec_layers, n_heads, d_model, head_dim, d_ff,
                         dropout, user_tokens, history_tokens)  # fmt: skip
        T = len(vocab_sizes)
        if not 0 < n_soft_levels < T or n_items <= 0:
            raise SidrecError(f"encdec-soft needs 0 < n_soft_levels < {T} and n_items > 0, got {n_soft_levels}, {n_items}")
        if math.prod(vocab_sizes) >= 2**62:
            raise SidrecError(f"encdec-soft: SID space {vocab_sizes} too large to index items by SID")
        self._config.update(n_items=n_items, n_soft_levels=n_soft_levels)
        self.n_soft_levels = n_soft_levels
        mult = [math.prod(vocab_sizes[t + 1 :]) for t in range(T)]
        self.register_buffer("_mult", torch.tensor(mult), persistent=False)  # (T,) SID -> one int64 key
        self.register_buffer("item_codes", torch.zeros(n_items, T, dtype=torch.long))  # (N, T)
        self.register_buffer("item_inputs", torch.zeros(n_items, n_soft_levels, d_model))  # (N, L, D)
        self._index: tuple[Any, torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_config(cls, cfg: ModelConfig, vocab_sizes: list[int], max_history: int) -> EncoderDecoder:
        raise SidrecError("model.arch 'encdec-soft' is what train.method=unigrec saves; train with model.arch=encdec")

    @classmethod
    @torch.no_grad()
    def wrap(cls, rec: EncoderDecoder, codes: torch.Tensor, inputs: torch.Tensor) -> SoftHistoryEncoderDecoder:
        """A copy of ``rec`` serving items ``codes`` (N, T) with soft level embeddings ``inputs`` (N, L, D)."""
        m = cls(**rec.config(), n_items=codes.shape[0], n_soft_levels=inputs.shape[1]).to(inputs.device)
        m.load_state_dict({**rec.state_dict(), "item_codes": codes.long(), "item_inputs": inputs})
        return m.train(rec.training)

    def _rows(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Item row of each SID (..., T) and whether it is an item's SID at all."""
        version = (self.item_codes.data_ptr(), self.item_codes._version)
        if self._index is None or self._index[0] != version:  # rebuilt after load_state_dict / .to()
            keys, order = torch.sort((self.item_codes * self._mult).sum(-1))
            self._index = (version, keys, order)
        _, keys, order = self._index
        q = (codes * self._mult).sum(-1)  # (...,)
        pos = torch.searchsorted(keys, q).clamp(max=len(keys) - 1)
        return order[pos], keys[pos] == q

    def encode(self, history: HistoryBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """History -> encoder output, with the trained soft inputs for the L levels of every known item."""
        codes = history.codes[:, -self.max_history :]  # (B, H, T)
        e = self.tok(codes + self.offsets)  # (B, H, T, D) hard lookup (padding, de-dup digit)
        row, known = self._rows(codes)  # (B, H)
        L = self.n_soft_levels
        soft = torch.where(known[..., None, None], self.item_inputs[row], e[:, :, :L])  # (B, H, L, D)
        enc, kpm, _ = self.encode_embedded(torch.cat([soft, e[:, :, L:]], dim=2), history.mask, history.user_bins)
        return enc, kpm
