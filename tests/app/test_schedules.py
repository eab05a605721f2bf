"""Schedules that fire on a real Prefect server: the scheduler service creates SCHEDULED runs from a deployment's
schedule, and a process worker executes one to Completed. (With sqlalchemy 2.1 the scheduler's bulk insert raises
``InvalidRequestError: Can't evaluate bulk DML statement`` on every pass and no run is ever created: the lock pins
``sqlalchemy<2.1`` for that, and this test is what fails without the pin.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.prefect_server import prefect, worker

TICK_FLOW = '''
from pathlib import Path
from prefect import flow, task

@task
def touch(marker: str) -> str:
    Path(marker).write_text("ran")
    return marker

@flow(name="tick")
def tick(marker: str) -> str:
    return touch(marker)
'''


def api_client(env: dict):
    """A sync Prefect client on the test server (the test process's own settings stay untouched)."""
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(env["PREFECT_API_URL"])


def deploy_tick(client, folder: Path, pool: str, schedule) -> object:
    """A deployment of ``tick`` (a one-task flow written into ``folder``) on ``pool`` with ``schedule``."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate

    (folder / "tick.py").write_text(TICK_FLOW)
    flow_id = client.create_flow_from_name("tick")
    return client.create_deployment(
        flow_id=flow_id, name="every-minute", entrypoint="tick.py:tick", work_pool_name=pool,
        parameters={"marker": str(folder / "ran.txt")},
        schedules=[DeploymentScheduleCreate(schedule=schedule, active=True)],
        pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(folder)}}])


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.mark.slow
@pytest.mark.prefect_server
def test_scheduler_creates_runs_and_a_worker_completes_one(prefect_server, tmp_path):  # noqa: F811
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
    from prefect.client.schemas.schedules import IntervalSchedule

    env = prefect_server
    prefect(env, "work-pool", "create", "tick-pool", "--type", "process")
    first_at = datetime.now(UTC) + timedelta(seconds=8)
    with api_client(env) as client:
        deployment_id = deploy_tick(client, tmp_path, "tick-pool",
                                    IntervalSchedule(interval=timedelta(minutes=1), anchor_date=first_at))
        runs_filter = FlowRunFilter()
        only_ours = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))

        def scheduled_runs():
            return [r for r in client.read_flow_runs(flow_run_filter=runs_filter, deployment_filter=only_ours)
                    if r.auto_scheduled]

        runs = wait_for(lambda: len(scheduled_runs()) >= 3 and scheduled_runs(), 60, "the scheduler to create runs")
        assert all(r.state.type.value == "SCHEDULED" for r in runs)  # nobody has picked them up yet
        starts = sorted(r.expected_start_time for r in runs)
        assert abs((starts[0] - first_at).total_seconds()) < 1  # the schedule's anchor, then every minute
        assert [round((b - a).total_seconds()) for a, b in zip(starts, starts[1:], strict=False)] == [60] * (len(starts) - 1)
        with worker(env, "tick-pool", tmp_path / "worker.log"):
            def completed():
                return [r for r in scheduled_runs() if r.state.type.value == "COMPLETED"]

            done = wait_for(completed, 180, "a worker to complete the first scheduled run", poll_s=2)
        assert done[0].expected_start_time == starts[0] and (tmp_path / "ran.txt").read_text() == "ran"


SLEEPER_FLOW = '''
import time
from prefect import flow
from sufra.core.store import DataRoot
from sufra.flows.common import run_manifest

@flow(name="sleeper")
def sleeper(data_root: str) -> None:
    with run_manifest(DataRoot(data_root), "sleeper", {}):
        time.sleep(600)
'''


@pytest.mark.slow
@pytest.mark.prefect_server
def test_cancelling_a_deployment_run_writes_a_cancelled_manifest(prefect_server, tmp_path):  # noqa: F811
    import json

    env = dict(prefect_server, PREFECT_WORKER_CANCELLATION_POLL_SECONDS="2")
    prefect(env, "work-pool", "create", "sleep-pool", "--type", "process")
    (tmp_path / "sleeper.py").write_text(SLEEPER_FLOW)
    data = tmp_path / "data"
    with api_client(env) as client:
        deployment_id = client.create_deployment(
            flow_id=client.create_flow_from_name("sleeper"), name="long", entrypoint="sleeper.py:sleeper",
            work_pool_name="sleep-pool", parameters={"data_root": str(data)},
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(tmp_path)}}])
        run = client.create_flow_run_from_deployment(deployment_id)
        with worker(env, "sleep-pool", tmp_path / "worker.log"):
            def manifest():
                files = list((data / "runs").glob("*.json")) if (data / "runs").is_dir() else []
                return json.loads(files[0].read_text()) if files else None

            assert wait_for(manifest, 180, "the run to start")["status"] == "running"
            prefect(env, "flow-run", "cancel", str(run.id))
            wait_for(lambda: manifest()["status"] != "running", 120, "the manifest to leave 'running'")
            final = wait_for(lambda: (s := client.read_flow_run(run.id).state).is_final() and s, 120,
                             "the run to reach a final state")
    written = manifest()
    assert written["status"] == "cancelled", written
    assert written["error"].startswith("TerminationSignal") and written["finished_at"]
    assert final.type.value == "CANCELLED", (final, (tmp_path / "worker.log").read_text()[-3000:])
