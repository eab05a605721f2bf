"""The data root: content-addressed images, append-only Parquet parts, run manifests (README, "Outputs").

Every write is atomic: bytes go to a hidden temp name in the target folder, then are renamed. Readers list only
final names (``*.parquet`` not starting with ``.``), so a part left behind by a killed writer is never read.
Works on local paths and any fsspec URL (``memory://``, ``s3://``...).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from sufra.core.errors import StoreError
from sufra.schemas.tables import SCHEMA_VERSION, SCHEMA_VERSION_KEY, Record, Table

TEMP_PREFIX = ".tmp-"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_run_lock = threading.Lock()
_last_run_ns = 0


def new_run_id(flow: str) -> str:
    """A time-sortable, unique run id: ``<UTC time>-<flow>-<random>``."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{flow}-{uuid.uuid4().hex[:8]}"


def _monotonic_ns() -> int:
    """Wall-clock nanoseconds, strictly increasing within this process (orders parts for latest-wins)."""
    global _last_run_ns
    with _run_lock:
        now = time.time_ns()
        _last_run_ns = now if now > _last_run_ns else _last_run_ns + 1
        return _last_run_ns


class RunManifest(BaseModel):
    """What a flow run did: parameters, versions, counts and status (``runs/<run_id>.json``)."""

    run_id: str
    flow: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    counts: dict[str, Any] = Field(default_factory=dict)
    status: str = "running"  # running | completed | failed
    error: str | None = None
    started_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None


def package_versions(names: Sequence[str] = ("sufra", "prefect", "torch", "transformers", "pyarrow")) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"schema": SCHEMA_VERSION}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


