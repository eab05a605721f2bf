"""train: the fusion head from a feature cache (best checkpoint, metrics per epoch) -> checkpoints/<run_id>/."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger
from sufra.flows.common import progress_bar, run_manifest, table_artifact
from sufra.tasks.learn.features import load_cache
from sufra.tasks.learn.train import TrainSettings, train_head

from sufra.core.store import DataRoot


@flow(name="train", log_prints=True)
def train(cache_folder: str, data_root: str = "./data", settings: TrainSettings | None = None,
          show_progress: bool = False) -> dict:
    settings = settings or TrainSettings()
    root = DataRoot(data_root)
    with run_manifest(root, "train", {"cache": cache_folder, "settings": settings.model_dump()}) as manifest:
        tensors, index = load_cache(Path(cache_folder))
        out_dir = root.working_dir("checkpoints", manifest.run_id)
        bar = progress_bar(show_progress, "train", "epoch", settings.epochs)

        def on_epoch(record: dict) -> None:
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{record['train_loss']:.3f}", val_top1=f"{record['val_top1']:.3f}")

        try:
            config_file = Path(cache_folder) / "config.json"
            features_config = json.loads(config_file.read_text()) if config_file.exists() else None
            result = train_head(tensors, index, settings, out_dir, on_epoch, features_config)
        finally:
            if bar:
                bar.close()
        manifest.counts = {**result, "instances": len(index)}
        history = json.loads((out_dir / "metrics.json").read_text())["history"]
        table_artifact("train-metrics", history, f"fusion head training, checkpoint {result['checkpoint']}")
        get_run_logger().info("train: best val top-1 %.3f after %d epochs", result["best_val_top1"], result["epochs_run"])
    return manifest.counts


def demo_train_and_evaluate(data_root: str, country: str, version: str) -> dict:
    """The demo's tail: random EfficientNet-B0 + tiny DPT features, a short training, evaluation on egypt5."""
    from sufra.flows.evaluate import benchmark_classes, evaluate
    from sufra.flows.features import features
    from sufra.models.extractors import ExtractorSpec
    from sufra.models.tiny import save_tiny_depth
    from sufra.tasks.learn.features import FeatureSettings, read_index
    from sufra.tasks.learn.metrics import split_rows

    from sufra.core.errors import SufraError

    root = DataRoot(data_root)
    depth = save_tiny_depth(Path(root.root) / "models" / "dpt-tiny-random")
    settings = FeatureSettings(extractor=ExtractorSpec(backbone="efficientnet_b0", backbone_weights=None,
                                                       depth_model=depth, input_size=256))
    cache = features(export_path=root.path("exports", country, version), data_root=data_root, settings=settings)
    trained = train(cache_folder=cache["folder"], data_root=data_root, settings=TrainSettings(epochs=5, batch_size=32))
    wanted = benchmark_classes("egypt5")
    index = read_index(Path(cache["folder"]))
    split = next((s for s in ("test", "val") if split_rows(index, wanted, s)), None)
    if split is None:  # tiny demo caches: never evaluate on training rows
        raise SufraError(f"no instance of split 'test' or 'val' in the demo cache (classes: {', '.join(wanted)})")
    metrics = evaluate(checkpoint=trained["checkpoint"], cache_folder=cache["folder"], benchmark_set="egypt5",
                       split=split, data_root=data_root)
    return {"features": cache, "train": trained,
            "evaluate": {"split": split, **{k: metrics[k] for k in ("top1", "top5", "macro_f1", "n")}}}
