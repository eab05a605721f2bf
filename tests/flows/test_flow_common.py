"""flows/common.py under a Prefect test API: country tags reach task runs, the (country, data root) lock serialises
runs and is re-entrant, cancelled is not failed, demo artifacts are keyed ``demo-…``, run_shards by runner type."""

from __future__ import annotations

import threading
import time

import pytest
from prefect import flow, tags
from prefect.exceptions import TerminationSignal
from prefect.task_runners import ThreadPoolTaskRunner
from sufra.flows.common import DataLockTimeout, data_lock_name, run_manifest, run_shards, table_artifact

from sufra.core.store import DataRoot
from tests.support.flows import country_flow


def test_task_runs_carry_the_country_tag(tmp_path, prefect_harness):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    state = country_flow(data_root=str(tmp_path / "d"), country="egypt", nested=True, return_state=True)
    assert state.is_completed()
    assert (tmp_path / "d" / ".locks" / "egypt.lock").read_text() == ""  # released: no holder named
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        assert tasks and all("egypt" in t.tags for t in tasks if t.name.startswith("echo"))


def test_an_object_store_root_locks_through_a_prefect_global_limit(prefect_harness):
    import uuid

    url = f"memory://lock-{uuid.uuid4().hex[:8]}"
    assert country_flow(data_root=url, country="egypt", nested=True, return_state=True).is_completed()
    from prefect import get_client

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(data_lock_name(DataRoot(url), "egypt"))
    assert limit.limit == 1 and limit.active_slots == 0  # created on first use, released after the run


def test_one_country_on_one_data_root_never_overlaps(tmp_path, prefect_harness):
    results: dict[str, dict] = {}
    data = str(tmp_path / "d")

    def run(label: str, country: str, root: str) -> None:
        results[label] = country_flow(data_root=root, country=country, hold_s=1.5)

    threads = [threading.Thread(target=run, args=("a", "peru", data)),
               threading.Thread(target=run, args=("b", "peru", data))]
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    for thread in threads:
        thread.join(120)
    first, second = sorted((results["a"], results["b"]), key=lambda r: r["started"])
    assert second["started"] >= first["ended"]  # queued behind the first
    assert data_lock_name(DataRoot(data), "peru") != data_lock_name(DataRoot(tmp_path / "e"), "peru")


def test_lock_wait_times_out_in_one_line(tmp_path, prefect_harness, monkeypatch):
    data = str(tmp_path / "d")
    holder = threading.Thread(target=country_flow, kwargs={"data_root": data, "country": "nigeria", "hold_s": 6.0})
    holder.start()
    time.sleep(2.5)
    monkeypatch.setenv("SUFRA_DATA_LOCK_TIMEOUT_S", "1")
    state = country_flow(data_root=data, country="nigeria", return_state=True)
    holder.join(60)
    assert state.is_failed()
    with pytest.raises(DataLockTimeout, match=r"stayed locked by another run of 'nigeria' \(\{\"flow_run\": .*\) for 1 s"):
        state.result()


@pytest.mark.parametrize("error, status", [(TerminationSignal(15), "cancelled"), (KeyboardInterrupt(), "cancelled"),
                                           (ValueError("boom"), "failed")])
def test_stopped_from_outside_is_cancelled_not_failed(local_root, error, status):
    with pytest.raises(type(error)):
        with run_manifest(local_root, "probe", {}) as manifest:
            raise error
    written = local_root.read_manifest(manifest.run_id)
    assert written.status == status and written.error.startswith(type(error).__name__) and written.finished_at


@flow
def artifact_flow(demo: bool) -> None:
    if demo:
        with tags("demo"):
            table_artifact("evaluate", [{"a": 1}], "per class")
    else:
        table_artifact("evaluate", [{"a": 2}], "per class")


def test_demo_artifacts_are_keyed_and_labelled(prefect_harness):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    artifact_flow(demo=True)
    artifact_flow(demo=False)
    with get_client(sync_client=True) as client:
        demo = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["demo-evaluate"])))
        real = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["evaluate"])))
    assert demo and demo[0].description.startswith("DEMO") and "meaningless" in demo[0].description
    assert real and all(not a.description.startswith("DEMO") for a in real)


class NoSubmit:
    """A stand-in task: calling runs it, ``submit`` must not be used on a thread-pool runner."""

    def __call__(self, value):
        return value * 2

    def submit(self, *args):
        raise AssertionError("submitted on a thread-pool runner")


class TunedThreadPool(ThreadPoolTaskRunner):
    """A subclass: the old check by class name sent it down the distributed path."""


@flow(task_runner=TunedThreadPool(max_workers=2))
def shards_flow() -> list:
    return run_shards(NoSubmit(), [(1,), (2,)])


def test_run_shards_treats_thread_pool_subclasses_as_thread_pools(prefect_harness):
    assert shards_flow() == [2, 4]


@flow(name="doomed")
def doomed() -> None:
    raise ValueError("engine bing: DNS lookup failed for www.bing.com")


@pytest.fixture
def webhook_receiver():
    """A loopback HTTP server that records the JSON bodies POSTed to it."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_failure_hook_posts_the_state_message_to_the_webhook(prefect_harness, webhook_receiver, monkeypatch):
    from sufra.app.deployments import with_hooks

    url, received = webhook_receiver
    monkeypatch.setenv("SUFRA_WEBHOOK_URL", url)
    hooked = with_hooks(doomed)
    assert hooked.name == "doomed" and not doomed.on_failure_hooks  # the flow file's object is untouched
    state = hooked(return_state=True)
    assert state.is_failed()
    (notice,) = received
    assert notice["flow"] == "doomed" and notice["state"] == "Failed"
    assert "DNS lookup failed for www.bing.com" in notice["message"] and notice["flow_run_id"] == str(
        state.state_details.flow_run_id)
    assert notice["text"].startswith(f"sufra: {notice['flow_run']} (doomed) Failed: ")
    monkeypatch.delenv("SUFRA_WEBHOOK_URL")
    assert hooked(return_state=True).is_failed() and len(received) == 1  # no URL: nothing posted


KILLED_HOLDER = """
import sys
from tests.support.flows import country_flow
country_flow(data_root=sys.argv[1], country="peru", hold_s=120)
"""


@pytest.mark.slow
def test_a_killed_holder_releases_the_lock_at_once(tmp_path, prefect_harness, monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from prefect.settings import PREFECT_API_URL

    data = tmp_path / "d"
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_HOLDER, str(data)], env=env, cwd=Path(__file__).resolve().parents[2],
                            start_new_session=True)
    lock = data / ".locks" / "peru.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f'"pid": {proc.pid}' in lock.read_text()  # the lock file names its holder
    os.killpg(proc.pid, signal.SIGKILL)  # no clean-up code runs
    proc.wait(30)
    monkeypatch.setenv("SUFRA_DATA_LOCK_TIMEOUT_S", "5")
    assert country_flow(data_root=str(data), country="peru", return_state=True).is_completed()