class DataRoot:
    """One data root (local folder or fsspec URL). Cheap to construct; safe to share between threads."""

    def __init__(self, url: str | os.PathLike[str]):
        url = os.fspath(url)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise StoreError(f"data root '{url}' cannot be opened: {exc}") from None
        self.url = url
        self.root = self.root.rstrip("/") or "/"
        self.is_local = self.fs.protocol in ("file", "local") or "file" in tuple(self.fs.protocol)

    def __repr__(self) -> str:
        return f"DataRoot({self.url!r})"

    def __reduce__(self):  # picklable for process pools and Dask workers
        return (DataRoot, (self.url,))

    # -- paths -------------------------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def image_path(self, image_id: str, ext: str) -> str:
        return self.path("images", image_id[:2], f"{image_id}.{ext}")

    def local_path(self, path: str) -> str | None:
        """The OS path of ``path`` when the root is local, else ``None``."""
        return path if self.is_local else None

    def working_dir(self, *parts: str) -> Path:
        """A folder under the root as a ``Path`` for code that writes with plain file APIs (checkpoints, caches);
        local roots only give a real OS path."""
        path = self.path(*parts)
        return Path(self.local_path(path) or path)

    # -- atomic writes -----------------------------------------------------------------------------------------
    def write_bytes_atomic(self, path: str, data: bytes) -> None:
        folder, name = path.rsplit("/", 1)
        tmp = f"{folder}/{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{name}"
        if self.is_local:  # hot path (one call per stored image): plain os calls, ~5x cheaper than fsspec's
            try:
                os.makedirs(folder, exist_ok=True)
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
            return
        try:
            self.fs.makedirs(folder, exist_ok=True)
            with self.fs.open(tmp, "wb") as fh:
                fh.write(data)
            self.fs.mv(tmp, path)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)

    def read_bytes(self, path: str) -> bytes:
        if self.is_local:  # hot path (hashing, annotate read every stored image): plain open, no fsspec layers
            with open(path, "rb") as fh:
                return fh.read()
        with self.fs.open(path, "rb") as fh:
            return fh.read()

    # -- images ------------------------------------------------------------------------------------------------
    def put_image(self, data: bytes, ext: str) -> str:
        """Store image bytes under their sha256 (a copy already stored is not written again). Returns the id."""
        image_id = sha256_hex(data)
        path = self.image_path(image_id, ext)
        exists = os.path.exists(path) if self.is_local else self.fs.exists(path)
        if not exists:
            self.write_bytes_atomic(path, data)
        return image_id

    def has_image(self, image_id: str, ext: str) -> bool:
        return self.fs.exists(self.image_path(image_id, ext))

    def read_image_bytes(self, image_id: str, ext: str) -> bytes:
        return self.read_bytes(self.image_path(image_id, ext))

    # -- tables ------------------------------------------------------------------------------------------------
    def table_dir(self, table: Table, country: str | None = None) -> str:
        base = self.path("tables", table.name)
        return base if country is None else f"{base}/country={country}"

    def write_table(
        self,
        table: Table,
        country: str,
        rows: pa.Table | Iterable[Record] | Iterable[dict[str, Any]],
        run_id: str,
        extra_metadata: dict[str, str] | None = None,
    ) -> str | None:
        """Append one Parquet part ``tables/<table>/country=<c>/<run_id>-<n>.parquet``; returns its path.

        ``n`` is a nanosecond write stamp: readers resolve "latest record wins" by it. Nothing is written for
        zero rows.
        """
        data = rows if isinstance(rows, pa.Table) else table.to_arrow(list(rows))
        if data.num_rows == 0:
            return None
        data = data.select(table.columns).cast(table.schema)
        metadata = dict(table.schema.metadata or {})
        metadata[b"sufra.run_id"] = run_id.encode()
        for key, value in (extra_metadata or {}).items():
            metadata[key.encode()] = value.encode()
        data = data.replace_schema_metadata(metadata)
        sink = io.BytesIO()
        pq.write_table(data, sink, compression="zstd")
        path = f"{self.table_dir(table, country)}/{run_id}-{_monotonic_ns()}.parquet"
        self.write_bytes_atomic(path, sink.getvalue())
        return path

    def table_parts(self, table: Table, country: str | None = None) -> list[str]:
        """Final parts of a table (temp files excluded), oldest write first."""
        base = self.table_dir(table, country)
        if not self.fs.exists(base):
            return []
        parts = [
            p for p in self.fs.find(base)
            if p.endswith(".parquet") and not p.rsplit("/", 1)[-1].startswith(".")
        ]
        return sorted(parts, key=_part_order)

    def read_table(
        self,
        table: Table,
        country: str | None = None,
        columns: Sequence[str] | None = None,
        latest: bool = True,
    ) -> pa.Table:
        """Union of all parts with this table's schema; with ``latest`` one row per key, the newest write."""
        parts = self.table_parts(table, country)
        if not parts:
            return table.schema.empty_table() if columns is None else table.schema.empty_table().select(columns)
        pieces = []
        for part in parts:
            try:
                piece = pq.read_table(part, filesystem=self.fs)
            except (OSError, pa.ArrowInvalid) as exc:
                raise StoreError(f"table part {part} is unreadable ({exc}); move it aside and re-run") from None
            version = (piece.schema.metadata or {}).get(SCHEMA_VERSION_KEY, b"?").decode()
            if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
                raise StoreError(
                    f"table part {part} has schema version {version}, this sufra reads {SCHEMA_VERSION}"
                )
            for field in table.schema:  # parts written before a column was added: nulls (new columns are optional)
                if field.name not in piece.column_names and field.nullable:
                    piece = piece.append_column(field, pa.nulls(piece.num_rows, field.type))
            pieces.append(piece.select(table.columns).cast(table.schema))
        merged = pa.concat_tables(pieces)
        if latest and merged.num_rows:
            keys = merged.column(table.key).to_pandas()
            keep = ~keys.duplicated(keep="last").to_numpy()
            merged = merged.filter(pa.array(keep))
        return merged.select(list(columns)) if columns is not None else merged

    def countries_with(self, table: Table | str) -> list[str]:
        """Countries (sorted slugs) whose partition of ``table`` holds at least one final part: an empty folder or
        one with only a killed writer's temp file does not count."""
        name = table if isinstance(table, str) else table.name
        base = self.path("tables", name)
        if not self.fs.exists(base):
            return []
        out = []
        for entry in self.fs.ls(base, detail=False):
            folder = entry.rstrip("/").rsplit("/", 1)[-1]
            if not folder.startswith("country="):
                continue
            country = folder[len("country="):]
            parts = [p for p in self.fs.find(f"{base}/{folder}")
                     if p.endswith(".parquet") and not p.rsplit("/", 1)[-1].startswith(".")]
            if parts:
                out.append(country)
        return sorted(out)

    def read_records(self, table: Table, country: str | None = None) -> list[Record]:
        return table.to_records(self.read_table(table, country))

    # -- run manifests -----------------------------------------------------------------------------------------
    def manifest_path(self, run_id: str) -> str:
        return self.path("runs", f"{run_id}.json")

    def write_manifest(self, manifest: RunManifest) -> None:
        self.write_bytes_atomic(
            self.manifest_path(manifest.run_id), manifest.model_dump_json(indent=2).encode()
        )

    def read_manifest(self, run_id: str) -> RunManifest:
        path = self.manifest_path(run_id)
        if not self.fs.exists(path):
            raise StoreError(f"no run manifest {path}")
        return RunManifest.model_validate(json.loads(self.read_bytes(path)))

    def temp_files(self) -> list[str]:
        """Temp files and staging folders left by killed writers (never read; the build flow sweeps them)."""
        if not self.fs.exists(self.root):
            return []
        found = sorted(p for p in self.fs.find(self.root, withdirs=True) if p.rsplit("/", 1)[-1].startswith(TEMP_PREFIX))
        return [p for p in found if not any(p.startswith(q + "/") for q in found)]  # a staging folder, not its files


def _part_order(path: str) -> tuple[int, str]:
    stem = path.rsplit("/", 1)[-1][: -len(".parquet")]
    stamp = stem.rsplit("-", 1)[-1]
    return (int(stamp) if stamp.isdigit() else 0, path)
