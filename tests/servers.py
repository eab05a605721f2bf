"""Helpers for tests that start real local servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, proc: subprocess.Popen, log: Path, what: str, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; otherwise stop the process group and fail with the log's tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    os.killpg(proc.pid, signal.SIGTERM)
    pytest.fail(f"{what} did not start: " + log.read_text()[-3000:])
