"""Deployments against a real Prefect server: pool, worker, `prefect deploy --all`, `prefect deployment run`."""

import json
import os
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path

import pytest

from tests.support.prefect_server import BIN, REPO, prefect, worker
from tests.support.servers import free_port


def test_prefect_yaml_is_generated_from_the_catalog():
    from sufra.app.deployments import deployments_yaml
    from sufra.core.catalog import load_catalog

    text = (REPO / "prefect.yaml").read_text(encoding="utf-8")
    assert text == deployments_yaml(), "prefect.yaml is stale: run `sufra deployments --write`"
    import yaml

    names = {(d["entrypoint"], d["name"]) for d in yaml.safe_load(text)["deployments"]}
    for country in set(load_catalog()) - {"food101_25"}:
        assert ("sufra/app/deployments.py:collect", country) in names and ("sufra/app/deployments.py:build", country) in names


def bare_repository(folder: Path) -> Path:
    """A bare git repository holding this checkout's working tree as one commit (uncommitted edits included, as
    the lead would push them): what a remote worker's git_clone pulls, over file://."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    work = folder / "snapshot"
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes(source.read_bytes())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    subprocess.run([*git, "add", "-A"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], cwd=work, check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(folder / "sufra.git")], check=True)
    return folder / "sufra.git"


def test_deploy_settings_refuse_a_relative_data_root_and_a_missing_repository():
    from sufra.app.deployments import deploy_settings
    from sufra.core.errors import SufraError
    from sufra.core.settings import SufraSettings

    with pytest.raises(SufraError, match="SUFRA_REPOSITORY is not set"):
        deploy_settings(SufraSettings(data_root="/srv/data"), environ={})
    with pytest.raises(SufraError, match="'./data' is relative"):
        deploy_settings(SufraSettings(data_root="./data", repository="file:///r.git"), environ={})
    out = deploy_settings(SufraSettings(data_root="s3://b/sufra", repository="file:///r.git", branch="dev"),
                          environ={"SUFRA_WEBHOOK_URL": "http://127.0.0.1:9/h", "CUDA_VISIBLE_DEVICES": "0", "X": "1"})
    assert out == {"data_root": "s3://b/sufra", "demo_data_root": "s3://b/sufra-demo", "repository": "file:///r.git",
                   "branch": "dev", "env": {"SUFRA_WEBHOOK_URL": "http://127.0.0.1:9/h", "CUDA_VISIBLE_DEVICES": "0",
                                            "SUFRA_DATA_ROOT": "s3://b/sufra"}}


def test_default_schedules_never_start_collect_and_build_on_the_same_day():
    import asyncio
    from datetime import datetime, timedelta

    from prefect.server.schemas.schedules import CronSchedule  # what the server's scheduler evaluates

    from sufra.app.deployments import schedules

    for index in range(3):
        timing = schedules(index)
        days = {}
        for kind, spec in timing.items():
            schedule = CronSchedule(cron=spec["cron"], timezone="UTC", day_or=spec.get("day_or", True))
            start = datetime(2027, 1, 1, tzinfo=UTC)
            dates = asyncio.run(schedule.get_dates(n=200, start=start, end=start + timedelta(days=730)))
            days[kind] = {d.date() for d in dates}
        assert len(days["collect"]) > 100 and len(days["build"]) == 24  # weekly; monthly
        assert not days["collect"] & days["build"]
        assert all(d.weekday() == 6 and d.day <= 7 for d in days["build"])  # the month's first Sunday


@pytest.mark.slow
@pytest.mark.prefect_server
def test_apply_limits_creates_tag_limits(prefect_server):
    from prefect.client.orchestration import SyncPrefectClient

    from sufra.app.deployments import apply_limits
    from sufra.core.settings import SufraSettings

    settings = SufraSettings(gpu_concurrency=1, engine_concurrency={"bing": 3, "baidu": 2})
    with SyncPrefectClient(prefect_server["PREFECT_API_URL"]) as client:
        assert apply_limits(client, settings) == {"gpu": 1, "engine:baidu": 2, "engine:bing": 3}
        apply_limits(client, settings.model_copy(update={"engine_concurrency": {"bing": 4, "baidu": 2}}))  # again
        limits = {limit.tag: limit.concurrency_limit for limit in client.read_concurrency_limits(limit=50, offset=0)}
    assert limits == {"gpu": 1, "engine:baidu": 2, "engine:bing": 4}
    listing = prefect(prefect_server, "concurrency-limit", "ls").stdout
    assert "gpu" in listing and "engine:bing" in listing
    # the user's way: `sufra deployments --apply`, limits from SUFRA_* settings
    env = {**prefect_server, "SUFRA_ENGINE_CONCURRENCY": '{"bing": 5, "flickr": 1}', "SUFRA_GPU_CONCURRENCY": "2"}
    proc = subprocess.run([str(BIN / "sufra"), "deployments", "--apply"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "concurrency_limits": {"gpu": 2, "engine:bing": 5, "engine:flickr": 1}}
    with SyncPrefectClient(prefect_server["PREFECT_API_URL"]) as client:
        limits = {limit.tag: limit.concurrency_limit for limit in client.read_concurrency_limits(limit=50, offset=0)}
    assert limits["gpu"] == 2 and limits["engine:bing"] == 5 and limits["engine:flickr"] == 1


def test_apply_without_a_server_is_one_line(tmp_path):
    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_HOME": str(tmp_path)}
    proc = subprocess.run([str(BIN / "sufra"), "deployments", "--apply"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "concurrency limits" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.prefect_server
def test_deploy_all_and_run_demo_through_a_worker(prefect_server, tmp_path):
    """The deployments clone the repository (git_clone from a bare repo over file://) and run in the clone, from a
    worker started in an unrelated folder, into the absolute data root given at deploy time."""
    data = tmp_path / "data"
    env = dict(prefect_server, SUFRA_REPOSITORY=f"file://{bare_repository(tmp_path)}", SUFRA_BRANCH="main",
               SUFRA_DATA_ROOT=str(data), SUFRA_DEMO_PORT=str(free_port()))
    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    prefect(env, "work-pool", "create", "sufra-process", "--type", "process")
    assert "sufra-process" in prefect(env, "work-pool", "ls").stdout
    with worker(env, "sufra-process", tmp_path / "worker.log", cwd=elsewhere):
        prefect(env, "--no-prompt", "deploy", "--all")
        listing = prefect(env, "deployment", "ls").stdout
        for name in ("collect/egypt", "build/egypt", "demo/offline"):
            assert name in listing
        inspected = prefect(env, "deployment", "inspect", "collect/egypt").stdout
        assert str(data) in inspected and "git_clone" in inspected and "sufra.git" in inspected
        run = prefect(env, "deployment", "run", "demo/offline", "--param", "per_dish=4", "--param", "train=false",
                      "--watch", "--watch-timeout", "900", timeout=960, check=False)
        assert run.returncode == 0 and "Completed" in run.stdout + run.stderr, (
            run.stdout[-3000:] + run.stderr[-2000:] + (tmp_path / "worker.log").read_text()[-4000:])
        demo_data = Path(f"{data}-demo")
        assert (demo_data / "exports" / "egypt" / "demo" / "instances_train.json").exists()
        assert (demo_data / "exports" / "egypt" / "demo" / "report.html").exists()
        assert not (elsewhere / "data").exists() and not (REPO / "demo-data").exists()
        inspected_demo = prefect(env, "deployment", "inspect", "demo/offline").stdout
        assert "SUFRA_DEMO_PORT" in inspected_demo  # job variables carry the deploying shell's SUFRA_* settings
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(env["PREFECT_API_URL"]) as client:
        keys = {a.key for a in client.read_artifacts() if a.key}
        descriptions = [a.description for a in client.read_artifacts() if a.key]
    assert keys and all(k.startswith("demo-") for k in keys) and "demo-annotate-egypt" in keys, keys
    assert all(d.startswith("DEMO") for d in descriptions)


def test_serve_on_one_machine_has_the_same_deployments_and_schedules(monkeypatch, tmp_path):
    import yaml

    from sufra.app.deployments import notify_failure, runner_deployments

    monkeypatch.setenv("SUFRA_DATA_ROOT", str(tmp_path / "data"))
    served = {(d.flow_name, d.name): d for d in runner_deployments()}
    written = [d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"] if "schedules" in d]
    assert len(served) == len(written)
    for spec in written:
        deployment = served[(spec["entrypoint"].rsplit(":", 1)[1], spec["name"])]
        schedule = deployment.schedules[0].schedule
        assert schedule.cron == spec["schedules"][0]["cron"] and schedule.day_or == spec["schedules"][0].get("day_or", True)
        assert deployment.parameters["data_root"] == str(tmp_path / "data") and deployment.concurrency_limit == 1
    monkeypatch.setenv("SUFRA_DATA_ROOT", "./data")
    with pytest.raises(Exception, match="is relative"):
        runner_deployments()
    from sufra.app import deployments

    assert notify_failure in deployments.collect.on_failure_hooks and deployments.build.name == "build"


GPU_FLOW = """
import sys
import time
from prefect import flow, task

@task(tags=["gpu", "overlap-probe"])  # the probe tag tells these apart from other gpu tasks on the server
def infer(seconds: float) -> float:
    time.sleep(seconds)
    return seconds

@flow
def shard_run() -> float:
    time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # both runs reach their gpu task together
    return infer(4.0)

shard_run()
"""


@pytest.mark.slow
@pytest.mark.prefect_server
def test_overlapping_runs_never_run_gpu_tasks_at_once(prefect_server, tmp_path):
    """Two runs started together on the server; the `gpu` limit (1) serialises their gpu-tagged tasks: the task
    runs' start/end times from the API do not overlap."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterTags

    from sufra.app.deployments import apply_limits
    from sufra.core.settings import SufraSettings

    with SyncPrefectClient(prefect_server["PREFECT_API_URL"]) as client:
        apply_limits(client, SufraSettings(gpu_concurrency=1, engine_concurrency={}))
    start_at = str(time.time() + 40)  # after both processes have imported Prefect and started their runs
    runs = [subprocess.Popen([sys.executable, "-c", GPU_FLOW, start_at], env=prefect_server, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read().decode()[-2000:]
    with SyncPrefectClient(prefect_server["PREFECT_API_URL"]) as client:
        tasks = client.read_task_runs(task_run_filter=TaskRunFilter(tags=TaskRunFilterTags(all_=["gpu", "overlap-probe"])))
    spans = sorted((t.start_time, t.end_time) for t in tasks if t.state and t.state.is_completed())
    assert len(spans) == 2
    (_, first_end), (second_start, _) = spans
    assert second_start >= first_end, spans  # queued behind the first, never side by side
