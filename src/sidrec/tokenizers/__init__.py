"""SID tokenizers (a registry) and the SID <-> item table.

Importing this package registers every method; see :func:`available_tokenizers`.
"""

from sidrec.tokenizers import kmeans, opq, r3vae, rvq, soft_rqvae, vq  # noqa: F401  (register methods)
from sidrec.tokenizers.base import (
    Tokenizer,
    available_tokenizers,
    build_tokenizer,
    check_embeddings,
    get_tokenizer,
    register,
)
from sidrec.tokenizers.sid_table import SIDTable

__all__ = [
    "SIDTable",
    "Tokenizer",
    "available_tokenizers",
    "build_tokenizer",
    "check_embeddings",
    "get_tokenizer",
    "register",
]
