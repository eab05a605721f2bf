"""Crash safety: SIGKILL the build in each stage in turn, run it again: the same tables as an uninterrupted run."""

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sufra.schemas import DUPLICATES, IMAGES, INSTANCES, SPLITS

from sufra.core.store import DataRoot
from tests.support.servers import free_port

SCRIPT = """
import sys
from sufra.app.demo import demo
demo(data_root=sys.argv[1], per_dish=4, train=False, port=int(sys.argv[2]))
"""
STAGES = ("collect", "curate", "annotate", "export")


def run_env():
    from prefect.settings import PREFECT_API_URL

    return dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_LOGGING_LEVEL="WARNING",
                HF_HUB_OFFLINE="1")


def run_build(data: Path, port: int, kill_in: str | None = None) -> bool:
    """Run the demo build; with ``kill_in``, SIGKILL it as soon as that stage's run manifest appears."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(data), str(port)], env=run_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    if kill_in is None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]
        return False
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if glob.glob(str(data / "runs" / f"*-{kill_in}-*.json")):
            time.sleep(0.3 if kill_in != "export" else 0.05)  # inside the stage, not at its first line
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"the build never reached {kill_in}: {proc.stderr.read().decode()[-2000:]}")


def snapshot(data: Path) -> dict:
    root = DataRoot(data)
    images = root.read_table(IMAGES, "egypt").to_pylist()
    return {
        "images": sorted(r["image_id"] for r in images if r["status"] == "ok"),
        "instances": sorted(r["instance_id"] for r in root.read_table(INSTANCES, "egypt").to_pylist()),
        "splits": sorted((r["image_id"], r["split"]) for r in root.read_table(SPLITS, "egypt").to_pylist()),
        "dropped": sorted(r["image_id"] for r in root.read_table(DUPLICATES, "egypt").to_pylist() if r["dropped"]),
        "export": sorted(p.name for p in (data / "exports" / "egypt" / "demo").iterdir()),
    }


@pytest.mark.slow
def test_kill_in_each_stage_then_resume_equals_uninterrupted(tmp_path, prefect_harness):
    run_build(tmp_path / "clean", free_port())
    expected = snapshot(tmp_path / "clean")
    assert expected["instances"] and expected["splits"]
    for stage in STAGES:
        data = tmp_path / f"killed-in-{stage}"
        port = free_port()  # the same engine URLs for the killed run and its resume
        assert run_build(data, port, kill_in=stage)
        run_build(data, port)
        assert snapshot(data) == expected, stage
        root = DataRoot(data)
        assert root.temp_files() == [], (stage, root.temp_files())  # no orphan files
        stored = sorted(p.stem for p in (data / "images").rglob("*") if p.is_file())
        assert stored == sorted(set(stored)) and set(expected["images"]) <= set(stored)
