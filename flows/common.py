"""Helpers every flow shares: run manifests around a flow body, artifacts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any

from sufra.core.errors import SufraError
from sufra.core.store import DataRoot, RunManifest, new_run_id, package_versions, utcnow

_HELD_DATA_LOCKS: ContextVar[frozenset[str]] = ContextVar("sufra_held_data_locks", default=frozenset())
CANCELLED_ERRORS = ("TerminationSignal", "CancelledRun", "CancelledError", "KeyboardInterrupt")
"""Exception class names that mean the run was stopped from outside (Prefect cancel, Ctrl-C), not that it failed:
on cancel Prefect 3.8 stops the flow process with SIGTERM, which its signal handler raises as TerminationSignal."""


class DataLockTimeout(SufraError):
    """Another run of the same country on the same data root held the data lock for too long."""


def data_lock_name(root: DataRoot, country: str) -> str:
    """The global concurrency limit that serialises runs of ``country`` on ``root``: ``data:<country>:<12 hex>``
    (sha256 of the filesystem protocol and absolute root path)."""
    protocol = root.fs.protocol if isinstance(root.fs.protocol, str) else root.fs.protocol[0]
    digest = hashlib.sha256(f"{protocol}://{root.root}".encode()).hexdigest()[:12]
    return f"data:{country}:{digest}"


@contextmanager
def data_lock(root: DataRoot, country: str, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the (country, data root) lock for the block, so collect and build of one country never write the same
    data root at once: a second run logs that it is queued and waits, then fails with :class:`DataLockTimeout` after
    ``timeout_s`` (default ``SUFRA_DATA_LOCK_TIMEOUT_S``). Re-entrant within a run (build's subflows hold the lock
    their parent took); nothing outside a flow run.

    A local data root: an OS file lock on ``<root>/.locks/<country>.lock`` (released by the kernel even when the
    process is killed; the file names the holder). Any other root (object store): the Prefect global concurrency
    limit :func:`data_lock_name` (1 slot, created on first use; a killed holder's lease expires after 60 s)."""
    from prefect.context import FlowRunContext

    name = data_lock_name(root, country)
    held = _HELD_DATA_LOCKS.get()
    if name in held or FlowRunContext.get() is None:
        yield
        return
    from sufra.core.settings import sufra_settings

    timeout_s = sufra_settings().data_lock_timeout_s if timeout_s is None else timeout_s
    holder = _file_lock(root, country, timeout_s) if root.is_local else _prefect_lock(root, country, name, timeout_s)
    with holder:
        token = _HELD_DATA_LOCKS.set(held | {name})
        try:
            yield
        finally:
            _HELD_DATA_LOCKS.reset(token)


def _lock_timeout(root: DataRoot, country: str, timeout_s: float, holder: str) -> DataLockTimeout:
    return DataLockTimeout(f"data root {root.url} stayed locked by another run of '{country}' ({holder}) for "
                           f"{timeout_s:.0f} s; try again when it has finished")


@contextmanager
def _file_lock(root: DataRoot, country: str, timeout_s: float) -> Iterator[None]:
    import fcntl
    import json
    import os
    import socket
    import time
    from pathlib import Path

    from prefect import get_run_logger
    from prefect.context import FlowRunContext

    path = Path(root.root) / ".locks" / f"{country}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout_s
        warned = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown run"
                if not warned:
                    get_run_logger().warning("queued: data root %s is locked for '%s' by %s; waiting up to %.0f s",
                                             root.url, country, holder, timeout_s)
                    warned = True
                if time.monotonic() >= deadline:
                    raise _lock_timeout(root, country, timeout_s, holder) from None
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        run = FlowRunContext.get().flow_run
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"flow_run": run.name if run else None, "pid": os.getpid(),
                                 "host": socket.gethostname(), "since": utcnow().isoformat()}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _prefect_lock(root: DataRoot, country: str, name: str, timeout_s: float) -> Iterator[None]:
    from prefect import get_client, get_run_logger
    from prefect.concurrency.sync import concurrency

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
        if client.read_global_concurrency_limit_by_name(name).active_slots:
            get_run_logger().warning("queued: data root %s is locked for '%s' by another run (lock %s); waiting up "
                                     "to %.0f s", root.url, country, name, timeout_s)
    with ExitStack() as stack:
        try:
            stack.enter_context(concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True, lease_duration=60,
                                            raise_on_lease_renewal_failure=False))
        except TimeoutError:
            raise _lock_timeout(root, country, timeout_s, f"lock {name}") from None
        yield


