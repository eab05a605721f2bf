"""A probe flow around run_manifest (imported by a killed subprocess too, so it lives outside test modules)."""

from __future__ import annotations

import time

from prefect import flow, task
from sufra.flows.common import run_manifest

from sufra.core.store import DataRoot


@task
def echo(value: int) -> int:
    return value


@flow
def country_flow(data_root: str, country: str, hold_s: float = 0.0, nested: bool = False) -> dict:
    root = DataRoot(data_root)
    with run_manifest(root, "probe", {"country": country}) as manifest:
        started = time.time()
        echo(1)
        if nested:  # build runs collect as a subflow of the same country: the lock must not deadlock
            country_flow(data_root=data_root, country=country)
        time.sleep(hold_s)
        manifest.counts = {"started": started, "ended": time.time()}
    return manifest.counts


