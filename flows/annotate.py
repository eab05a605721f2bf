"""annotate: Grounding DINO boxes + SAM masks for curated images -> ``instances`` and ``annotations`` tables."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sufra.flows.common import run_manifest, run_shards, table_artifact
from sufra.tasks.annotate import stage
from sufra.tasks.annotate.instances import AnnotateSettings

from sufra.core.catalog import load_country
from sufra.core.store import DataRoot


@task(name="annotate-shard", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE, tags=["gpu"])
def annotate_shard_task(data_root: str, country: str, items: list, settings: AnnotateSettings, cfg_hash: str,
                        run_id: str) -> dict:
    """One shard (see :func:`sufra.tasks.annotate.stage.annotate_shard`)."""
    return stage.annotate_shard(DataRoot(data_root), country, items, settings, cfg_hash, run_id)


@flow(name="annotate", log_prints=True)
def annotate(country: str, data_root: str = "./data", settings: AnnotateSettings | None = None) -> dict:
    """Annotate curated images shard by shard; images already annotated with the same models and settings are
    skipped."""
    settings = settings or AnnotateSettings()
    load_country(country)  # an unknown country fails before any work
    root = DataRoot(data_root)
    with run_manifest(root, "annotate", {"country": country, "settings": settings.model_dump()}) as manifest:
        work = stage.plan(root, country, settings)
        result = stage.summarize(work, run_shards(annotate_shard_task, [
            (data_root, country, shard, settings, work.config_hash, manifest.run_id) for shard in work.shards]))
        manifest.counts = result.manifest_counts()
        table_artifact(f"annotate-{country}".replace("_", "-"),
                       [{"metric": k, "value": v} for k, v in sorted(result.counts.items())],
                       f"annotate {country} with {result.model_versions}")
        get_run_logger().info("annotate %s: %s", country, dict(result.counts))
    return manifest.counts
