"""The collect stage in one call: every (dish, query, engine) of a country -> ``candidates`` and ``images`` rows.

``run`` is the whole stage in-process (no Prefect, queries one after another) for tests and the REPL;
``sufra.flows.collect`` runs :func:`collect_query` as a task per query (retries on engine errors, engine tags,
fan-out) and adds the run manifest. Both run the queries through :func:`run_queries`: each engine's first query
before the rest, so an engine no retry can fix is not tried again for every dish. State shared by the queries of a run (the ids already stored) is a
:class:`SeenImages` made by :func:`start` and passed to each query explicitly, never a module global.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sufra.schemas.tables import ImageRecord
from sufra.tasks.collect.download import SeenImages
from sufra.tasks.collect.query import (
    CollectSettings,
    EngineHealth,
    QuerySpec,
    check_first_results,
    collect_query,
    existing_url_hashes,
    plan_queries,
    sweep_temp_files,
)

from sufra.core.catalog import load_country
from sufra.core.store import DataRoot, new_run_id

__all__ = ["CollectRun", "CollectSettings", "QueryOutcome", "collect_query", "plan", "run", "run_queries", "start",
           "summarize"]


@dataclass
class QueryOutcome:
    """One query's counts per status, or the error that failed it after its retries."""

    spec: QuerySpec
    counts: dict[str, int] | None = None
    error: BaseException | None = None


@dataclass
class CollectRun:
    """Totals over the queries (per image status, plus ``queries``, ``failed_queries``, ``temp_files_swept``),
    one row per successful query (dish, engine, query, counts) and the failures (``engine:dish:query: error``)."""

    counts: dict = field(default_factory=dict)
    per_query: list[dict] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def raise_if_all_failed(self) -> None:
        """A run where queries ran and every one failed is a failure of the stage (one engine down is not)."""
        if self.failed and not self.per_query:
            raise RuntimeError(f"every query failed; first: {self.failed[0]}")


def plan(country: str, dishes: list[str] | None, settings: CollectSettings) -> list[QuerySpec]:
    """Every (dish, query, engine) of the country's catalog, in catalog order."""
    return plan_queries(load_country(country), dishes, settings)


def start(root: DataRoot, country: str, settings: CollectSettings) -> tuple[int, SeenImages]:
    """Sweep stale temp files (returns how many) and seed the run's set of stored image ids."""
    swept = sweep_temp_files(root, settings.stale_temp_age_s)
    _, _, stored = existing_url_hashes(root, country)
    return swept, SeenImages(stored)


def run_queries(specs: list[QuerySpec], execute: Callable[[list[QuerySpec]], list[QueryOutcome]]
                ) -> tuple[list[QueryOutcome], list[str]]:
    """Run each engine's first query (``execute`` runs a list of queries, one outcome each), fail at once when
    every engine is down (:func:`check_first_results`), then the other queries of the engines still up. Returns
    the outcomes in plan order and one line per query not started because its engine is down."""
    position = {id(spec): n for n, spec in enumerate(specs)}  # specs are not hashable; split keeps the objects
    health = EngineHealth()
    first, rest = health.split(specs)
    done = list(zip(first, execute(first), strict=True))
    check_first_results([(o.spec, o.error) for _, o in done], health)
    runnable = health.runnable(rest)
    done += zip(runnable, execute(runnable), strict=True)
    return [o for _, o in sorted(done, key=lambda pair: position[id(pair[0])])], health.skipped(rest)


def summarize(outcomes: list[QueryOutcome], swept: int, skipped: list[str] = ()) -> CollectRun:
    """Totals and rows of the outcomes; ``skipped`` (queries never started) count as failed queries."""
    totals: Counter[str] = Counter()
    rows, failed = [], []
    for outcome in outcomes:
        spec = outcome.spec
        if outcome.counts is None:
            failed.append(f"{spec.engine}:{spec.dish}:{spec.query}: {outcome.error}")
            continue
        totals.update(outcome.counts)
        rows.append({"dish": spec.dish, "engine": spec.engine, "query": spec.query, **outcome.counts})
    failed.extend(skipped)
    counts = {**totals, "queries": len(outcomes) + len(skipped), "failed_queries": len(failed),
              "temp_files_swept": swept}
    return CollectRun(counts=counts, per_query=rows, failed=failed)


def run(root: DataRoot, country: str, settings: CollectSettings | None = None, run_id: str | None = None,
        dishes: list[str] | None = None, on_image: Callable[[ImageRecord], None] | None = None) -> CollectRun:
    """The whole collect stage without Prefect; a failing query becomes a failure entry (no retries here); raises
    when every engine is down after its first query, or when every query failed."""
    settings = settings or CollectSettings()
    specs = plan(country, dishes, settings)
    run_id = run_id or new_run_id("collect")
    swept, seen = start(root, country, settings)

    def execute(batch: list[QuerySpec]) -> list[QueryOutcome]:
        outcomes = []
        for spec in batch:
            try:
                outcomes.append(QueryOutcome(spec, counts=collect_query(spec, root, settings, run_id, seen, on_image)))
            except Exception as exc:  # one engine failing must not lose the other queries' work
                outcomes.append(QueryOutcome(spec, error=exc))
        return outcomes

    outcomes, skipped = run_queries(specs, execute)
    result = summarize(outcomes, swept, skipped)
    result.raise_if_all_failed()
    return result
