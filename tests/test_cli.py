"""Every command: --help works, and each bad input gives one line on stderr, exit code 2, no traceback."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SUFRA = str(Path(sys.executable).parent / "sufra")
ENV = dict(os.environ, HF_HUB_OFFLINE="1", LABEL_STUDIO_URL="http://127.0.0.1:9", LABEL_STUDIO_API_KEY="k-123-secret")
ENV.pop("PREFECT_LOGGING_LEVEL", None)  # the CLI's own default (a user's explicit level is respected)

BAD = [
    (["collect", "-c", "atlantis"], "no catalog for country 'atlantis'"),
    (["collect", "-c", "egypt", "-e", "yahoo"], "unknown engine 'yahoo'"),
    (["collect", "-c", "egypt", "-d", "pizza"], "has no dish 'pizza'"),
    (["collect", "-c", "egypt", "--base-url", "bing"], "--base-url must look like NAME=VALUE"),
    (["curate", "-c", "egypt", "--hash-kind", "md5"], "--hash-kind"),
    (["curate", "-c", "egypt", "--cross-class", "keep"], "--cross-class"),
    (["annotate", "-c", "egypt", "--preset", "best"], "unknown preset 'best'"),
    (["annotate", "-c", "egypt", "--segmenter", "mask2former"], "--segmenter must be"),
    (["annotate", "-c", "egypt"], "not in the local Hugging Face cache"),
    (["annotate", "-c", "egypt", "--detector", "groundingdino:/nonexistent.pth"], "checkpoint '/nonexistent.pth' does not exist"),
    (["export", "-c", "egypt", "--version", "v1", "--images", "hardlink"], "--images"),
    (["export", "-c", "egypt", "--version", "v1"], "nothing to export"),
    (["features", "--export", "/nonexistent"], "is not an export folder"),
    (["train", "--cache", "/nonexistent"], "is not a feature cache"),
    (["evaluate", "--checkpoint", "/nonexistent.pt", "--cache", "/tmp", "--set", "pizza10"], "unknown benchmark set 'pizza10'"),
    (["predict", "/nonexistent.jpg", "--checkpoint", "x.pt"], "image not found"),
    (["review", "pull", "-c", "egypt", "--version", "v1"], "is unreachable"),
    (["catalog", "validate", "/nonexistent.yaml"], "cannot read"),
]


@pytest.mark.parametrize("args, fragment", BAD, ids=[" ".join(a[:3]) for a, _ in BAD])
def test_bad_input_is_one_line(args, fragment, tmp_path):
    proc = subprocess.run([SUFRA, *args, *(["--data-root", str(tmp_path)] if args[0] in ("collect", "curate", "annotate", "export", "review") else [])],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("sufra: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr and "k-123-secret" not in proc.stderr


@pytest.mark.parametrize("command", ["", "catalog", "collect", "curate", "annotate", "export", "build", "demo",
                                     "features", "train", "evaluate", "predict", "review", "deployments"])
def test_help(command):
    proc = subprocess.run([SUFRA, *command.split(), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Usage" in proc.stdout


def test_help_is_fast():
    start = time.monotonic()
    subprocess.run([SUFRA, "--help"], capture_output=True, check=True)
    assert time.monotonic() - start < 5  # heavy imports stay inside commands


USAGE = [
    ([], "Usage"),
    (["collect"], "Missing option '--country'"),
    (["collect", "-c", "egypt", "--max-per-query", "0"], "--max-per-query"),
    (["collect", "-c", "egypt", "--max-per-query", "-5"], "--max-per-query"),
    (["collect", "-c", "egypt", "--max-per-query", "abc"], "--max-per-query"),
    (["collect", "-c", "egypt", "--no-such-option"], "No such option"),
    (["--bogus"], "No such option"),
]


@pytest.mark.parametrize("args, fragment", USAGE, ids=[" ".join(a) or "bare" for a, _ in USAGE])
def test_usage_errors_exit_2_without_a_traceback(args, fragment):
    """typer 0.2x raises its bundled click's exceptions: each is one line (bare `sufra`: the help), exit 2."""
    proc = subprocess.run([SUFRA, *args], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert fragment in proc.stdout + proc.stderr
    if args:
        assert len(proc.stderr.strip().splitlines()) == 1
