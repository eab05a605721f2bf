"""curate: hash stored images, group near-duplicates, assign leakage-free splits -> hashes, duplicates, splits."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sufra.flows.common import run_manifest, run_shards, table_artifact
from sufra.tasks.curate import stage
from sufra.tasks.curate.dedup import CurateSettings

from sufra.core.catalog import load_country
from sufra.core.store import DataRoot


@task(name="hash-shard", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def hash_shard_task(data_root: str, items: list, settings, run_id: str) -> dict:
    return dict(stage.hash_shard(DataRoot(data_root), items, settings, run_id))


@task(name="dedup-and-split", cache_policy=NO_CACHE)
def dedup_and_split_task(data_root: str, country: str, settings: CurateSettings, run_id: str):
    return stage.dedup_and_split(DataRoot(data_root), country, settings, run_id)


@task(name="curate-report", cache_policy=NO_CACHE)
def report_task(data_root: str, country: str, counts: dict, groups: list[list[str]], run_id: str) -> str:
    return stage.write_report(DataRoot(data_root), country, counts, groups, run_id)


@flow(name="curate", log_prints=True)
def curate(country: str, data_root: str = "./data", settings: CurateSettings | None = None) -> dict:
    """Hash new images in shards, then dedup + split once over the country; writes a report in the run folder."""
    settings = settings or CurateSettings()
    load_country(country)
    root = DataRoot(data_root)
    with run_manifest(root, "curate", {"country": country, "settings": settings.model_dump()}) as manifest:
        shards = stage.hash_shards(root, country, settings)
        counts = stage.hash_counts(run_shards(hash_shard_task, [(data_root, shard, settings.dedup, manifest.run_id)
                                                                for shard in shards]))
        result = dedup_and_split_task(data_root, country, settings, manifest.run_id)
        counts = stage.finish(counts, result)
        report = report_task(data_root, country, dict(counts), result.groups, manifest.run_id)
        manifest.counts = {**counts, "report": report}
        table_artifact(f"curate-{country}".replace("_", "-"), [{"metric": k, "value": v} for k, v in sorted(counts.items())],
                       f"curate {country}; report: {report}")
        get_run_logger().info("curate %s: %s", country, dict(counts))
    return manifest.counts
