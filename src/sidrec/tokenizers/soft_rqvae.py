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

Codebooks are k-means initialised on the initial latents (as in TIGER's RQ-VAE,
which UniGRec builds on). The hard ID is argmax of ``p_l`` = nearest codeword,
with hard residual updates (the ``tau -> 0`` limit). :meth:`SoftRQVAE.probabilities`
returns the per-level assignment probabilities as a differentiable torch tensor
for end-to-end training, and :class:`SoftRQVAEModule` (``tokenizer.module_``) is a
plain ``nn.Module`` that can sit inside a larger model.
"""

from __future__ import annotations

import torch
from torch import nn

from sidrec.errors import SidrecError
from sidrec.tokenizers._torch import TorchTokenizer, kmeans_init_levels_, mlp, recon_loss, reset_dead_codes_, sq_dist
from sidrec.tokenizers.base import check_bool, check_dims, check_float, register


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
    def hard_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest-codeword IDs (B, L) with hard residual updates."""
        r, codes = self.encoder(x), []
        for cb in self.codebooks:
            idx = sq_dist(r, cb).argmin(1)
            r = r - cb[idx]
            codes.append(idx)
        return torch.stack(codes, 1)


def codeword_uniformity_loss(probs: torch.Tensor) -> torch.Tensor:
    """Eq. 17: sum over levels of sum_k pbar log pbar, pbar = batch mean of probs (B, L, K)."""
    pbar = probs.mean(0)  # (L, K)
    return (pbar * torch.log(pbar.clamp_min(1e-12))).sum()


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
        cu_weight: lambda_CU of eq. 21.
        dead_code_reset: after each epoch, move codewords no item chose to latents of
            random items, as TIGER's RQ-VAE (``rqvae``) does. Not in UniGRec; off by default.
        epochs: passes over the items.
        batch_size: items per step (paper: 1024).
        lr: AdamW learning rate (paper: 1e-3).
        device: "auto", "cpu" or "cuda".
    """

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0,
                 dims: tuple[int, ...] = (512, 256, 128, 32), tau_max: float = 0.01, tau_min: float = 0.001,
                 cu_weight: float = 1e-4, dead_code_reset: bool = False, epochs: int = 200,
                 batch_size: int = 1024, lr: float = 1e-3, device: str = "auto"):
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
        opt = torch.optim.AdamW(m.parameters(), lr=self.lr, weight_decay=0.0)
        last: dict[str, torch.Tensor] = {}

        def step(xb: torch.Tensor, i: int, total: int) -> dict[str, torch.Tensor]:
            tau = self.tau(i, total)
            x_hat, probs = m(xb, tau)
            rec = recon_loss(x_hat, xb)
            cu = codeword_uniformity_loss(probs)
            loss = rec + self.cu_weight * cu  # eq. 21
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last["batch"] = xb
            return {"loss": loss.detach(), "rec": rec.detach(), "cu": cu.detach(), "tau": torch.tensor(tau),
                    "codes": probs.argmax(2)}

        def reset(used: torch.Tensor) -> None:  # as TIGER's RQ-VAE (rqvae) does; not in UniGRec
            reset_dead_codes_(m.codebooks, m.encoder(last["batch"]), used)

        self._loop_with_usage(x, step, progress, reset if self.dead_code_reset else None)

    def probabilities(self, embeddings: torch.Tensor, tau: float | None = None) -> torch.Tensor:
        """Per-level codeword probabilities (B, L, K), differentiable w.r.t. the module.

        Args:
            embeddings: (B, d) float tensor on the module's device.
            tau: temperature; default ``tau_min`` (UniGRec stage 2 fixes tau at tau_min).
        """
        self._check_fitted("probabilities")
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim_:
            raise SidrecError(f"embeddings must have shape (n, {self.dim_}), got {tuple(embeddings.shape)}.")
        return self.module_(embeddings, self.tau_min if tau is None else tau)[1]

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        return self.module_.hard_codes(x)

    def _vectors(self, codes: torch.Tensor) -> torch.Tensor:
        m: SoftRQVAEModule = self.module_
        return m.decoder(sum(cb[codes[:, l]] for l, cb in enumerate(m.codebooks)))
