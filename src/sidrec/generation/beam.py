"""Batched beam search over SIDs with the model's KV cache.

B users x K beams decode in lock-step. Step 0 expands one BOS beam per user into
the top-K tokens of position 0; each later step scores (B, K, V_t), adds the
log-probs to the beam scores, keeps the top-K of the K*V_t continuations per
user and reorders the model cache. A beam's score is the sum of its tokens'
log-probabilities.

Constrained mode masks (-inf) every token that does not extend a valid SID
prefix, using :class:`~sidrec.generation.trie.SIDTrie`. A user with fewer than K
valid SIDs ends with some -inf beams; they are not results (their item is -1 and
:func:`ranked_items` drops them). Free mode allows any token; a generated SID
that matches no item is a *miss*: it keeps its rank (it pushes lower beams
down) but never matches a target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sidrec.errors import SidrecError
from sidrec.generation.trie import SIDTrie
from sidrec.models.base import HistoryBatch, SIDGenerator

NEG_INF = float("-inf")


@dataclass
class BeamResult:
    """Final beams of each user, best first.

    Attributes:
        sids: (B, K, T) long generated SIDs.
        scores: (B, K) float summed log-probabilities; -inf for a beam that does not exist.
        items: (B, K) long item index of each SID; -1 for a miss or a non-existent beam.
    """

    sids: torch.Tensor
    scores: torch.Tensor
    items: torch.Tensor


def model_device(model: SIDGenerator) -> torch.device:
    """Device of a model's parameters (CPU for a parameter-less model)."""
    params = getattr(model, "parameters", None)
    if params is None:
        return torch.device("cpu")
    p = next(iter(params()), None)
    return torch.device("cpu") if p is None else p.device


def beam_search(
    model: SIDGenerator,
    history: HistoryBatch,
    trie: SIDTrie,
    beam_size: int = 20,
    constrained: bool = True,
) -> BeamResult:
    """Decode the top ``beam_size`` SIDs of each user.

    Args:
        model: a :class:`~sidrec.models.base.SIDGenerator`, already in eval mode.
        history: B users' histories.
        trie: the valid SIDs; masks tokens in constrained mode and maps SIDs to items.
        beam_size: K.
        constrained: restrict decoding to prefixes of valid SIDs.

    Returns:
        SIDs, scores and items of the K beams per user, sorted by score.
    """
    if beam_size < 1:
        raise SidrecError(f"beam size must be >= 1, got {beam_size}")
    vocab = list(model.vocab_sizes)
    if vocab != trie.vocab_sizes:
        raise SidrecError(f"model vocabulary sizes {vocab} do not match the SID table's {trie.vocab_sizes}")
    device = model_device(model)
    history = history.to(device)
    B, K, T = history.codes.shape[0], beam_size, len(vocab)
    cache = model.start(history, K)

    # step 0: every beam is the BOS beam; expand user b's single beam
    logp = model.step(cache, None)[:, 0, :]  # (B, V_0)
    nodes = torch.zeros(B, dtype=torch.long)  # trie node of each beam's prefix (CPU)
    if constrained:
        logp = logp.masked_fill(~trie.allowed(0, nodes).to(device), NEG_INF)
    k0 = min(K, vocab[0])
    scores, tokens = logp.topk(k0, dim=1)  # (B, k0)
    if k0 < K:  # fewer tokens than beams: pad with non-existent beams
        scores = torch.cat([scores, scores.new_full((B, K - k0), NEG_INF)], dim=1)
        tokens = torch.cat([tokens, tokens.new_zeros(B, K - k0)], dim=1)
    seqs = tokens[:, :, None]  # (B, K, 1)
    if T > 1:
        model.reorder(cache, torch.zeros(B, K, dtype=torch.long, device=device))
    if constrained:
        nodes = trie.child(0, torch.zeros(B, K, dtype=torch.long), tokens.cpu())
        nodes = torch.where(torch.isfinite(scores).cpu(), nodes, torch.full_like(nodes, -1))

    for t in range(1, T):
        V = vocab[t]
        logp = model.step(cache, tokens)  # (B, K, V)
        assert logp.shape == (B, K, V), f"model.step returned {tuple(logp.shape)}, expected {(B, K, V)}"
        cand = scores[:, :, None] + logp  # (B, K, V)
        if constrained:
            allowed = trie.allowed(t, nodes.reshape(-1)).reshape(B, K, V)
            cand = cand.masked_fill(~allowed.to(device), NEG_INF)
        scores, flat = cand.reshape(B, K * V).topk(K, dim=1)  # (B, K)
        parents = torch.div(flat, V, rounding_mode="floor")  # (B, K)
        tokens = flat - parents * V
        seqs = torch.cat([seqs.gather(1, parents[:, :, None].expand(-1, -1, t)), tokens[:, :, None]], dim=2)
        if t < T - 1:
            model.reorder(cache, parents)
        if constrained:
            parents_c = parents.cpu()
            nodes = trie.child(t, nodes.gather(1, parents_c), tokens.cpu())
            nodes = torch.where(torch.isfinite(scores).cpu(), nodes, torch.full_like(nodes, -1))

    seqs, scores = seqs.cpu(), scores.cpu()
    if constrained:
        items = torch.where(nodes >= 0, trie.leaf_item[nodes.clamp(min=0)], nodes)
    else:
        items = trie.items_of(seqs)
    items = torch.where(torch.isfinite(scores), items, torch.full_like(items, -1))
    return BeamResult(seqs, scores, items)


def ranked_items(result: BeamResult, exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn beams into a ranked item list per user.

    Non-existent beams are dropped, a repeated item keeps only its best rank, and
    items in ``exclude`` are dropped; the remaining entries move up. Misses (free
    mode: a SID that matches no item) stay in place as -1 with a finite score.

    Args:
        result: from :func:`beam_search`.
        exclude: (B, H) long item indices to remove per user (-1 = padding), or None.

    Returns:
        items (B, K) long, -1 for a miss or an empty slot at the end; scores (B, K),
        -inf for empty slots.
    """
    items, scores = result.items, result.scores
    B, K = items.shape
    real = items >= 0
    keep = torch.isfinite(scores)
    earlier = torch.ones(K, K, dtype=torch.bool).tril(-1)  # [i, j]: j ranks above i
    dup = ((items[:, :, None] == items[:, None, :]) & earlier[None]).any(dim=2) & real  # (B, K)
    keep &= ~dup
    if exclude is not None:
        seen = ((items[:, :, None] == exclude[:, None, :].to(items.device)) & real[:, :, None]).any(dim=2)
        keep &= ~seen
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept entries first, in rank order
    keep = keep.gather(1, order)
    items = torch.where(keep, items.gather(1, order), torch.full_like(items, -1))
    scores = torch.where(keep, scores.gather(1, order), torch.full_like(scores, NEG_INF))
    return items, scores
