"""The curate stage in one call: hash new images in shards, dedup + split once over the country, write the report.

``run`` is the whole stage in-process (no Prefect, shards one after another) for tests and the REPL;
``sufra.flows.curate`` calls the same building blocks as tasks (retries, fan-out) and adds the run manifest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sufra.schemas.tables import IMAGES
from sufra.tasks.curate.dedup import CurateResult, CurateSettings, dedup_and_split, hash_shard, images_to_hash
from sufra.tasks.curate.hashing import HashInput
from sufra.tasks.curate.report import render_curate_report

from sufra.core.catalog import load_country
from sufra.core.store import DataRoot, new_run_id

__all__ = ["CurateRun", "CurateSettings", "dedup_and_split", "hash_shard", "hash_shards", "run", "write_report"]


@dataclass
class CurateRun:
    """What one curate run did: counts (``hash_<status>`` per hashed image, then dedup/split counts), the
    duplicate groups (largest first, representative first) and the path of the HTML report."""

    counts: Counter = field(default_factory=Counter)
    groups: list[list[str]] = field(default_factory=list)
    report: str = ""


def hash_shards(root: DataRoot, country: str, settings: CurateSettings) -> list[list[HashInput]]:
    """The stored images of ``country`` without a hashes row, cut into shards of ``settings.shard_size``."""
    todo = images_to_hash(root, country)
    return [todo[i : i + settings.shard_size] for i in range(0, len(todo), settings.shard_size)]


def hash_counts(per_shard: list[Counter | dict]) -> Counter:
    """Per-shard hash status counts summed as ``hash_<status>``."""
    counts: Counter = Counter()
    for result in per_shard:
        counts.update({f"hash_{k}": v for k, v in result.items()})
    return counts


def write_report(root: DataRoot, country: str, counts: dict, groups: list[list[str]], run_id: str) -> str:
    """Render the curate report (counts, duplicate groups as thumbnails) to ``runs/<run_id>/curate-report.html``;
    returns its path."""
    images = root.read_table(IMAGES, country, columns=["image_id", "dish", "format", "status"]).to_pylist()
    paths = {r["image_id"]: root.image_path(r["image_id"], r["format"]) for r in images if r["status"] == "ok"}
    dishes = {r["image_id"]: r["dish"] for r in images}
    page = render_curate_report(root, country, counts, groups, paths, dishes)
    path = root.path("runs", run_id, "curate-report.html")
    root.write_bytes_atomic(path, page.encode())
    return path


def finish(counts: Counter, result: CurateResult) -> Counter:
    """Hash counts plus the dedup/split counts."""
    counts = Counter(counts)
    counts.update(result.counts)
    return counts


def run(root: DataRoot, country: str, settings: CurateSettings | None = None, run_id: str | None = None) -> CurateRun:
    """The whole curate stage without Prefect (shards hashed one after another)."""
    settings = settings or CurateSettings()
    load_country(country)
    run_id = run_id or new_run_id("curate")
    counts = hash_counts([hash_shard(root, shard, settings.dedup, run_id) for shard in hash_shards(root, country, settings)])
    result = dedup_and_split(root, country, settings, run_id)
    counts = finish(counts, result)
    report = write_report(root, country, dict(counts), result.groups, run_id)
    return CurateRun(counts=counts, groups=result.groups, report=report)
