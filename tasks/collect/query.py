"""The collect stage's unit of work: one (country, dish, query, engine) -> ``candidates`` and ``images`` rows.

Plain functions; ``sufra.flows.collect`` wraps :func:`collect_query` as a task (retries, tags, fan-out).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow.compute as pc
from pydantic import BaseModel, Field
from sufra.schemas.tables import CANDIDATES, IMAGES, Candidate, ImageRecord
from sufra.tasks.collect.download import SeenImages, download_many
from sufra.tasks.collect.engines import Discovered, EngineError, list_folder, make_engine, read_url_list
from sufra.tasks.collect.validate import ValidationSettings

from sufra.core.catalog import Country
from sufra.core.errors import SufraError
from sufra.core.store import DataRoot, sha256_hex, utcnow
from sufra.utils.http import Fetcher, FetchSettings

WEB_ENGINES = ("bing", "baidu", "google", "flickr")
LOCAL_ENGINES = ("urllist", "folder")


class CollectSettings(BaseModel):
    """Settings of the collect flow (saved in the run manifest)."""

    engines: list[str] = Field(default_factory=lambda: ["bing"])
    max_per_query: int = 100
    threads: int = 16
    processes: int = Field(default_factory=lambda: min((os.cpu_count() or 1) + 1, 8))
    """Worker processes for large batches (>= 1,000 URLs); each runs ``threads`` threads."""
    flush_every: int = 256  # images rows per Parquet part (a kill loses at most this many rows, never images)
    base_urls: dict[str, str] = Field(default_factory=dict)  # engine -> base URL (tests: a local server)
    url_lists: dict[str, str] = Field(default_factory=dict)  # dish -> file of URLs (engine "urllist")
    folders: dict[str, str] = Field(default_factory=dict)  # dish -> local folder (engine "folder")
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    stale_temp_age_s: float = 3600.0  # temp files older than this are leftovers of killed writers


class QuerySpec(BaseModel):
    """One unit of collect work."""

    country: str
    dish: str
    query: str  # the search text; for urllist/folder the file or folder path
    engine: str


def url_hash(url: str) -> str:
    return sha256_hex(url.encode("utf-8"))


def plan_queries(catalog: Country, dishes: list[str] | None, settings: CollectSettings) -> list[QuerySpec]:
    """Every (dish, query, engine) to run, in catalog order."""
    specs = []
    for dish in catalog.select(dishes):
        for engine in settings.engines:
            if engine in WEB_ENGINES:
                for _lang, query in dish.all_queries:
                    specs.append(QuerySpec(country=catalog.country, dish=dish.id, query=query, engine=engine))
            elif engine == "urllist" and dish.id in settings.url_lists:
                specs.append(QuerySpec(country=catalog.country, dish=dish.id, query=settings.url_lists[dish.id], engine=engine))
            elif engine == "folder" and dish.id in settings.folders:
                specs.append(QuerySpec(country=catalog.country, dish=dish.id, query=settings.folders[dish.id], engine=engine))
            elif engine not in WEB_ENGINES + LOCAL_ENGINES:
                raise SufraError(f"unknown engine '{engine}'; use one of {', '.join(WEB_ENGINES + LOCAL_ENGINES)}")
    return specs


def discover(spec: QuerySpec, settings: CollectSettings, fetcher: Fetcher) -> list[Discovered]:
    if spec.engine == "urllist":
        if not Path(spec.query).is_file():
            raise SufraError(f"URL list for dish '{spec.dish}' not found: {spec.query}")
        return read_url_list(spec.query)[: settings.max_per_query]
    if spec.engine == "folder":
        if not Path(spec.query).is_dir():
            raise SufraError(f"image folder for dish '{spec.dish}' not found: {spec.query}")
        return list_folder(spec.query)[: settings.max_per_query]
    engine = make_engine(spec.engine, fetcher, settings.base_urls)
    return engine.discover(spec.query, settings.max_per_query)


def existing_url_hashes(root: DataRoot, country: str) -> tuple[set[str], set[str], set[str]]:
    """(candidate url hashes, url hashes with an images row, stored ok image ids) for a country."""
    candidates = root.read_table(CANDIDATES, country, columns=["url_hash"])
    images = root.read_table(IMAGES, country, columns=["image_id", "url_hash", "status"])
    ok = images.filter(pc.equal(images["status"], "ok"))
    return (
        set(candidates["url_hash"].to_pylist()),
        {h for h in images["url_hash"].to_pylist() if h},
        set(ok["image_id"].to_pylist()),
    )


def sweep_temp_files(root: DataRoot, older_than_s: float) -> int:
    """Remove temp files that killed writers left (never read; just clutter). Returns how many."""
    removed = 0
    now = time.time()
    for path in root.temp_files():
        try:
            info = root.fs.info(path)
            mtime = info.get("mtime") or info.get("created") or 0
            mtime = mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime)
        except (FileNotFoundError, OSError):
            continue
        if now - mtime >= older_than_s:
            root.fs.rm(path, recursive=True)
            removed += 1
    return removed


def collect_query(spec: QuerySpec, root: DataRoot, settings: CollectSettings, run_id: str,
                  seen: SeenImages | None = None,
                  on_image: Callable[[ImageRecord], None] | None = None) -> dict[str, int]:
    """Discover, record new candidates, download those without an images row. Returns counts per status.

    Raises :class:`EngineError` when the engine itself fails (Prefect retries the query); per-URL failures are
    rows.
    """
    fetcher = Fetcher(settings.fetch)
    found = discover(spec, settings, fetcher)
    known_candidates, fetched, stored = existing_url_hashes(root, spec.country)
    seen = seen or SeenImages(stored)
    now = utcnow()
    candidates = [
        Candidate(url_hash=url_hash(d.url), country=spec.country, dish=spec.dish, query=spec.query, engine=spec.engine,
                  url=d.url, page_url=d.page_url, license=d.license, discovered_at=now)
        for d in found
    ]
    unique = {c.url_hash: c for c in candidates}
    new = [c for h, c in unique.items() if h not in known_candidates]
    root.write_table(CANDIDATES, spec.country, new, run_id)
    todo = [c for h, c in unique.items() if h not in fetched]
    counts: Counter[str] = Counter(discovered=len(unique), new_candidates=len(new),
                                   skipped_already_fetched=len(unique) - len(todo))
    buffer: list[ImageRecord] = []
    try:
        for row in download_many(todo, root, settings.fetch, settings.validation, seen, settings.threads,
                                 settings.processes, on_image):
            row = row.model_copy(update={"run_id": run_id})
            buffer.append(row)
            counts[row.status] += 1
            if len(buffer) >= settings.flush_every:
                root.write_table(IMAGES, spec.country, buffer, run_id)
                buffer = []
    finally:
        root.write_table(IMAGES, spec.country, buffer, run_id)
    return dict(counts)


def retry_engine_errors(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the engine (I/O) failed, never on a user error."""
    try:
        state.result()
    except EngineError:
        return True
    except Exception:
        return False
    return False
