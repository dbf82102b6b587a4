"""A small synthetic catalogue built in code, for ``sidrec demo`` and tests.

Items come from a category -> subcategory -> product-type hierarchy with brands,
so their titles carry real semantic structure for the text encoder. Users have a
favourite top-level category and move through items with a learnable pattern:
the next item is usually the "follow-up" of the current one (the next product
in the same subcategory, e.g. shampoo -> conditioner), sometimes another item
of the favourite category. A sequence model can learn this; a popularity
baseline cannot.
"""

from __future__ import annotations

import numpy as np

from sidrec.config import DataConfig
from sidrec.data.base import RawDataset, register_dataset

_HIERARCHY: dict[str, dict[str, list[str]]] = {
    "Hair Care": {
        "Shampoo": ["Clarifying Shampoo", "Moisture Shampoo", "Volume Shampoo", "Dandruff Shampoo"],
        "Conditioner": ["Leave-In Conditioner", "Deep Conditioner", "Detangling Conditioner"],
        "Styling": ["Hair Gel", "Styling Mousse", "Hair Spray", "Texture Paste"],
    },
    "Makeup": {
        "Eyes": ["Mascara", "Eyeliner Pencil", "Eyeshadow Palette", "Brow Gel"],
        "Face": ["Liquid Foundation", "Concealer Stick", "Setting Powder", "Cream Blush"],
        "Nails": ["Nail Polish", "Top Coat", "Base Coat", "Nail Polish Remover"],
    },
    "Skin Care": {
        "Cleansers": ["Foaming Cleanser", "Micellar Water", "Exfoliating Scrub"],
        "Moisturizers": ["Day Cream", "Night Cream", "Eye Cream", "Face Oil"],
        "Sun Care": ["SPF 50 Sunscreen", "After-Sun Gel", "Tinted SPF Lotion"],
    },
    "Fragrance": {
        "Women": ["Eau de Parfum", "Body Mist", "Perfume Oil"],
        "Men": ["Eau de Toilette", "Aftershave Balm", "Cologne Spray"],
    },
}
_BRANDS = ["Lumina", "Verdant", "Nordic Bloom", "Aurelle", "Cocoa Grove", "Pure Ridge", "Sable & Co", "Mira"]
_VARIANTS = ["Travel Size", "Classic", "Sensitive Formula", "Professional", "Organic"]

N_USERS = 2000
BRANDS_PER_KIND = 5


@register_dataset("synthetic")
def load_synthetic(cfg: DataConfig) -> RawDataset:
    """Build the demo catalogue and user sequences (deterministic; ``data.path`` = seed, default 0)."""
    seed = int(cfg.path) if cfg.path.isdigit() else 0
    rng = np.random.default_rng(seed)
    items: dict[str, dict] = {}
    by_top: dict[str, list[str]] = {}
    follow: dict[str, str] = {}
    for top, subs in _HIERARCHY.items():
        for sub, kinds in subs.items():
            chain: list[str] = []
            for kind in kinds:
                for brand in rng.choice(_BRANDS, size=BRANDS_PER_KIND, replace=False):
                    variant = _VARIANTS[int(rng.integers(len(_VARIANTS)))]
                    item_id = f"P{len(items) + 1:04d}"
                    items[item_id] = {
                        "title": f"{brand} {kind} {variant}",
                        "categories": [["Beauty", top, sub]],
                        "brand": str(brand),
                        "description": f"{kind} by {brand} for everyday {top.lower()}.",
                        "price": f"{rng.uniform(4, 60):.2f}",
                    }
                    chain.append(item_id)
                    by_top.setdefault(top, []).append(item_id)
            # a fixed shuffled "follow-up" cycle inside each subcategory
            order = [chain[i] for i in rng.permutation(len(chain))]
            for a, b in zip(order, order[1:] + order[:1]):
                follow[a] = b
    tops = list(by_top)
    sequences: dict[str, list[str]] = {}
    for u in range(N_USERS):
        fav = by_top[tops[int(rng.integers(len(tops)))]]
        length = int(rng.integers(5, 16))
        seq = [fav[int(rng.integers(len(fav)))]]
        while len(seq) < length:
            r = rng.random()
            if r < 0.75:
                seq.append(follow[seq[-1]])
            elif r < 0.9:
                seq.append(fav[int(rng.integers(len(fav)))])
            else:
                pool = list(items)
                seq.append(pool[int(rng.integers(len(pool)))])
        sequences[f"U{u:05d}"] = seq
    return RawDataset(name="synthetic-demo", items=items, sequences=sequences, items_source="synthetic catalogue")
