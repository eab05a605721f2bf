"""evaluate: a trained head on a split of the cache, restricted to a benchmark set of the catalog (egypt5,
food101_25): top-1, top-5, macro-F1, per-class precision/recall, confusion matrix (PNG + CSV)."""

from __future__ import annotations

from prefect import flow, get_run_logger
from sufra.flows.common import run_manifest, table_artifact
from sufra.tasks.learn.stages import EvaluateSettings, benchmark_classes, evaluate_stage

from sufra.core.store import DataRoot

__all__ = ["benchmark_classes", "evaluate"]  # benchmark_classes lives in sufra.tasks.learn.stages (CLI imports it here)


@flow(name="evaluate", log_prints=True)
def evaluate(checkpoint: str, cache_folder: str, benchmark_set: str | None = None, split: str = "test",
             data_root: str = "./data") -> dict:
    """Metrics of ``evaluate_stage``; a split without instances of the set fails the run (no fallback to the
    training rows)."""
    root = DataRoot(data_root)
    settings = EvaluateSettings(benchmark_set=benchmark_set, split=split)
    with run_manifest(root, "evaluate", {"checkpoint": checkpoint, "cache": cache_folder, "set": benchmark_set,
                                         "split": split}) as manifest:
        result = evaluate_stage(root, checkpoint, cache_folder, settings, manifest.run_id)
        metrics = result.metrics
        manifest.counts = result.counts()
        table_artifact("evaluate", [{"class": c, **v} for c, v in metrics["per_class"].items()],
                       f"{benchmark_set or 'all'} {split}: top-1 {metrics['top1']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
        get_run_logger().info("evaluate: %s", manifest.counts)
    return metrics
