"""A real Prefect server and workers on loopback, for deployment and schedule tests."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.servers import free_port, wait_for_health

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@contextmanager
def prefect_server_env(home: Path, **extra: str) -> Iterator[dict]:
    """A real Prefect server on a free loopback port (state in ``home``); yields the environment for CLI calls and
    workers. The scheduler services loop every 2 s (not 60 s) so scheduled runs appear within a test's time."""
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_URL=f"http://127.0.0.1:{port}/api", PREFECT_LOGGING_LEVEL="WARNING",
               PATH=f"{BIN}:{os.environ.get('PATH', '')}", SUFRA_REPO=str(REPO), HF_HUB_OFFLINE="1",
               COLUMNS="250", PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
               PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS="2", PREFECT_WORKER_QUERY_SECONDS="2",
               PREFECT_WORKER_PREFETCH_SECONDS="2", **extra)
    log = open(home / "server.log", "w")
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env={k: v for k, v in env.items() if k != "PREFECT_API_URL"}, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_health(f"http://127.0.0.1:{port}/api/health", server, home / "server.log", "prefect server", 180)
    try:
        yield env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@contextmanager
def worker(env: dict, pool: str, log: Path, cwd: Path = REPO) -> Iterator[subprocess.Popen]:
    """``prefect worker start --pool pool`` in ``cwd`` until the block ends."""
    out = open(log, "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool], env=env, cwd=cwd, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a Prefect worker may retry its event socket for a while when stopping
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        out.close()


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    with prefect_server_env(tmp_path_factory.mktemp("prefect-home")) as env:
        yield env


def prefect(env, *args, timeout=600, check=True):
    proc = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"prefect {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


