"""The curate stage as plain functions: hash new images, find and verify near-duplicates, group, split.

Incremental: hashes are computed once per image and stored; only pairs that involve a not-yet-curated image are
searched; groups found earlier come back from the ``duplicates`` table; existing split assignments never move.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow.compute as pc
from pydantic import BaseModel, Field
from sufra.schemas.tables import DUPLICATES, HASHES, IMAGES, SPLITS, DuplicateRecord, HashRecord, SplitRecord
from sufra.tasks.curate.hashing import (
    DedupSettings,
    HashInput,
    connected_groups,
    hash_images,
    pair_search,
    verified_distance,
)
from sufra.tasks.curate.split import SplitSettings, Unit, assign_splits

from sufra.core.store import DataRoot


class CurateSettings(BaseModel):
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    cross_class: Literal["review", "drop"] = "review"
    """A group spanning dishes has an ambiguous label: keep its representative flagged for review, or drop all."""
    keep_duplicates: bool = False  # keep near-duplicates (grouped into one split) instead of dropping them
    shard_size: int = 5000  # images per hashing task


@dataclass
class CurateResult:
    counts: Counter = field(default_factory=Counter)
    groups: list[list[str]] = field(default_factory=list)  # largest first, representative first


def images_to_hash(root: DataRoot, country: str) -> list[HashInput]:
    """Stored (status ok) images of a country that have no hashes row yet."""
    images = root.read_table(IMAGES, country, columns=["image_id", "dish", "status", "format", "width", "height"])
    images = images.filter(pc.equal(images["status"], "ok"))
    hashed = set(root.read_table(HASHES, country, columns=["image_id"])["image_id"].to_pylist())
    out = []
    for row in images.to_pylist():
        if row["image_id"] not in hashed:
            out.append(HashInput(row["image_id"], country, row["dish"], root.image_path(row["image_id"], row["format"]),
                                 row["width"] or 0, row["height"] or 0))
    return out


def hash_shard(root: DataRoot, items: list[HashInput], settings: DedupSettings, run_id: str) -> Counter:
    """Hash one shard in worker processes and append its ``hashes`` rows (written per chunk)."""
    counts: Counter = Counter()
    for records in hash_images(items, root.url, settings):
        if records:
            root.write_table(HASHES, records[0].country, records, run_id)
        counts.update(r.status for r in records)
    return counts


def _representative(members: list[int], meta: dict, assigned: set[str]) -> int:
    """Prefer an image already in a split (stability), then the largest resolution, then the earliest collect run
    (run ids sort by time; within a run, downloads finish in racy order), then the content hash (deterministic)."""
    def key(i: int):
        m = meta["rows"][i]
        return (m["image_id"] not in assigned, -(m["width"] or 0) * (m["height"] or 0), m.get("run_id") or "", m["image_id"])

    return min(members, key=key)


def dedup_and_split(root: DataRoot, country: str, settings: CurateSettings, run_id: str) -> CurateResult:
    """Search new hashed images against all, update groups, assign splits; appends duplicates and splits rows."""
    result = CurateResult()
    hashes = root.read_table(HASHES, country)
    hashes = hashes.filter(pc.equal(hashes["status"], "ok"))
    result.counts["rejected_hash"] = root.read_table(HASHES, country, columns=["status"]).num_rows - hashes.num_rows
    records: list[HashRecord] = HASHES.to_records(hashes)
    images = root.read_table(IMAGES, country)
    meta_rows = {r["image_id"]: r for r in images.select(["image_id", "width", "height", "run_id", "dish"]).to_pylist()}
    existing_splits = {r["image_id"]: r["split"] for r in root.read_table(SPLITS, country).to_pylist()}
    old_dups = root.read_table(DUPLICATES, country).to_pylist()
    dropped_before = {r["image_id"] for r in old_dups if r["dropped"]}

    # order: already curated first, new last (the search only compares pairs involving new rows)
    records.sort(key=lambda r: (r.image_id not in existing_splits and r.image_id not in dropped_before, r.image_id))
    ids = [r.image_id for r in records]
    index_of = {image_id: i for i, image_id in enumerate(ids)}
    first_new = next((i for i, r in enumerate(records)
                      if r.image_id not in existing_splits and r.image_id not in dropped_before), len(records))
    result.counts["new_images"] = len(records) - first_new
    if records:
        codes = np.array([np.frombuffer(h, np.uint8) for r in records for h in r.hashes])
        owners = np.repeat(np.arange(len(records)), [len(r.hashes) for r in records])
        a, b, d = pair_search(codes, owners, settings.dedup.candidate_threshold, int(np.searchsorted(owners, first_new)),
                              settings.dedup.block_size)
    else:
        a = b = d = np.empty(0, np.int64)
    result.counts["candidate_pairs"] = len(a)
    if settings.dedup.verify and len(a):
        verify = [np.array([np.frombuffer(h, np.uint8) for h in r.verify_hashes]) for r in records]
        ok = np.array([verified_distance(verify[i], verify[j]) <= settings.dedup.verify_threshold for i, j in zip(a, b, strict=True)])
        a, b, d = a[ok], b[ok], d[ok]
    result.counts["verified_pairs"] = len(a)

    # edges: verified pairs + groups recorded by earlier runs
    edges_a, edges_b = [a], [b]
    distance = {(int(x), int(y)): int(z) for x, y, z in zip(a, b, d, strict=True)}
    old_groups: dict[str, list[int]] = defaultdict(list)
    for row in old_dups:
        if row["image_id"] in index_of:
            old_groups[row["group_id"]].append(index_of[row["image_id"]])
    for members in old_groups.values():
        edges_a.append(np.array(members[:-1]))
        edges_b.append(np.array(members[1:]))
    labels = connected_groups(len(records), np.concatenate(edges_a).astype(np.int64), np.concatenate(edges_b).astype(np.int64))

    # exact duplicates recorded at collect time (same bytes under another URL, maybe another dish)
    exact_by_original: dict[str, list[dict]] = defaultdict(list)
    exact = images.filter(pc.equal(images["status"], "rejected:exact_duplicate")).to_pylist()
    for row in exact:
        exact_by_original[row["duplicate_of"]].append(row)

    components: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        components[int(label)].append(i)
    meta = {"rows": [dict(meta_rows.get(r.image_id, {}), image_id=r.image_id, dish=r.dish) for r in records]}
    assigned = set(existing_splits)
    dup_rows: list[DuplicateRecord] = []
    units: list[Unit] = []
    for members in components.values():
        touched = any(i >= first_new for i in members) or any(ids[i] in exact_by_original for i in members)
        rep = _representative(members, meta, assigned)
        rep_id = ids[rep]
        group_id = f"g-{rep_id[:16]}"
        extra = [row for i in members for row in exact_by_original.get(ids[i], [])]
        dishes = {records[i].dish for i in members} | {row["dish"] for row in extra}
        cross = len(dishes) > 1
        size = len(members) + len(extra)
        in_splits = {existing_splits[ids[i]] for i in members if ids[i] in existing_splits}
        if size > 1:
            result.groups.append([rep_id] + [ids[i] for i in members if i != rep] + [row["image_id"] for row in extra])
            result.counts["cross_class_groups" if cross else "duplicate_groups"] += 1
        for i in members:
            image_id = ids[i]
            is_rep = i == rep
            if len(in_splits) > 1 and image_id in existing_splits:
                is_rep = True  # a new image bridged groups already in different splits: they stay apart
            if cross:
                dropped = settings.cross_class == "drop" or not is_rep
                kind = "cross_class"
            else:
                dropped = not is_rep and not settings.keep_duplicates
                kind = "near"
            if size > 1 and touched:
                dist = 0 if i == rep else _distance_to(rep, i, distance, records, settings)
                dup_rows.append(DuplicateRecord(image_id=image_id, country=country, dish=records[i].dish, group_id=group_id,
                                                representative_id=rep_id, distance=dist, kind=kind, dropped=dropped))
            if not dropped:
                units.append(Unit(image_id, records[i].dish, group_id if size > 1 else f"g-{image_id[:16]}"))
        if touched:
            for row in extra:
                dup_rows.append(DuplicateRecord(image_id=row["image_id"], country=country, dish=row["dish"],
                                                group_id=group_id, representative_id=rep_id, distance=0,
                                                kind="cross_class" if cross else "exact", dropped=True))
    result.groups.sort(key=len, reverse=True)
    new_splits = assign_splits(units, existing_splits, settings.split)
    by_id = {u.image_id: u for u in units}
    split_rows = [SplitRecord(image_id=i, country=country, dish=by_id[i].dish, split=s, group_id=by_id[i].group_id)
                  for i, s in sorted(new_splits.items())]
    root.write_table(DUPLICATES, country, dup_rows, run_id)
    root.write_table(SPLITS, country, split_rows, run_id)
    result.counts["duplicates_rows"] = len(dup_rows)
    result.counts["dropped"] = sum(r.dropped for r in dup_rows)
    result.counts.update({f"split_{s}": n for s, n in Counter(new_splits.values()).items()})
    return result


def _distance_to(rep: int, i: int, distance: dict, records: list[HashRecord], settings: CurateSettings) -> int:
    key = (min(rep, i), max(rep, i))
    if key in distance:
        return distance[key]
    codes_a = np.array([np.frombuffer(h, np.uint8) for h in records[rep].hashes])
    codes_b = np.array([np.frombuffer(h, np.uint8) for h in records[i].hashes])
    return int(np.bitwise_count(codes_a[:, None, :] ^ codes_b[None, :, :]).sum(-1).min())
