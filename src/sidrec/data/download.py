"""On-demand, resumable, checksummed downloads into the sidrec cache.

Files land in ``sidrec_home()/downloads/<dataset>/`` (``$SIDREC_HOME`` moves the
whole cache). A download streams into ``<file>.part`` and is renamed onto
``<file>`` only once complete and verified, so the final name never holds a
truncated file. An interrupted download resumes from the ``.part`` file with an
HTTP ``Range`` request; a server that ignores ``Range`` (answers 200 instead of
206) gets the file rewritten from the start.

The sha256 of every downloaded file is recorded in a ``<file>.sha256`` sidecar
and re-checked whenever the cached file is reused, so silent corruption of the
cache is reported instead of trained on.

Only ``urllib`` is used: no extra dependency for a few large GETs.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from sidrec import __version__
from sidrec.errors import SidrecError
from sidrec.io import atomic_open, sha256_file, sidrec_home

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

_CHUNK = 1 << 16
_TIMEOUT = 60.0  # seconds without progress before a socket read gives up
_LOCAL_HINT = "if the files are already on disk, set data.path=DIR (or `sidrec prepare --data-dir DIR`)"


def cache_dir(dataset: str) -> Path:
    """Where downloads of ``dataset`` are cached: ``sidrec_home()/downloads/<dataset>``."""
    return sidrec_home() / "downloads" / dataset


def fetch(url: str, dest: str | os.PathLike, sha256: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there.

    Args:
        url: http(s) URL of the file.
        dest: final path of the file (its directory is created).
        sha256: expected hex digest, when known; checked before the file is kept.
        progress: show a tqdm progress bar on stderr.

    Returns:
        ``dest`` as a :class:`Path`.

    Raises:
        SidrecError: on a network error, an HTTP error status, or a checksum
            mismatch (of the download or of a cached copy).
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file():
        _verify_cached(dest, expected)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        if dest.is_file():  # another process finished it while we waited for the lock
            _verify_cached(dest, expected)
            return dest
        _fetch_new(url, dest, expected, progress)
    return dest


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<dest>.lock`` so two processes never append to one ``.part``."""
    if fcntl is None:  # no advisory locks on this platform; concurrent downloads are then the user's problem
        yield
        return
    with open(dest.with_name(dest.name + ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _fetch_new(url: str, dest: Path, expected: str | None, progress: bool) -> None:
    part = dest.with_name(dest.name + ".part")
    _download(url, part, progress)
    actual = sha256_file(part)
    if expected is not None and actual != expected:
        part.unlink()  # bad bytes are worth nothing to a later resume
        raise SidrecError(
            f"{url}: sha256 mismatch (expected {expected}, got {actual}); the download was discarded "
            "(the upstream file may have changed)"
        )
    # Sidecar first: a crash before the rename leaves no final file, so nothing unverified is trusted.
    _write_sidecar(dest, actual)
    os.replace(part, dest)


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _write_sidecar(dest: Path, digest: str) -> None:
    with atomic_open(_sidecar(dest), "w", encoding="utf-8") as f:
        f.write(f"{digest}  {dest.name}\n")


def _verify_cached(dest: Path, expected: str | None) -> None:
    """Re-hash a cached file against its sidecar (and ``expected``); record a sidecar if it has none."""
    actual = sha256_file(dest)
    side = _sidecar(dest)
    recorded = side.read_text(encoding="utf-8").split()[:1] if side.is_file() else []
    if recorded and recorded[0].lower() != actual:
        raise SidrecError(
            f"{dest}: cached file is corrupt (sha256 {actual}, recorded {recorded[0]} in {side.name}); "
            "delete it to download again"
        )
    if expected is not None and actual != expected:
        raise SidrecError(f"{dest}: sha256 mismatch (expected {expected}, got {actual}); delete it to download again")
    if not recorded:
        # Placed by hand (e.g. copied from another machine): from now on, changes to it are detected.
        _write_sidecar(dest, actual)


def _download(url: str, part: Path, progress: bool) -> None:
    """Stream ``url`` into ``part``, continuing from its current size when the server allows."""
    offset = part.stat().st_size if part.is_file() else 0
    try:
        resp = _open(url, offset)
        if offset and resp.status == 416:
            # Nothing left past our offset: the .part is stale (e.g. the file changed upstream). Start over.
            resp.close()
            offset = 0
            resp = _open(url, 0)
        if resp.status not in (200, 206):
            raise SidrecError(f"could not download {url}: HTTP {resp.status} {resp.reason}; {_LOCAL_HINT}")
        if resp.status == 206 and not _range_starts_at(resp.headers.get("Content-Range", ""), offset):
            raise SidrecError(f"could not download {url}: server resumed at the wrong offset; delete {part} and retry")
        if resp.status == 200:
            offset = 0  # the server ignored Range: rewrite the file from its first byte
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        with (
            resp,
            open(part, "ab" if offset else "wb") as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            while block := resp.read(_CHUNK):
                out.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size != total:
            raise SidrecError(
                f"could not download {url}: connection closed after {part.stat().st_size} of {total} bytes "
                f"(run again to resume); {_LOCAL_HINT}"
            )
    except urllib.error.HTTPError as e:
        raise SidrecError(f"could not download {url}: HTTP {e.code} {e.reason}; {_LOCAL_HINT}") from None
    except urllib.error.URLError as e:
        raise SidrecError(f"could not download {url}: {e.reason}; {_LOCAL_HINT}") from None
    except (http.client.HTTPException, OSError) as e:  # resets, timeouts, truncated bodies, TLS errors
        reason = str(e) or type(e).__name__
        raise SidrecError(f"could not download {url}: {reason} (run again to resume); {_LOCAL_HINT}") from None


class _KeepStatus(urllib.request.HTTPErrorProcessor):
    """Hand 416 back as a response, so a stale ``.part`` can be restarted instead of failing."""

    def http_response(
        self, request: urllib.request.Request, response: http.client.HTTPResponse
    ) -> http.client.HTTPResponse:
        if response.status == 416:
            return response
        return super().http_response(request, response)

    https_response = http_response


_OPENER = urllib.request.build_opener(_KeepStatus)


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"sidrec/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return _OPENER.open(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT)


def _range_starts_at(content_range: str, offset: int) -> bool:
    # "bytes 100-999/1000"
    unit, _, spec = content_range.strip().partition(" ")
    start = spec.partition("-")[0]
    return unit == "bytes" and start.isdigit() and int(start) == offset


def extract_zip(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into the directory ``dest`` atomically; reuse ``dest`` if present.

    The archive is unpacked into a temporary sibling directory that is renamed
    onto ``dest`` only once every member is written, so ``dest`` existing means
    the extraction finished.

    Raises:
        SidrecError: if the archive is not a valid zip file.
    """
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)  # zipfile drops absolute paths and '..' from member names
        except (zipfile.BadZipFile, EOFError) as e:
            raise SidrecError(f"{archive}: not a valid zip archive ({e}); delete it to download again") from None
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():  # another process finishing first is fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def zip_dataset_dir(path: str, dataset: str, url: str, archive: str, marker: str, subdir: str) -> Path:
    """The directory holding ``marker`` for a dataset shipped as a zip archive.

    Args:
        path: ``data.path``; if set, files already on disk (no download).
        dataset: cache sub-directory name.
        url: official archive location, fetched (resumable, checksummed) when ``path`` is empty.
        archive: file name of the cached archive.
        marker: a file that must be in the returned directory.
        subdir: the archive's top folder, also searched under ``path``.

    Raises:
        SidrecError: if the directory or ``marker`` is missing.
    """
    if path:
        root = Path(path)
    else:
        cache = cache_dir(dataset)
        root = extract_zip(fetch(url, cache / archive), cache / "extracted")
    if not root.is_dir():
        raise SidrecError(f"data directory not found: {root}")
    for candidate in (root, root / subdir):
        if (candidate / marker).is_file():
            return candidate
    raise SidrecError(f"{marker} not found in {root} or {root / subdir}")
