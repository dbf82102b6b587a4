"""Item text -> embeddings with a sentence-transformers encoder."""

from sidrec.embed.text import render_item_text
from sidrec.embed.encoder import DEFAULT_MODEL, embed_texts, resolve_model
from sidrec.embed.stage import load_embeddings, run_embed

__all__ = ["DEFAULT_MODEL", "embed_texts", "load_embeddings", "render_item_text", "resolve_model", "run_embed"]
