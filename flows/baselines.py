"""baselines: CLIP zero-shot and Hybrid CLIP on an export, for comparison with the fusion head."""

from __future__ import annotations

from prefect import flow, get_run_logger
from sufra.flows.common import run_manifest
from sufra.models.clip_baselines import ClipSpec
from sufra.tasks.learn.stages import BaselineSettings, baselines_stage

from sufra.core.store import DataRoot


@flow(name="baselines", log_prints=True)
def baselines(export_path: str, benchmark_set: str = "egypt5", general_set: str = "food101_25",
              clip: ClipSpec | None = None, data_root: str = "./data") -> dict:
    root = DataRoot(data_root)
    settings = BaselineSettings(benchmark_set=benchmark_set, general_set=general_set, clip=clip or ClipSpec())
    with run_manifest(root, "baselines", {"export": export_path, "set": benchmark_set, "general": general_set,
                                          "clip": settings.clip.model_dump()}) as manifest:
        result = baselines_stage(root, export_path, settings, manifest.run_id).result
        manifest.counts = result
        get_run_logger().info("baselines: %s", result)
    return result
