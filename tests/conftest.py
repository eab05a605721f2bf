"""Shared fixtures: tiny generated data only (tests never need ../shared)."""

from __future__ import annotations

import os
import uuid

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest

from sufra.core.store import DataRoot


@pytest.fixture(params=["local", "memory"])
def data_root(request, tmp_path) -> DataRoot:
    """A data root on a local folder and on fsspec's in-memory filesystem."""
    if request.param == "local":
        yield DataRoot(tmp_path / "data")
        return
    root = DataRoot(f"memory://sufra-test-{uuid.uuid4().hex[:8]}")
    yield root
    if root.fs.exists(root.root):
        root.fs.rm(root.root, recursive=True)


@pytest.fixture
def local_root(tmp_path) -> DataRoot:
    return DataRoot(tmp_path / "data")


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API (SQLite) for flow tests, shared by the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def engine_server():
    from sufra.app.devserver import EngineServer

    with EngineServer() as server:
        yield server


@pytest.fixture
def canary():
    """A listener on 127.0.0.2 (a 'forbidden' address): counts any connection the crawler wrongly makes."""
    import socket
    import threading

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.2", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    hits = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                hits.append(1)
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1], hits
    stop.set()
    thread.join()
    sock.close()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Tiny random Grounding DINO, SAM and SAM 2 saved to disk (loaded back through the public loaders)."""
    from sufra.models.tiny import save_tiny_grounding_dino, save_tiny_sam, save_tiny_sam2

    from sufra.core.catalog import load_country

    folder = tmp_path_factory.mktemp("models")
    words = [p for c in ("egypt",) for d in load_country(c).dishes for p in d.prompts] + ["food", "dish"]
    return {
        "detector": save_tiny_grounding_dino(folder / "gdino", words),
        "sam": save_tiny_sam(folder / "sam_tiny.pth"),
        "sam2": save_tiny_sam2(folder / "sam2"),
    }
