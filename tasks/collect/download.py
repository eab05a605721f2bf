"""Download candidate URLs into the content-addressed store, validating each payload and recording provenance.

Each URL ends as exactly one ``images`` row: ``ok`` with the stored image's sha256, or ``rejected:<reason>``; every
row keeps the candidate's provenance (page URL, licence id and URL, creator, attribution).
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


LOCAL_ENGINE = "folder"
"""The only source whose candidates may be read from local disk (``file://`` URLs below its folder)."""
_READ_CHUNK_BYTES = 1024 * 1024


def read_local(url: str, folder: str | Path, max_bytes: int) -> bytes:
    """The bytes of a ``file://`` URL of the local-folder source: a regular file below ``folder`` (after following
    symlinks), at most ``max_bytes``, read in chunks so the cap holds even if the file grows.

    Raises :class:`FetchError`: ``bad_url`` (not a local file URL, or outside the folder), ``not_a_file`` (a FIFO,
    device, socket or directory), ``too_large``, ``unreadable_file``.
    """
    import os
    import stat

    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise FetchError("bad_url", "not a local file URL")
    try:
        base = Path(folder).resolve(strict=True)
        path = Path(unquote(parts.path)).resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # missing, or a symlink loop
        raise FetchError("unreadable_file", getattr(exc, "strerror", None) or str(exc)) from None
    if not path.is_relative_to(base):
        raise FetchError("bad_url", f"{path} is outside the image folder {base}")
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: no symlink swapped in since resolve
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FetchError("unreadable_file", exc.strerror or str(exc)) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FetchError("not_a_file", f"{path} is not a regular file")
        raise FetchError("too_large", f"{info.st_size} bytes > {max_bytes}")
    with os.fdopen(fd, "rb", buffering=0) as handle:
        chunks, size = [], 0
        try:
            while chunk := handle.read(min(_READ_CHUNK_BYTES, max_bytes + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError("too_large", f"over {max_bytes} bytes")
        except OSError as exc:
            raise FetchError("unreadable_file", exc.strerror or str(exc)) from None
    return b"".join(chunks)


def download_one(candidate: Candidate, root: DataRoot, fetcher: Fetcher, validation: ValidationSettings) -> ImageRecord:
    """Fetch, validate and store one candidate; every outcome is a row (see :func:`mark_exact_duplicate`)."""
    base = dict(
        url_hash=candidate.url_hash, country=candidate.country, dish=candidate.dish, query=candidate.query,
        engine=candidate.engine, source_url=candidate.url, page_url=candidate.page_url, license=candidate.license,
        license_url=candidate.license_url, creator=candidate.creator, attribution=candidate.attribution,
    )
    rejected_id = f"url:{candidate.url_hash}"
    try:
        if candidate.engine == LOCAL_ENGINE:  # its query is the folder; every other source goes through the guard
            data = read_local(candidate.url, candidate.query, fetcher.settings.max_bytes)
        else:  # a file:, ftp:, gopher: ... URL from a page or a URL list is a bad_url row

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


DOWNLOAD_PRELOAD = ("sufra.tasks.collect.download", "sufra.utils.jpeg", "sufra.schemas.tables", "sufra.core.store", "PIL.Image", "simplejpeg", "urllib3", "idna")


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
