"""Deployments against a real Prefect server: pool, worker, `prefect deploy --all`, `prefect deployment run`."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port, wait_for_health

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_prefect_yaml_is_generated_from_the_catalog():
    from sufra.app.deployments import deployments_yaml
    from sufra.core.catalog import load_catalog

    text = (REPO / "prefect.yaml").read_text(encoding="utf-8")
    assert text == deployments_yaml(), "prefect.yaml is stale: run `sufra deployments --write`"
    import yaml

    names = {(d["entrypoint"], d["name"]) for d in yaml.safe_load(text)["deployments"]}
    for country in set(load_catalog()) - {"food101_25"}:
        assert ("flows/collect.py:collect", country) in names and ("flows/build.py:build", country) in names


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_URL=f"http://127.0.0.1:{port}/api", PREFECT_LOGGING_LEVEL="WARNING",
               PATH=f"{BIN}:{os.environ.get('PATH', '')}", SUFRA_REPO=str(REPO), HF_HUB_OFFLINE="1",
               COLUMNS="250")
    log = open(home / "server.log", "w")
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env={k: v for k, v in env.items() if k != "PREFECT_API_URL"}, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_health(f"http://127.0.0.1:{port}/api/health", server, home / "server.log", "prefect server", 180)
    yield env
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def prefect(env, *args, timeout=600, check=True):
    proc = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"prefect {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.mark.slow
@pytest.mark.prefect_server
def test_deploy_all_and_run_demo_through_a_worker(prefect_server, tmp_path):
    env = prefect_server
    prefect(env, "work-pool", "create", "sufra-process", "--type", "process")
    assert "sufra-process" in prefect(env, "work-pool", "ls").stdout
    worker_log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "sufra-process"], env=env, cwd=REPO,
                              stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        prefect(env, "--no-prompt", "deploy", "--all")
        listing = prefect(env, "deployment", "ls").stdout
        for name in ("collect/egypt", "build/egypt", "demo/offline"):
            assert name in listing
        data = tmp_path / "demo-data"
        run = prefect(env, "deployment", "run", "demo/offline", "--param", f"data_root={json.dumps(str(data))}",
                      "--param", "per_dish=4", "--param", "train=false", "--watch", "--watch-timeout", "900", timeout=960,
                      check=False)
        assert run.returncode == 0 and "Completed" in run.stdout + run.stderr, (
            run.stdout[-3000:] + run.stderr[-2000:] + (tmp_path / "worker.log").read_text()[-4000:])
        assert (data / "exports" / "egypt" / "demo" / "instances_train.json").exists()
        assert (data / "exports" / "egypt" / "demo" / "report.html").exists()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a Prefect worker may retry its event socket for a while when stopping
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
