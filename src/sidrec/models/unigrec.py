"""UniGRec (Li et al., "Unified Generative Recommendation with Soft Identifiers"): model pieces.

UniGRec trains the tokenizer and the TIGER encoder-decoder end to end by feeding
the recommender *soft identifiers*: for every item and SID level, the
assignment probabilities over that level's codewords (eq. 14) weight the
recommender's token embeddings (eq. 15). With one-hot probabilities this is the
ordinary embedding lookup, so a model trained this way is served by the plain
:class:`~sidrec.models.encdec.EncoderDecoder` on hard SIDs (``sidrec evaluate``).

Composition, not a new architecture: :class:`UniGRec` holds

- ``rec``: an ``EncoderDecoder`` (the recommender; the only part saved as the
  serving checkpoint, arch ``"encdec"``);
- ``tokenizer``: :class:`SoftTokenizer`, a differentiable view of an RQ-VAE-style
  tokenizer module (MLP encoder, residual codebooks, MLP decoder);
- three linear projections for the dual collaborative distillation (§3.4).

Soft token embeddings enter the recommender through ``EncoderDecoder.encode_embedded``
and ``EncoderDecoder.decode_embedded``, the model's own paths after the token lookup
(tested to agree with the hard path bit for bit on one-hot inputs).

Shapes: B batch, U unique items of a batch, H history, T SID tokens (L levels +
the de-dup digit), K codewords per level, D d_model, d semantic-embedding width.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from sidrec.models.encdec import EncoderDecoder
from sidrec.tokenizers._torch import recon_loss


def sq_dist(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances (B, K) between r (B, D) and codewords c (K, D)."""
    return (r.pow(2).sum(1, keepdim=True) - 2 * r @ c.T + c.pow(2).sum(1)[None, :]).clamp_min(0)


class SoftTokenizer(nn.Module):
    """Differentiable residual quantiser over an RQ-VAE's encoder, codebooks and decoder.

    Args:
        encoder: MLP d -> latent width.
        decoder: MLP latent width -> d.
        codebooks: (L, K, latent) codewords.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, codebooks: torch.Tensor):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.codebooks = nn.Parameter(codebooks.detach().clone())  # (L, K, Dz)

    @classmethod
    def from_module(cls, module: nn.Module) -> SoftTokenizer:
        """Copy the parts of a fitted RQ-VAE-style module (``encoder``, ``decoder`` and
        ``codebooks`` or ``quantizer.codebooks``); the original is left untouched."""
        cb = getattr(module, "codebooks", None)
        if cb is None:
            cb = module.quantizer.codebooks
        return cls(copy.deepcopy(module.encoder), copy.deepcopy(module.decoder), cb)

    def assign(self, x: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft assignment of x (B, d): probabilities (B, L, K) (eq. 14) and soft latent (B, Dz).

        Level l scores codewords by -||v_l - e_l^k||^2 / tau; the residual passed on is
        v_l minus the probability-weighted codeword (the soft form of eq. 4).
        """
        v = self.encoder(x)  # (B, Dz)
        zq, probs = torch.zeros_like(v), []
        for cb in self.codebooks:  # (K, Dz)
            p = torch.softmax(-sq_dist(v, cb) / tau, dim=-1)  # (B, K), eq. 14
            e = p @ cb  # (B, Dz)
            v, zq = v - e, zq + e
            probs.append(p)
        return torch.stack(probs, 1), zq

    def log_probs(self, x: torch.Tensor, tau: float) -> torch.Tensor:
        """log p_l(k) (B, L, K), computed in log space (stable at small tau)."""
        v = self.encoder(x)
        out = []
        for cb in self.codebooks:
            logit = -sq_dist(v, cb) / tau  # (B, K)
            out.append(F.log_softmax(logit, dim=-1))
            v = v - torch.softmax(logit, dim=-1) @ cb
        return torch.stack(out, 1)

    def forward(self, x: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, d) -> (reconstruction (B, d) (eq. 6 on the soft latent), probabilities (B, L, K))."""
        probs, zq = self.assign(x, tau)
        return self.decoder(zq), probs

    @torch.no_grad()
    def hard_codes(self, x: torch.Tensor, batch: int = 8192) -> torch.Tensor:
        """Hard identifiers (N, L): nearest codeword and hard residual per level (eq. 3-4)."""
        out = []
        for s in range(0, len(x), batch):
            v, codes = self.encoder(x[s : s + batch]), []
            for cb in self.codebooks:
                idx = sq_dist(v, cb).argmin(1)
                v = v - cb[idx]
                codes.append(idx)
            out.append(torch.stack(codes, 1))
        return torch.cat(out)


def soft_token_embeddings(probs: torch.Tensor, table: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Probability-weighted token embeddings (eq. 15).

    ``scatter(0, p_l) @ O`` only touches level l's rows of the table, so it is
    computed as ``p_l @ O[offset_l : offset_l + K]``.

    Args:
        probs: (..., L, K) assignment probabilities.
        table: (V, D) the recommender's token embedding table.
        offsets: (L,) first row of each level's vocabulary in ``table``.

    Returns:
        (..., L, D); equals ``table[offsets + codes]`` when ``probs`` is one-hot at ``codes``.
    """
    K = probs.shape[-1]
    rows = table[offsets[:, None] + torch.arange(K, device=table.device)]  # (L, K, D)
    return torch.einsum("...lk,lkd->...ld", probs, rows)


