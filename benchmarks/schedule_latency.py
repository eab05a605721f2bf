"""Seconds from a scheduled run's creation to its first task start, on a loopback Prefect server with a process
worker (Prefect's default scheduler and worker intervals): the scheduler's look-ahead creates the run, the worker
picks it up when due and starts a flow process. Baseline: a run created by hand (``prefect deployment run``) on the
same worker, creation to first task start.

    .venv/bin/python benchmarks/schedule_latency.py [--quick | --smoke]

--smoke and --quick: one run each; full: three of each. ratio = baseline / ours (higher is better: 1.0 means the
schedule costs no more than starting by hand). Also reported: ``due_to_task_s``, from the scheduled time to the
first task start (the worker's polling and the flow process start).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import add_smoke_flag, emit  # noqa: E402

BIN = Path(sys.executable).parent
FLOW = '''
from prefect import flow, task

@task
def first() -> int:
    return 1

@flow(name="latency-probe")
def probe() -> int:
    return first()
'''


def start_server(home: Path) -> tuple[subprocess.Popen, dict]:
    """A Prefect server on a free loopback port; returns it and the environment of its clients."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=open(home / "server.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                break
        except OSError:
            time.sleep(1)
    else:
        os.killpg(server.pid, signal.SIGTERM)
        raise SystemExit("prefect server did not start: " + (home / "server.log").read_text()[-2000:])
    return server, dict(env, PREFECT_API_URL=f"http://127.0.0.1:{port}/api")


def first_task_start(client, run_id, timeout_s: float = 300) -> datetime:
    """When the run's first task run started (from the API), waiting for the run to finish."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run.state and run.state.is_final():
            if not run.state.is_completed():
                raise SystemExit(f"run {run.name} ended {run.state.name}")
            # task runs reach the API through events (the server's task-run recorder): a moment after the flow ends
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            starts = [t.start_time for t in tasks if t.start_time]
            if starts:
                return min(starts)
        time.sleep(0.5)
    raise SystemExit(f"run {run_id} did not finish within {timeout_s:.0f} s")


def measure(client, folder: Path, runs: int) -> dict:
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.schedules import IntervalSchedule

    flow_id = client.create_flow_from_name("latency-probe")
    pull = [{"prefect.deployments.steps.set_working_directory": {"directory": str(folder)}}]
    scheduled, due, manual = [], [], []
    for i in range(runs):
        anchor = datetime.now(UTC) + timedelta(seconds=15)
        deployment_id = client.create_deployment(
            flow_id=flow_id, name=f"scheduled-{i}", entrypoint="probe.py:probe", work_pool_name="latency", pull_steps=pull,
            schedules=[DeploymentScheduleCreate(schedule=IntervalSchedule(interval=timedelta(hours=1), anchor_date=anchor))])
        only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        deadline = time.monotonic() + 120
        first = None
        while first is None and time.monotonic() < deadline:
            found = sorted(client.read_flow_runs(deployment_filter=only), key=lambda r: r.expected_start_time)
            first = found[0] if found else None
            time.sleep(0.5)
        if first is None:
            raise SystemExit("the scheduler created no run within 120 s (is sqlalchemy < 2.1?)")
        started = first_task_start(client, first.id)
        scheduled.append((started - first.created).total_seconds())
        due.append((started - first.expected_start_time).total_seconds())
        client.delete_deployment(deployment_id)
        by_hand = client.create_deployment(flow_id=flow_id, name=f"by-hand-{i}", entrypoint="probe.py:probe",
                                           work_pool_name="latency", pull_steps=pull)
        run = client.create_flow_run_from_deployment(by_hand)
        manual.append((first_task_start(client, run.id) - run.created).total_seconds())
    return {"scheduled_s": scheduled, "due_to_task_s": due, "by_hand_s": manual}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    add_smoke_flag(parser)
    args = parser.parse_args()
    runs = 1 if args.smoke or args.quick else 3
    home = Path(tempfile.mkdtemp(prefix="sufra-latency-"))
    (home / "probe.py").write_text(FLOW)
    server, env = start_server(home)
    worker = None
    try:
        subprocess.run([str(BIN / "prefect"), "work-pool", "create", "latency", "--type", "process"], env=env,
                       check=True, capture_output=True)
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "latency"], env=env, cwd=home,
                                  stdout=open(home / "worker.log", "w"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        from prefect.client.orchestration import SyncPrefectClient

        with SyncPrefectClient(env["PREFECT_API_URL"]) as client:
            result = measure(client, home, runs)
    finally:
        for proc in (worker, server):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    ours = statistics.median(result["scheduled_s"])
    baseline = statistics.median(result["by_hand_s"])
    print(f"  scheduled: creation -> first task {ours:.1f} s (due -> first task "
          f"{statistics.median(result['due_to_task_s']):.1f} s); by hand: {baseline:.1f} s", file=sys.stderr)
    emit({"ours": round(ours, 2), "baseline": round(baseline, 2), "unit": "seconds (run creation to first task start)",
          "ratio": round(baseline / ours, 3) if ours > 0 else None,
          "baseline_name": "a run created by hand (prefect deployment run) on the same process worker",
          "due_to_task_s": round(statistics.median(result["due_to_task_s"]), 2), "runs": result})


if __name__ == "__main__":
    main()
