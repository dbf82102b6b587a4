"""The Amazon 2014 review data (McAuley et al.), as used by TIGER, P5 and GRID.

Two upstream files per category:

- ``reviews_<Category>_5.json.gz``: the 5-core reviews, one JSON object per line
  (``reviewerID``, ``asin``, ``unixReviewTime``, ...);
- ``meta_<Category>.json.gz``: item metadata, one *Python literal* per line (the
  files use single quotes, so they are not JSON) with ``asin``, ``title``,
  ``categories`` (a list of category paths), ``brand``, ``description``, ``price``.

Each user's items are ordered by ``unixReviewTime``; reviews with the same time
keep their file order. Only metadata records of reviewed items are parsed
(parsing every literal of the largest meta files takes minutes), so a malformed
meta line of an item nobody reviewed goes unnoticed.

With ``data.path`` set, both files are read from that directory; otherwise they
are downloaded into the sidrec cache (see :mod:`sidrec.data.download`).
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sidrec.config import DataConfig
from sidrec.data.base import RawDataset, register_dataset, require_file
from sidrec.data.download import cache_dir, fetch
from sidrec.errors import SidrecError

BASE_URL = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"

#: Categories with a 5-core review file upstream.
CATEGORIES = (
    "Amazon_Instant_Video",
    "Apps_for_Android",
    "Automotive",
    "Baby",
    "Beauty",
    "Books",
    "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories",
    "Clothing_Shoes_and_Jewelry",
    "Digital_Music",
    "Electronics",
    "Grocery_and_Gourmet_Food",
    "Health_and_Personal_Care",
    "Home_and_Kitchen",
    "Kindle_Store",
    "Movies_and_TV",
    "Musical_Instruments",
    "Office_Products",
    "Patio_Lawn_and_Garden",
    "Pet_Supplies",
    "Sports_and_Outdoors",
    "Tools_and_Home_Improvement",
    "Toys_and_Games",
    "Video_Games",
)

# Cheap pre-filter: pulls the asin out of a meta line without evaluating the literal.
_ASIN = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")


def reviews_filename(category: str) -> str:
    """Upstream name of a category's 5-core review file."""
    return f"reviews_{category}_5.json.gz"


def meta_filename(category: str) -> str:
    """Upstream name of a category's metadata file."""
    return f"meta_{category}.json.gz"


def _gzip_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` of a gzipped UTF-8 text file; a damaged archive is a SidrecError."""
    lineno = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                yield lineno, line
    except (OSError, EOFError, zlib.error) as e:
        raise SidrecError(f"{path}:{lineno + 1}: not a readable gzip file ({e})") from None
    except UnicodeDecodeError as e:
        raise SidrecError(f"{path}:{lineno + 1}: not UTF-8 text ({e.reason})") from None


def read_reviews(path: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Read a reviews file into chronological sequences and each user's first file:line.

    Raises:
        SidrecError: on malformed JSON, a missing field or a non-integer time.
    """
    events: dict[str, list[tuple[int, str]]] = {}
    locations: dict[str, str] = {}
    for lineno, line in _gzip_lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SidrecError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise SidrecError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        for key in ("reviewerID", "asin", "unixReviewTime"):
            if rec.get(key) is None:
                raise SidrecError(f"{path}:{lineno}: missing field {key!r}")
        time = rec["unixReviewTime"]
        if isinstance(time, bool) or not isinstance(time, int):
            raise SidrecError(f"{path}:{lineno}: unixReviewTime must be an integer, got {time!r}")
        user = str(rec["reviewerID"])
        events.setdefault(user, []).append((time, str(rec["asin"])))
        locations.setdefault(user, f"{path}:{lineno}")
    # list.sort is stable: equal times keep their file order.
    sequences = {u: [asin for _, asin in sorted(ev, key=lambda e: e[0])] for u, ev in events.items()}
    return sequences, locations


def read_meta(path: Path, wanted: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Read a meta file (Python literals) into asin -> text fields.

    Args:
        path: the ``meta_<Category>.json.gz`` file.
        wanted: if given, only these asins are parsed; other lines are skipped unparsed.

    Raises:
        SidrecError: on a line that is not a Python dict literal with an ``asin``.
    """
    items: dict[str, dict[str, Any]] = {}
    for lineno, line in _gzip_lines(path):
        if not line.strip():
            continue
        if wanted is not None:
            m = _ASIN.search(line)
            if m and m.group(1) not in wanted:
                continue
        try:
            rec = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            reason = e.msg if isinstance(e, SyntaxError) else str(e).splitlines()[0]
            raise SidrecError(f"{path}:{lineno}: malformed Python literal ({reason})") from None
        if not isinstance(rec, dict) or rec.get("asin") is None:
            raise SidrecError(f"{path}:{lineno}: expected a dict literal with an 'asin'")
        asin = str(rec["asin"])
        if asin in items:  # keep the first record, as upstream readers do
            continue
        items[asin] = _meta_fields(rec)
    return items


def _meta_fields(rec: dict[str, Any]) -> dict[str, Any]:
    categories = rec.get("categories")
    if categories is not None and not (
        isinstance(categories, list) and all(isinstance(p, list) for p in categories)
    ):
        categories = None  # not the documented list of paths; dropped rather than guessed at
    price = rec.get("price")
    return {
        "title": _text(rec.get("title")),
        "categories": categories or None,
        "brand": _text(rec.get("brand")),
        "description": _text(rec.get("description")),
        # str(): RawDataset holds text; a float price would become "12.99" downstream anyway
        "price": None if price is None or isinstance(price, bool) else str(price),
    }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise SidrecError(f"unknown amazon2014 category {category!r}; valid categories: {', '.join(CATEGORIES)}")


@register_dataset("amazon2014")
def load_amazon2014(cfg: DataConfig) -> RawDataset:
    """Load one Amazon 2014 category (``data.category``) from ``data.path`` or the download cache."""
    _check_category(cfg.category)
    reviews_name, meta_name = reviews_filename(cfg.category), meta_filename(cfg.category)
    if cfg.path:
        root = Path(cfg.path)
        if not root.is_dir():
            raise SidrecError(f"data directory not found: {root}")
        reviews = require_file(root / reviews_name, "amazon2014 reviews file")
        meta = require_file(root / meta_name, "amazon2014 metadata file")
    else:
        cache = cache_dir("amazon2014")
        reviews = fetch(BASE_URL + reviews_name, cache / reviews_name)
        meta = fetch(BASE_URL + meta_name, cache / meta_name)
    sequences, locations = read_reviews(reviews)
    wanted = {asin for seq in sequences.values() for asin in seq}
    items = read_meta(meta, wanted)
    return RawDataset(
        name=f"amazon2014-{cfg.category}",
        items=items,
        sequences=sequences,
        sources=[reviews, meta],
        locations=locations,
        items_source=str(meta),
    )
