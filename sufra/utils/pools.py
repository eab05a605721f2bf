"""Warm worker-process pools, one per (worker count, preload) and process, reused by every shard of a run."""

from __future__ import annotations

import atexit
import importlib
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

_pools: dict[tuple[int, tuple[str, ...]], ProcessPoolExecutor] = {}
_lock = threading.Lock()


def process_pool(workers: int, preload: tuple[str, ...]) -> ProcessPoolExecutor:
    """Forked when this process runs a single thread, after importing ``preload`` here (workers start in
    milliseconds with every module they need already loaded, instead of each importing them); otherwise (Prefect,
    Dask) through a forkserver with ``preload`` imported once, since forking a process that runs threads can
    deadlock the child. Python 3.11+ launches all workers of a fork pool at once, before its own
    manager thread exists."""
    key = (workers, preload)
    with _lock:
        if key not in _pools:
            if threading.active_count() == 1:
                for module in preload:
                    importlib.import_module(module)
                context = multiprocessing.get_context("fork")
            else:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(list(preload))
            _pools[key] = ProcessPoolExecutor(max_workers=workers, mp_context=context)
            atexit.register(_pools[key].shutdown, wait=False, cancel_futures=True)
        return _pools[key]


def discard_pool(workers: int, preload: tuple[str, ...], wait: bool = False) -> None:
    """Forget a pool (a broken one) so the next call starts a new one. ``wait``: until its workers and its manager
    thread have ended, so that the next pool is forked again (a live thread here means a forkserver pool)."""
    with _lock:
        pool = _pools.pop((workers, preload), None)
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=True)