@contextmanager
def run_manifest(root: DataRoot, flow: str, parameters: dict[str, Any]) -> Iterator[RunManifest]:
    """Write ``runs/<run_id>.json`` as running, then completed (with counts), cancelled (stopped from outside) or
    failed (with the error). With a ``country`` parameter, inside a flow run: task runs get the country's tag, and
    the run holds the (country, data root) lock (:func:`data_lock`) for its whole body."""
    country = parameters.get("country")
    with ExitStack() as stack:
        if country:
            from prefect import tags

            stack.enter_context(tags(country))
            stack.enter_context(data_lock(root, country))
        manifest = RunManifest(run_id=new_run_id(flow), flow=flow, parameters=parameters, versions=package_versions())
        root.write_manifest(manifest)
        try:
            yield manifest
        except BaseException as exc:
            cancelled = type(exc).__name__ in CANCELLED_ERRORS
            manifest.status = "cancelled" if cancelled else "failed"
            manifest.error = f"{type(exc).__name__}: {exc}"[:500]
            manifest.finished_at = utcnow()
            root.write_manifest(manifest)
            raise
        manifest.status = "completed"
        manifest.finished_at = utcnow()
        root.write_manifest(manifest)


def _is_demo_run() -> bool:
    """Inside a run tagged ``demo`` (the demo flow enters ``prefect.tags("demo")``; its deployment is tagged too)."""
    from prefect.context import FlowRunContext, TagsContext

    context = FlowRunContext.get()
    run_tags = set(context.flow_run.tags) if context and context.flow_run else set()
    return "demo" in run_tags | set(TagsContext.get().current_tags)


def table_artifact(key: str, rows: list[dict[str, Any]], description: str) -> None:
    """A Prefect table artifact when running inside a flow run (silently nothing outside one). In a demo run the
    key becomes ``demo-<key>`` and the description says DEMO, so demo tables never mix with a real country's."""
    from prefect.artifacts import create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None or not rows:
        return
    if _is_demo_run():
        key = key if key.startswith("demo-") else f"demo-{key}"
        description = f"DEMO (synthetic images, random models: meaningless). {description}"
    create_table_artifact(key=key, table=rows, description=description)


def run_shards(task, calls: list[tuple]) -> list:
    """Run a shard task for each argument tuple: one after another on the default thread-pool runner (each shard
    already uses every core: concurrent model inference would only contend), submitted on distributed runners
    (Dask, Ray) so shards spread over the workers."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    if runner is None or isinstance(runner, ThreadPoolTaskRunner):
        return [task(*args) for args in calls]
    futures = [task.submit(*args) for args in calls]
    return [future.result() for future in futures]


def progress_bar(show: bool, desc: str, unit: str, total: int | None = None):
    """A tqdm bar for the CLI, or None (flows run by workers and deployments show no bar)."""
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)


def permanent_failure(exc: BaseException):
    """A flow's end for an error no retry can fix (``PermanentError``: no network, a name that does not resolve,
    401/403, missing weights): one ERROR line naming the cause, the traceback at DEBUG only, and a Failed state
    whose message is that line. The flow returns it; calling the flow still raises ``exc`` itself."""
    from prefect import get_run_logger
    from prefect.states import Failed

    logger = get_run_logger()
    logger.error("%s", exc)
    logger.debug("traceback of: %s", exc, exc_info=exc)
    return Failed(message=str(exc), data=exc)
