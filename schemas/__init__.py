"""Pydantic records and pyarrow schemas of every table, and the COCO structures."""

from schemas.tables import (
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
    "CANDIDATES", "DUPLICATES", "HASHES", "IMAGES", "INSTANCES", "REVIEWS", "SCHEMA_VERSION", "SPLITS",
    "TABLES", "Table", "table",
]
