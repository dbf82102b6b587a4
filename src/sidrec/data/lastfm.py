"""Last.fm HetRec 2011 (``hetrec2011-lastfm-2k``): artists tagged by users, in time.

Files (tab-separated, one header line each):

- ``user_taggedartists-timestamps.dat``: ``userID artistID tagID timestamp``
  (milliseconds) -- one line per tag a user gave an artist;
- ``artists.dat``: ``id name url pictureURL`` -- the artist's name is the title;
- ``tags.dat``: ``tagID tagValue`` (latin-1), optional.

**One interaction per (user, artist)**, placed at the *first* time that user
tagged that artist: a user tagging an artist with five tags is one encounter
with the artist, not five, and the first tag is when the encounter happened.
Interactions with the same time keep the file order of those first tag lines.
(The listening counts of ``user_artists.dat`` carry no time, so they cannot
order a sequence and are not used.)

When ``tags.dat`` is present, an artist's categories are its :data:`TOP_TAGS`
most frequent tags over all users (ties: the tag seen first wins). Artists
that were tagged but have no line in ``artists.dat`` keep those tags as their
only text (title None) rather than being dropped.

``artists.dat`` is read as UTF-8, falling back to latin-1 if it is not valid
UTF-8; ``tags.dat`` is latin-1, as shipped.

With ``data.path`` set, the files are read from that directory or its
``hetrec2011-lastfm-2k/`` subdirectory; otherwise the zip is downloaded and
extracted into the sidrec cache.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from sidrec.config import DataConfig
from sidrec.data.base import RawDataset, register_dataset, require_file
from sidrec.data.download import zip_dataset_dir
from sidrec.errors import SidrecError

URL = "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip"
EVENTS_FILE = "user_taggedartists-timestamps.dat"
TOP_TAGS = 5  # enough to characterise an artist without drowning the name in noise


def _rows(path: Path, encoding: str, min_fields: int) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of a tab-separated file with a header line (skipped).

    Raises:
        SidrecError: on a data line with fewer than ``min_fields`` fields.
    """
    rows = []
    with open(path, encoding=encoding, newline="") as f:
        for lineno, line in enumerate(f, 1):
            if lineno == 1 or not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < min_fields:
                raise SidrecError(f"{path}:{lineno}: expected {min_fields} tab-separated fields, got {len(parts)}")
            rows.append((lineno, [p.strip() for p in parts]))
    return rows


def read_tag_events(
    path: Path,
) -> tuple[dict[str, list[str]], dict[str, str], dict[str, Counter[str]]]:
    """Read the timestamped tag assignments.

    Returns:
        Each user's artists at their first tag time (stable ties), each user's
        first file:line, and per artist the count of each tag id.

    Raises:
        SidrecError: on a short line, an empty id or a non-integer timestamp.
    """
    first: dict[tuple[str, str], tuple[int, int]] = {}  # (user, artist) -> (time, line) of the first tag
    locations: dict[str, str] = {}
    tag_counts: dict[str, Counter[str]] = {}
    # ids and numbers only: latin-1 decodes any byte, so a stray one is reported by the checks below
    for lineno, (user, artist, tag, stamp, *_) in _rows(path, "latin-1", 4):
        if not user or not artist:
            raise SidrecError(f"{path}:{lineno}: empty userID or artistID")
        try:
            time = int(stamp)
        except ValueError:
            raise SidrecError(f"{path}:{lineno}: timestamp {stamp!r} is not an integer") from None
        key = (user, artist)
        if key not in first or time < first[key][0]:  # strict: an equal later time keeps the earlier line
            first[key] = (time, lineno)
        locations.setdefault(user, f"{path}:{lineno}")
        if tag:
            tag_counts.setdefault(artist, Counter())[tag] += 1
    events: dict[str, list[tuple[int, int, str]]] = {}
    for (user, artist), (time, lineno) in first.items():
        events.setdefault(user, []).append((time, lineno, artist))
    sequences = {u: [a for _, _, a in sorted(ev)] for u, ev in events.items()}
    return sequences, locations, tag_counts


def read_artists(path: Path) -> dict[str, str]:
    """Read ``artists.dat`` into artist id -> name.

    Raises:
        SidrecError: on a short line or a duplicate id.
    """
    try:
        rows = _rows(path, "utf-8", 2)
    except UnicodeDecodeError:
        rows = _rows(path, "latin-1", 2)
    names: dict[str, str] = {}
    for lineno, (artist, name, *_) in rows:
        if artist in names:
            raise SidrecError(f"{path}:{lineno}: duplicate artist id {artist!r}")
        names[artist] = name
    return names


def read_tags(path: Path) -> dict[str, str]:
    """Read ``tags.dat`` (latin-1) into tag id -> tag text."""
    return {tag: value for _, (tag, value, *_) in _rows(path, "latin-1", 2) if value}



@register_dataset("lastfm-hetrec2011")
def load_lastfm(cfg: DataConfig) -> RawDataset:
    """Load Last.fm HetRec 2011 from ``data.path`` or the download cache."""
    root = zip_dataset_dir(cfg.path, "lastfm-hetrec2011", URL, "hetrec2011-lastfm-2k.zip", EVENTS_FILE, "hetrec2011-lastfm-2k")
    events_path = require_file(root / EVENTS_FILE, "Last.fm tag events file")
    artists_path = require_file(root / "artists.dat", "Last.fm artists file")
    tags_path = root / "tags.dat"
    sources = [events_path, artists_path]
    sequences, locations, tag_counts = read_tag_events(events_path)
    names = read_artists(artists_path)
    tags: dict[str, str] = {}
    if tags_path.is_file():
        tags = read_tags(tags_path)
        sources.append(tags_path)

    items: dict[str, dict[str, Any]] = {}
    for artist in sorted(set(names) | set(tag_counts)):
        # most_common sorts stably, so equally frequent tags keep first-seen order
        top = [tags[t] for t, _ in tag_counts.get(artist, Counter()).most_common() if t in tags][:TOP_TAGS]
        items[artist] = {
            "title": names.get(artist) or None,
            "categories": top or None,
            "brand": None,
            "description": None,
            "price": None,
        }
    return RawDataset(
        name="lastfm-hetrec2011",
        items=items,
        sequences=sequences,
        sources=sources,
        locations=locations,
        items_source=str(artists_path),
    )
