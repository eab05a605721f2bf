"""train: the fusion head from a feature cache (best checkpoint, metrics per epoch) -> checkpoints/<run_id>/."""

from __future__ import annotations

from prefect import flow, get_run_logger
from sufra.flows.common import progress_bar, run_manifest, table_artifact
from sufra.tasks.learn.stages import train_stage
from sufra.tasks.learn.train import TrainSettings

from sufra.core.store import DataRoot


@flow(name="train", log_prints=True)
def train(cache_folder: str, data_root: str = "./data", settings: TrainSettings | None = None,
          show_progress: bool = False) -> dict:
    settings = settings or TrainSettings()
    root = DataRoot(data_root)
    with run_manifest(root, "train", {"cache": cache_folder, "settings": settings.model_dump()}) as manifest:
        bar = progress_bar(show_progress, "train", "epoch", settings.epochs)

        def on_epoch(record: dict) -> None:
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{record['train_loss']:.3f}", val_top1=f"{record['val_top1']:.3f}")

        try:
            result = train_stage(root, cache_folder, settings, manifest.run_id, on_epoch)
        finally:
            if bar:
                bar.close()
        manifest.counts = result.counts
        table_artifact("train-metrics", result.history, f"fusion head training, checkpoint {result.checkpoint}")
        get_run_logger().info("train: best val top-1 %.3f after %d epochs", result.counts["best_val_top1"],
                              result.counts["epochs_run"])
    return manifest.counts

