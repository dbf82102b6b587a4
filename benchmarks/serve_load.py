"""Load test of `sidrec serve` on loopback: p50/p99 latency and users/s at concurrency 1, 8, 32 (beam 20).

Starts ``sidrec serve -w RUN eval.beam_size=20`` as a subprocess on 127.0.0.1, waits
for ``/health``, then, per concurrency level, sends single-history POST /recommend
requests (k=10; histories = the run's test histories, seeded order) from that many
concurrent clients until ``--requests`` answers or ``--seconds`` have passed. Latency
is per request (client side, loopback); users/s = answered histories / wall time of
the level. The server micro-batches (defaults: up to 32 histories or 5 ms).

    python benchmarks/serve_load.py -w /work/runs/coldstart/warm --requests 400 --seconds 60
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sidrec.bench.script import emit, require, run_dir, run_script, script_parser, synthetic_run
from sidrec.errors import SidrecError

LEVELS = (1, 8, 32)
BEAM = 20
K = 10


async def level(url: str, histories: list[list[str]], concurrency: int, max_requests: int, max_seconds: float) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    nxt = 0
    t_end = time.perf_counter() + max_seconds

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal nxt, errors
        while nxt < max_requests and time.perf_counter() < t_end:
            h = histories[nxt % len(histories)]
            nxt += 1
            t0 = time.perf_counter()
            r = await c.post(f"{url}/recommend", json={"history": h, "k": K})
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    if errors:
        raise SidrecError(f"{errors} of {len(latencies)} requests failed at concurrency {concurrency}")
    ms = np.array(latencies) * 1000
    return {f"p50_ms_c{concurrency}": round(float(np.percentile(ms, 50)), 1),
            f"p99_ms_c{concurrency}": round(float(np.percentile(ms, 99)), 1),
            f"users_per_s_c{concurrency}": round(len(ms) / wall, 1),
            f"requests_c{concurrency}": len(ms)}  # fmt: skip


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300) -> dict:
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SidrecError(f"the server exited with status {proc.returncode} before answering /health")
        try:
            return httpx.get(f"{url}/health", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SidrecError(f"the server did not answer /health within {timeout:.0f} s")


def main() -> None:
    p = script_parser(__doc__)
    p.add_argument("--requests", type=int, default=400, help="requests per concurrency level at most")
    p.add_argument("--seconds", type=float, default=60, help="seconds per concurrency level at most")
    p.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    args = p.parse_args()
    if args.quick:
        import tempfile

        cfg = synthetic_run(Path(tempfile.mkdtemp(prefix="sidrec-serve-load-")), args.seed, ("prepare", "embed", "tokenize", "train"))
        root = cfg.paths.root
        args.requests, args.seconds = min(args.requests, 16), min(args.seconds, 5)
    else:
        root = run_dir(args)
        require(root / "model" / "best.safetensors", what="a trained SID model")
    from sidrec.data.prepared import PreparedData

    data = PreparedData(root / "data")
    ex = data.eval_examples("test")
    order = np.random.default_rng(args.seed).permutation(data.n_users)
    histories = [[data.item_ids[i] for i in ex.histories[u]] for u in order[:2000]]
    port = args.port or _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-c", "import sys; from sidrec.cli import main; sys.exit(main())", "serve", "-w", str(root),
           "--port", str(port), f"eval.beam_size={BEAM}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        health = wait_healthy(url, proc)
        rss = _rss_mb(proc.pid)
        out: dict[str, float] = {"items": health["items"], "beam": BEAM, "k": K, "server_rss_mb": rss}
        for c in LEVELS:
            res = asyncio.run(level(url, histories, c, args.requests, args.seconds))
            out.update(res)
            print(f"concurrency {c:>2}: p50 {res[f'p50_ms_c{c}']} ms, p99 {res[f'p99_ms_c{c}']} ms, "
                  f"{res[f'users_per_s_c{c}']} users/s ({res[f'requests_c{c}']} requests)", file=sys.stderr)  # fmt: skip
        out["server_rss_mb_after"] = _rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    emit(out)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


if __name__ == "__main__":
    run_script(main)
