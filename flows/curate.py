"""curate: hash stored images, group near-duplicates, assign leakage-free splits -> hashes, duplicates, splits."""

from __future__ import annotations

from collections import Counter

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sufra.flows.common import run_manifest, run_shards, table_artifact
from sufra.schemas.tables import IMAGES
from sufra.tasks.curate.dedup import CurateSettings, dedup_and_split, hash_shard, images_to_hash
from sufra.tasks.curate.report import render_curate_report

from sufra.core.catalog import load_country
from sufra.core.store import DataRoot


@task(name="hash-shard", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def hash_shard_task(data_root: str, items: list, settings, run_id: str) -> dict:
    return dict(hash_shard(DataRoot(data_root), items, settings, run_id))


@task(name="dedup-and-split", cache_policy=NO_CACHE)
def dedup_and_split_task(data_root: str, country: str, settings: CurateSettings, run_id: str):
    return dedup_and_split(DataRoot(data_root), country, settings, run_id)


@task(name="curate-report", cache_policy=NO_CACHE)
def report_task(data_root: str, country: str, counts: dict, groups: list[list[str]], run_id: str) -> str:
    root = DataRoot(data_root)
    images = root.read_table(IMAGES, country, columns=["image_id", "dish", "format", "status"]).to_pylist()
    paths = {r["image_id"]: root.image_path(r["image_id"], r["format"]) for r in images if r["status"] == "ok"}
    dishes = {r["image_id"]: r["dish"] for r in images}
    page = render_curate_report(root, country, counts, groups, paths, dishes)
    path = root.path("runs", run_id, "curate-report.html")
    root.write_bytes_atomic(path, page.encode())
    return path


@flow(name="curate", log_prints=True)
def curate(country: str, data_root: str = "./data", settings: CurateSettings | None = None) -> dict:
    """Hash new images in shards, then dedup + split once over the country; writes a report in the run folder."""
    settings = settings or CurateSettings()
    load_country(country)
    root = DataRoot(data_root)
    logger = get_run_logger()
    with run_manifest(root, "curate", {"country": country, "settings": settings.model_dump()}) as manifest:
        todo = images_to_hash(root, country)
        counts: Counter = Counter()
        shards = [todo[i : i + settings.shard_size] for i in range(0, len(todo), settings.shard_size)]
        for result in run_shards(hash_shard_task, [(data_root, shard, settings.dedup, manifest.run_id) for shard in shards]):
            counts.update({f"hash_{k}": v for k, v in result.items()})
        result = dedup_and_split_task(data_root, country, settings, manifest.run_id)
        counts.update(result.counts)
        report = report_task(data_root, country, dict(counts), result.groups, manifest.run_id)
        manifest.counts = {**counts, "report": report}
        table_artifact(f"curate-{country}".replace("_", "-"), [{"metric": k, "value": v} for k, v in sorted(counts.items())],
                       f"curate {country}; report: {report}")
        logger.info("curate %s: %s", country, dict(counts))
    return manifest.counts
