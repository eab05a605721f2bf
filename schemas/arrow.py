"""Derive pyarrow schemas from pydantic records, so column names and types are spelled once.

Conventions: ``str`` -> string, ``int`` -> int64, ``float`` -> float64, ``bool`` -> bool,
``bytes`` -> binary, ``datetime`` -> timestamp[us, UTC], ``list[X]`` -> list<X>, ``dict[K, V]`` ->
list<struct<key, value>> (portable: Arrow maps do not load in Hugging Face ``datasets``), nested ``BaseModel`` ->
struct; ``X | None`` -> nullable, otherwise the column is not nullable.
"""

from __future__ import annotations

import datetime as dt
import functools
import types
import typing
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from pydantic import BaseModel

_SCALARS: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    bytes: pa.binary(),
    dt.datetime: pa.timestamp("us", tz="UTC"),
}


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def arrow_type(annotation: Any) -> tuple[pa.DataType, bool]:
    """Return ``(arrow type, nullable)`` for a pydantic field annotation."""
    annotation, nullable = _unwrap_optional(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return pa.string(), nullable
    if annotation in _SCALARS:
        return _SCALARS[annotation], nullable
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        item_type, _ = arrow_type(item)
        return pa.list_(item_type), nullable
    if origin is dict:
        key, value = typing.get_args(annotation)
        entry = pa.struct([pa.field("key", arrow_type(key)[0], nullable=False), pa.field("value", arrow_type(value)[0])])
        return pa.list_(entry), nullable
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct(list(arrow_schema(annotation))), nullable
    raise TypeError(f"no arrow type for annotation {annotation!r}")


def arrow_schema(record: type[BaseModel], metadata: dict[str, str] | None = None) -> pa.Schema:
    """The pyarrow schema of a record class, fields in declaration order."""
    fields = []
    for name, info in record.model_fields.items():
        typ, nullable = arrow_type(info.annotation)
        fields.append(pa.field(name, typ, nullable=nullable))
    return pa.schema(fields, metadata=metadata)


def to_arrow_value(annotation: Any, value: Any) -> Any:
    """A python value of a field (from ``model_dump()``) as pyarrow expects it (dicts as key/value entries)."""
    annotation, _ = _unwrap_optional(annotation)
    if value is None:
        return None
    if typing.get_origin(annotation) is dict:
        return [{"key": k, "value": v} for k, v in value.items()]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        return {name: to_arrow_value(info.annotation, value.get(name)) for name, info in annotation.model_fields.items()}
    return value


@functools.cache
def field_converters(record: type[BaseModel]) -> tuple[tuple[str, Callable[[Any], Any] | None, Callable[[Any], Any] | None], ...]:
    """Per field of a record class: (name, to-arrow converter, from-arrow converter), ``None`` where values pass as
    they are (scalars, lists of scalars). Worked out once per class: the per-value type inspection cost ~0.2 ms a
    row, the main cost of writing a table."""
    out = []
    for name, info in record.model_fields.items():
        inner, _ = _unwrap_optional(info.annotation)
        if typing.get_origin(inner) is dict or (isinstance(inner, type) and issubclass(inner, BaseModel)):
            out.append((name, functools.partial(to_arrow_value, info.annotation),
                        functools.partial(from_arrow_value, info.annotation)))
        else:
            out.append((name, None, None))
    return tuple(out)


def from_arrow_value(annotation: Any, value: Any) -> Any:
    """Back from pyarrow's ``to_pylist`` (key/value entries to dicts)."""
    annotation, _ = _unwrap_optional(annotation)
    if value is None:
        return None
    origin = typing.get_origin(annotation)
    if origin is dict and isinstance(value, list):
        return {entry["key"]: entry["value"] for entry in value}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        return {
            name: from_arrow_value(info.annotation, value.get(name))
            for name, info in annotation.model_fields.items()
        }
    return value
