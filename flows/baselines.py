"""baselines: CLIP zero-shot and Hybrid CLIP on an export, for comparison with the fusion head."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger
from sufra.flows.common import run_manifest
from sufra.flows.evaluate import benchmark_classes
from sufra.models.clip_baselines import ClipModel, ClipSpec
from sufra.tasks.learn.baselines import run_baselines

from sufra.core.store import DataRoot


@flow(name="baselines", log_prints=True)
def baselines(export_path: str, benchmark_set: str = "egypt5", general_set: str = "food101_25",
              clip: ClipSpec | None = None, data_root: str = "./data") -> dict:
    root = DataRoot(data_root)
    clip = clip or ClipSpec()
    with run_manifest(root, "baselines", {"export": export_path, "set": benchmark_set, "general": general_set,
                                          "clip": clip.model_dump()}) as manifest:
        result = run_baselines(Path(export_path), ClipModel.load(clip), benchmark_classes(benchmark_set),
                               benchmark_classes(general_set))
        out = root.working_dir("runs", manifest.run_id)
        out.mkdir(parents=True, exist_ok=True)
        (out / "baselines.json").write_text(json.dumps(result, indent=1))
        manifest.counts = result
        get_run_logger().info("baselines: %s", result)
    return result
