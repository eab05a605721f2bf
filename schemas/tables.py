"""Records of every table of the data root (README, "Outputs"). This module is the single source of truth for column names.

Every table has a key (``Table.key``); readers merge append-only parts with "latest record wins" per key.
Coordinates are pixels; boxes in tables are COCO-style ``[x, y, w, h]``; masks are COCO compressed RLE.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from sufra.schemas.arrow import arrow_schema, field_converters
from sufra.schemas.rle import RLE  # the one mask encoding (``instances.mask``), re-exported here

SCHEMA_VERSION = "1.1"
"""Bumped on any change of a table's columns; written to every Parquet file as ``sufra.schema_version``. A minor
bump only adds optional columns (1.1: ``license_url``, ``creator``, ``attribution`` of candidates and images), so
parts of the same major version stay readable."""
SCHEMA_VERSION_KEY = b"sufra.schema_version"
TABLE_NAME_KEY = b"sufra.table"


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Candidate(Record):
    """One discovered image URL (before download)."""

    url_hash: str  # sha256 hex of the URL
    country: str
    dish: str
    query: str
    engine: str
    url: str
    page_url: str | None = None  # the page the image was found on (landing page)
    license: str | None = None  # normalised id: cc-by-4.0, cc-by-sa-3.0, cc0-1.0, public-domain, unknown ...
    license_url: str | None = None
    creator: str | None = None  # author / artist as the engine names them (plain text)
    attribution: str | None = None  # attribution text the engine gives (plain text)
    discovered_at: dt.datetime


ImageStatus = str  # "ok" or "rejected:<reason>"


class ImageRecord(Record):
    """One fetched payload: a stored image (status ok) or a rejection with its reason.

    ``image_id`` is the sha256 of the bytes for stored images; a rejected download has no stored bytes and
    uses ``url:<url_hash>`` so every attempt is one row.
    """

    image_id: str
    url_hash: str | None = None
    country: str
    dish: str
    query: str
    engine: str
    source_url: str | None = None
    page_url: str | None = None  # the page the image was found on (landing page)
    license: str | None = None  # normalised licence id (see Candidate.license)
    license_url: str | None = None
    creator: str | None = None
    attribution: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None  # stored file extension: jpg | png | webp | ...
    n_bytes: int | None = None
    fetched_at: dt.datetime
    status: ImageStatus = "ok"
    error_message: str | None = None
    duplicate_of: str | None = None  # for status rejected:exact_duplicate: the image_id already stored
    run_id: str | None = None  # the collect run that fetched it ("earliest" for duplicate representatives)


class HashRecord(Record):
    """Perceptual hashes of one image.

    ``hashes``: one ``hash_kind`` hash of ``hash_bits`` bits per centre crop in ``crops`` (searched in the index).
    ``verify_hashes``: 256-bit pHashes of the full image then of a grid of shifted windows (candidate verification).
    Bits are packed big-endian (``numpy.packbits``).
    """

    image_id: str
    country: str
    dish: str
    hash_kind: str  # phash | dhash | whash | colorhash
    hash_bits: int
    crops: list[str]  # centre-crop fractions kept, e.g. ["1.00", "0.95", "0.90"]
    hashes: list[bytes]
    verify_hashes: list[bytes]
    width: int
    height: int
    status: str = "ok"  # ok | rejected:<reason>
    error_message: str | None = None


class DuplicateRecord(Record):
    """Membership of one image in a duplicate group (images without duplicates have no row)."""

    image_id: str
    country: str
    dish: str
    group_id: str
    representative_id: str
    distance: int  # Hamming distance to the representative (0 for exact copies)
    kind: Literal["exact", "near", "cross_class"]
    dropped: bool


class SplitRecord(Record):
    image_id: str
    country: str
    dish: str
    split: Literal["train", "val", "test"]
    group_id: str


class InstanceRecord(Record):
    instance_id: str
    image_id: str
    country: str
    label: str  # dish id
    phrase: str
    bbox: list[float]  # [x, y, w, h] pixels
    box_score: float
    mask: RLE | None = None  # COCO compressed RLE of the instance (Parquet struct<size, counts>)
    mask_score: float | None = None
    area: float
    source: Literal["auto", "review"] = "auto"
    model_versions: dict[str, str] = Field(default_factory=dict)
    config_hash: str | None = None  # the annotate configuration that produced it (auto instances)
    created_at: dt.datetime
    deleted: bool = False  # a review that removes an automatic instance writes a tombstone


class AnnotationRecord(Record):
    """Image-level outcome of the annotate stage; ``config_hash`` (models + settings) is its cache key."""

    image_id: str
    country: str
    dish: str
    split: str | None = None
    status: Literal["auto_accepted", "needs_review", "rejected"]
    reason: str | None = None
    n_instances: int
    width: int
    height: int
    config_hash: str
    model_versions: dict[str, str] = Field(default_factory=dict)
    annotated_at: dt.datetime


class ReviewRecord(Record):
    image_id: str
    country: str
    decision: Literal["accepted", "rejected", "corrected"]
    reviewer: str | None = None
    ls_task_id: int | None = None
    reviewed_at: dt.datetime


@dataclass(frozen=True)
class Table:
    """A table: its name, record class and key column."""

    name: str
    record: type[Record]
    key: str

    @property
    def schema(self) -> pa.Schema:
        return arrow_schema(
            self.record,
            metadata={SCHEMA_VERSION_KEY: SCHEMA_VERSION.encode(), TABLE_NAME_KEY: self.name.encode()},
        )

    @property
    def columns(self) -> list[str]:
        return list(self.record.model_fields)

    def to_arrow(self, rows: list[Record] | list[dict[str, Any]]) -> pa.Table:
        """Validate rows (records or dicts) into an arrow table with this table's schema."""
        converters = field_converters(self.record)
        dumped = []
        for row in rows:
            record = row if isinstance(row, self.record) else self.record.model_validate(row)
            values = record.model_dump()
            dumped.append({name: convert(values[name]) if convert else values[name] for name, convert, _ in converters})
        return pa.Table.from_pylist(dumped, schema=self.schema)

    def to_records(self, table: pa.Table) -> list[Record]:
        converters = field_converters(self.record)
        return [
            self.record.model_validate({name: convert(row[name]) if convert else row[name] for name, _, convert in converters})
            for row in table.select(list(self.record.model_fields)).to_pylist()
        ]


CANDIDATES = Table("candidates", Candidate, "url_hash")
IMAGES = Table("images", ImageRecord, "image_id")
HASHES = Table("hashes", HashRecord, "image_id")
DUPLICATES = Table("duplicates", DuplicateRecord, "image_id")
SPLITS = Table("splits", SplitRecord, "image_id")
INSTANCES = Table("instances", InstanceRecord, "instance_id")
REVIEWS = Table("reviews", ReviewRecord, "image_id")
ANNOTATIONS = Table("annotations", AnnotationRecord, "image_id")

TABLES: dict[str, Table] = {
    t.name: t for t in (CANDIDATES, IMAGES, HASHES, DUPLICATES, SPLITS, INSTANCES, ANNOTATIONS, REVIEWS)
}


def table(name: str) -> Table:
    """The table called ``name``; a ``KeyError`` naming the known tables otherwise."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table '{name}'; known tables: {', '.join(TABLES)}") from None
