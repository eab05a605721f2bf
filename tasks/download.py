"""Download candidate URLs into the content-addressed store, validating each payload and recording provenance.

Each URL ends as exactly one ``images`` row: ``ok`` with the stored image's sha256, or ``rejected:<reason>``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from urllib.parse import unquote, urlsplit

from schemas.tables import Candidate, ImageRecord
from sufra.store import DataRoot, utcnow
from tasks.http import Fetcher, FetchError
from tasks.validate import Rejection, ValidationSettings, validate_image

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


def download_one(candidate: Candidate, root: DataRoot, fetcher: Fetcher, validation: ValidationSettings,
                 seen: SeenImages) -> ImageRecord:
    """Fetch, validate and store one candidate; every outcome is a row."""
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
    common = dict(width=checked.width, height=checked.height, format=checked.ext, n_bytes=len(checked.data),
                  fetched_at=utcnow(), **base)
    if not seen.claim(image_id):
        return ImageRecord(image_id=rejected_id, status="rejected:exact_duplicate", duplicate_of=image_id,
                           error_message="same bytes already stored", **common)
    return ImageRecord(image_id=image_id, status="ok", **common)


def download_many(candidates: list[Candidate], root: DataRoot, fetcher: Fetcher, validation: ValidationSettings,
                  seen: SeenImages, threads: int = 16,
                  on_done: Callable[[ImageRecord], None] | None = None) -> Iterator[ImageRecord]:
    """Download with a thread pool; yields rows as they complete (order not kept)."""
    if not candidates:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(candidates))), thread_name_prefix="sufra-dl") as pool:
        futures = [pool.submit(download_one, c, root, fetcher, validation, seen) for c in candidates]
        for future in as_completed(futures):
            row = future.result()
            if on_done:
                on_done(row)
            yield row
