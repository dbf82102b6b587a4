"""``rvq``: residual VQ on the raw vectors, trained level by level (GRID §3.1 "R-VQ").

Level l: L2-normalise its input residual (GRID §4 setup, switchable), k-means
initialise the codebook on it (faiss), then train the codebook for ``epochs``
with the VQ-VAE codebook loss ``||sg(r) - e||^2 + beta ||r - sg(e)||^2``
(beta = 0.25) through a straight-through quantiser. With no encoder in front the
residuals are data, so the commitment term and the STE carry no gradient here:
the codebook loss alone moves the codewords (SGD-refined k-means, as in GRID's
layer-wise R-VQ). The next level's input is ``r - e`` with the trained codebook.
Decoding normalised residuals uses each level's mean input norm (as ``rkmeans``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sidrec.tokenizers._torch import TorchTokenizer, kmeans_init_, sq_dist
from sidrec.tokenizers.base import check_bool, register
from sidrec.tokenizers.vq import BETA


class RVQModule(nn.Module):
    """L codebooks (L, K, d) applied to (optionally normalised) residuals.

    Args:
        n_levels, codebook_size, dim: codebook shape.
        normalize: L2-normalise each level's input.
    """

    def __init__(self, n_levels: int, codebook_size: int, dim: int, normalize: bool):
        super().__init__()
        self.normalize = normalize
        self.codebooks = nn.Parameter(torch.zeros(n_levels, codebook_size, dim))  # (L, K, d)
        self.register_buffer("level_norms", torch.ones(n_levels))  # mean input norm per level

    def level_input(self, r: torch.Tensor) -> torch.Tensor:
        return F.normalize(r, dim=1, eps=1e-12) if self.normalize else r

    def codes(self, x: torch.Tensor, levels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes (B, levels) of x (B, d) and the residual left after ``levels`` levels."""
        r, out = x, []
        for cb in self.codebooks[: levels if levels is not None else len(self.codebooks)]:
            r = self.level_input(r)
            idx = sq_dist(r, cb).argmin(1)
            out.append(idx)
            r = r - cb[idx]
        return torch.stack(out, 1) if out else x.new_zeros((len(x), 0), dtype=torch.long), r

    def vectors(self, codes: torch.Tensor) -> torch.Tensor:
        v = torch.zeros(codes.shape[0], self.codebooks.shape[2])
        for level in reversed(range(codes.shape[1])):  # x ~ n_0 (C_0 + n_1 (C_1 + ...))
            v = self.level_norms[level] * (self.codebooks[level][codes[:, level]] + v)
        return v


@register("rvq")
class ResidualVQTokenizer(TorchTokenizer):
    """Residual VQ trained level by level.

    Args:
        n_levels: residual levels.
        codebook_size: codewords per level.
        seed: k-means and batch order.
        normalize_residuals: L2-normalise each level's input (GRID).
        epochs: passes over the items per level.
        batch_size: items per step.
        lr: AdamW learning rate (GRID: 1e-3 with Adam).
        device: "auto", "cpu" or "cuda".
    """

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0,
                 normalize_residuals: bool = True, epochs: int = 20, batch_size: int = 1024,
                 lr: float = 1e-3, device: str = "auto"):
        super().__init__(n_levels, codebook_size, seed)
        self.normalize_residuals = normalize_residuals
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.device = device

    def _check_params(self) -> None:
        super()._check_params()
        check_bool(type(self).__name__, "normalize_residuals", self.normalize_residuals)

    def _build(self, dim: int) -> nn.Module:
        return RVQModule(self.n_levels, self.codebook_size, dim, self.normalize_residuals)

    def _train(self, x: torch.Tensor, progress: bool) -> None:
        m: RVQModule = self.module_
        self.history_ = []
        for level in range(self.n_levels):
            with torch.no_grad():
                _, r = m.codes(x, level)  # residual entering this level
                m.level_norms[level] = r.norm(dim=1).mean() if self.normalize_residuals else 1.0
                r = m.level_input(r)
                kmeans_init_(m.codebooks[level], r, self.seed + level)
            cb = m.codebooks
            opt = torch.optim.AdamW([cb], lr=self.lr, weight_decay=0.0)

            def step(rb: torch.Tensor, i: int, total: int, level: int = level) -> dict[str, torch.Tensor]:
                e = cb[level][sq_dist(rb, cb[level].detach()).argmin(1)]  # (B, d)
                loss = F.mse_loss(e, rb) + BETA * F.mse_loss(rb, e.detach())  # rb is data: 2nd term is constant
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                return {"loss": loss.detach()}

            hist = self._loop(r, step, progress, desc=f"{self.name} level {level}")
            self.history_.append({"level": level, "loss": [round(h["loss"], 6) for h in hist]})

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        return self.module_.codes(x)[0]

    def _vectors(self, codes: torch.Tensor) -> torch.Tensor:
        return self.module_.vectors(codes)
