"""Vector-quantisation tokenizers trained with the straight-through estimator (STE).

- ``rqvae``: TIGER's RQ-VAE (Rajput et al. 2023; UniGRec §2.1.2, eq. 2-7): MLP
  encoder ``d -> 512 -> 256 -> 128 -> 32``, L residual codebooks on the latent,
  MLP decoder; loss ``||x - x_hat||^2 + sum_l ||sg(r_l) - e_l||^2 + beta ||r_l - sg(e_l)||^2``
  with beta = 0.25. Codebooks are k-means initialised on the latents of the
  untrained encoder (switchable, to test R³-VAE Fig. 4), and codewords unused
  during an epoch are reset to random latents of the last batch (switchable).
- ``vqvae``: the same with one codebook (R³-VAE's VQ-VAE baseline, no residuals).
- ``mq``: TokenRec's masked tokenizer as R³-VAE describes it ("masked vector
  based RQ-VAE"): during training each input element is zeroed with
  probability ``mask_ratio`` and the decoder must reconstruct the unmasked x.

Training: AdamW (or AdaGrad, GRID's RQ-VAE optimiser: ``optimizer``), ``lr`` 1e-3,
mini-batches of ``batch_size``; the MLP runs on ``device``. ``whiten`` PCA-whitens
the embeddings before the autoencoder (GRID §4: "embeddings whitened (RQ-VAE) to
prevent collapse"); the transform is part of the fitted state, so ``encode`` takes
raw embeddings and ``decode`` returns them. ``rqvae`` whitens by default (issue 13):
without it, on Beauty's MiniLM embeddings the latents sit on their level-1 codewords,
levels 2-3 split noise (9,100 distinct 2-level prefixes vs R-KMeans' 6,400) and the
level-1 code of an item predicts the next item's far worse than R-KMeans' does; the
downstream gap was 2x (grid suite). TIGER does not whiten; ``whiten=false`` is its
reading. ``vqvae`` and ``mq`` (R³-VAE's baselines) do not whiten. ``history_`` keeps
per-epoch means of the losses and each level's
codebook usage during that epoch (the curve of R³-VAE Fig. 4, right). ``rvq``
(no encoder) lives in :mod:`sidrec.tokenizers.rvq`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sidrec.errors import SidrecError
from sidrec.tokenizers._torch import TorchTokenizer, kmeans_init_levels_, mlp, reset_dead_codes_, sq_dist
from sidrec.tokenizers.base import check_bool, check_dims, check_float, check_int, register

BETA = 0.25  # commitment weight (TIGER, UniGRec eq. 7)
OPTIMIZERS = {
    "adamw": lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.0),
    "adagrad": lambda params, lr: torch.optim.Adagrad(params, lr=lr),  # GRID's RQ-VAE
}


class ResidualVQ(nn.Module):
    """L residual codebooks with nearest-codeword lookup and STE.

    Args:
        n_levels: L.
        codebook_size: K codewords per level.
        dim: D, the width of the quantised vectors.
    """

    def __init__(self, n_levels: int, codebook_size: int, dim: int):
        super().__init__()
        self.codebooks = nn.Parameter(torch.randn(n_levels, codebook_size, dim) / dim**0.5)  # (L, K, D)

    def forward(self, z: torch.Tensor, beta: float = BETA) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise z (B, D) -> (z_q with STE (B, D), codes (B, L), VQ loss scalar)."""
        r, zq, loss, codes = z, torch.zeros_like(z), z.new_zeros(()), []
        for cb in self.codebooks:  # (K, D)
            idx = sq_dist(r, cb).argmin(1)  # (B,)
            e = cb[idx]  # (B, D)
            loss = loss + F.mse_loss(e, r.detach()) + beta * F.mse_loss(r, e.detach())  # eq. 7
            zq = zq + e
            r = r - e.detach()  # residual update (eq. 4)
            codes.append(idx)
        return z + (zq - z).detach(), torch.stack(codes, 1), loss  # STE: forward zq, gradient to z

    @torch.no_grad()
    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the selected codewords (B, D) for codes (B, L)."""
        return sum(cb[codes[:, l]] for l, cb in enumerate(self.codebooks))


class RQVAEModule(nn.Module):
    """Encoder -> residual VQ -> decoder (TIGER).

    Args:
        dim: input width d.
        dims: encoder widths after d, the last being the latent width.
        n_levels, codebook_size: of the quantiser.
    """

    def __init__(self, dim: int, dims: tuple[int, ...], n_levels: int, codebook_size: int):
        super().__init__()
        self.encoder = mlp([dim, *dims])
        self.decoder = mlp([*reversed(dims), dim])
        self.quantizer = ResidualVQ(n_levels, codebook_size, dims[-1])

    def forward(self, x: torch.Tensor, beta: float = BETA) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, d) -> (x_hat (B, d), codes (B, L), VQ loss)."""
        zq, codes, vq_loss = self.quantizer(self.encoder(x), beta)
        return self.decoder(zq), codes, vq_loss


