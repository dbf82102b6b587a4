"""The text template: which item fields go into the encoder, and how."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidrec.data.base import TEXT_FIELDS
from sidrec.errors import SidrecError


def render_item_text(record: dict[str, Any], fields: Sequence[str]) -> str:
    """Render ``"Title: …; Categories: …; Brand: …"`` from the fields present.

    Missing (None/empty) fields are skipped. Category paths (lists of lists, as in
    the Amazon metadata) become ``"A > B > C"``, several paths joined by ``" | "``.
    """
    parts = []
    for f in fields:
        if f not in TEXT_FIELDS:
            raise SidrecError(f"unknown text field {f!r} in embed.fields; valid fields: {', '.join(TEXT_FIELDS)}")
        value = _flatten(record.get(f))
        if value:
            parts.append(f"{f.capitalize()}: {value}")
    return "; ".join(parts)


def _flatten(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, list | tuple) for v in value):
            return " | ".join(" > ".join(str(x) for x in path) for path in value)
        return ", ".join(str(v) for v in value if v not in (None, ""))
    return str(value).strip()
