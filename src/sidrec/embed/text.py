"""The text template: which item fields go into the encoder, and how.

``embed.fields`` names any text columns of the items table (the Amazon ones, or a
catalogue's own: ``genres``, ``tags``, ``artist``, ``material`` ...). Without
``embed.template`` an item renders as ``"Title: …; Genres: …"`` (present fields only);
with one, as the template filled in with :meth:`str.format` (``"{title}. Genres: {genres}"``),
a missing field becoming an empty string.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from sidrec.errors import SidrecError


def template_fields(template: str) -> list[str]:
    """The field names a template refers to (``"{title} by {brand}"`` -> ``["title", "brand"]``).

    Raises:
        SidrecError: for a malformed template or a positional / attribute / indexed placeholder.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise SidrecError(f"embed.template is malformed ({e}): {template!r}") from None
    names = []
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise SidrecError(f"embed.template placeholders must be field names like {{title}}, got {{{name}}} in {template!r}")
        names.append(name)
    return names


def check_text_fields(fields: Sequence[str], template: str, columns: Sequence[str]) -> None:
    """Check ``embed.fields`` against the items table's columns and the template against ``fields``.

    Raises:
        SidrecError: naming the unknown field and the valid ones.
    """
    if not fields:
        raise SidrecError("embed.fields must name at least one text column of the items table")
    for f in fields:
        if f not in columns:
            raise SidrecError(f"unknown text field {f!r} in embed.fields; the items table has: {', '.join(columns)}")
    for name in template_fields(template):
        if name not in fields:
            raise SidrecError(f"embed.template uses {{{name}}}, which is not in embed.fields ({', '.join(fields)})")


def render_item_text(record: dict[str, Any], fields: Sequence[str], template: str = "") -> str:
    """Render an item's text from ``fields`` of ``record`` (see the module docstring).

    Missing (None/empty) fields are skipped. Category paths (lists of lists, as in
    the Amazon metadata) become ``"A > B > C"``, several paths joined by ``" | "``.
    """
    if template:
        values = {f: _flatten(record.get(f)) for f in fields}
        return template.format(**values).strip()
    parts = []
    for f in fields:
        value = _flatten(record.get(f))
        if value:
            parts.append(f"{f.capitalize()}: {value}")
    return "; ".join(parts)


def has_text(record: dict[str, Any], fields: Sequence[str]) -> bool:
    """True when at least one of ``fields`` is present and non-empty in ``record``."""
    return any(_flatten(record.get(f)) for f in fields)


def _flatten(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, list | tuple) for v in value):
            return " | ".join(" > ".join(str(x) for x in path) for path in value)
        return ", ".join(str(v) for v in value if v not in (None, ""))
    return str(value).strip()
