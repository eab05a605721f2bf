"""collect: crawl images per country, dish, query and engine -> ``candidates`` and ``images`` tables."""

from __future__ import annotations

from collections import Counter

from prefect import flow, get_run_logger

from flows._common import progress_bar, run_manifest, table_artifact
from sufra.catalog import load_country
from sufra.store import DataRoot
from tasks import crawl
from tasks.crawl import CollectSettings, plan_queries, sweep_temp_files


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
        _, _, stored = crawl.existing_url_hashes(root, country)
        crawl._seen_by_root[(data_root, country)] = crawl.SeenImages(stored)
        bar = progress_bar(show_progress, f"collect {country}", "img", len(specs) * settings.max_per_query)
        if bar is not None:
            crawl._progress.append(lambda row: bar.update(1))
        try:
            task = crawl._make_task()
            futures = [
                task.with_options(tags=[f"engine:{spec.engine}"]).submit(spec, data_root, settings, manifest.run_id)
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
            crawl._seen_by_root.pop((data_root, country), None)
            if bar is not None:
                crawl._progress.pop()
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