@register("rqvae")
class RQVAE(TorchTokenizer):
    """TIGER's RQ-VAE.

    Args:
        n_levels: residual codebooks.
        codebook_size: codewords per codebook.
        seed: weights, k-means and batch order.
        dims: encoder widths after the input; the last is the latent (codeword) width.
        kmeans_init: k-means initialise the codebooks on the initial latents (else random normal).
        dead_code_reset: reset codewords unused during an epoch to random latents.
        epochs: passes over the items.
        batch_size: items per step.
        lr: learning rate.
        device: "auto" (cuda if available, else cpu), "cpu" or "cuda".
        whiten: PCA-whiten the embeddings first (GRID's RQ-VAE; default since issue 13).
        optimizer: "adamw" (default) or "adagrad" (GRID's RQ-VAE).
    """

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0,
                 dims: tuple[int, ...] = (512, 256, 128, 32), kmeans_init: bool = True,
                 dead_code_reset: bool = True, epochs: int = 200, batch_size: int = 1024,
                 lr: float = 1e-3, device: str = "auto", whiten: bool = True, optimizer: str = "adamw"):
        super().__init__(n_levels, codebook_size, seed)
        self.dims = dims
        self.kmeans_init = kmeans_init
        self.dead_code_reset = dead_code_reset
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.device = device
        self.whiten = whiten
        self.optimizer = optimizer

    mask_ratio = 0.0  # input masking during training (``mq``)

    def _check_params(self) -> None:
        super()._check_params()
        owner = type(self).__name__
        self.dims = check_dims(owner, "dims", self.dims)
        check_bool(owner, "kmeans_init", self.kmeans_init)
        check_bool(owner, "dead_code_reset", self.dead_code_reset)
        check_bool(owner, "whiten", self.whiten)
        if self.optimizer not in OPTIMIZERS:
            raise SidrecError(f"`optimizer` of {owner} must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}.")
        if self.single_level and self.n_levels != 1:
            raise SidrecError(f"`n_levels` of {owner} must be 1 (single codebook; set tokenizer.n_levels=1), got {self.n_levels}.")

    def _build(self, dim: int) -> nn.Module:
        return RQVAEModule(dim, tuple(self.dims), self.n_levels, self.codebook_size)

    def _init_codebooks(self, x: torch.Tensor) -> None:
        m: RQVAEModule = self.module_
        with torch.no_grad():
            kmeans_init_levels_(m.quantizer.codebooks, m.encoder(x), self.seed)

    def _train(self, x: torch.Tensor, progress: bool) -> None:
        m: RQVAEModule = self.module_  # x is already whitened when ``whiten`` (TorchTokenizer._fit)
        if self.kmeans_init:
            self._init_codebooks(x)
        opt = OPTIMIZERS[self.optimizer](m.parameters(), lr=self.lr)
        last: dict[str, torch.Tensor] = {}

        def step(xb: torch.Tensor, i: int, total: int) -> dict[str, torch.Tensor]:
            inp = xb
            if self.mask_ratio > 0:  # ``mq``: zero random input elements, reconstruct the clean x
                inp = xb * (torch.rand_like(xb) >= self.mask_ratio)
            x_hat, codes, vq_loss = m(inp)
            rec = F.mse_loss(x_hat, xb)
            loss = rec + vq_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last["batch"] = inp
            return {"loss": loss.detach(), "rec": rec.detach(), "vq": vq_loss.detach(), "codes": codes}

        def reset(used: torch.Tensor) -> None:  # codewords unused this epoch -> latents of the last batch
            reset_dead_codes_(m.quantizer.codebooks, m.encoder(last["batch"]), used)

        self._loop_with_usage(x, step, progress, reset if self.dead_code_reset else None)

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        m: RQVAEModule = self.module_
        return m.quantizer(m.encoder(self.model_input(x)))[1]

    def _vectors(self, codes: torch.Tensor) -> torch.Tensor:
        m: RQVAEModule = self.module_
        return self.model_output(m.decoder(m.quantizer.lookup(codes)))

    def _latent(self, x: np.ndarray) -> np.ndarray:  # the encoder's latent (of the whitened input) is what the codebooks quantise
        return self._batched(x, lambda xb: self.module_.encoder(self.model_input(xb)))


@register("vqvae")
class VQVAE(RQVAE):
    """Single-codebook VQ-VAE with STE (R³-VAE's baseline); ``n_levels`` must be 1.

    Same arguments as :class:`RQVAE`.
    """

    single_level = True

    def __init__(self, n_levels: int = 1, codebook_size: int = 256, seed: int = 0,
                 dims: tuple[int, ...] = (512, 256, 128, 32), kmeans_init: bool = True,
                 dead_code_reset: bool = True, epochs: int = 200, batch_size: int = 1024,
                 lr: float = 1e-3, device: str = "auto"):
        super().__init__(n_levels, codebook_size, seed, dims, kmeans_init, dead_code_reset, epochs, batch_size, lr, device,
                         whiten=False)  # as R³-VAE's VQ-VAE baseline; rqvae whitens


@register("mq")
class MaskedRQVAE(RQVAE):
    """TokenRec's masked vector-quantised tokenizer, as an RQ-VAE with input masking.

    Args:
        n_levels, codebook_size, seed, dims, epochs, batch_size, lr, device: as :class:`RQVAE`
            (k-means init and dead-code reset are on).
        mask_ratio: probability of zeroing each input element during training.
    """

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0,
                 dims: tuple[int, ...] = (512, 256, 128, 32), mask_ratio: float = 0.2,
                 epochs: int = 200, batch_size: int = 1024, lr: float = 1e-3, device: str = "auto"):
        super().__init__(n_levels, codebook_size, seed, dims, True, True, epochs, batch_size, lr, device, whiten=False)
        self.mask_ratio = mask_ratio

    def _check_params(self) -> None:
        super()._check_params()
        check_float(type(self).__name__, "mask_ratio", self.mask_ratio, 0.0, 0.95)
