"""The annotate stage in one call: Grounding DINO boxes + SAM masks for curated images, shard by shard.

``run`` is the whole stage in-process (no Prefect, shards one after another) for tests and the REPL;
``sufra.flows.annotate`` runs :func:`annotate_shard` as a task per shard (retries, GPU tag, fan-out) and adds
the run manifest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sufra.schemas.tables import ANNOTATIONS, INSTANCES
from sufra.tasks.annotate.instances import (
    AnnotateItem,
    AnnotateSettings,
    annotate_items,
    config_hash,
    items_to_annotate,
    load_models,
)

from sufra.core.catalog import load_country
from sufra.core.store import DataRoot, new_run_id

__all__ = ["AnnotatePlan", "AnnotateRun", "AnnotateSettings", "annotate_shard", "plan", "run"]


@dataclass
class AnnotatePlan:
    """The work of one run: shards of items not yet annotated with this configuration."""

    shards: list[list[AnnotateItem]]
    config_hash: str
    model_versions: dict[str, str]  # {"detector": ..., "segmenter": ...}

    @property
    def images(self) -> int:
        return sum(len(s) for s in self.shards)


@dataclass
class AnnotateRun:
    """Counts (``images``, ``shards``, ``instances``, one per annotation status) and the configuration."""

    counts: Counter = field(default_factory=Counter)
    config_hash: str = ""
    model_versions: dict[str, str] = field(default_factory=dict)

    def manifest_counts(self) -> dict:
        return {**self.counts, "config_hash": self.config_hash,
                **{f"model_{k}": v for k, v in self.model_versions.items()}}


def plan(root: DataRoot, country: str, settings: AnnotateSettings) -> AnnotatePlan:
    """Load the models (once per process), hash the configuration, cut the images still to do into shards."""
    detector, segmenter = load_models(settings)
    versions = {"detector": detector.version, "segmenter": segmenter.version}
    cfg = config_hash(settings, versions)
    items = items_to_annotate(root, country, settings, cfg)
    shards = [items[i : i + settings.shard_size] for i in range(0, len(items), settings.shard_size)]
    return AnnotatePlan(shards=shards, config_hash=cfg, model_versions=versions)


def annotate_shard(root: DataRoot, country: str, items: list[AnnotateItem], settings: AnnotateSettings,
                   cfg_hash: str, run_id: str) -> dict[str, int]:
    """One shard: rows are appended when the shard is done (a crash re-runs the shard, never half of it).
    Returns counts per annotation status and ``instances``."""
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


def summarize(work: AnnotatePlan, per_shard: list[dict[str, int]]) -> AnnotateRun:
    totals: Counter = Counter(images=work.images, shards=len(work.shards))
    for result in per_shard:
        totals.update(result)
    return AnnotateRun(counts=totals, config_hash=work.config_hash, model_versions=work.model_versions)


def run(root: DataRoot, country: str, settings: AnnotateSettings | None = None,
        run_id: str | None = None) -> AnnotateRun:
    """The whole annotate stage without Prefect; images already annotated with the same models and settings are
    skipped."""
    settings = settings or AnnotateSettings()
    load_country(country)
    run_id = run_id or new_run_id("annotate")
    work = plan(root, country, settings)
    return summarize(work, [annotate_shard(root, country, shard, settings, work.config_hash, run_id)
                            for shard in work.shards])
