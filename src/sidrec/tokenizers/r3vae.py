"""``r3vae``: R³-VAE (Wan et al.), reference vector + rating residual quantisation.

Following §3 of the paper, on the raw item embeddings x (B, d):

1. Reference vector (eq. 1-2): learnable r (d,); ``alpha = x.r / ||r||^2``,
   ``e0 = x - alpha r``. r is initialised to the mean embedding (our choice: the
   paper calls r "the semantic center of the dataset" but gives no init).
2. Codebook init (§3.3.1): C^1 = k-means(e0); C^l = k-means of the residuals
   that level l-1 leaves (computed with the rating below), l > 1 (``init``).
3. Rating (eq. 3-4): ``s_k = cos(e, c_k)``, ``w = softmax(s / temperature)``.
4. Quantised vector (eq. 5): weighted sum of the top-``top_k`` codewords.
5. Residual update (eq. 6): ``e <- e - e_hat``; SID = argmax_k w_k per level (eq. 7)
   (``chain``: which e_hat the residual subtracts).
6. Reconstruction (eq. 11): ``x_hat = alpha r + sum_l e_hat_l`` (the decoder is
   this sum: eq. 11 has no learned decoder, so neither do we);
   ``L_rec = ||x - x_hat||^2`` per item (eq. 11 as written), averaged over the batch.
7. Loss (eq. 12-13): ``L_rec + reg_weight (-SC + PD)``, AdamW, lr 5e-4, weight decay 1e-5.

Choices where the paper is ambiguous (each a parameter unless fixed by the text). Issue 14
measured each at the tokenizer level on Beauty (``benchmarks/r3vae_readings.py``; table and
commands in BENCHMARKS.md, "R³-VAE readings"):

- ``top_k`` (K of eq. 5, default 4): the text sums "the top-K weights" without
  saying K or whether they are renormalised. We renormalise the top-K weights to
  sum to 1 so ``e_hat`` is a convex combination of codewords; without that,
  softmax weights over M = 256 codewords are ~1/256 and ``e_hat`` would be ~K/256
  of a codeword, so the residual would barely shrink.
  The literal reading (K = M = 256, no temperature: ``top_k=256, temperature=1``) gives a
  blur: 65% of items collide (largest SID group 97), level-2 perplexity 6, and the codes
  alone reconstruct nothing (error 61x ||x||^2); it stays a switch, not the default.
- ``temperature`` (default 0.05): eq. 4 has none (= 1). Cosines lie in [-1, 1], so
  at 1 the weights are nearly uniform and the quantised vector is a blur of K
  codewords (on Beauty: code-only reconstruction error 0.96 of ||x||^2). Among
  {1, 0.1, 0.05, 0.02} on Beauty, 0.05 gave the fewest collisions (BENCHMARKS.md,
  issue 3 section); smaller values make the top codeword dominate while keeping
  the gradients of eq. 5 soft.
- ``chain`` (default "hard"): eq. 6 subtracts the soft top-K mix while eq. 7's SID names
  one codeword per level, so the residual chain that trains and the chain the SID describes
  part ways: with the soft chain, re-deriving each level from ``e - c[code]`` changes the SID
  of 45% of Beauty's items (issue 14 point 4). "hard" gives e_hat the value of the SID's
  codeword and the gradient of eq. 5's mix (straight-through), so the rating still carries
  gradient to K codewords and one chain serves both; on Beauty it cut collisions from 12.3%
  to 6.9% at equal usage (perplexity 217/224/206 of 256). "soft" is eq. 6 as written.
- ``init`` (default "spherical"): §3.3.1 says K-Means; eq. 3 rates by cosine. "spherical"
  clusters the residuals by direction and sets each codeword to its members' mean (see
  :func:`spherical_init_`); "l2" is plain k-means on the residuals; "none" keeps random
  codebooks (Fig. 4's "w/o K-Means initialization"). On Beauty spherical vs l2: largest
  SID group 26 vs 40, level-2/3 perplexity 222/192 vs 167/138, collisions 12.3% vs 11.6%.
- Loss scale: eq. 11 writes L_rec as a squared norm (summed over the d dimensions) while
  §3.5.1 calls it an MSE and Fig. 4's values (0.00038) look per-element. We keep eq. 11's
  sum with lambda = 0.01: at the per-element scale (= reg_weight 3.84 here) and even at
  Table 9's smallest lambda 0.001 (= 0.384), the SC term collapses the last level on
  Beauty (level-3 perplexity 5-11 of 256, 24-34% of items colliding), at every mix and
  chain tried. SC/PD then barely act (lambda = 0 and 0.01 give 12.8% vs 12.3% collisions).
- Which embeddings SC uses in training: Fig. 1's caption says "SC loss pulls the
  residual embeddings in the same cluster close, and PD loss pushes the codewords
  embedding away". So at level l, SC is eq. 8-9 over the residuals e^(l-1) of the
  mini-batch grouped by their level-l code (groups of >= 2 items), and PD is
  eq. 10 (t = 2) over the level's codewords as cluster centroids; both are
  averaged over levels. (The evaluation metrics in :mod:`sidrec.metrics.sid_quality`
  use the input embeddings and full-SID clusters instead.)

``decode`` can only use the codes: it returns ``mean(alpha) r + sum_l c_l[code_l]``
(alpha and the soft weights are not in the SID), an approximation of eq. 11.

Ablations (Table 8, §4.6.1), any subset of ``ablate``; the default ``()`` is the full model:

- ``"reference"`` (w/o reference vector): ``e0 = x`` and alpha = 0 (r is kept as a
  frozen zero vector so saved weights have one layout; eq. 11 loses its ``alpha r``).
- ``"rating"`` (w/o rating quantization): the rating of eq. 3-5 is replaced by
  RQ-VAE's quantiser, as the paper says ("replaces the dot product rating mechanism
  with STE"): the SID digit (eq. 7) is the nearest codeword in L2, the residual is
  ``e - sg(c)``, ``x_hat`` is straight-through, plus the codebook and commitment losses
  ``||sg(e) - c||^2 + beta ||e - sg(c)||^2`` summed over levels (beta = 0.25, as
  :mod:`sidrec.tokenizers.vq`). Without a learned decoder (eq. 11) the STE makes
  ``L_rec`` constant in the parameters, so the codebooks learn from the codebook loss
  and r from the commitment loss and SC/PD, i.e. what RQ-VAE's quantiser gets.
- ``"sc"`` / ``"pd"`` (w/o SC / PD regularization): the term is dropped from eq. 12
  (``L_metric = PD`` or ``-SC``); it is still computed, detached, for ``history_``.
"""