def symmetric_kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(P||Q) + KL(Q||P) summed over levels, mean over the batch (eq. 18); inputs (B, L, K) log-probs."""
    p, q = logp.exp(), logq.exp()
    return ((p * (logp - logq)).sum((1, 2)) + (q * (logq - logp)).sum((1, 2))).mean()


def symmetric_info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """In-batch InfoNCE with cosine similarity, both directions (eq. 19-20), mean over the batch."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau  # (B, B)
    labels = torch.arange(len(a), device=a.device)
    return F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)


class UniGRec(nn.Module):
    """Tokenizer + recommender + distillation heads, with the joint loss of eq. 22.

    Args:
        rec: the encoder-decoder recommender; its vocabulary is the tokenizer's L
            levels of K codewords plus a de-dup digit.
        tokenizer: the soft tokenizer (its input width d = the semantic embeddings').
        item_embeddings: (n_items, d) semantic embeddings of every item (a buffer).
        teacher: (n_items, d_t) collaborative teacher (SASRec) item embeddings, or None.
        tau: assignment temperature of stage 2 (tau_min, eq. 14).
        tau_prime: InfoNCE temperature (eq. 19).
    """

    def __init__(self, rec: EncoderDecoder, tokenizer: SoftTokenizer, item_embeddings: torch.Tensor,
                 teacher: torch.Tensor | None, tau: float = 1e-3, tau_prime: float = 0.07):
        super().__init__()
        self.rec, self.tokenizer, self.tau, self.tau_prime = rec, tokenizer, tau, tau_prime
        self.n_levels = tokenizer.codebooks.shape[0]
        assert len(rec.vocab_sizes) == self.n_levels + 1, "the recommender needs L levels + a de-dup digit"
        self.register_buffer("items", item_embeddings.float(), persistent=False)  # (n_items, d)
        d, D = item_embeddings.shape[1], rec.tok.weight.shape[1]
        self.proj_enc = nn.Linear(D, d)  # h^Enc -> tokenizer input (§3.4.1)
        d_t = teacher.shape[1] if teacher is not None else d
        self.proj_tea = nn.Linear(d_t, d)  # h^Tea -> tokenizer input (§3.4.1)
        self.proj_dec = nn.Linear(D, d_t)  # h^Dec -> teacher width (§3.4.2)
        self.register_buffer("teacher", None if teacher is None else teacher.float(), persistent=False)

    def token_embeddings(self, items: torch.Tensor, codes: torch.Tensor, soft: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token embeddings (U, T, D) of ``items`` (U,) and the reconstruction loss (or None).

        Args:
            items: unique item_idx.
            codes: (U, T) their current hard SIDs (the de-dup digit is always looked up).
            soft: soft identifiers (eq. 15) for the L levels, else the hard lookup.
        """
        rec = self.rec
        if not soft:
            return rec.tok(codes + rec.offsets), None
        x = self.items[items]  # (U, d)
        x_hat, probs = self.tokenizer(x, self.tau)  # (U, d), (U, L, K)
        soft_e = soft_token_embeddings(probs, rec.tok.weight, rec.offsets[: self.n_levels])  # (U, L, D)
        dedup = rec.tok(codes[:, -1] + rec.offsets[-1])[:, None]  # (U, 1, D)
        return torch.cat([soft_e, dedup], dim=1), recon_loss(x_hat, x)

    def losses(self, hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, codes: torch.Tensor,
               soft: bool, lambdas: tuple[float, float, float], user_bins: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The terms of eq. 22 for one batch; a term whose weight is 0 is not computed.

        Args:
            hist: (B, H) history item_idx (left-padded; padding = any valid index).
            mask: (B, H) True for real history items.
            target: (B,) next item_idx.
            codes: (n_items, T) current hard SIDs of every item (labels and de-dup digits).
            soft: soft identifiers as inputs (eq. 15).
            lambdas: (lambda_recon, lambda_cd_t, lambda_cd_r).
            user_bins: (B,) hashed user tokens or None.

        Returns:
            ``loss`` (weighted sum) and each computed term: ``rec``, ``recon``, ``cd_t``, ``cd_r``.
        """
        lam_recon, lam_t, lam_r = lambdas
        B, H = hist.shape
        uniq, inv = torch.unique(torch.cat([hist.reshape(-1), target]), return_inverse=True)
        emb, recon = self.token_embeddings(uniq, codes[uniq], soft)  # (U, T, D)
        e_hist, e_tgt = emb[inv[: B * H]].view(B, H, *emb.shape[1:]), emb[inv[B * H :]]
        enc, kpm, enc_mask = self.rec.encode_embedded(e_hist, mask, user_bins)  # (B, S, D)
        h = self.rec.decode_embedded(enc, kpm, e_tgt[:, None])[:, 0]  # (B, T, D)
        labels = codes[target]  # (B, T)
        T = labels.shape[1]
        rec_loss = sum(F.cross_entropy(self.rec._logits(h[:, t], t), labels[:, t]) for t in range(T)) / T  # eq. 13
        out = {"rec": rec_loss}
        loss = rec_loss
        if recon is not None and lam_recon > 0:
            out["recon"] = recon
            loss = loss + lam_recon * recon
        if lam_t > 0:  # eq. 18: codes of the pooled encoder state vs of the teacher's target embedding
            w = enc_mask.float()[..., None]
            h_enc = (enc * w).sum(1) / w.sum(1).clamp_min(1)  # (B, D) masked mean pooling
            logp_enc = self.tokenizer.log_probs(self.proj_enc(h_enc), self.tau)
            logp_tea = self.tokenizer.log_probs(self.proj_tea(self._teacher(target)), self.tau)
            out["cd_t"] = symmetric_kl(logp_enc, logp_tea)
            loss = loss + lam_t * out["cd_t"]
        if lam_r > 0:  # eq. 20: first decoder state vs teacher embedding of the target
            out["cd_r"] = symmetric_info_nce(self.proj_dec(h[:, 0]), self._teacher(target), self.tau_prime)
            loss = loss + lam_r * out["cd_r"]
        out["loss"] = loss
        return out

    def _teacher(self, target: torch.Tensor) -> torch.Tensor:
        assert self.teacher is not None, "collaborative distillation needs teacher embeddings"
        return self.teacher[target]
