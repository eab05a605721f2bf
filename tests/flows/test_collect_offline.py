"""collect as a deployment runs it, without network: each engine's first query tried once, the others never
started, one ERROR line and no traceback above DEBUG, a state message and a manifest that name the cause."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sufra.tasks.collect.query import CollectSettings

from sufra.core.errors import NetworkUnavailableError
from sufra.utils.http import FetchSettings


def run_logs(flow_run_id) -> list:
    """Every log the run and its task runs sent to the API (what `prefect flow-run logs` prints), all levels."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        return client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)


def test_offline_collect_fails_at_once_in_one_line(no_dns, local_root, prefect_harness):
    from sufra.flows.collect import collect

    settings = CollectSettings(engines=["bing", "baidu"], max_per_query=5,
                               base_urls={"bing": "http://www.bing.invalid", "baidu": "http://image.baidu.invalid"},
                               fetch=FetchSettings(max_retries=3, backoff_s=0.01))
    state = collect(country="egypt", data_root=str(local_root.root), settings=settings, return_state=True)

    assert state.is_failed()
    assert "no engine can be reached" in state.message and "does not resolve" in state.message
    with pytest.raises(NetworkUnavailableError):
        state.result()
    # one attempt per engine (its first query); egypt has dozens of queries per engine, none other started
    assert sorted(set(no_dns)) == ["image.baidu.invalid", "www.bing.invalid"] and len(no_dns) <= 2 * 2
    logs = run_logs(state.state_details.flow_run_id)
    errors = [log.message for log in logs if log.level >= logging.ERROR]
    assert len(errors) == 1 and "does not resolve" in errors[0], errors
    assert not [log for log in logs if log.level > logging.DEBUG and "Traceback" in log.message]
    assert len(logs) <= 10, [log.message for log in logs]  # was 1,671 lines
    (manifest_file,) = Path(local_root.root, "runs").glob("*collect*.json")
    manifest = json.loads(manifest_file.read_text())
    assert manifest["status"] == "failed" and "does not resolve" in manifest["error"]
