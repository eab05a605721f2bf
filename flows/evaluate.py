"""evaluate: a trained head on a split of the cache, restricted to a benchmark set of the catalog (egypt5,
food101_25): top-1, top-5, macro-F1, per-class precision/recall, confusion matrix (PNG + CSV)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from prefect import flow, get_run_logger
from sufra.flows.common import run_manifest, table_artifact
from sufra.tasks.learn.features import load_cache
from sufra.tasks.learn.metrics import classification_metrics, select_split, split_targets, write_confusion
from sufra.tasks.learn.train import load_head, logits_of

from sufra.core.catalog import load_catalog
from sufra.core.errors import SufraError
from sufra.core.store import DataRoot


def benchmark_classes(name: str) -> list[str]:
    for country in load_catalog().values():
        if name in country.benchmark_sets:
            return country.benchmark_sets[name]
    known = sorted(s for c in load_catalog().values() for s in c.benchmark_sets)
    raise SufraError(f"unknown benchmark set '{name}'; the catalog defines {', '.join(known)}")


@flow(name="evaluate", log_prints=True)
def evaluate(checkpoint: str, cache_folder: str, benchmark_set: str | None = None, split: str = "test",
             data_root: str = "./data") -> dict:
    root = DataRoot(data_root)
    with run_manifest(root, "evaluate", {"checkpoint": checkpoint, "cache": cache_folder, "set": benchmark_set,
                                         "split": split}) as manifest:
        model, classes = load_head(checkpoint)
        wanted = benchmark_classes(benchmark_set) if benchmark_set else classes
        missing = [c for c in wanted if c not in classes]
        if missing:
            raise SufraError(f"the head was not trained on {', '.join(missing)} (benchmark set {benchmark_set})")
        keep = [classes.index(c) for c in wanted]
        tensors, index = load_cache(Path(cache_folder))
        rows = select_split(index, wanted, split)
        logits = logits_of(model, tensors, torch.tensor(rows, dtype=torch.long))[:, keep].numpy()
        targets = split_targets(index, rows, wanted)
        metrics = classification_metrics(logits, targets, wanted)
        folder = Path(checkpoint).parent / f"eval-{benchmark_set or 'all'}-{split}"
        write_confusion(metrics, folder)
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
        manifest.counts = {k: metrics[k] for k in ("n", "top1", "top5", "macro_f1")}
        table_artifact("evaluate", [{"class": c, **v} for c, v in metrics["per_class"].items()],
                       f"{benchmark_set or 'all'} {split}: top-1 {metrics['top1']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
        get_run_logger().info("evaluate: %s", manifest.counts)
    return metrics
