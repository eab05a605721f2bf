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


class ResolverHook:
    """What :func:`resolver` scripts and saw: ``answers``, lookups per name (``calls``) and in order (``lookups``).
    Unpacks as ``answers, calls``."""

    def __init__(self) -> None:
        from collections import Counter

        self.answers: dict[str, list] = {}
        self.calls: Counter[str] = Counter()
        self.lookups: list[str] = []

    def __iter__(self):
        return iter((self.answers, self.calls))


@pytest.fixture
def resolver(monkeypatch) -> ResolverHook:
    """A resolver hook (no DNS packet leaves the machine): ``answers[name]`` scripts the answers of successive
    lookups of ``name`` (the last repeats), each ``None`` (the name does not resolve), an address or a list of
    addresses; names under ``.invalid`` never resolve; other names go to the real resolver (loopback only)."""
    import socket

    real = socket.getaddrinfo
    hook = ResolverHook()

    def getaddrinfo(host, port, *args, **kwargs):
        if str(host).endswith(".invalid") and host not in hook.answers:
            hook.answers[host] = [None]  # RFC 2606: never a real name
        if host not in hook.answers:
            return real(host, port, *args, **kwargs)
        script = hook.answers[host]
        answer = script[min(hook.calls[host], len(script) - 1)]
        hook.calls[host] += 1
        hook.lookups.append(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = [answer] if isinstance(answer, str) else answer
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return hook


@pytest.fixture
def no_dns(resolver: ResolverHook) -> list[str]:
    """Names under ``.invalid`` do not resolve; returns the names looked up, one entry per lookup."""
    return resolver.lookups
