"""Bring your own data: an interaction log and an items table, as CSV or Parquet.

- ``data.path``: the log, with exactly the columns ``user``, ``item`` and
  ``timestamp`` (other columns are ignored). Timestamps are numbers (any unit,
  only their order matters) or date-times (ISO 8601 in CSV). Each user's items
  are ordered by timestamp; equal timestamps keep the file's row order.
- ``data.items_path``: the items table, with an ``item`` column and any of
  ``title``, ``categories``, ``brand``, ``description``, ``price``. In CSV every
  field is text; in Parquet ``categories`` may also be a list of strings or a
  list of category paths (lists of strings).

The format follows the extension: ``.csv`` (optionally ``.csv.gz``/``.csv.bz2``),
or ``.parquet``/``.pq``. User and item ids are read as strings, so ``007`` stays
``007``. Errors name the file and the row: in CSV the header is row 1 (so a
row is the line number when no line is blank and no value spans lines), in
Parquet the first record is row 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sidrec.config import DataConfig
from sidrec.data.base import TEXT_FIELDS, RawDataset, register_dataset, require_file
from sidrec.errors import SidrecError

LOG_COLUMNS = ("user", "item", "timestamp")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def _is_csv(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(_CSV_SUFFIXES):
        return True
    if name.endswith(_PARQUET_SUFFIXES):
        return False
    raise SidrecError(f"{path}: unsupported file type; expected one of {', '.join(_CSV_SUFFIXES + _PARQUET_SUFFIXES)}")


def _row(path: Path, csv: bool, index: int) -> str:
    """Human row reference of the 0-based data row ``index`` (CSV counts its header as row 1)."""
    return f"{path}, row {index + 2 if csv else index + 1}"


def read_table(path: Path, required: tuple[str, ...], string_columns: tuple[str, ...]) -> tuple[pa.Table, bool]:
    """Read a CSV or Parquet file and check it has the ``required`` columns.

    Args:
        path: the file; its extension picks the format.
        required: columns that must be present.
        string_columns: CSV columns read as text instead of type-inferred.

    Returns:
        The table and whether it came from CSV.

    Raises:
        SidrecError: if the file cannot be parsed or lacks a required column.
    """
    csv = _is_csv(path)
    try:
        if csv:
            types = {c: pa.string() for c in string_columns}
            table = pacsv.read_csv(
                path,
                # strings_can_be_null=False: an empty cell is "" (reported or mapped to None below), not a null
                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
            )
        else:
            table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise SidrecError(f"{path}: cannot read {'CSV' if csv else 'Parquet'} ({_csv_error(path, e) if csv else e})") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise SidrecError(
            f"{path}: missing column {missing[0]!r}; found columns: {', '.join(table.column_names) or '(none)'} "
            f"(expected {', '.join(repr(c) for c in required)})"
        )
    return table, csv


def _csv_error(path: Path, error: Exception) -> str:
    """The first line of pyarrow's message, with the row number when a single-threaded re-read finds it."""
    # Multi-threaded parsing does not know row numbers; re-parsing once on the error path does.
    rows: list[Any] = []

    def handler(row: Any) -> str:
        rows.append(row)
        return "error"

    try:
        pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=handler),
        )
    except (pa.ArrowInvalid, OSError):
        pass
    if rows and rows[0].number is not None:
        r = rows[0]
        return f"row {r.number}: expected {r.expected_columns} comma-separated fields, got {r.actual_columns}"
    return str(error).splitlines()[0]


def _ids(table: pa.Table, name: str, path: Path, csv: bool) -> list[str]:
    col = table.column(name)
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        try:
            col = pc.cast(col, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise SidrecError(f"{path}: column {name!r} has type {col.type}; expected ids (strings or integers)") from None
    values = col.to_pylist()
    for n, v in enumerate(values):
        if v is None or not v.strip():
            raise SidrecError(f"{_row(path, csv, n)}: empty {name!r}")
    return [v.strip() for v in values]


def _times(table: pa.Table, path: Path, csv: bool) -> np.ndarray:
    col = table.column("timestamp")
    if pa.types.is_date(col.type):
        col = pc.cast(col, pa.timestamp("s"))
    if pa.types.is_timestamp(col.type):
        # Mixed time zones are compared as instants: arrow stores timestamps in UTC.
        col = pc.cast(col, pa.int64())
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise SidrecError(
            f"{path}: column 'timestamp' has type {col.type}; expected numbers or ISO 8601 date-times"
        )
    null = col.is_null().to_numpy(zero_copy_only=False)
    times = col.to_numpy(zero_copy_only=False)
    if pa.types.is_floating(col.type):
        null |= np.isnan(times)
    if null.any():
        raise SidrecError(f"{_row(path, csv, int(np.argmax(null)))}: empty 'timestamp'")
    return times


def read_log(path: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Read an interaction log into chronological sequences and each user's first row.

    Raises:
        SidrecError: on a missing column or an empty user, item or timestamp.
    """
    table, csv = read_table(path, LOG_COLUMNS, ("user", "item"))
    users = _ids(table, "user", path, csv)
    items = _ids(table, "item", path, csv)
    times = _times(table, path, csv)
    sequences: dict[str, list[str]] = {}
    locations: dict[str, str] = {}
    for n, user in enumerate(users):  # users in order of first appearance
        if user not in sequences:
            sequences[user] = []
            locations[user] = _row(path, csv, n)
    # A stable global sort keeps the file order among equal times within every user.
    for n in np.argsort(times, kind="stable"):
        sequences[users[n]].append(items[n])
    return sequences, locations


def read_items_table(path: Path) -> dict[str, dict[str, Any]]:
    """Read an items table into item id -> text fields (absent fields are None).

    Raises:
        SidrecError: on a missing ``item`` column, an empty or a duplicate item id.
    """
    table, csv = read_table(path, ("item",), ("item", *TEXT_FIELDS))
    ids = _ids(table, "item", path, csv)
    # every column is a text field (the Amazon ones and the catalogue's own: genres, tags, ...)
    names = [*TEXT_FIELDS, *(c for c in table.column_names if c != "item" and c not in TEXT_FIELDS)]
    columns = {f: table.column(f).to_pylist() for f in names if f in table.column_names}
    items: dict[str, dict[str, Any]] = {}
    for n, item in enumerate(ids):
        if item in items:
            raise SidrecError(f"{_row(path, csv, n)}: duplicate item {item!r}")
        items[item] = {f: _field(columns[f][n]) if f in columns else None for f in names}
    return items


def _field(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return value or None
    text = str(value).strip()  # numbers (a Parquet price) become text, as in every other loader
    return text or None


@register_dataset("interactions")
def load_interactions(cfg: DataConfig) -> RawDataset:
    """Load ``data.path`` (the log) and ``data.items_path`` (the items table)."""
    if not cfg.path:
        raise SidrecError("dataset 'interactions' needs data.path: a CSV/Parquet log with columns user, item, timestamp")
    if not cfg.items_path:
        raise SidrecError("dataset 'interactions' needs data.items_path: a CSV/Parquet items table with an 'item' column")
    log_path = require_file(Path(cfg.path), "interactions file")
    items_path = require_file(Path(cfg.items_path), "items table")
    sequences, locations = read_log(log_path)
    return RawDataset(
        name=log_path.name.split(".")[0],
        items=read_items_table(items_path),
        sequences=sequences,
        sources=[log_path, items_path],
        locations=locations,
        items_source=str(items_path),
    )
