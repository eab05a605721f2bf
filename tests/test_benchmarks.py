"""Every benchmark runs end to end in ``--smoke`` mode (generated tiny inputs, no baseline venvs) and ends with its
JSON result line: benchmarks that no longer run fail here instead of rotting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p for p in (REPO / "benchmarks").glob("*.py") if p.name not in {"_common.py", "__init__.py"})
KEYS = {"ours", "baseline", "unit", "ratio", "baseline_name"}


def test_benchmarks_found():
    assert BENCHMARKS, "no benchmarks/*.py found"


@pytest.mark.slow
@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_smoke(path: Path):
    proc = subprocess.run([sys.executable, str(path), "--smoke"], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"{path.name} --smoke failed:\n{proc.stderr[-4000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{path.name} --smoke printed nothing"
    result = json.loads(lines[-1])
    assert KEYS <= result.keys(), f"{path.name}: result lacks {KEYS - result.keys()}"
    assert result["baseline_name"]
