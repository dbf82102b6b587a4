"""Latent geometry of fitted encoder tokenizers (rqvae, soft-rqvae, ...) on a run's embeddings.

    python benchmarks/sid_geometry.py EMBEDDINGS.npy TOKENIZER_DIR [TOKENIZER_DIR ...]

For each tokenizer directory (``RUN/tokenizer``): the mean latent norm ‖z‖, per level the
mean codeword norm and the mean residual norm after subtracting the nearest codeword, and the
number of distinct 1-, 2- and 3-level prefixes over all items. BENCHMARKS.md (UniGRec, fourth
session) uses it to explain why soft-rqvae's SIDs collide more than rqvae's.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from sidrec.tokenizers.base import Tokenizer
from sidrec.tokenizers._torch import sq_dist


def main() -> None:
    torch.set_num_threads(1)
    x = torch.from_numpy(np.load(sys.argv[1])).float()
    for path in sys.argv[2:]:
        tok = Tokenizer.load(path)
        m = tok.module_
        cbs = m.codebooks if hasattr(m, "codebooks") else m.quantizer.codebooks
        with torch.no_grad():
            r = m.encoder(tok.model_input(x))  # whitened first when the tokenizer whitens
            out, codes = [f"|z| {r.norm(dim=1).mean():.3f}"], []
            for cb in cbs:
                idx = sq_dist(r, cb).argmin(1)
                r = r - cb[idx]
                codes.append(idx)
                out.append(f"|cb| {cb.norm(dim=1).mean():.3f} |r| {r.norm(dim=1).mean():.3f}")
        c = torch.stack(codes, 1).numpy()
        out += [f"distinct@{n} {len({tuple(row) for row in c[:, :n]})}" for n in range(1, c.shape[1] + 1)]
        print(path, " ".join(out))


if __name__ == "__main__":
    main()
