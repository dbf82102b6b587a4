"""``sidrec serve -w RUN``: load the run once, serve it with uvicorn (loopback by default)."""

from __future__ import annotations

from collections.abc import Sequence

from sidrec.errors import SidrecError
from sidrec.serve.app import ServeSettings


def serve(workdir: str, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings = ServeSettings(),
          overrides: Sequence[str] = (), log_level: str = "info") -> None:  # fmt: skip
    """Block serving ``workdir`` until interrupted.

    Raises:
        SidrecError: for a missing/untrained run or bad limits (before anything listens).
    """
    import uvicorn

    from sidrec.api import Recommender
    from sidrec.serve.app import create_app

    if not 0 < port < 65536:
        raise SidrecError(f"--port must be in 1..65535, got {port}")
    for name, v in (("--max-batch", settings.max_batch), ("--max-k", settings.max_k)):
        if v < 1:
            raise SidrecError(f"{name} must be >= 1, got {v}")
    if settings.max_wait_ms < 0:
        raise SidrecError(f"--max-wait-ms must be >= 0, got {settings.max_wait_ms}")
    rec = Recommender.load(workdir, overrides=overrides)
    print(f"serving {workdir} ({rec.method}, {rec.n_items:,} items, beam {rec.cfg.eval.beam_size}) on http://{host}:{port} "
          f"(API docs at /docs)", flush=True)  # fmt: skip
    uvicorn.run(create_app(rec, settings), host=host, port=port, log_level=log_level)
