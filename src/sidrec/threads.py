"""CPU threads for the compute stages (tokenize, train, evaluate).

One policy for every stage: OpenMP workers that get descheduled stall every
parallel op, so a stage that asks for more threads than the cores other work
leaves free runs many times slower (2 threads on 2 busy cores trained 11x slower
than 1 here, and an RQ-VAE fit took 965 s instead of 69 s; BENCHMARKS.md).
"""

from __future__ import annotations

import os
import statistics
import time

import torch


def other_runnable_tasks(samples: int = 5) -> float:
    """Median number of runnable tasks besides this one (0 where /proc/loadavg is absent)."""
    counts = []
    for _ in range(samples):
        try:
            with open("/proc/loadavg", encoding="ascii") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        counts.append(running - 1)  # the reading thread itself is runnable
        time.sleep(0.02)
    return float(statistics.median(counts))


def set_threads(num_threads: int) -> int:
    """Set torch's (and faiss') intra-op threads; return how many.

    ``num_threads > 0`` is used as given. ``0`` (auto) gives each local rank its share of
    the cores that other work leaves free (at least 1). Busy is judged by the runnable
    tasks other than this one (``/proc/loadavg``), not by the load average, which still
    counts this process's own earlier stages for a minute.
    Also flushes denormal floats to zero (Adam's tiny second moments crawl on x86).
    """
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    cores = os.cpu_count() or 1
    n = num_threads
    if n <= 0:  # the cores other work leaves free, shared by this machine's ranks
        free = cores - int(round(other_runnable_tasks()))
        n = max(1, min(cores, free) // local_world)
    torch.set_num_threads(n)
    torch.set_flush_denormal(True)
    try:  # faiss (k-means, OPQ) runs its own OpenMP pool
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n
