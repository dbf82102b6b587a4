"""Micro-batching: requests that arrive together are decoded together.

Beam search costs far less per user in a batch (one forward pass per SID position
for all of them), so a worker thread takes the first waiting request, keeps
collecting for up to ``max_wait_ms`` or until ``max_batch`` histories are waiting,
then decodes each group of requests with the same ``(k, exclude_seen)`` in one
:meth:`Recommender.rank_indices` call. Histories are validated (and turned into
item indices) by the caller before they are queued, so one bad request never
fails the others of its batch.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from sidrec.api import Recommender


@dataclass
class _Job:
    histories: list[np.ndarray]
    k: int
    exclude_seen: bool
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """One worker thread that decodes queued requests in batches.

    Args:
        recommender: the loaded run.
        max_batch: decode at most this many histories at once (a larger request is decoded alone).
        max_wait_ms: how long the first request of a batch waits for company.
    """

    def __init__(self, recommender: Recommender, max_batch: int = 32, max_wait_ms: float = 5.0):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch}, {max_wait_ms}")
        self.rec = recommender
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="sidrec-batcher", daemon=True)
        self.batches = 0  # decoded rank_indices calls (for /health and the tests)
        self._thread.start()

    def submit(self, histories: list[np.ndarray], k: int, exclude_seen: bool) -> Future:
        """Queue validated item_idx histories; the future resolves to one list of
        :class:`Recommendation` per history."""
        job = _Job(histories, k, exclude_seen)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Stop the worker after the queued jobs."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, n = [first], len(first.histories)
            deadline = time.monotonic() + self.max_wait
            stop = False
            while n < self.max_batch:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
                n += len(job.histories)
            groups: dict[tuple[int, bool], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.k, job.exclude_seen), []).append(job)
            for (k, exclude_seen), group in groups.items():
                self._decode(group, k, exclude_seen)
            if stop:
                return

    def _decode(self, group: list[_Job], k: int, exclude_seen: bool) -> None:
        hists = [h for job in group for h in job.histories]
        try:
            items, scores = self.rec.rank_indices(hists, k, exclude_seen)
            self.batches += 1
        except Exception as e:  # noqa: BLE001 (delivered to every waiting request, never kills the worker)
            for job in group:
                job.future.set_exception(e)
            return
        rows = self.rec.as_lists(items, scores, k)
        lo = 0
        for job in group:
            job.future.set_result(rows[lo : lo + len(job.histories)])
            lo += len(job.histories)
