"""Leakage-free, stratified, stable train/val/test splits.

The unit is a group (near-duplicates share one): a group never crosses splits. Per dish, new groups are placed
largest first (ties in a seeded hash order) into the split whose count is furthest below its target share, so
ratios stay within one image of target when the last units are single images. Existing assignments never move.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

from pydantic import BaseModel, field_validator

SPLITS = ("train", "val", "test")


class SplitSettings(BaseModel):
    ratios: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
    seed: int = 0

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, value: dict[str, float]) -> dict[str, float]:
        if set(value) != set(SPLITS):
            raise ValueError(f"ratios need exactly {', '.join(SPLITS)}")
        if any(v < 0 for v in value.values()) or abs(sum(value.values()) - 1) > 1e-6:
            raise ValueError("ratios must be non-negative and sum to 1")
        return value


@dataclass(frozen=True)
class Unit:
    image_id: str
    dish: str
    group_id: str


def _order_key(seed: int, group_id: str) -> str:
    return hashlib.sha256(f"{seed}:{group_id}".encode()).hexdigest()


def assign_splits(units: list[Unit], existing: dict[str, str], settings: SplitSettings) -> dict[str, str]:
    """Split for every unit without one; ``existing`` (image_id -> split) is kept as it is.

    A group that already has a member in a split puts its new members there too.
    """
    group_split: dict[str, str] = {}
    counts: dict[str, Counter] = defaultdict(Counter)
    for unit in units:
        if unit.image_id in existing:
            group_split.setdefault(unit.group_id, existing[unit.image_id])
            counts[unit.dish][existing[unit.image_id]] += 1
    new_groups: dict[tuple[str, str], list[Unit]] = defaultdict(list)
    result: dict[str, str] = {}
    for unit in units:
        if unit.image_id in existing:
            continue
        if unit.group_id in group_split:
            result[unit.image_id] = group_split[unit.group_id]
            counts[unit.dish][group_split[unit.group_id]] += 1
        else:
            new_groups[(unit.dish, unit.group_id)].append(unit)
    by_dish: dict[str, list[list[Unit]]] = defaultdict(list)
    for (dish, _), members in new_groups.items():
        by_dish[dish].append(members)
    for dish, groups in sorted(by_dish.items()):
        groups.sort(key=lambda g: (-len(g), _order_key(settings.seed, g[0].group_id)))
        count = counts[dish]
        for members in groups:
            total = sum(count.values()) + len(members)
            deficits = {s: settings.ratios[s] * total - count[s] for s in SPLITS}
            split = max(SPLITS, key=lambda s: (deficits[s], -SPLITS.index(s)))
            for unit in members:
                result[unit.image_id] = split
            count[split] += len(members)
    return result
