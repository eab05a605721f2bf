"""Pydantic records and pyarrow schemas of every table, and the COCO structures."""

from sufra.schemas.tables import (
    ANNOTATIONS,
    CANDIDATES,
    DUPLICATES,
    HASHES,
    IMAGES,
    INSTANCES,
    REVIEWS,
    SCHEMA_VERSION,
    SPLITS,
    TABLES,
    Table,
    table,
)

__all__ = [
    "ANNOTATIONS", "CANDIDATES", "DUPLICATES", "HASHES", "IMAGES", "INSTANCES", "REVIEWS", "SCHEMA_VERSION", "SPLITS",
    "TABLES", "Table", "table",
]
