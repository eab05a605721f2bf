"""The learning stages in one call each: ``features_stage`` (cache per-instance tensors of an export),
``train_stage`` (the fusion head from a cache), ``evaluate_stage`` (a head on a split, restricted to a benchmark
set) and ``baselines_stage`` (CLIP zero-shot and Hybrid CLIP on an export).

Each runs in-process with no Prefect (tests, the REPL); the flows in ``sufra.flows`` call the same functions
inside a run manifest and add artifacts and progress bars. Unlike collect..export these stages work on an export
or a cache folder, not a country, so their first arguments are those paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field
from sufra.models.clip_baselines import ClipSpec
from sufra.tasks.learn.features import FeatureSettings
from sufra.tasks.learn.train import TrainSettings

from sufra.core.catalog import load_catalog
from sufra.core.errors import SufraError
from sufra.core.store import DataRoot, new_run_id

__all__ = [
    "BaselineSettings", "BaselinesRun", "EvaluateRun", "EvaluateSettings", "FeatureSettings", "FeaturesRun",
    "TrainRun", "TrainSettings", "baselines_stage", "benchmark_classes", "evaluate_stage", "features_stage",
    "train_stage",
]


class EvaluateSettings(BaseModel):
    """Settings of the evaluate stage (saved in the run manifest)."""

    benchmark_set: str | None = None  # a benchmark set of the catalog (egypt5, food101_25); None: every class
    split: str = "test"  # evaluated split; a split without instances is an error, never a fallback to train


class BaselineSettings(BaseModel):
    """Settings of the baselines stage (saved in the run manifest)."""

    benchmark_set: str = "egypt5"  # the specialist classes
    general_set: str = "food101_25"  # the general-food classes of Hybrid CLIP
    clip: ClipSpec = Field(default_factory=ClipSpec)


def benchmark_classes(name: str) -> list[str]:
    """The dish ids of a catalog benchmark set; a one-line error naming the known sets otherwise."""
    for country in load_catalog().values():
        if name in country.benchmark_sets:
            return country.benchmark_sets[name]
    known = sorted(s for c in load_catalog().values() for s in c.benchmark_sets)
    raise SufraError(f"unknown benchmark set '{name}'; the catalog defines {', '.join(known)}")


# -- features ----------------------------------------------------------------------------------------------------
@dataclass
class FeaturesRun:
    """Counts of ``extract_features`` (``folder``, ``model_key``, ``new_instances``, ``cached_instances``,
    ``images``)."""

    counts: dict

    @property
    def folder(self) -> str:
        return self.counts["folder"]


def features_stage(root: DataRoot, export_path: str, settings: FeatureSettings | None = None,
                   run_id: str | None = None, progress: Callable[[int], None] | None = None) -> FeaturesRun:
    """Cache tensors of every instance of the export in ``features/<model_key>/`` (instances cached earlier are
    kept). ``progress`` is called with 1 per image; ``run_id`` is unused (the cache is keyed by model)."""
    from sufra.tasks.learn.features import extract_features

    settings = settings or FeatureSettings()
    counts = extract_features(root, export_path, root.working_dir("features"), settings, progress=progress)
    return FeaturesRun(counts=counts)


# -- train -------------------------------------------------------------------------------------------------------
@dataclass
class TrainRun:
    """``counts``: best_val_top1, epochs_run, checkpoint, classes, instances; ``history``: one row per epoch
    (epoch, train_loss, val_top1, lr)."""

    counts: dict
    history: list[dict] = field(default_factory=list)

    @property
    def checkpoint(self) -> str:
        return self.counts["checkpoint"]


def train_stage(root: DataRoot, cache_folder: str, settings: TrainSettings | None = None, run_id: str | None = None,
                on_epoch: Callable[[dict], None] | None = None) -> TrainRun:
    """Train the fusion head on the cache; the best checkpoint and metrics.json go to ``checkpoints/<run_id>/``."""
    from sufra.tasks.learn.features import load_cache
    from sufra.tasks.learn.train import train_head

    settings = settings or TrainSettings()
    run_id = run_id or new_run_id("train")
    tensors, index = load_cache(Path(cache_folder))
    out_dir = root.working_dir("checkpoints", run_id)
    config_file = Path(cache_folder) / "config.json"
    features_config = json.loads(config_file.read_text()) if config_file.exists() else None
    result = train_head(tensors, index, settings, out_dir, on_epoch, features_config)
    history = json.loads((out_dir / "metrics.json").read_text())["history"]
    return TrainRun(counts={**result, "instances": len(index)}, history=history)


# -- evaluate ----------------------------------------------------------------------------------------------------
@dataclass
class EvaluateRun:
    """``metrics`` of ``classification_metrics`` (n, top1, top5, macro_f1, per_class, confusion...) and the folder
    holding metrics.json and the confusion matrix (PNG + CSV)."""

    metrics: dict
    folder: Path

    def counts(self) -> dict:
        return {k: self.metrics[k] for k in ("n", "top1", "top5", "macro_f1")}


def evaluate_stage(root: DataRoot, checkpoint: str, cache_folder: str, settings: EvaluateSettings | None = None,
                   run_id: str | None = None) -> EvaluateRun:
    """Score a head on one split of the cache, over the benchmark set's classes; writes
    ``<checkpoint folder>/eval-<set or all>-<split>/``. Raises when the head lacks a class of the set or the split
    has no instance of them (training rows are never scored). ``root`` and ``run_id`` are unused."""
    import torch
    from sufra.tasks.learn.features import load_cache
    from sufra.tasks.learn.metrics import classification_metrics, select_split, split_targets, write_confusion
    from sufra.tasks.learn.train import load_head, logits_of

    settings = settings or EvaluateSettings()
    model, classes = load_head(checkpoint)
    wanted = benchmark_classes(settings.benchmark_set) if settings.benchmark_set else classes
    missing = [c for c in wanted if c not in classes]
    if missing:
        raise SufraError(f"the head was not trained on {', '.join(missing)} (benchmark set {settings.benchmark_set})")
    keep = [classes.index(c) for c in wanted]
    tensors, index = load_cache(Path(cache_folder))
    rows = select_split(index, wanted, settings.split)
    logits = logits_of(model, tensors, torch.tensor(rows, dtype=torch.long))[:, keep].numpy()
    metrics = classification_metrics(logits, split_targets(index, rows, wanted), wanted)
    folder = Path(checkpoint).parent / f"eval-{settings.benchmark_set or 'all'}-{settings.split}"
    write_confusion(metrics, folder)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return EvaluateRun(metrics=metrics, folder=folder)


# -- baselines ---------------------------------------------------------------------------------------------------
@dataclass
class BaselinesRun:
    """The result of ``run_baselines`` (model, n_test, zero_shot and hybrid metrics) and where it was saved."""

    result: dict
    path: Path


def baselines_stage(root: DataRoot, export_path: str, settings: BaselineSettings | None = None,
                    run_id: str | None = None, clip_model=None) -> BaselinesRun:
    """CLIP zero-shot and Hybrid CLIP on the export's test images; writes ``runs/<run_id>/baselines.json``.
    ``clip_model``: an already loaded ``ClipModel`` (default: load ``settings.clip``)."""
    from sufra.models.clip_baselines import ClipModel
    from sufra.tasks.learn.baselines import run_baselines

    settings = settings or BaselineSettings()
    run_id = run_id or new_run_id("baselines")
    specialist, general = benchmark_classes(settings.benchmark_set), benchmark_classes(settings.general_set)
    clip_model = clip_model or ClipModel.load(settings.clip)
    result = run_baselines(Path(export_path), clip_model, specialist, general)
    out = root.working_dir("runs", run_id)
    out.mkdir(parents=True, exist_ok=True)
    (out / "baselines.json").write_text(json.dumps(result, indent=1))
    return BaselinesRun(result=result, path=out / "baselines.json")
