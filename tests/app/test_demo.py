"""`sufra demo` end to end through the CLI (offline: local engine server, tiny random models), then `sufra predict`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import free_port

BIN = Path(sys.executable).parent


def row_counts(data: Path) -> dict[str, int]:
    """Rows ever written (every part, not only the latest per key) of the tables a re-run must not grow."""
    from sufra.schemas.tables import CANDIDATES, DUPLICATES, IMAGES

    from sufra.core.store import DataRoot

    root = DataRoot(data)
    return {t.name: root.read_table(t, "egypt", latest=False).num_rows for t in (CANDIDATES, IMAGES, DUPLICATES)}


def test_a_taken_demo_port_is_a_one_line_error():
    from sufra.app.devserver import EngineServer, PortInUseError

    with EngineServer(port=free_port()) as first:
        with pytest.raises(PortInUseError, match=rf"^port {first.port} on 127.0.0.1 is already in use .*SUFRA_DEMO_PORT"):
            EngineServer(port=first.port)


@pytest.mark.slow
def test_demo_end_to_end_then_predict(tmp_path):
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", HF_HUB_OFFLINE="1", SUFRA_DEMO_PORT=str(free_port()))
    data = tmp_path / "demo"
    proc = subprocess.run([str(BIN / "sufra"), "demo", "--data-root", str(data), "--per-dish", "5"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "meaningless" in proc.stderr
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    export = data / "exports" / "egypt" / "demo"
    assert counts["export"]["images"] > 0 and (export / "report.html").exists() and (export / "README.md").exists()
    assert counts["collect"]["ok"] == counts["served_images"] == 35
    rows = row_counts(data)
    assert rows["candidates"] == rows["images"] == 35 and rows["duplicates"] > 0
    assert counts["curate"]["dropped"] >= 5  # the planted near-duplicates (two resized copies per dish)
    evaluation = counts["train"]["evaluate"]
    checkpoint = counts["train"]["train"]["checkpoint"]
    (eval_dir,) = Path(checkpoint).parent.glob("eval-egypt5-*")
    assert (eval_dir / "confusion.png").exists()
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    split = eval_dir.name.removeprefix("eval-egypt5-")
    index = [json.loads(line) for line in (Path(counts["train"]["features"]["folder"]) / "index.jsonl").read_text().splitlines()]
    in_split = [r for r in index if r["split"] == split]
    assert split in ("test", "val") and evaluation["n"] == metrics["n"] == len(in_split) > 0  # that split, nothing else
    correct = sum(metrics["confusion"][i][i] for i in range(len(metrics["classes"])))
    assert evaluation["top1"] == pytest.approx(correct / evaluation["n"]) == pytest.approx(metrics["top1"])
    assert sum(map(sum, metrics["confusion"])) == evaluation["n"]
    image = next((export / "images").iterdir())
    pred = subprocess.run([str(BIN / "sufra"), "predict", str(image), "--checkpoint", checkpoint,
                           "--proposer-weights", "none", "--draw", str(tmp_path / "drawn")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert pred.returncode == 0, pred.stderr[-2000:]
    result = json.loads(pred.stdout.strip().splitlines()[-1])
    assert result["image"] == str(image)
    classes = set(metrics["classes"])
    for instance in result["instances"]:
        x0, y0, x1, y1 = instance["box_xyxy"]
        assert x0 < x1 and y0 < y1 and instance["mask_area"] > 0
        probabilities = [p["probability"] for p in instance["predictions"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) <= 1.0001 and {p["dish"] for p in instance["predictions"]} <= classes
    assert (tmp_path / "drawn" / f"{image.stem}-pred.png").exists()
    again = subprocess.run([str(BIN / "sufra"), "demo", "--data-root", str(data), "--per-dish", "5", "--no-train"],
                           env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    counts2 = json.loads(again.stdout.strip().splitlines()[-1])
    assert row_counts(data) == rows  # same port, same image URLs: the re-run adds no candidate, image or duplicate
    assert counts2["collect"].get("ok", 0) == 0 and counts2["annotate"]["images"] == 0  # everything was done already
