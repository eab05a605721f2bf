"""annotate: Grounding DINO boxes + SAM masks for curated images -> ``instances`` and ``annotations`` tables."""

from __future__ import annotations

from collections import Counter

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sufra.flows.common import run_manifest, run_shards, table_artifact
from sufra.schemas.tables import ANNOTATIONS, INSTANCES
from sufra.tasks.annotate.instances import (
    AnnotateSettings,
    annotate_items,
    config_hash,
    items_to_annotate,
    load_models,
)

from sufra.core.catalog import load_country
from sufra.core.store import DataRoot


@task(name="annotate-shard", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE, tags=["gpu"])
def annotate_shard_task(data_root: str, country: str, items: list, settings: AnnotateSettings, cfg_hash: str,
                        run_id: str) -> dict:
    """One shard: rows are appended when the shard is done (a crash re-runs the shard, never half of it)."""
    root = DataRoot(data_root)
    detector, segmenter = load_models(settings)
    instances, annotations = [], []
    for image_instances, annotation in annotate_items(root, country, items, load_country(country), detector,
                                                      segmenter, settings, cfg_hash):
        instances.extend(image_instances)
        annotations.append(annotation)
    root.write_table(INSTANCES, country, instances, run_id)
    root.write_table(ANNOTATIONS, country, annotations, run_id)  # written last: marks the shard done
    counts = Counter(a.status for a in annotations)
    counts["instances"] = len(instances)
    return dict(counts)


@flow(name="annotate", log_prints=True)
def annotate(country: str, data_root: str = "./data", settings: AnnotateSettings | None = None) -> dict:
    """Annotate curated images shard by shard; images already annotated with the same models and settings are
    skipped."""
    settings = settings or AnnotateSettings()
    load_country(country)  # an unknown country fails before any work
    root = DataRoot(data_root)
    logger = get_run_logger()
    with run_manifest(root, "annotate", {"country": country, "settings": settings.model_dump()}) as manifest:
        detector, segmenter = load_models(settings)
        versions = {"detector": detector.version, "segmenter": segmenter.version}
        cfg = config_hash(settings, versions)
        items = items_to_annotate(root, country, settings, cfg)
        shards = [items[i : i + settings.shard_size] for i in range(0, len(items), settings.shard_size)]
        totals: Counter = Counter(images=len(items), shards=len(shards))
        for result in run_shards(annotate_shard_task, [(data_root, country, shard, settings, cfg, manifest.run_id)
                                                       for shard in shards]):
            totals.update(result)
        manifest.counts = {**totals, "config_hash": cfg, **{f"model_{k}": v for k, v in versions.items()}}
        table_artifact(f"annotate-{country}".replace("_", "-"), [{"metric": k, "value": v} for k, v in sorted(totals.items())],
                       f"annotate {country} with {versions}")
        logger.info("annotate %s: %s", country, dict(totals))
    return manifest.counts
