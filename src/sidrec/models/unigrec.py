"""UniGRec (Li et al., "Unified Generative Recommendation with Soft Identifiers"): model pieces.

UniGRec trains the tokenizer and the TIGER encoder-decoder end to end by feeding
the recommender's *encoder* *soft identifiers*: for every history item and SID
level, the assignment probabilities over that level's codewords (eq. 14) weight
the recommender's token embeddings (eq. 15). The decoder is teacher-forced with
the target's hard SID, as in the authors' code (``SoftT5``: soft encoder, hard
decoder), so decoder inputs and labels name the same codes.

Composition, not a new architecture: :class:`UniGRec` holds

- ``rec``: an ``EncoderDecoder`` (the recommender);
- ``tokenizer``: :class:`SoftTokenizer`, a differentiable view of an RQ-VAE-style
  tokenizer module (MLP encoder, residual codebooks, MLP decoder);
- the dual collaborative distillation heads (§3.4), as in the authors' code:
  MLP adapters from the pooled encoder state and from the teacher embedding into
  the codeword (latent) space (L_CD^T), and one from the first decoder state to the
  teacher's width (L_CD^R).

A trained model is served with the soft history it was trained on:
:meth:`UniGRec.serving_model` exports a
:class:`~sidrec.models.soft_history.SoftHistoryEncoderDecoder` (arch ``encdec-soft``).

Shapes: B batch, U unique items of a batch, H history, T SID tokens (L levels +
the de-dup digit), K codewords per level, D d_model, d semantic-embedding width,
Dz codeword width.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from sidrec.models.encdec import EncoderDecoder
from sidrec.models.soft_history import SoftHistoryEncoderDecoder
from sidrec.tokenizers._torch import mlp, recon_loss, sq_dist


class SoftTokenizer(nn.Module):
    """Differentiable residual quantiser over an RQ-VAE's encoder, codebooks and decoder.

    One code chain (issue 13, point 6): the hard ID of level l is the argmax of the
    soft probabilities of eq. 14, whose level-l residual subtracts the previous
    levels' *soft* codewords -- the chain the recommender's soft inputs come from, and
    the authors' (``SoftVectorQuantizer``: ``indices = softmax(-d / tau).argmax``).

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

    def forward(self, x: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, d) -> (reconstruction (B, d) (eq. 6 on the soft latent), probabilities (B, L, K))."""
        probs, zq = self.assign(x, tau)
        return self.decoder(zq), probs

    @torch.no_grad()
    def hard_codes(self, x: torch.Tensor, tau: float | None, batch: int = 8192) -> torch.Tensor:
        """Hard identifiers (N, L): argmax of the soft chain's probabilities at ``tau`` (one chain
        with the soft inputs), or with ``tau=None`` the nearest-codeword chain (hard residuals,
        eq. 3-4: TIGER's RQ-VAE SIDs, for a hard stage 1)."""
        out = []
        for s in range(0, len(x), batch):
            if tau is not None:
                out.append(self.assign(x[s : s + batch], tau)[0].argmax(-1))
                continue
            v, codes = self.encoder(x[s : s + batch]), []
            for cb in self.codebooks:
                idx = sq_dist(v, cb).argmin(1)
                v = v - cb[idx]
                codes.append(idx)
            out.append(torch.stack(codes, 1))
        return torch.cat(out)

    def code_logits(self, v: torch.Tensor, temperature: float) -> torch.Tensor:
        """Codeword logits (B, L, K) of latents v (B, Dz) for L_CD^T: -||r_l - e_l^k||^2 / temperature.

        Residuals subtract the nearest codeword, as the authors' ``_get_code_logits``.
        Sign: eq. 14's (a nearer codeword is more likely). The authors' code feeds the
        distance itself in as the logit, which favours the *farthest* codeword; we keep
        the paper's sign deliberately.
        """
        out = []
        for cb in self.codebooks:
            d = sq_dist(v, cb)  # (B, K)
            out.append(-d / temperature)
            v = v - cb[d.argmin(1)]
        return torch.stack(out, 1)


def adapter(d_in: int, d_out: int, max_layers: int) -> nn.Sequential:
    """MLP d_in -> d_out whose widths halve (or double) per layer, at most ``max_layers`` linears.

    The authors' adaptive adapters: 128 -> 64 -> 32 (encoder state -> codewords),
    256 -> 128 -> 64 -> 32 (a d-256 teacher -> codewords), one linear when the widths
    are within 2x of each other.
    """
    ratio = max(d_in, d_out) / min(d_in, d_out)
    n = 1 if ratio < 2 else min(max_layers, math.ceil(math.log2(ratio)))
    step = 2 if d_out > d_in else 0.5
    widths = [d_in] + [max(1, int(d_in * step**i)) for i in range(1, n)] + [d_out]
    return mlp(widths)


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


def symmetric_kl(logit_p: torch.Tensor, logit_q: torch.Tensor) -> torch.Tensor:
    """KL(P||Q) + KL(Q||P) of softmax(logits) (U, L, K), averaged over the U items and L levels.

    Eq. 18 sums over levels; the authors' code averages over items x levels
    (``kl_div(..., reduction="batchmean")`` on (U*L, K)), which we follow: with λ_T = 0.01
    the term is then at the authors' scale.
    """
    logp, logq = F.log_softmax(logit_p, -1), F.log_softmax(logit_q, -1)
    p, q = logp.exp(), logq.exp()
    return ((p * (logp - logq)).sum(-1) + (q * (logq - logp)).sum(-1)).mean()


def symmetric_info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """In-batch InfoNCE with cosine similarity, both directions (eq. 19-20), mean over the batch."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau  # (B, B)
    labels = torch.arange(len(a), device=a.device)
    return F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)


def first_occurrence(x: torch.Tensor) -> torch.Tensor:
    """Indices of the first occurrence of each distinct value of x (N,), in sorted-value order."""
    uniq, inv = torch.unique(x, return_inverse=True)
    pos = torch.arange(len(x), device=x.device)
    return torch.full((len(uniq),), len(x), device=x.device).scatter_reduce_(0, inv, pos, "amin")


class UniGRec(nn.Module):
    """Tokenizer + recommender + distillation heads, with the joint loss of eq. 22.

    Args:
        rec: the encoder-decoder recommender; its vocabulary is the tokenizer's L
            levels of K codewords plus a de-dup digit.
        tokenizer: the soft tokenizer (its input width d = the semantic embeddings').
        item_embeddings: (n_items, d) semantic embeddings of every item (a buffer).
        teacher: (n_items, d_t) collaborative teacher (SASRec) item embeddings, or None.
        tau: assignment temperature of stage 2 (stage 1's final tau, eq. 14 / Algorithm 1).
        tau_prime: InfoNCE temperature (eq. 19).
        cd_t_temperature: temperature of L_CD^T's codeword logits (authors: none, i.e. 1).
        recon_reduction: L_recon per item: "mean" over dimensions (authors' ``mse_loss``) or "sum".
        train_adapters: train the three distillation adapters. Default False, as the authors'
            code, whose optimiser holds only the tokenizer's and the recommender's parameters,
            so the adapters stay fixed random projections at their N(0, 0.02) init (the paper
            says "a linear layer", §3.4). Trainable, L_CD^T has a trivial minimum: both
            adapters map everything to one point (weight decay pulls them there).
        unwhiten: (d, d) inverse of the tokenizer's input whitening (``white_w_inv_``) when
            ``item_embeddings`` are whitened, else None. L_recon is then taken on the raw
            embeddings, whose per-element scale λ_recon = 0.5 was set against (the authors do
            not whiten); in the whitened space the same mean is ~d times larger.
    """

    def __init__(self, rec: EncoderDecoder, tokenizer: SoftTokenizer, item_embeddings: torch.Tensor,
                 teacher: torch.Tensor | None, tau: float = 1e-3, tau_prime: float = 0.07,
                 cd_t_temperature: float = 1.0, recon_reduction: str = "mean", unwhiten: torch.Tensor | None = None,
                 train_adapters: bool = False):
        super().__init__()
        self.rec, self.tokenizer, self.tau, self.tau_prime = rec, tokenizer, tau, tau_prime
        self.cd_t_temperature, self.recon_reduction = cd_t_temperature, recon_reduction
        self.n_levels = tokenizer.codebooks.shape[0]
        assert len(rec.vocab_sizes) == self.n_levels + 1, "the recommender needs L levels + a de-dup digit"
        self.register_buffer("items", item_embeddings.float(), persistent=False)  # (n_items, d)
        D, Dz = rec.tok.weight.shape[1], tokenizer.codebooks.shape[2]
        d_t = teacher.shape[1] if teacher is not None else D
        self.proj_enc = adapter(D, Dz, 2)  # h^Enc -> codeword space (§3.4.1; authors' enc_adapter)
        self.proj_tea = adapter(d_t, Dz, 3)  # h^Tea -> codeword space (authors' sasrec_to_e_adapter)
        self.proj_dec = adapter(D, d_t, 3)  # h^Dec -> teacher width (§3.4.2; 256-d with a d-256 teacher)
        for head in (self.proj_enc, self.proj_tea, self.proj_dec):  # the authors' MLPLayers init
            for m in head.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0.0, 0.02)
                    nn.init.zeros_(m.bias)
            head.requires_grad_(train_adapters)
        self.register_buffer("teacher", None if teacher is None else teacher.float(), persistent=False)
        self.register_buffer("unwhiten", None if unwhiten is None else unwhiten.float(), persistent=False)  # (d, d)

    def history_embeddings(self, items: torch.Tensor, codes: torch.Tensor, soft: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder input embeddings (U, T, D) of ``items`` (U,) and the reconstruction loss (or None).

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
        if self.unwhiten is not None:  # back to the raw embedding space (the mean cancels in x_hat - x)
            x_hat, x = x_hat @ self.unwhiten, x @ self.unwhiten
        return torch.cat([soft_e, dedup], dim=1), recon_loss(x_hat, x, self.recon_reduction)

    def losses(self, hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, codes: torch.Tensor,
               soft: bool, lambdas: tuple[float, float, float], user_bins: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The terms of eq. 22 for one batch; a term whose weight is 0 is not computed.

        Args:
            hist: (B, H) history item_idx (left-padded; padding = any valid index).
            mask: (B, H) True for real history items.
            target: (B,) next item_idx.
            codes: (n_items, T) current hard SIDs of every item (labels and de-dup digits).
            soft: soft identifiers as encoder inputs (eq. 15); the decoder always gets hard ones.
            lambdas: (lambda_recon, lambda_cd_t, lambda_cd_r).
            user_bins: (B,) hashed user tokens or None.

        Returns:
            ``loss`` (weighted sum) and each computed term: ``rec``, ``recon``, ``cd_t``, ``cd_r``.
        """
        lam_recon, lam_t, lam_r = lambdas
        B, H = hist.shape
        # L_recon covers the batch's history and target items (the authors' history + target terms)
        uniq, inv = torch.unique(torch.cat([hist.reshape(-1), target]), return_inverse=True)
        emb, recon = self.history_embeddings(uniq, codes[uniq], soft)  # (U, T, D)
        e_hist = emb[inv[: B * H]].view(B, H, *emb.shape[1:])
        enc, kpm, enc_mask = self.rec.encode_embedded(e_hist, mask, user_bins)  # (B, S, D)
        labels = codes[target]  # (B, T)
        e_tgt = self.rec.tok(labels + self.rec.offsets)  # (B, T, D) hard decoder inputs (point 4)
        h = self.rec.decode_embedded(enc, kpm, e_tgt[:, None])[:, 0]  # (B, T, D)
        T = labels.shape[1]
        rec_loss = sum(F.cross_entropy(self.rec._logits(h[:, t], t), labels[:, t]) for t in range(T)) / T  # eq. 13
        out = {"rec": rec_loss}
        loss = rec_loss
        if recon is not None and lam_recon > 0:
            out["recon"] = recon
            loss = loss + lam_recon * recon
        if lam_t > 0 or lam_r > 0:
            first = first_occurrence(target)  # each distinct target once (the authors' unique targets)
            tea = self._teacher(target[first])  # (U, d_t)
        if lam_t > 0:  # eq. 18: codes of the pooled encoder state vs of the teacher's target embedding
            w = enc_mask.float()[..., None]
            h_enc = ((enc * w).sum(1) / w.sum(1).clamp_min(1))[first]  # (U, D) masked mean pooling
            cb_t = self.cd_t_temperature
            out["cd_t"] = symmetric_kl(self.tokenizer.code_logits(self.proj_enc(h_enc), cb_t),
                                       self.tokenizer.code_logits(self.proj_tea(tea), cb_t))  # fmt: skip
            loss = loss + lam_t * out["cd_t"]
        if lam_r > 0:  # eq. 20: first decoder state vs teacher embedding, repeated targets dropped
            out["cd_r"] = symmetric_info_nce(self.proj_dec(h[first, 0]), tea, self.tau_prime)
            loss = loss + lam_r * out["cd_r"]
        out["loss"] = loss
        return out

    def _teacher(self, target: torch.Tensor) -> torch.Tensor:
        assert self.teacher is not None, "collaborative distillation needs teacher embeddings"
        return self.teacher[target]

    @torch.no_grad()
    def serving_model(self, codes: torch.Tensor, soft: bool) -> EncoderDecoder:
        """The recommender as it is trained, for validation, ``sidrec evaluate`` and ``recommend``.

        With soft identifiers: a :class:`SoftHistoryEncoderDecoder` (a copy of ``rec``) that
        feeds every history item the soft level embeddings it is trained on (eq. 15 at the
        stage-2 tau), fixed at this moment; else ``rec`` itself (hard lookup).

        Args:
            codes: (n_items, T) the hard SIDs the model is validated and served with.
            soft: whether training fed soft identifiers.
        """
        if not soft:
            return self.rec
        inputs = torch.cat([self.tokenizer.assign(self.items[s : s + 8192], self.tau)[0]
                            for s in range(0, len(self.items), 8192)])  # (n_items, L, K)  # fmt: skip
        emb = soft_token_embeddings(inputs, self.rec.tok.weight, self.rec.offsets[: self.n_levels])  # (n_items, L, D)
        return SoftHistoryEncoderDecoder.wrap(self.rec, codes, emb)
