"""collect: crawl images per country, dish, query and engine -> ``candidates`` and ``images`` tables."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sufra.flows.common import permanent_failure, progress_bar, run_manifest, table_artifact
from sufra.schemas.tables import ImageRecord
from sufra.tasks.collect import stage
from sufra.tasks.collect.download import SeenImages
from sufra.tasks.collect.query import CollectSettings, QuerySpec, retry_engine_errors

from sufra.core.errors import PermanentError
from sufra.core.store import DataRoot


@task(name="collect-query", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_engine_errors,
      cache_policy=NO_CACHE, task_run_name="{spec.engine}:{spec.dish}:{spec.query}")
def collect_query_task(spec: QuerySpec, data_root: str, settings: CollectSettings, run_id: str,
                       seen: SeenImages | None = None,
                       on_image: Callable[[ImageRecord], None] | None = None) -> stage.QueryOutcome:
    """One (dish, query, engine). ``seen`` is made per run by the flow and passed in (a payload found by two
    queries is stored once on the thread runner); on a distributed runner each worker gets its own copy.
    An error no retry can fix ends the query at once as an outcome with one WARNING line (no retry, no
    traceback: the flow decides whether the run goes on); others raise, so Prefect retries them."""
    try:
        counts = stage.collect_query(spec, DataRoot(data_root), settings, run_id, seen=seen, on_image=on_image)
    except PermanentError as exc:
        get_run_logger().warning("query not possible: %s", exc)
        return stage.QueryOutcome(spec, error=exc)
    return stage.QueryOutcome(spec, counts=counts)


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
    """Fan out one task per (dish, query, engine), each engine's first query before the rest (an engine down for
    good is not tried again); every URL ends as a stored image or a rejection row."""
    settings = settings or CollectSettings()
    updates = {k: v for k, v in (("engines", engines), ("max_per_query", max_per_query)) if v is not None}
    settings = settings.model_copy(update=updates)
    root = DataRoot(data_root)
    specs = stage.plan(country, dishes, settings)
    logger = get_run_logger()
    try:
        with run_manifest(root, "collect", {"country": country, "dishes": dishes, "settings": settings.model_dump()}) as manifest:
            swept, seen = stage.start(root, country, settings)
            bar = progress_bar(show_progress, f"collect {country}", "img", len(specs) * settings.max_per_query)
            on_image = (lambda row: bar.update(1)) if bar is not None else None

            def execute(batch: list[QuerySpec]) -> list[stage.QueryOutcome]:
                futures = [collect_query_task.with_options(tags=[f"engine:{spec.engine}"]).submit(
                    spec, data_root, settings, manifest.run_id, seen, on_image) for spec in batch]
                outcomes = []
                for spec, future in zip(batch, futures, strict=True):
                    try:
                        outcomes.append(future.result())
                    except Exception as exc:  # one engine failing must not lose the other queries' work
                        outcomes.append(stage.QueryOutcome(spec, error=exc))
                        logger.error("query failed after retries: %s: %s", spec.query, exc)
                return outcomes

            try:
                outcomes, skipped = stage.run_queries(specs, execute)
            finally:
                if bar is not None:
                    bar.close()
            result = stage.summarize(outcomes, swept, skipped)
            manifest.counts = result.counts
            table_artifact(f"collect-{country}".replace("_", "-"), result.per_query,
                           f"collect {country}: counts per query and status")
            logger.info("collect %s: %s", country, result.counts)
            result.raise_if_all_failed()
    except PermanentError as exc:  # every engine down for good (no network, DNS, 401/403): one line, no traceback
        return permanent_failure(exc)
    return manifest.counts
