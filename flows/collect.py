"""collect: crawl images per country, dish, query and engine -> ``candidates`` and ``images`` tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sufra.flows.common import progress_bar, run_manifest, table_artifact
from sufra.schemas.tables import ImageRecord
from sufra.tasks.collect.download import SeenImages
from sufra.tasks.collect.query import (
    CollectSettings,
    QuerySpec,
    collect_query,
    existing_url_hashes,
    plan_queries,
    retry_engine_errors,
    sweep_temp_files,
)

from sufra.core.catalog import load_country
from sufra.core.store import DataRoot


@task(name="collect-query", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_engine_errors,
      cache_policy=NO_CACHE, task_run_name="{spec.engine}:{spec.dish}:{spec.query}")
def collect_query_task(spec: QuerySpec, data_root: str, settings: CollectSettings, run_id: str,
                       seen: SeenImages | None = None,
                       on_image: Callable[[ImageRecord], None] | None = None) -> dict[str, int]:
    """One (dish, query, engine). ``seen`` is shared by the queries of a run on the thread runner (a payload found
    by two queries is stored once); on a distributed runner each worker gets its own copy."""
    return collect_query(spec, DataRoot(data_root), settings, run_id, seen=seen, on_image=on_image)


@flow(name="collect", log_prints=True)
def collect(
    country: str,
    dishes: list[str] | None = None,
    engines: list[str] | None = None,
    max_per_query: int | None = None,
    data_root: str = "./data",
    settings: CollectSettings | None = None,
    show_progress: bool = False,
) -> dict:
    """Fan out one task per (dish, query, engine); every URL ends as a stored image or a rejection row."""
    settings = settings or CollectSettings()
    updates = {k: v for k, v in (("engines", engines), ("max_per_query", max_per_query)) if v is not None}
    settings = settings.model_copy(update=updates)
    root = DataRoot(data_root)
    catalog = load_country(country)
    specs = plan_queries(catalog, dishes, settings)
    logger = get_run_logger()
    with run_manifest(root, "collect", {"country": country, "dishes": dishes, "settings": settings.model_dump()}) as manifest:
        swept = sweep_temp_files(root, settings.stale_temp_age_s)
        _, _, stored = existing_url_hashes(root, country)
        seen = SeenImages(stored)
        bar = progress_bar(show_progress, f"collect {country}", "img", len(specs) * settings.max_per_query)
        on_image = (lambda row: bar.update(1)) if bar is not None else None
        try:
            futures = [
                collect_query_task.with_options(tags=[f"engine:{spec.engine}"]).submit(
                    spec, data_root, settings, manifest.run_id, seen, on_image)
                for spec in specs
            ]
            per_query = []
            failed = []
            for spec, future in zip(specs, futures, strict=True):
                try:
                    per_query.append((spec, future.result()))
                except Exception as exc:  # one engine failing must not lose the other queries' work
                    failed.append(f"{spec.engine}:{spec.dish}:{spec.query}: {exc}")
                    logger.error("query failed after retries: %s: %s", spec.query, exc)
        finally:
            if bar is not None:
                bar.close()
        totals: Counter[str] = Counter()
        rows = []
        for spec, counts in per_query:
            totals.update(counts)
            rows.append({"dish": spec.dish, "engine": spec.engine, "query": spec.query, **counts})
        manifest.counts = {**totals, "queries": len(specs), "failed_queries": len(failed), "temp_files_swept": swept}
        table_artifact(f"collect-{country}".replace("_", "-"), rows, f"collect {country}: counts per query and status")
        logger.info("collect %s: %s", country, dict(totals))
        if failed and not per_query:
            raise RuntimeError(f"every query failed; first: {failed[0]}")
    return manifest.counts
