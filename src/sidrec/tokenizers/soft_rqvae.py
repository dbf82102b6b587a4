"""``soft-rqvae``: UniGRec's stage-1 tokenizer, an RQ-VAE with soft identifiers.

UniGRec §3.2-3.3, §3.5.1, on TIGER's RQ-VAE (encoder -> L codebooks -> decoder):

- soft assignment (eq. 14): ``p_l(k) = softmax_k(-||r_{l-1} - e_l^k||^2 / tau)``; the
  level's quantised vector is ``sum_k p_l(k) e_l^k`` and the residual update uses it;
- temperature annealed linearly over training (eq. 16), ``tau_max -> tau_min``
  (paper: 0.01 or 0.05 -> 0.001);
- codeword-uniformity loss (eq. 17) ``L_CU = sum_l sum_k pbar_l(k) log pbar_l(k)``
  with ``pbar`` the batch-mean assignment, weight ``cu_weight`` (paper: 1e-4);
- pre-training loss (eq. 21) ``L_Recon + lambda_CU L_CU``: no quantisation loss,
  the soft path carries reconstruction gradients to the codebooks.

Optimisation follows the authors' stage-1 code (``rqvae/trainer.py``, issue 13
point 8): AdamW with weight decay 1e-4, linear warm-up then linear decay of the lr
to 0, gradient-norm clipping at 1.0, and the *best-loss epoch* is kept, not the
last (the end of the tau schedule degraded our codes: BENCHMARKS.md, UniGRec,
fourth session). L_CU is a mean over levels, as the authors'
``ResidualVectorQuantizer`` (eq. 17 sums). L_Recon is the authors' per-element mean
(``recon_reduction="mean"``, eq. 7 writes a squared norm), taken on the whitened input (below):
there each dimension has unit variance, so λ_CU = 1e-4 weighs ~d times less against
L_Recon than in the authors' mean over raw (unit-norm, as MiniLM's) embeddings. At their relative scale
(raw input + mean) stage 1 collapsed on Beauty's 384-d MiniLM embeddings: 77.9% colliding items,
L_CU pinned at -ln 256 from epoch ~20 to ~150 (issue 13 report). Whitened, the mean gives fewer
collisions than the squared norm (37.6% / 39.5% vs 48.9% / 45.3%, seeds 0 / 1), near-full
level-1 usage (96-99% vs 51-72%) and level-1 codes that say more about the next item
(``sidrec.metrics.sequential`` gain 0.40 / 0.44 vs 0.20 / 0.25 bits): BENCHMARKS.md, UniGRec,
seventh session. Also different: our warm-up default is 3 of 200 epochs (theirs 50 of
3,000), and the best epoch is looked for after every epoch (theirs every 50).

Deliberately different from the authors (who feed their embeddings as they are): the input
is PCA-whitened by default (``whiten``), as ``rqvae`` (M0, TIGER) now does, so that Table 3's
M0 -> M1 step changes the soft identifier only. Whitening is part of the fitted state;
whoever runs ``module_`` directly (stage 2) passes embeddings through :meth:`model_input`.

Codebooks are k-means initialised on the initial latents (as in TIGER's RQ-VAE,
which UniGRec builds on). The hard ID is the argmax of ``p_l`` along the soft
chain (residuals subtract the soft codewords) at the best epoch's tau,
``tau_final_`` -- the chain the soft identifiers of stage 2 come from (issue 13,
point 6; the authors' ``SoftVectorQuantizer`` does the same). ``chain_disagreement_``
records the share of items whose codes differ from the nearest-codeword (hard
residual) chain. :meth:`SoftRQVAE.probabilities`
returns the per-level assignment probabilities as a differentiable torch tensor
for end-to-end training, and :class:`SoftRQVAEModule` (``tokenizer.module_``) is a
plain ``nn.Module`` that can sit inside a larger model.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from sidrec.errors import SidrecError
from sidrec.tokenizers._torch import (
    ENCODE_BATCH,
    RECON_REDUCTIONS,
    TorchTokenizer,
    kmeans_init_levels_,
    mlp,
    recon_loss,
    reset_dead_codes_,
    sq_dist,
)
from sidrec.tokenizers.base import check_bool, check_dims, check_float, check_int, register


class SoftRQVAEModule(nn.Module):
    """Encoder -> soft residual quantiser -> decoder.

    Args:
        dim: input width d.
        dims: encoder widths after d; the last is the latent/codeword width D.
        n_levels: L codebooks.
        codebook_size: K codewords each.
    """

    def __init__(self, dim: int, dims: tuple[int, ...], n_levels: int, codebook_size: int):
        super().__init__()
        self.encoder = mlp([dim, *dims])
        self.decoder = mlp([*reversed(dims), dim])
        self.codebooks = nn.Parameter(torch.randn(n_levels, codebook_size, dims[-1]) / dims[-1] ** 0.5)  # (L, K, D)

    def quantize(self, z: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft-quantise latents z (B, D) -> (sum of soft codewords (B, D), probabilities (B, L, K))."""
        r, zq, probs = z, torch.zeros_like(z), []
        for cb in self.codebooks:  # (K, D)
            p = torch.softmax(-sq_dist(r, cb) / tau, dim=1)  # (B, K) eq. 14
            q = p @ cb  # (B, D)
            zq = zq + q
            r = r - q
            probs.append(p)
        return zq, torch.stack(probs, 1)

    def forward(self, x: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, d) -> (reconstruction (B, d), probabilities (B, L, K))."""
        zq, probs = self.quantize(self.encoder(x), tau)
        return self.decoder(zq), probs

    @torch.no_grad()
    def hard_codes(self, x: torch.Tensor, tau: float) -> torch.Tensor:
        """IDs (B, L): argmax of the soft chain's probabilities at ``tau`` (one chain with the soft inputs)."""
        return self.quantize(self.encoder(x), tau)[1].argmax(2)

    @torch.no_grad()
    def nearest_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest-codeword IDs (B, L) with hard residual updates (the other chain; for measurement)."""
        r, codes = self.encoder(x), []
        for cb in self.codebooks:
            idx = sq_dist(r, cb).argmin(1)
            r = r - cb[idx]
            codes.append(idx)
        return torch.stack(codes, 1)


def codeword_uniformity_loss(probs: torch.Tensor) -> torch.Tensor:
    """Eq. 17 per level, averaged over levels (the authors' code): sum_k pbar log pbar, pbar = batch mean of probs (B, L, K)."""
    pbar = probs.mean(0)  # (L, K)
    return (pbar * torch.log(pbar.clamp_min(1e-12))).sum(1).mean()


def warmup_linear_decay(step: int, total: int, warmup: int) -> float:
    """lr factor at ``step`` of ``total``: linear warm-up over ``warmup`` steps, then linear decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


@register("soft-rqvae")
class SoftRQVAE(TorchTokenizer):
    """UniGRec's soft-identifier RQ-VAE (stage 1: tokenizer pre-training).

    Args:
        n_levels: codebooks.
        codebook_size: codewords per codebook.
        seed: init, k-means and batch order.
        dims: encoder widths after the input; the last is the codeword width.
        tau_max: temperature at the first step (eq. 16).
        tau_min: temperature at the last step, and for :meth:`probabilities` by default.
        cu_weight: lambda_CU of eq. 21 (against ``recon_reduction``'s scale).
        dead_code_reset: after each epoch, move codewords no item chose to latents of
            random items, as TIGER's RQ-VAE (``rqvae``) does. Not in UniGRec; off by default.
        epochs: passes over the items.
        batch_size: items per step (paper: 1024).
        lr: peak AdamW learning rate (paper: 1e-3).
        device: "auto", "cpu" or "cuda".
        recon_reduction: L_Recon per item, "mean" over dimensions (authors' code) or "sum" (eq. 7's squared norm).
        warmup_epochs: linear lr warm-up, then linear decay to 0 (authors: 50 of 3,000 epochs).
        weight_decay: AdamW weight decay (authors: 1e-4).
        keep_best: keep the epoch with the lowest mean training loss (authors' ``best_loss_model``), else the last.
        whiten: PCA-whiten the embeddings first, as ``rqvae`` does by default (see below).
    """

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0,
                 dims: tuple[int, ...] = (512, 256, 128, 32), tau_max: float = 0.01, tau_min: float = 0.001,
                 cu_weight: float = 1e-4, dead_code_reset: bool = False, epochs: int = 200,
                 batch_size: int = 1024, lr: float = 1e-3, device: str = "auto", recon_reduction: str = "mean",
                 warmup_epochs: int = 3, weight_decay: float = 1e-4, keep_best: bool = True, whiten: bool = True):
        super().__init__(n_levels, codebook_size, seed)
        self.dims = dims
        self.tau_max = tau_max
        self.tau_min = tau_min
        self.cu_weight = cu_weight
        self.dead_code_reset = dead_code_reset
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.device = device
        self.recon_reduction = recon_reduction
        self.warmup_epochs = warmup_epochs
        self.weight_decay = weight_decay
        self.keep_best = keep_best
        self.whiten = whiten

    grad_clip = 1.0  # gradient-norm clipping (authors' trainer)

    def _check_params(self) -> None:
        super()._check_params()
        owner = type(self).__name__
        self.dims = check_dims(owner, "dims", self.dims)
        check_float(owner, "tau_min", self.tau_min, 0.0, low_open=True)
        check_float(owner, "tau_max", self.tau_max, 0.0, low_open=True)
        if self.tau_max < self.tau_min:
            raise SidrecError(f"`tau_max` of {owner} must be >= tau_min ({self.tau_min}), got {self.tau_max}.")
        check_float(owner, "cu_weight", self.cu_weight, 0.0)
        check_bool(owner, "dead_code_reset", self.dead_code_reset)
        if self.recon_reduction not in RECON_REDUCTIONS:
            raise SidrecError(f"`recon_reduction` of {owner} must be one of {', '.join(RECON_REDUCTIONS)}, got {self.recon_reduction!r}.")
        check_int(owner, "warmup_epochs", self.warmup_epochs, 0)
        check_float(owner, "weight_decay", self.weight_decay, 0.0)
        check_bool(owner, "keep_best", self.keep_best)
        check_bool(owner, "whiten", self.whiten)

    def _build(self, dim: int) -> nn.Module:
        return SoftRQVAEModule(dim, tuple(self.dims), self.n_levels, self.codebook_size)

    def tau(self, step: int, total: int) -> float:
        """Eq. 16: linear annealing from tau_max (step 0) to tau_min (last step)."""
        frac = step / max(total - 1, 1)
        return self.tau_max - frac * (self.tau_max - self.tau_min)

    def _train(self, x: torch.Tensor, progress: bool) -> None:
        m: SoftRQVAEModule = self.module_
        with torch.no_grad():
            kmeans_init_levels_(m.codebooks, m.encoder(x), self.seed)
        opt = torch.optim.AdamW(m.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        per_epoch = -(-x.shape[0] // self.batch_size)
        last: dict[str, torch.Tensor] = {}
        best: dict = {"loss": float("inf"), "epoch": -1, "tau": self.tau_min, "state": None}

        def step(xb: torch.Tensor, i: int, total: int) -> dict[str, torch.Tensor]:
            tau = self.tau(i, total)
            for g in opt.param_groups:
                g["lr"] = self.lr * warmup_linear_decay(i, total, self.warmup_epochs * per_epoch)
            x_hat, probs = m(xb, tau)
            rec = recon_loss(x_hat, xb, self.recon_reduction)
            cu = codeword_uniformity_loss(probs)
            loss = rec + self.cu_weight * cu  # eq. 21
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), self.grad_clip)
            opt.step()
            last["batch"], last["tau"] = xb, torch.tensor(tau)
            return {"loss": loss.detach(), "rec": rec.detach(), "cu": cu.detach(), "tau": torch.tensor(tau),
                    "codes": probs.argmax(2)}

        def reset(used: torch.Tensor) -> None:  # as TIGER's RQ-VAE (rqvae) does; not in UniGRec
            reset_dead_codes_(m.codebooks, m.encoder(last["batch"]), used)

        def keep(epoch: int, means: dict[str, float]) -> None:
            if not self.keep_best or means["loss"] < best["loss"]:
                best.update(loss=means["loss"], epoch=epoch, tau=float(last["tau"]), state=copy.deepcopy(m.state_dict()))

        self._loop_with_usage(x, step, progress, reset if self.dead_code_reset else None, keep)
        if best["state"] is not None:  # None only if every epoch's loss was NaN
            m.load_state_dict(best["state"])
        self.best_epoch_, self.tau_final_ = int(best["epoch"]), best["tau"]
        differ = 0  # issue 13 point 6: how often the two code chains disagree (in batches: (N, L, K) probs)
        for s in range(0, len(x), ENCODE_BATCH):
            xb = x[s : s + ENCODE_BATCH]
            differ += int((m.hard_codes(xb, self.tau_final_) != m.nearest_codes(xb)).any(1).sum())
        self.chain_disagreement_ = round(differ / len(x), 6)

    def probabilities(self, embeddings: torch.Tensor, tau: float | None = None) -> torch.Tensor:
        """Per-level codeword probabilities (B, L, K), differentiable w.r.t. the module.

        Args:
            embeddings: (B, d) float tensor on the module's device.
            tau: temperature; default :attr:`final_tau` (UniGRec stage 2 uses stage 1's final tau).
        """
        self._check_fitted("probabilities")
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim_:
            raise SidrecError(f"embeddings must have shape (n, {self.dim_}), got {tuple(embeddings.shape)}.")
        return self.module_(self.model_input(embeddings), self.final_tau if tau is None else tau)[1]

    @property
    def final_tau(self) -> float:
        """The tau of the kept epoch (``tau_min`` for tokenizers saved before it was recorded)."""
        return float(getattr(self, "tau_final_", self.tau_min))

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        return self.module_.hard_codes(self.model_input(x), self.final_tau)

    def _latent(self, x: np.ndarray) -> np.ndarray:  # the encoder's latent is what the codebooks quantise
        return self._batched(x, lambda xb: self.module_.encoder(self.model_input(xb)))

    def _vectors(self, codes: torch.Tensor) -> torch.Tensor:
        m: SoftRQVAEModule = self.module_
        return self.model_output(m.decoder(sum(cb[codes[:, l]] for l, cb in enumerate(m.codebooks))))