from __future__ import annotations

import math

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from sidrec.errors import SidrecError
from sidrec.tokenizers._kmeans import kmeans
from sidrec.tokenizers._torch import TorchTokenizer, kmeans_init_, recon_loss, sq_dist
from sidrec.tokenizers.base import check_embeddings, check_float, check_int, register
from sidrec.tokenizers.vq import BETA

WEIGHT_DECAY = 1e-5  # §3.5.3
PD_T = 2.0  # eq. 10
ABLATIONS = ("reference", "rating", "sc", "pd")  # Table 8's rows, in the paper's order


class R3VAEModule(nn.Module):
    """Reference vector + L rating-quantisation levels.

    Args:
        dim: embedding width d.
        n_levels: L.
        codebook_size: M codewords per level.
        top_k: codewords mixed into each level's quantised vector (eq. 5).
        temperature: softmax temperature of the rating (eq. 4).
        reference: use the reference vector (False: Table 8's "w/o reference vector").
        rating: rating quantisation (False: nearest codeword + STE, "w/o rating quantization").
        hard_chain: each level's quantised vector takes the value of its SID codeword
            (straight-through: the gradient is still the rating mix's of eq. 5), so the
            residual chain that trains is the one the SID describes (see ``chain``).
    """

    def __init__(self, dim: int, n_levels: int, codebook_size: int, top_k: int, temperature: float,
                 reference: bool = True, rating: bool = True, hard_chain: bool = False):
        super().__init__()
        self.top_k, self.temperature, self.hard_chain = top_k, temperature, hard_chain
        self.reference, self.rating = reference, rating
        if reference:
            self.ref = nn.Parameter(torch.ones(dim) / dim**0.5)  # r (d,)
        else:  # no r: a frozen zero keeps the state-dict layout and makes alpha r = 0 everywhere
            self.ref = nn.Parameter(torch.zeros(dim), requires_grad=False)
        self.codebooks = nn.Parameter(torch.randn(n_levels, codebook_size, dim) / dim**0.5)  # (L, M, d)
        self.register_buffer("alpha_mean", torch.zeros(()))

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha (B,) and e0 (B, d) (eq. 1-2); without the reference vector alpha = 0, e0 = x."""
        if not self.reference:
            return x.new_zeros(x.shape[0]), x
        alpha = x @ self.ref / self.ref.pow(2).sum()
        return alpha, x - alpha[:, None] * self.ref

    def rate(self, e: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantised vector e_hat (B, d) (eq. 3-5) and SID digit (B,) (eq. 7) of residual e."""
        cb = self.codebooks[level]  # (M, d)
        if not self.rating:  # RQ-VAE's hard lookup; the STE is applied in forward
            code = sq_dist(e.detach(), cb.detach()).argmin(1)
            return cb[code], code
        s = F.normalize(e, dim=1, eps=1e-12) @ F.normalize(cb, dim=1, eps=1e-12).T  # (B, M) eq. 3
        w = torch.softmax(s / self.temperature, dim=1)  # eq. 4
        if self.top_k >= cb.shape[0]:  # eq. 5 over all M codewords: one (B, M) @ (M, d) product
            return w @ cb, w.argmax(1)
        top_w, top_i = w.topk(self.top_k, dim=1)  # (B, K), sorted: top_i[:, 0] = argmax
        top_w = top_w / top_w.sum(1, keepdim=True)
        e_hat = (top_w[:, :, None] * cb[top_i]).sum(1)  # eq. 5
        return e_hat, top_i[:, 0]

    def hard_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (B, L) of the hard chain: each level rates ``e - c[argmax]`` of the level before.

        ``forward``'s codes follow the soft chain of eq. 6 (the residual subtracts the
        top-K mix); this chain is the one the codes alone describe (``decode`` sums
        ``c_l[code_l]``). With ``top_k = 1`` the two coincide.
        """
        _, e = self.project(x)
        codes = []
        for level in range(self.codebooks.shape[0]):
            code = self.rate(e, level)[1]
            e = e - self.codebooks[level][code]
            codes.append(code)
        return torch.stack(codes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """x (B, d) -> (x_hat (B, d) eq. 11, codes (B, L), residual entering each level)."""
        alpha, e = self.project(x)
        base = alpha[:, None] * self.ref
        x_hat, codes, inputs = base, [], []
        for level in range(self.codebooks.shape[0]):
            inputs.append(e)
            e_hat, code = self.rate(e, level)
            if self.hard_chain and self.rating:  # value: the SID's codeword; gradient: eq. 5's mix
                e_hat = e_hat + (self.codebooks[level][code] - e_hat).detach()
            x_hat = x_hat + e_hat
            # eq. 6; under STE the residual subtracts sg(c), as RQ-VAE (vq.ResidualVQ)
            e = e - e_hat if self.rating else e - e_hat.detach()
            codes.append(code)
        if not self.rating:  # straight-through: value alpha r + sum c, gradient as if x_hat = alpha r + e0
            x_hat = base + inputs[0] + (x_hat - base - inputs[0]).detach()
        return x_hat, torch.stack(codes, 1), inputs


def semantic_cohesion_loss(e: torch.Tensor, code: torch.Tensor, m: int) -> torch.Tensor:
    """Differentiable eq. 8-9 over the rows of e (B, d) grouped by code (B,); 0 if no group has 2 rows."""
    u = F.normalize(e, dim=1, eps=1e-12)
    sums = torch.zeros(m, e.shape[1], dtype=e.dtype, device=e.device).index_add(0, code, u)  # (M, d)
    n = torch.bincount(code, minlength=m).to(e.dtype)
    multi = n >= 2
    if not bool(multi.any()):
        return e.new_zeros(())
    return ((sums[multi].pow(2).sum(1) - n[multi]) / (n[multi] ** 2 - n[multi])).mean()


def preference_discrimination_loss(cb: torch.Tensor, t: float = PD_T) -> torch.Tensor:
    """Differentiable eq. 10 with the codewords cb (M, d) as cluster centroids."""
    c = F.normalize(cb, dim=1, eps=1e-12)
    z = -t * (1.0 - c @ c.T)  # (M, M)
    off = ~torch.eye(len(c), dtype=torch.bool, device=c.device)  # ordered pairs a != b: same mean as a < b
    return torch.logsumexp(z[off], 0) - math.log(int(off.sum()))  # log mean exp


def vq_loss(inputs: list[torch.Tensor], codes: torch.Tensor, codebooks: torch.Tensor, beta: float = BETA) -> torch.Tensor:
    """RQ-VAE's codebook + commitment losses summed over levels (as vq.ResidualVQ).

    At L_rec's scale (eq. 11: squared norm per item, batch mean), so that Table 8's STE arm
    weighs its quantiser losses against reconstruction as the full model does (issue 14
    point 5; a per-element mean here would make them 1/d as strong).

    Args:
        inputs: residual entering each level, L tensors (B, d).
        codes: (B, L) chosen codewords.
        codebooks: (L, M, d).
        beta: commitment weight.
    """
    loss = inputs[0].new_zeros(())
    for level, e in enumerate(inputs):
        c = codebooks[level][codes[:, level]]  # (B, d)
        loss = loss + recon_loss(c, e.detach()) + beta * recon_loss(e, c.detach())
    return loss


CHAINS = ("soft", "hard")  # eq. 6's residual: the rating mix (as written) or the SID's codeword
INITS = ("spherical", "l2", "none")  # codebook initialisation (§3.3.1; "none" is Fig. 4's "w/o K-Means init")


@torch.no_grad()
def spherical_init_(codebook: torch.Tensor, e: torch.Tensor, seed: int) -> None:
    """Codebook (M, d) <- k-means of ``e`` (N, d) in the rating's geometry (eq. 3: cosine).

    Items are clustered by direction (spherical k-means on the unit-normalised
    residuals), and each codeword is set to the mean of its members' *unnormalised*
    residuals, so that eq. 6's subtraction ``e - e_hat`` removes the part of e the
    cluster shares (a unit-norm centroid would over- or under-shoot residuals whose
    norms are far from 1). An empty cluster keeps its direction at the mean norm.
    """
    u = F.normalize(e, dim=1, eps=1e-12)
    dirs = torch.from_numpy(kmeans(u.cpu().numpy(), codebook.shape[0], seed, spherical=True)).to(e)  # (M, d)
    assign = (u @ F.normalize(dirs, dim=1, eps=1e-12).T).argmax(1)  # (N,) cosine
    sums = torch.zeros_like(dirs).index_add_(0, assign, e)
    n = torch.bincount(assign, minlength=len(dirs)).to(e.dtype)
    fallback = F.normalize(dirs, dim=1, eps=1e-12) * e.norm(dim=1).mean()
    codebook.copy_(torch.where(n[:, None] > 0, sums / n.clamp_min(1)[:, None], fallback))


@register("r3vae")
class R3VAE(TorchTokenizer):
    """R³-VAE.

    Args:
        n_levels: rating-quantisation levels (L).
        codebook_size: codewords per level (M).
        seed: init, k-means and batch order.
        top_k: codewords mixed per level (K of eq. 5), renormalised weights.
        temperature: rating softmax temperature (eq. 4 has 1; see module docstring).
        reg_weight: lambda of eq. 13 (paper: 0.01).
        epochs: passes over the items.
        batch_size: items per step.
        lr: AdamW learning rate (paper: 5e-4; weight decay 1e-5 fixed).
        device: "auto", "cpu" or "cuda".
        ablate: Table 8 components to remove, any of "reference", "rating", "sc", "pd"
            (see the module docstring); a list, or a comma-separated string from a
            config override. Normalised to a sorted tuple by ``fit``.
        init: codebook initialisation, one of :data:`INITS` (see the module docstring).
        chain: "soft" (eq. 6: the residual subtracts the top-K mix) or "hard" (it subtracts
            the SID's codeword, straight-through; see the module docstring).
    """

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0, top_k: int = 4,
                 temperature: float = 0.05, reg_weight: float = 0.01, epochs: int = 100,
                 batch_size: int = 1024, lr: float = 5e-4, device: str = "auto",
                 ablate: tuple[str, ...] = (), init: str = "spherical", chain: str = "hard"):
        super().__init__(n_levels, codebook_size, seed)
        self.top_k = top_k
        self.temperature = temperature
        self.reg_weight = reg_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.device = device
        self.ablate = ablate
        self.init = init
        self.chain = chain

    def _ablations(self) -> tuple[str, ...]:
        """``ablate`` as a sorted tuple of distinct names.

        An override may give a bare ``reference`` or ``sc,pd`` instead of a YAML
        list, so strings are split on commas.

        Raises:
            SidrecError: not a list/string, or a name outside :data:`ABLATIONS`.
        """
        owner, value = type(self).__name__, self.ablate
        names = value.split(",") if isinstance(value, str) else value
        if not isinstance(names, list | tuple) or not all(isinstance(v, str) for v in names):
            raise SidrecError(f"`ablate` of {owner} must be a list of {', '.join(ABLATIONS)}, got {value!r}.")
        names = {v.strip() for v in names} - {""}
        unknown = sorted(names - set(ABLATIONS))
        if unknown:
            raise SidrecError(f"`ablate` of {owner} must hold only {', '.join(ABLATIONS)}, got {unknown!r}.")
        return tuple(sorted(names))

    def _check_params(self) -> None:
        super()._check_params()
        owner = type(self).__name__
        check_int(owner, "top_k", self.top_k, 1)
        if isinstance(self.codebook_size, int) and self.top_k > self.codebook_size:
            raise SidrecError(f"`top_k` of {owner} must be <= codebook_size ({self.codebook_size}), got {self.top_k}.")
        check_float(owner, "temperature", self.temperature, 0.0, low_open=True)
        check_float(owner, "reg_weight", self.reg_weight, 0.0)
        if self.chain not in CHAINS:
            raise SidrecError(f"`chain` of {owner} must be one of {', '.join(CHAINS)}, got {self.chain!r}.")
        if self.init not in INITS:
            raise SidrecError(f"`init` of {owner} must be one of {', '.join(INITS)}, got {self.init!r}.")
        self.ablate = self._ablations()

    def _build(self, dim: int) -> nn.Module:
        ablate = self._ablations()  # also on load, where fit's validation did not run
        return R3VAEModule(dim, self.n_levels, self.codebook_size, self.top_k, self.temperature,
                           reference="reference" not in ablate, rating="rating" not in ablate,
                           hard_chain=self.chain == "hard")

    def _metric_loss(self, codes: torch.Tensor, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """L_metric of eq. 12 without the ablated terms, and SC and PD (detached if ablated).

        SC is eq. 8-9 over each level's input residuals grouped by that level's
        code, PD eq. 10 over each level's codewords; both averaged over levels.
        """
        m: R3VAEModule = self.module_
        use_sc, use_pd = "sc" not in self.ablate, "pd" not in self.ablate
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and use_sc):
            sc = torch.stack([semantic_cohesion_loss(e, codes[:, l], self.codebook_size) for l, e in enumerate(inputs)]).mean()
        with torch.set_grad_enabled(grad and use_pd):
            pd = torch.stack([preference_discrimination_loss(cb) for cb in m.codebooks]).mean()
        if use_sc and use_pd:
            metric = -sc + pd  # eq. 12
        elif use_sc:
            metric = -sc
        elif use_pd:
            metric = pd
        else:
            metric = sc.new_zeros(())
        return metric, sc, pd

    def _train(self, x: torch.Tensor, progress: bool) -> None:
        m: R3VAEModule = self.module_
        with torch.no_grad():  # §3.3.1: r = data centre, C^l = k-means of level-l residuals
            if m.reference:
                m.ref.copy_(x.mean(0))
            _, e = m.project(x)
            init = {"spherical": spherical_init_, "l2": kmeans_init_}.get(self.init)  # None: keep the random codebooks
            for level in range(self.n_levels if init else 0):
                init(m.codebooks[level], e, self.seed + level)
                e = e - m.rate(e, level)[0]
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=self.lr, weight_decay=WEIGHT_DECAY)

        def step(xb: torch.Tensor, i: int, total: int) -> dict[str, torch.Tensor]:
            x_hat, codes, inputs = m(xb)
            rec = recon_loss(x_hat, xb)  # eq. 11 as written: squared L2 norm per item, batch mean (see docstring)
            metric, sc, pd = self._metric_loss(codes, inputs)
            loss = rec + self.reg_weight * metric  # eq. 13
            out = {"rec": rec.detach(), "sc": sc.detach(), "pd": pd.detach()}
            if not m.rating:  # RQ-VAE's quantiser losses replace the rating's gradient path
                vq = vq_loss(inputs, codes, m.codebooks)
                loss = loss + vq
                out["vq"] = vq.detach()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return {"loss": loss.detach(), **out, "codes": codes}

        self._loop_with_usage(x, step, progress)
        with torch.no_grad():
            m.alpha_mean.copy_(m.project(x)[0].mean())

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        return self.module_(x)[1]

    def _latent(self, x: np.ndarray) -> np.ndarray:  # e0 of eq. 2: what the codebooks quantise
        return self._batched(x, lambda xb: self.module_.project(xb)[1])

    def hard_chain_disagreement(self, embeddings: np.ndarray) -> float:
        """Share of items whose hard-chain codes (:meth:`R3VAEModule.hard_codes`) differ from their SID."""
        self._check_fitted("hard_chain_disagreement")
        x = check_embeddings(embeddings, dim=self.dim_)
        hard = self._batched(x, self.module_.hard_codes)
        return float((hard != self.encode(x)).any(1).mean())

    def _vectors(self, codes: torch.Tensor) -> torch.Tensor:
        m: R3VAEModule = self.module_
        v = m.alpha_mean * m.ref[None, :].expand(codes.shape[0], -1)
        return v + sum(cb[codes[:, l]] for l, cb in enumerate(m.codebooks))
