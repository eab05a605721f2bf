"""Helpers every flow shares: run manifests around a flow body, artifacts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sufra.core.store import DataRoot, RunManifest, new_run_id, package_versions, utcnow


@contextmanager
def run_manifest(root: DataRoot, flow: str, parameters: dict[str, Any]) -> Iterator[RunManifest]:
    """Write ``runs/<run_id>.json`` as running, then completed (with counts) or failed (with the error)."""
    manifest = RunManifest(run_id=new_run_id(flow), flow=flow, parameters=parameters, versions=package_versions())
    root.write_manifest(manifest)
    try:
        yield manifest
    except BaseException as exc:
        manifest.status = "failed"
        manifest.error = f"{type(exc).__name__}: {exc}"[:500]
        manifest.finished_at = utcnow()
        root.write_manifest(manifest)
        raise
    manifest.status = "completed"
    manifest.finished_at = utcnow()
    root.write_manifest(manifest)


def table_artifact(key: str, rows: list[dict[str, Any]], description: str) -> None:
    """A Prefect table artifact when running inside a flow run (silently nothing outside one)."""
    from prefect.artifacts import create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None or not rows:
        return
    create_table_artifact(key=key, table=rows, description=description)


def run_shards(task, calls: list[tuple]) -> list:
    """Run a shard task for each argument tuple: one after another on the default thread-pool runner (each shard
    already uses every core: concurrent model inference would only contend), submitted on distributed runners
    (Dask, Ray) so shards spread over the workers."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = type(context.task_runner).__name__ if context and context.task_runner else "ThreadPoolTaskRunner"
    if runner == "ThreadPoolTaskRunner":
        return [task(*args) for args in calls]
    futures = [task.submit(*args) for args in calls]
    return [future.result() for future in futures]


def progress_bar(show: bool, desc: str, unit: str, total: int | None = None):
    """A tqdm bar for the CLI, or None (flows run by workers and deployments show no bar)."""
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
