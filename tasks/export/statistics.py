"""Class statistics of a release: images and instances per class (Food2K's long-tail view), imbalance ratio."""

from __future__ import annotations

from collections import Counter


def long_tail(selection) -> list[dict]:
    """Images and instances per class of a release's ``Selection`` (its ``instances`` and ``categories``), sorted by
    images (Food2K's long-tail view)."""
    images_per = Counter()
    seen = set()
    instances_per = Counter()
    for inst in selection.instances:
        key = (inst.country, inst.label)
        instances_per[key] += 1
        if (inst.image_id, key) not in seen:
            seen.add((inst.image_id, key))
            images_per[key] += 1
    rows = [{"category": c.name, "images": images_per[(c.country, c.dish)], "instances": instances_per[(c.country, c.dish)]}
            for c in selection.categories]
    return sorted(rows, key=lambda r: (-r["images"], r["category"]))


def imbalance_ratio(rows: list[dict]) -> float | None:
    present = [r["images"] for r in rows if r["images"] > 0]
    return round(max(present) / min(present), 2) if present else None
