"""fetch() against a local http.server on 127.0.0.1: fresh, checksummed, resumed, cached, failing."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sidrec.data.download import extract_zip, fetch
from sidrec.errors import SidrecError

PAYLOAD = bytes(range(256)) * 40  # 10 KiB, every byte value
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server(ThreadingHTTPServer):
    """Serves ``files`` (URL path -> bytes); records every request's Range header."""

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = files
        self.honour_range = True
        self.truncate_at: int | None = None  # send only this many body bytes, then hang up
        self.ranges: list[str | None] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        rng = self.headers.get("Range")
        self.server.ranges.append(rng)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng and self.server.honour_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = self.server.truncate_at
        self.wfile.write(body[start:] if cut is None else body[start:cut])
        if cut is not None:
            self.close_connection = True

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@contextlib.contextmanager
def serving(files: dict[str, bytes]) -> Iterator[Server]:
    """Run a :class:`Server` in a background thread for the duration of the block."""
    server = Server(files)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)  # fast shutdown
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    with serving({"/data.bin": PAYLOAD}) as s:
        yield s


def test_fresh_download_writes_file_and_sidecar(server: Server, tmp_path: Path):
    dest = tmp_path / "dl" / "data.bin"
    assert fetch(server.url("/data.bin"), dest, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert (tmp_path / "dl" / "data.bin.sha256").read_text().split()[0] == SHA
    assert not (tmp_path / "dl" / "data.bin.part").exists()
    assert server.ranges == [None]


def test_known_checksum_is_accepted(server: Server, tmp_path: Path):
    dest = fetch(server.url("/data.bin"), tmp_path / "data.bin", sha256=SHA.upper(), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_is_an_error_and_keeps_nothing(server: Server, tmp_path: Path):
    dest = tmp_path / "data.bin"
    with pytest.raises(SidrecError, match=r"data.bin: sha256 mismatch \(expected 0{64}, got " + SHA):
        fetch(server.url("/data.bin"), dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not (tmp_path / "data.bin.part").exists()


def test_resume_from_part_file_with_range(server: Server, tmp_path: Path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1000])
    fetch(server.url("/data.bin"), dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=1000-"]


def test_server_ignoring_range_restarts_from_scratch(server: Server, tmp_path: Path):
    server.honour_range = False
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(b"stale bytes that must not survive")
    fetch(server.url("/data.bin"), dest, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=33-"]


def test_stale_complete_part_file_restarts_on_416(server: Server, tmp_path: Path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD + b"extra")
    fetch(server.url("/data.bin"), dest, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD) + 5}-", None]


def test_interrupted_download_fails_then_resumes(server: Server, tmp_path: Path):
    dest = tmp_path / "data.bin"
    server.truncate_at = 4000
    with pytest.raises(SidrecError, match=r"could not download http://127\.0\.0\.1:\d+/data\.bin: .*run again to resume"):
        fetch(server.url("/data.bin"), dest, progress=False)
    assert not dest.exists()
    assert (tmp_path / "data.bin.part").read_bytes() == PAYLOAD[:4000]
    server.truncate_at = None
    fetch(server.url("/data.bin"), dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=4000-"]


def test_cached_file_is_reused_without_a_request(server: Server, tmp_path: Path):
    dest = tmp_path / "data.bin"
    fetch(server.url("/data.bin"), dest, progress=False)
    fetch(server.url("/data.bin"), dest, sha256=SHA, progress=False)
    fetch("http://127.0.0.1:9/never-contacted", dest, progress=False)
    assert server.ranges == [None]


def test_corrupted_cache_is_reported(server: Server, tmp_path: Path):
    dest = tmp_path / "data.bin"
    fetch(server.url("/data.bin"), dest, progress=False)
    dest.write_bytes(PAYLOAD[:-1] + b"!")
    with pytest.raises(SidrecError, match=r"data.bin: cached file is corrupt .*delete it to download again"):
        fetch(server.url("/data.bin"), dest, progress=False)
    assert server.ranges == [None]


def test_file_placed_by_hand_gets_a_sidecar(tmp_path: Path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)
    fetch("http://127.0.0.1:9/never-contacted", dest, progress=False)
    assert (tmp_path / "data.bin.sha256").read_text().split()[0] == SHA
    with pytest.raises(SidrecError, match="sha256 mismatch"):
        fetch("http://127.0.0.1:9/never-contacted", dest, sha256="1" * 64, progress=False)


def test_http_error_status(server: Server, tmp_path: Path):
    with pytest.raises(SidrecError, match=r"could not download .*/missing\.bin: HTTP 404 .*data\.path="):
        fetch(server.url("/missing.bin"), tmp_path / "missing.bin", progress=False)


def test_unreachable_host_is_one_line_error_naming_url_and_local_option(tmp_path: Path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.zip"
    with pytest.raises(SidrecError) as info:
        fetch(url, tmp_path / "x.zip", progress=False)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1
    assert msg.startswith(f"could not download {url}: ") and "data.path=" in msg


def test_extract_zip_is_atomic_and_reused(tmp_path: Path):
    import zipfile

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/file.txt", "hello")
    out = extract_zip(archive, tmp_path / "out")
    assert (out / "top" / "file.txt").read_text() == "hello"
    archive.write_bytes(b"not a zip any more")  # the extracted directory is trusted from now on
    assert extract_zip(archive, tmp_path / "out") == out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(SidrecError, match=r"a.zip: not a valid zip archive"):
        extract_zip(archive, tmp_path / "other")
    assert not (tmp_path / "other").exists()
