"""Shared machinery of the tokenizers trained with PyTorch: device, seeding, loop, weights."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sidrec.errors import SidrecError
from sidrec.tokenizers._kmeans import kmeans
from sidrec.tokenizers.base import Tokenizer, check_float, check_int

#: Rows per forward pass when encoding.
ENCODE_BATCH = 8192


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda if available, else cpu; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise SidrecError(f"`device` must be 'auto', 'cpu' or 'cuda[:n]', got {device!r}.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SidrecError(f"`device` is {device!r} but CUDA is not available; use 'auto' or 'cpu'.")
    return dev


def mlp(widths: Iterable[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    widths = list(widths)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def sq_dist(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances (B, K) between r (B, D) and codewords c (K, D)."""
    return (r.pow(2).sum(1, keepdim=True) - 2 * r @ c.T + c.pow(2).sum(1)[None, :]).clamp_min(0)


@torch.no_grad()
def kmeans_init_(codebook: torch.Tensor, r: torch.Tensor, seed: int) -> None:
    """Overwrite ``codebook`` (K, D) with faiss k-means centroids of ``r`` (N, D)."""
    c = kmeans(r.detach().cpu().numpy(), codebook.shape[0], seed)
    codebook.copy_(torch.from_numpy(c).to(codebook))


@torch.no_grad()
def kmeans_init_levels_(codebooks: torch.Tensor, r: torch.Tensor, seed: int) -> None:
    """Residual k-means init of (L, K, D) codebooks on latents r (N, D): level l is fit
    (seed ``seed + l``) on what the levels before it leave after nearest-codeword subtraction."""
    for level, cb in enumerate(codebooks):
        kmeans_init_(cb, r, seed + level)
        r = r - cb[sq_dist(r, cb).argmin(1)]


