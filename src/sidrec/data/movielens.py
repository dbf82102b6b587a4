"""MovieLens 1M (GroupLens): ``ratings.dat`` + ``movies.dat``.

Both files are ``::``-separated and latin-1 encoded (titles such as
"Misérables, Les (1995)" are not UTF-8):

- ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``;
- ``movies.dat``: ``MovieID::Title::Genres``, genres ``|``-separated.

Every rating counts as one interaction, whatever its value (the implicit-feedback
protocol of the generative-retrieval papers). Each user's movies are ordered by
timestamp; ratings with the same timestamp keep their file order. The title is
the item's title and the genres its categories.

With ``data.path`` set, the files are read from that directory or its ``ml-1m/``
subdirectory; otherwise ``ml-1m.zip`` is downloaded and extracted into the
sidrec cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sidrec.config import DataConfig
from sidrec.data.base import RawDataset, register_dataset, require_file
from sidrec.data.download import zip_dataset_dir
from sidrec.errors import SidrecError

URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
_ENCODING = "latin-1"


def _fields(path: Path, lineno: int, line: str, n: int) -> list[str]:
    parts = line.rstrip("\r\n").split("::")
    if len(parts) != n:
        raise SidrecError(f"{path}:{lineno}: expected {n} '::'-separated fields, got {len(parts)}")
    return parts


def read_ratings(path: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Read ``ratings.dat`` into chronological sequences and each user's first file:line.

    Raises:
        SidrecError: on a line without 4 fields or with a non-integer timestamp.
    """
    events: dict[str, list[tuple[int, str]]] = {}
    locations: dict[str, str] = {}
    with open(path, encoding=_ENCODING) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            user, movie, _rating, stamp = (p.strip() for p in _fields(path, lineno, line, 4))
            if not user or not movie:
                raise SidrecError(f"{path}:{lineno}: empty UserID or MovieID")
            try:
                time = int(stamp)
            except ValueError:
                raise SidrecError(f"{path}:{lineno}: timestamp {stamp!r} is not an integer") from None
            events.setdefault(user, []).append((time, movie))
            locations.setdefault(user, f"{path}:{lineno}")
    # list.sort is stable: equal timestamps keep their file order.
    sequences = {u: [m for _, m in sorted(ev, key=lambda e: e[0])] for u, ev in events.items()}
    return sequences, locations


def read_movies(path: Path) -> dict[str, dict[str, Any]]:
    """Read ``movies.dat`` into movie id -> text fields (title, genres as categories).

    Raises:
        SidrecError: on a line without 3 fields or a duplicate movie id.
    """
    items: dict[str, dict[str, Any]] = {}
    with open(path, encoding=_ENCODING) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            movie, title, genres = (p.strip() for p in _fields(path, lineno, line, 3))
            if not movie:
                raise SidrecError(f"{path}:{lineno}: empty MovieID")
            if movie in items:
                raise SidrecError(f"{path}:{lineno}: duplicate MovieID {movie!r}")
            categories = [g for g in genres.split("|") if g and g != "(no genres listed)"]
            items[movie] = {
                "title": title or None,
                "categories": categories or None,
                "brand": None,
                "description": None,
                "price": None,
            }
    return items



@register_dataset("movielens-1m")
def load_movielens_1m(cfg: DataConfig) -> RawDataset:
    """Load MovieLens 1M from ``data.path`` or the download cache."""
    root = zip_dataset_dir(cfg.path, "movielens-1m", URL, "ml-1m.zip", "ratings.dat", "ml-1m")
    ratings = require_file(root / "ratings.dat", "MovieLens ratings file")
    movies = require_file(root / "movies.dat", "MovieLens movies file")
    sequences, locations = read_ratings(ratings)
    return RawDataset(
        name="movielens-1m",
        items=read_movies(movies),
        sequences=sequences,
        sources=[ratings, movies],
        locations=locations,
        items_source=str(movies),
    )
