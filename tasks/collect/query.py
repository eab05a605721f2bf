"""The collect stage's unit of work: one (country, dish, query, engine) -> ``candidates`` and ``images`` rows.

Plain functions; ``sufra.flows.collect`` wraps :func:`collect_query` as a task (retries, tags, fan-out), retries
only what can succeed later (:func:`retry_engine_errors`) and runs each engine's first query before the rest
(:class:`EngineHealth`), so an engine no retry can fix (offline, no DNS, 401/403) fails the run at once.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow.compute as pc
from pydantic import BaseModel, Field
from sufra.schemas.tables import CANDIDATES, IMAGES, Candidate, ImageRecord
from sufra.tasks.collect.download import SeenImages, download_many
from sufra.tasks.collect.engines import Discovered, list_folder, make_engine, read_url_list
from sufra.tasks.collect.validate import ValidationSettings

from sufra.core.catalog import Country
from sufra.core.errors import NetworkUnavailableError, PermanentError, SufraError, is_retryable
from sufra.core.store import DataRoot, sha256_hex, utcnow
from sufra.utils.http import Fetcher, FetchSettings

WEB_ENGINES = ("commons", "openverse", "bing", "flickr", "baidu", "google")  # google: a one-line "unsupported"
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
                usable = [name for name in WEB_ENGINES + LOCAL_ENGINES if name != "google"]  # google: unsupported today
                raise SufraError(f"unknown engine '{engine}'; use one of {', '.join(usable)}")
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

    Raises :class:`~sufra.tasks.collect.engines.EngineError` when the engine itself fails: retryable (Prefect
    retries the query) for a timeout, 429, 5xx or reset connection; an ``EngineUnavailableError``
    (a :class:`~sufra.core.errors.PermanentError`, never retried) when its host does not resolve, there is no
    network or it answered 401/403. Per-URL failures are rows.
    """
    fetcher = Fetcher(settings.fetch)
    found = discover(spec, settings, fetcher)
    known_candidates, fetched, stored = existing_url_hashes(root, spec.country)
    seen = seen or SeenImages(stored)
    now = utcnow()
    candidates = [
        Candidate(url_hash=url_hash(d.url), country=spec.country, dish=spec.dish, query=spec.query, engine=spec.engine,
                  url=d.url, page_url=d.page_url, license=d.license, license_url=d.license_url, creator=d.creator,
                  attribution=d.attribution, discovered_at=now)
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
    """Prefect ``retry_condition_fn``: retry only what can succeed later (:func:`~sufra.core.errors.is_retryable`):
    an engine timeout, 429, 5xx or reset connection; never a host that does not resolve, no network, 401/403,
    missing weights or a user error."""
    try:
        state.result()
    except Exception as exc:
        return is_retryable(exc)
    return False


class EngineHealth:
    """Which engines of a run can be used, judged by the first query of each.

    An engine whose first query failed with an error no retry can fix (a :class:`~sufra.core.errors.PermanentError`:
    its host does not resolve, no network, 401/403, a missing key) is *down* for the run: its other queries are not
    started. When every engine of the plan is down the run fails at once with one line (:meth:`raise_if_all_down`).
    Order of use in a flow: :meth:`split`, run the first queries, :meth:`record` each outcome,
    :meth:`raise_if_all_down`, then run :meth:`runnable` of the rest.
    """

    def __init__(self) -> None:
        self.engines: list[str] = []
        self.down: dict[str, BaseException] = {}

    def split(self, specs: Iterable[QuerySpec]) -> tuple[list[QuerySpec], list[QuerySpec]]:
        """(the first query of each engine, every other query), both in plan order."""
        first: list[QuerySpec] = []
        rest: list[QuerySpec] = []
        for spec in specs:
            if spec.engine in self.engines:
                rest.append(spec)
            else:
                self.engines.append(spec.engine)
                first.append(spec)
        return first, rest

    def record(self, spec: QuerySpec, error: BaseException | None) -> None:
        """The outcome of an engine's first query: ``None`` when it succeeded, else what it raised."""
        if spec.engine not in self.engines:
            self.engines.append(spec.engine)
        if isinstance(error, PermanentError) and spec.engine not in self.down:
            self.down[spec.engine] = error

    def runnable(self, specs: Iterable[QuerySpec]) -> list[QuerySpec]:
        """The queries whose engine is not down."""
        return [spec for spec in specs if spec.engine not in self.down]

    def skipped(self, specs: Iterable[QuerySpec]) -> list[str]:
        """One line per query not started because its engine is down (``engine:dish:query: cause``)."""
        return [f"{s.engine}:{s.dish}:{s.query}: not started, {self.down[s.engine]}" for s in specs
                if s.engine in self.down]

    def raise_if_all_down(self) -> None:
        """Raise one line when every engine of the plan is down: a :class:`NetworkUnavailableError` when each one's
        cause is the network, else a :class:`PermanentError`; the message names each engine's host and cause."""
        if not self.engines or any(engine not in self.down for engine in self.engines):
            return
        causes = [self.down[engine] for engine in self.engines]
        message = "; ".join(str(cause) for cause in causes)
        if all(isinstance(cause, NetworkUnavailableError) for cause in causes):
            raise NetworkUnavailableError(f"collect: no engine can be reached: {message}")
        raise PermanentError(f"collect: no engine can be used: {message}")


def check_first_results(outcomes: Iterable[tuple[QuerySpec, BaseException | None]],
                        health: EngineHealth | None = None) -> EngineHealth:
    """Record each engine's first-query outcome (``(spec, None)`` for a success, ``(spec, exception)`` for a
    failure) and raise at once when every engine is down (:meth:`EngineHealth.raise_if_all_down`)."""
    health = health or EngineHealth()
    for spec, error in outcomes:
        health.record(spec, error)
    health.raise_if_all_down()
    return health