class TorchTokenizer(Tokenizer):
    """A tokenizer whose learned state is one ``nn.Module`` in ``module_``.

    Subclasses implement ``_build(dim) -> nn.Module``, ``_train(x, progress)``
    (``x`` a float32 tensor on the device, ``self.module_`` already built and
    seeded) and ``_codes(x) -> (B, L) long`` / ``_vectors(codes) -> (B, d)`` on
    CPU tensors. Training runs under ``torch.random.fork_rng`` seeded with
    ``seed``, so the global RNG is left alone, and with deterministic kernels: with
    2 CPU threads two RQ-VAE fits of the same seed otherwise drifted apart (0% equal
    codes after 5 epochs; ~5% slower when on, within noise). The same seed gives the
    same codes; the trained module is moved to CPU.
    """

    epochs: int
    batch_size: int
    lr: float
    device: str
    whiten: bool = False  # a subclass with a ``whiten`` parameter PCA-whitens its input (:meth:`model_input`)

    def _check_params(self) -> None:
        super()._check_params()
        owner = type(self).__name__
        check_int(owner, "epochs", self.epochs, 1)
        check_int(owner, "batch_size", self.batch_size, 1)
        check_float(owner, "lr", self.lr, 0.0, low_open=True)
        if not isinstance(self.device, str):
            raise SidrecError(f"`device` of {owner} must be a string, got {self.device!r}.")
        resolve_device(self.device)

    def _build(self, dim: int) -> nn.Module:
        raise NotImplementedError

    def _train(self, x: torch.Tensor, progress: bool) -> None:
        raise NotImplementedError

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _vectors(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _fit(self, x: np.ndarray, progress: bool) -> None:
        device = resolve_device(self.device)
        # Codebook lookups back-propagate through index_put_(accumulate=True), whose
        # multi-threaded CPU kernel sums in a varying order unless deterministic mode is on.
        was = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
        torch.use_deterministic_algorithms(True, warn_only=True)  # warn, not fail, where CUDA has none
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                self.module_ = self._build(x.shape[1]).to(device)
                self.module_.train()
                xt = torch.from_numpy(x).to(device)
                if self.whiten:
                    self._fit_whitening(xt)
                self._train(self.model_input(xt), progress)
        finally:
            torch.use_deterministic_algorithms(was[0], warn_only=was[1])
        self.module_ = self.module_.cpu().eval()

    @torch.no_grad()
    def _fit_whitening(self, x: torch.Tensor) -> None:
        """PCA whitening x -> (x - mean) @ W, W = V diag(1 / sqrt(lambda + eps)), and its inverse.

        GRID §4 whitens the embeddings before its RQ-VAE "to prevent collapse". On Beauty's
        MiniLM embeddings it is what makes RQ-VAE's level-1 codes as predictive of the next
        item as R-KMeans' (BENCHMARKS.md, issue 13: ``benchmarks/sid_predictability.py``).
        """
        xd = x.double()
        mean = xd.mean(0)
        cov = (xd - mean).T @ (xd - mean) / max(1, len(xd) - 1)  # (d, d)
        lam, vec = torch.linalg.eigh(cov)
        lam = lam.clamp_min(0) + 1e-6 * float(lam.max())  # directions without variance are not blown up
        self.white_mean_ = mean.float().cpu().numpy()
        self.white_w_ = (vec / lam.sqrt()).float().cpu().numpy()  # (d, d)
        self.white_w_inv_ = (vec * lam.sqrt()).T.float().cpu().numpy()  # (d, d)

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """What ``module_`` takes for embeddings x (B, d): x itself, or x whitened if fitted with
        ``whiten``. Whoever runs ``module_`` directly (UniGRec's stage 2) must go through this."""
        if getattr(self, "white_w_", None) is None:
            return x
        return (x - torch.from_numpy(self.white_mean_).to(x)) @ torch.from_numpy(self.white_w_).to(x)

    def model_output(self, y: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`model_input`: a reconstruction (B, d) back in embedding space."""
        if getattr(self, "white_w_", None) is None:
            return y
        return y @ torch.from_numpy(self.white_w_inv_).to(y) + torch.from_numpy(self.white_mean_).to(y)

    @torch.no_grad()
    def _batched(self, x: np.ndarray, fn: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
        """``fn`` over ``x`` (N, d) in blocks of ENCODE_BATCH rows, concatenated."""
        xt = torch.from_numpy(x)
        return torch.cat([fn(xt[s : s + ENCODE_BATCH]) for s in range(0, len(xt), ENCODE_BATCH)]).numpy()

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return self._batched(x, self._codes)

    @torch.no_grad()
    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return self._vectors(torch.from_numpy(codes)).numpy()

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        prefix = "module_."
        self.module_ = self._build(self.dim_)
        self.module_.load_state_dict({k[len(prefix) :]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(prefix)})
        self.module_.eval()
        super()._restore({k: v for k, v in arrays.items() if not k.startswith(prefix)})

    def _loop(self, x: torch.Tensor, step: Callable[[torch.Tensor, int, int], dict[str, torch.Tensor]],
              progress: bool, desc: str = "", epochs: int | None = None,
              on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
        """Shuffled mini-batches for ``epochs``; ``step(batch, i, total)`` does one update.

        ``on_epoch(epoch, means)`` runs after every epoch with that epoch's means.

        Returns per-epoch means of the scalars ``step`` returns (kept in ``history_``).
        """
        epochs = self.epochs if epochs is None else epochs
        n = x.shape[0]
        per_epoch = math.ceil(n / self.batch_size)
        total = epochs * per_epoch
        gen = torch.Generator().manual_seed(self.seed)
        history: list[dict[str, float]] = []
        bar = tqdm(total=total, desc=desc or self.name, disable=not progress, leave=False)
        i = 0
        for epoch in range(epochs):
            perm = torch.randperm(n, generator=gen).to(x.device)
            sums: dict[str, float] = {}
            for s in range(0, n, self.batch_size):
                out = step(x[perm[s : s + self.batch_size]], i, total)
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                i += 1
                bar.update(1)
            history.append({k: v / per_epoch for k, v in sums.items()})
            bar.set_postfix({k: f"{v:.4g}" for k, v in history[-1].items()})
            if on_epoch is not None:
                on_epoch(epoch, history[-1])
        bar.close()
        return history

    def _loop_with_usage(self, x: torch.Tensor, step: Callable[[torch.Tensor, int, int], dict[str, torch.Tensor]],
                         progress: bool, on_unused: Callable[[torch.Tensor], None] | None = None,
                         after_epoch: Callable[[int, dict[str, float]], None] | None = None) -> None:
        """:meth:`_loop` that also records each level's codeword usage per epoch; sets ``history_``.

        ``step`` returns its scalars plus ``"codes"``, the batch's hard codes (B, L).
        ``on_unused(used)``, if given, runs after every epoch but the last with the
        (L, K) bool mask of codewords used in that epoch (e.g. to reset dead codes).
        ``after_epoch(epoch, means)``, if given, runs after every epoch (e.g. to keep the best one).
        """
        used = torch.zeros(self.n_levels, self.codebook_size, dtype=torch.bool, device=x.device)
        usage_log: list[list[float]] = []

        def counted(xb: torch.Tensor, i: int, total: int) -> dict[str, torch.Tensor]:
            out = step(xb, i, total)
            used.scatter_(1, out.pop("codes").T, True)
            return out

        def on_epoch(epoch: int, means: dict[str, float]) -> None:
            usage_log.append(used.float().mean(1).tolist())  # (L,) fraction of codewords used this epoch
            if on_unused is not None and epoch < self.epochs - 1:
                on_unused(used)
            used.zero_()
            if after_epoch is not None:
                after_epoch(epoch, means)

        history = self._loop(x, counted, progress, on_epoch=on_epoch)
        self.history_ = [
            {"epoch": e, **{k: round(v, 6) for k, v in h.items()}, "usage": [round(u, 4) for u in us]}
            for e, (h, us) in enumerate(zip(history, usage_log))
        ]


@torch.no_grad()
def reset_dead_codes_(codebooks: torch.Tensor, r: torch.Tensor, used: torch.Tensor) -> None:
    """Replace codewords that no item chose with residuals of random items, level by level.

    Args:
        codebooks: (L, K, D) residual codebooks, changed in place.
        r: (B, D) latents of some items (e.g. the epoch's last batch); their residuals
            after each level (nearest codeword subtracted) seed the next level's dead codes.
        used: (L, K) bool, the codewords chosen during the epoch.
    """
    for level, cb in enumerate(codebooks):
        dead = (~used[level]).nonzero().squeeze(1)
        if dead.numel():
            pick = torch.randint(0, r.shape[0], (dead.numel(),), device=r.device)
            cb[dead] = r[pick]
        r = r - cb[sq_dist(r, cb).argmin(1)]


RECON_REDUCTIONS = ("sum", "mean")


def recon_loss(x_hat: torch.Tensor, x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Reconstruction loss: squared L2 norm of the error per item, mean over the batch.

    ``"sum"`` (default) sums over dimensions, not averaged: ``F.mse_loss`` would make it
    d times smaller (384x for MiniLM), and the papers' loss weights are set against this
    scale (UniGRec eq. 7/21/22, R³-VAE eq. 11/13). ``"mean"`` averages over dimensions
    (``F.mse_loss``): UniGRec's *code* does, and its stage-2 λ_recon 0.5 is set against
    that scale (UniGRec stage 2 uses it; soft-rqvae's ``recon_reduction`` switch).
    """
    if reduction not in RECON_REDUCTIONS:
        raise SidrecError(f"reconstruction reduction must be one of {', '.join(RECON_REDUCTIONS)}, got {reduction!r}")
    err = (x_hat - x).pow(2)
    return err.mean() if reduction == "mean" else err.sum(-1).mean()
