"""Download candidate URLs into the content-addressed store, validating each payload and recording provenance.

Each URL ends as exactly one ``images`` row: ``ok`` with the stored image's sha256, or ``rejected:<reason>``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sufra.schemas.tables import Candidate, ImageRecord
from sufra.tasks.collect.validate import Rejection, ValidationSettings, validate_image

from sufra.core.store import DataRoot, utcnow
from sufra.utils.http import Fetcher, FetchError, FetchSettings
from sufra.utils.pools import discard_pool, process_pool

IMAGE_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


class SeenImages:
    """Thread-safe set of stored image ids, so a second copy of the same bytes is recorded as a duplicate."""

    def __init__(self, image_ids: Iterable[str] = ()):
        self._ids = set(image_ids)
        self._lock = threading.Lock()

    def claim(self, image_id: str) -> bool:
        """True the first time an id is claimed."""
        with self._lock:
            if image_id in self._ids:
                return False
            self._ids.add(image_id)
            return True


def _read_local(url: str, max_bytes: int) -> bytes:
    path = Path(unquote(urlsplit(url).path))
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise FetchError("too_large", f"{size} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise FetchError("unreadable_file", exc.strerror or str(exc)) from None


def download_one(candidate: Candidate, root: DataRoot, fetcher: Fetcher, validation: ValidationSettings) -> ImageRecord:
    """Fetch, validate and store one candidate; every outcome is a row (see :func:`mark_exact_duplicate`)."""
    base = dict(
        url_hash=candidate.url_hash, country=candidate.country, dish=candidate.dish, query=candidate.query,
        engine=candidate.engine, source_url=candidate.url, page_url=candidate.page_url, license=candidate.license,
    )
    rejected_id = f"url:{candidate.url_hash}"
    try:
        if candidate.url.startswith("file://"):
            data = _read_local(candidate.url, fetcher.settings.max_bytes)
        else:
            data = fetcher.fetch(candidate.url, accept=IMAGE_TYPES).content
    except FetchError as exc:
        return ImageRecord(image_id=rejected_id, fetched_at=utcnow(), status=f"rejected:{exc.reason}",
                           error_message=exc.detail or None, **base)
    checked = validate_image(data, validation)
    if isinstance(checked, Rejection):
        return ImageRecord(image_id=rejected_id, fetched_at=utcnow(), status=checked.status,
                           error_message=checked.detail or None, n_bytes=len(data), **base)
    image_id = root.put_image(checked.data, checked.ext)
    return ImageRecord(image_id=image_id, status="ok", width=checked.width, height=checked.height, format=checked.ext,
                       n_bytes=len(checked.data), fetched_at=utcnow(), **base)


def mark_exact_duplicate(row: ImageRecord, seen: SeenImages) -> ImageRecord:
    """A stored image whose bytes were already stored (another URL, dish or run) becomes a duplicate row."""
    if row.status != "ok" or seen.claim(row.image_id):
        return row
    return row.model_copy(update=dict(image_id=f"url:{row.url_hash}", status="rejected:exact_duplicate",
                                      duplicate_of=row.image_id, error_message="same bytes already stored"))


def download_threads(candidates: list[Candidate], root: DataRoot, fetcher: Fetcher, validation: ValidationSettings,
                     threads: int = 16) -> Iterator[ImageRecord]:
    """Download with a thread pool in this process; yields rows as they complete (order not kept)."""
    if not candidates:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(candidates))), thread_name_prefix="sufra-dl") as pool:
        futures = [pool.submit(download_one, c, root, fetcher, validation) for c in candidates]
        for future in as_completed(futures):
            yield future.result()


def _download_chunk(candidates: list[Candidate], data_root: str, fetch: FetchSettings, validation: ValidationSettings,
                    threads: int) -> list[ImageRecord]:
    """Worker-process body: one chunk with its own thread pool and per-process host limiter."""
    return list(download_threads(candidates, DataRoot(data_root), Fetcher(fetch), validation, threads))


def download_processes(candidates: list[Candidate], root: DataRoot, fetch: FetchSettings,
                       validation: ValidationSettings, threads: int, processes: int,
                       chunk_size: int = 250) -> Iterator[ImageRecord]:
    """Shard candidates over worker processes (threads in each), as img2dataset does, to use every core.

    Per-host limits are divided between the processes so the politeness budget stays the same.
    """
    if not candidates:
        return
    worker_fetch = fetch.model_copy(update=dict(
        per_host_concurrency=max(1, fetch.per_host_concurrency // processes),
        per_host_requests_per_s=fetch.per_host_requests_per_s / processes,
    ))
    chunks = [candidates[i : i + chunk_size] for i in range(0, len(candidates), chunk_size)]
    done: set[int] = set()
    futures = {}
    try:
        pool = process_pool(processes, DOWNLOAD_PRELOAD)
        futures = {pool.submit(_download_chunk, chunk, root.url, worker_fetch, validation, threads): i
                   for i, chunk in enumerate(chunks)}
        for future in as_completed(futures):
            rows = future.result()
            done.add(futures[future])
            yield from rows
    except BrokenProcessPool as exc:  # e.g. a worker killed, or workers that cannot start (REPL, stdin)
        discard_pool(processes, DOWNLOAD_PRELOAD)
        logging.getLogger(__name__).warning("worker processes unavailable (%s); continuing with threads", exc)
        rest = [c for i, chunk in enumerate(chunks) if i not in done for c in chunk]
        yield from download_threads(rest, root, Fetcher(fetch), validation, threads)
    finally:  # the pool outlives this call: chunks not started yet are dropped when the caller stops early
        for future in futures:
            future.cancel()


DOWNLOAD_PRELOAD = ("sufra.tasks.collect.download", "sufra.utils.jpeg", "sufra.schemas.tables", "sufra.core.store", "PIL.Image", "simplejpeg", "urllib3")


def download_many(candidates: list[Candidate], root: DataRoot, fetch: FetchSettings, validation: ValidationSettings,
                  seen: SeenImages, threads: int = 16, processes: int = 1,
                  on_done: Callable[[ImageRecord], None] | None = None) -> Iterator[ImageRecord]:
    """Download every candidate; yields one row per candidate, exact duplicates marked against ``seen``."""
    if processes > 1 and len(candidates) >= 4 * 250:
        rows = download_processes(candidates, root, fetch, validation, threads, processes)
    else:
        rows = download_threads(candidates, root, Fetcher(fetch), validation, threads)
    for row in rows:
        row = mark_exact_duplicate(row, seen)
        if on_done:
            on_done(row)
        yield row
