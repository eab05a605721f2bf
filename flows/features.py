"""features: cache per-instance tensors (ROIAlign on EfficientNet, mask/depth ROIs, depth stats) of an export."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sufra.flows.common import progress_bar, run_manifest
from sufra.tasks.learn.features import FeatureSettings
from sufra.tasks.learn.stages import features_stage

from sufra.core.store import DataRoot


@task(name="extract-features", cache_policy=NO_CACHE, tags=["gpu"])
def extract_task(data_root: str, export_path: str, settings: FeatureSettings, show_progress: bool) -> dict:
    bar = progress_bar(show_progress, "features", "img")
    try:
        return features_stage(DataRoot(data_root), export_path, settings, progress=bar.update if bar else None).counts
    finally:
        if bar:
            bar.close()


@flow(name="features", log_prints=True)
def features(export_path: str, data_root: str = "./data", settings: FeatureSettings | None = None,
             show_progress: bool = False) -> dict:
    """Returns counts and the cache folder ``features/<model_key>/``."""
    settings = settings or FeatureSettings()
    root = DataRoot(data_root)
    with run_manifest(root, "features", {"export": export_path, "settings": settings.model_dump()}) as manifest:
        manifest.counts = extract_task(data_root, export_path, settings, show_progress)
        get_run_logger().info("features: %s", manifest.counts)
    return manifest.counts
