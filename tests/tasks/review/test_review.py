"""Review against a real Label Studio (the dev bootstrap installs it in .venv/label-studio)."""

import copy
import http.server
import os
import signal
import subprocess
import threading
import urllib.request
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from sufra.schemas import INSTANCES, REVIEWS
from sufra.tasks.review.labelstudio import Client, LabelStudioSettings, brush_mask, brush_rle, pull, push

from sufra.core.catalog import load_country
from sufra.core.errors import SufraError
from sufra.core.store import DataRoot
from tests.support.pipeline import build_dataset
from tests.support.servers import free_port, wait_for_health

REPO = Path(__file__).resolve().parents[3]
LS_BIN = Path(os.environ.get("SUFRA_LABEL_STUDIO_BIN", REPO / ".venv" / "label-studio" / "bin" / "label-studio"))
TOKEN = "sufra0test0legacy0token0123456789"


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    if not LS_BIN.exists():
        if os.environ.get("CI"):
            pytest.fail(f"Label Studio is not installed at {LS_BIN}: run `bash scripts/bootstrap --dev`")
        pytest.skip(f"Label Studio is not installed at {LS_BIN} (bash scripts/bootstrap --dev)")
    data = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    dead_proxy = "http://127.0.0.1:9"  # anything that tried to leave the machine would hit a closed loopback port
    env = dict(os.environ, LABEL_STUDIO_BASE_DATA_DIR=str(data), LATEST_VERSION_CHECK="false", COLLECT_ANALYTICS="false",
               HTTP_PROXY=dead_proxy, HTTPS_PROXY=dead_proxy, http_proxy=dead_proxy, https_proxy=dead_proxy,
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.pop("HOST", None)
    log = open(data / "server.log", "w")
    proc = subprocess.Popen([str(LS_BIN), "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port),
                             "--username", "amira@sufra.test", "--password", "sufra-review-1", "--user-token", TOKEN,
                             "--enable-legacy-api-token"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_for_health(f"{url}/health", proc, data / "server.log", "Label Studio", 240)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


@pytest.fixture
def image_server(tmp_path):
    """A file server on the data root: how Label Studio's browser gets the images without copying them."""
    folder = tmp_path / "data"
    folder.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def table_state(root: DataRoot):
    return (root.read_table(INSTANCES, "egypt", latest=False).num_rows, root.read_table(REVIEWS, "egypt", latest=False).num_rows)


@pytest.mark.slow
@pytest.mark.labelstudio
def test_push_annotate_pull_round_trip(label_studio, image_server):
    folder, base = image_server
    root = DataRoot(folder)
    build_dataset(root, dishes=("koshari", "mahshi"), per_dish=5)
    catalog = load_country("egypt")
    settings = LabelStudioSettings(url=label_studio, api_key=TOKEN, image_base_url=base)
    first = push(root, catalog, "v1", settings, which="all")
    assert first["pushed"] == 10
    client = Client(settings)
    project = client.find_project("sufra egypt v1")
    tasks = sorted(client.tasks(project.id), key=lambda t: t.data["image_id"])
    assert len(tasks) == 10 and all(t.meta["image_id"] == t.data["image_id"] for t in tasks)
    with urllib.request.urlopen(tasks[0].data["image"]) as response:  # the URL Label Studio shows really serves it
        assert response.read() == root.read_image_bytes(tasks[0].data["image_id"], "jpg")
    auto = {}
    for inst in root.read_records(INSTANCES, "egypt"):
        auto.setdefault(inst.image_id, []).append(inst)
    for task in tasks:  # predictions' brush masks decode to the same pixels
        result = task.predictions[0].result
        brushes = [r for r in result if r["type"] == "brushlabels"]
        assert len(brushes) == 2
        for region in brushes:
            inst = next(i for i in auto[task.data["image_id"]] if region["id"] == f"{i.instance_id}m")
            assert np.array_equal(brush_mask(region["value"]["rle"], 320, 240), inst.mask.to_mask())

    def submit(task, result):
        client.sdk.annotations.create(id=task.id, result=result, lead_time=12.5)

    moved, erased, rejected, relabelled = tasks[:4]
    base_result = {t.id: copy.deepcopy(t.predictions[0].result) for t in tasks[:4]}
    r = base_result[moved.id]
    r[0]["value"]["x"] += 5.0  # move the first box right by 5% of the width
    submit(moved, r + [{"from_name": "decision", "to_name": "image", "type": "choices", "value": {"choices": ["accept"]}}])
    r = base_result[erased.id]
    brush = next(x for x in r if x["type"] == "brushlabels")
    mask = brush_mask(brush["value"]["rle"], 320, 240)
    mask[:, :100] = False  # erase the left part of the mask
    brush["value"]["rle"] = brush_rle(mask)
    submit(erased, r)
    submit(rejected, [{"from_name": "decision", "to_name": "image", "type": "choices", "value": {"choices": ["reject"]}}])
    r = base_result[relabelled.id]
    for region in r[:2]:  # the first instance's box and mask: another dish
        key = "rectanglelabels" if region["type"] == "rectanglelabels" else "brushlabels"
        region["value"][key] = ["molokhia"]
    submit(relabelled, r + [{"from_name": "decision", "to_name": "image", "type": "choices", "value": {"choices": ["wrong dish"]}}])

    pulled = pull(root, catalog, "v1", settings)
    assert pulled["new_reviews"] == 4
    reviews = {r.image_id: r for r in root.read_records(REVIEWS, "egypt")}
    assert {i: reviews[t.data["image_id"]].decision for i, t in enumerate((moved, erased, rejected, relabelled))} == {
        0: "accepted", 1: "corrected", 2: "rejected", 3: "corrected"}
    review_instances = {}
    for inst in root.read_records(INSTANCES, "egypt"):
        if inst.source == "review":
            review_instances.setdefault(inst.image_id, []).append(inst)
    moved_auto = sorted(auto[moved.data["image_id"]], key=lambda i: i.instance_id)
    moved_rev = review_instances[moved.data["image_id"]]
    assert len(moved_rev) == 2
    shifted = [i for i in moved_rev if abs(i.bbox[0] - (moved_auto[0].bbox[0] + 16)) < 0.5]
    assert len(shifted) == 1 and shifted[0].bbox[1:] == pytest.approx(moved_auto[0].bbox[1:], abs=0.5)
    erased_rev = review_instances[erased.data["image_id"]]
    erased_auto = {i.area for i in auto[erased.data["image_id"]]}
    assert sorted(i.area for i in erased_rev) != sorted(erased_auto) and min(i.area for i in erased_rev) < min(erased_auto)
    assert rejected.data["image_id"] not in review_instances
    assert sorted(i.label for i in review_instances[relabelled.data["image_id"]]) == sorted([relabelled.data["dish"], "molokhia"])
    # re-push and re-pull change nothing
    state = table_state(root)
    assert push(root, catalog, "v1", settings, which="all")["pushed"] == 0
    assert pull(root, catalog, "v1", settings)["new_reviews"] == 0
    assert table_state(root) == state and len(client.tasks(project.id)) == 10
    # a later pull picks up the rest
    submit(tasks[5], [{"from_name": "decision", "to_name": "image", "type": "choices", "value": {"choices": ["reject"]}}])
    assert pull(root, catalog, "v1", settings)["new_reviews"] == 1


@pytest.mark.slow
@pytest.mark.labelstudio
def test_errors_are_one_line_and_change_nothing(label_studio, tmp_path):
    root = DataRoot(tmp_path / "data")
    build_dataset(root, dishes=("koshari",), per_dish=3)
    catalog = load_country("egypt")
    state = table_state(root)
    wrong = LabelStudioSettings(url=label_studio, api_key="not-the-token-0000", image_base_url="http://127.0.0.1:1")
    with pytest.raises(SufraError, match="rejected the API key") as info:
        push(root, catalog, "v9", wrong, which="all")
    assert "not-the-token" not in str(info.value) and "\n" not in str(info.value)
    stopped = LabelStudioSettings(url=f"http://127.0.0.1:{free_port()}", api_key=TOKEN, image_base_url="http://127.0.0.1:1")
    with pytest.raises(SufraError, match="unreachable") as info:
        pull(root, catalog, "v9", stopped)
    assert TOKEN not in str(info.value)
    good = LabelStudioSettings(url=label_studio, api_key=TOKEN, image_base_url="http://127.0.0.1:1")
    with pytest.raises(SufraError, match="no Label Studio project 'sufra egypt never'"):
        pull(root, catalog, "never", good)
    push(root, catalog, "edited", good, which="all")
    client = Client(good)
    project = client.find_project("sufra egypt edited")
    client.sdk.projects.update(id=project.id, label_config=client.sdk.projects.get(id=project.id).label_config.replace(
        '<Choice value="reject"/>', '<Choice value="reject"/><Choice value="maybe"/>'))
    with pytest.raises(SufraError, match="edited by hand"):
        pull(root, catalog, "edited", good)
    assert table_state(root) == state


def test_brush_rle_round_trip_through_the_sdk_converter():
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) > 0.6
    assert np.array_equal(brush_mask(brush_rle(mask), 53, 37), mask)


def test_settings_from_env_need_url_and_key(monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")  # no Secret block lookup beyond loopback
    with pytest.raises(SufraError, match="LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"):
        LabelStudioSettings.from_env()
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "secret-value")
    settings = LabelStudioSettings.from_env()
    assert "secret-value" not in repr(settings) and settings.api_key.get_secret_value() == "secret-value"


@pytest.mark.slow
@pytest.mark.labelstudio
def test_personal_access_token_works_too(label_studio, tmp_path):
    legacy = Client(LabelStudioSettings(url=label_studio, api_key=TOKEN))
    legacy.sdk.jwt_settings.update(api_token_ttl_days=30, api_tokens_enabled=True, legacy_api_tokens_enabled=True)
    pat = legacy.sdk.tokens.create().token  # a JWT refresh token, as the UI's "Personal Access Token" gives
    assert pat.count(".") == 2
    root = DataRoot(tmp_path / "data")
    build_dataset(root, dishes=("koshari",), per_dish=3)
    settings = LabelStudioSettings(url=label_studio, api_key=pat, image_base_url="http://127.0.0.1:1")
    assert push(root, load_country("egypt"), "pat", settings, which="all")["pushed"] == 3
    assert pull(root, load_country("egypt"), "pat", settings)["tasks"] == 3


def _auto_instances(width=320, height=240):
    import datetime as dt

    from sufra.schemas.rle import RLE
    from sufra.schemas.tables import InstanceRecord

    rows = []
    for n, (x0, y0, x1, y1) in enumerate([(16, 24, 96, 120), (150, 60, 300, 200)]):
        mask = np.zeros((height, width), bool)
        mask[y0:y1, x0:x1] = True
        rle = RLE.from_mask(mask)
        rows.append(InstanceRecord(instance_id=f"inst{n}", image_id="img", country="egypt", label="koshari",
                                   phrase="koshari", bbox=rle.bbox_xywh, box_score=0.75 - 0.25 * n, mask=rle,
                                   mask_score=None if n else 0.5, area=rle.area, config_hash="cfg",
                                   created_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC)))
    return rows


def test_prediction_regions_and_review_rows_without_a_server():
    """The push/pull conversions (Detections.to_labelstudio / from_labelstudio) on their own: a region pair per
    instance, a moved box, a lone box, a relabel and an erased mask."""
    import datetime as dt

    from sufra.tasks.review.labelstudio import annotation_to_rows, prediction_result

    auto = _auto_instances()
    result = prediction_result(auto, 320, 240)
    assert [(r["id"], r["type"], r["from_name"]) for r in result] == [
        ("inst0b", "rectanglelabels", "box"), ("inst0m", "brushlabels", "mask"),
        ("inst1b", "rectanglelabels", "box"), ("inst1m", "brushlabels", "mask")]
    assert result[0]["value"] == {"x": 5.0, "y": 10.0, "width": 25.0, "height": 40.0, "rotation": 0, "rectanglelabels": ["koshari"]}
    assert [r["score"] for r in result] == [0.75, 0.5, 0.5, 0.5]  # brush: mask score, else box score
    assert all(r["original_width"] == 320 and r["original_height"] == 240 for r in result)
    for region, inst in zip(result[1::2], auto, strict=True):
        assert np.array_equal(brush_mask(region["value"]["rle"], 320, 240), inst.mask.to_mask())

    when = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    accept = {"from_name": "decision", "to_name": "image", "type": "choices", "value": {"choices": ["accept"]}}
    decision, rows = annotation_to_rows(copy.deepcopy(result) + [accept], "img", "egypt", "koshari", 320, 240, "amira", 9, when)
    assert decision == "accepted" and [r.bbox for r in rows] == [i.bbox for i in auto]
    assert [r.mask for r in rows] == [i.mask for i in auto] and [r.area for r in rows] == [i.area for i in auto]
    assert all(r.source == "review" and r.box_score == 1.0 and r.mask_score == 1.0 and r.created_at == when for r in rows)
    assert all(r.model_versions == {"reviewer": "amira"} and r.config_hash is None for r in rows)
    assert len({r.instance_id for r in rows}) == 2

    edited = copy.deepcopy(result)
    edited[0]["value"]["x"] += 5.0  # moved right by 16 px
    edited[0]["value"]["rectanglelabels"] = ["molokhia"]  # relabelled through the box only
    del edited[3]  # the second instance's brush: a lone box -> a rectangular mask
    decision, rows = annotation_to_rows(edited, "img", "egypt", "koshari", 320, 240, None, 9, when)
    assert decision == "corrected" and [r.label for r in rows] == ["molokhia", "koshari"]
    assert rows[0].bbox == [32.0, 24.0, 80.0, 96.0] and rows[0].mask == auto[0].mask  # box moved, mask kept
    assert rows[1].mask == auto[1].mask and rows[1].bbox == auto[1].bbox
    assert rows[0].model_versions == {"reviewer": "unknown"}

    erased = copy.deepcopy(result)
    erased[1]["value"]["rle"] = brush_rle(np.zeros((240, 320), bool))  # the first mask erased: no instance
    del erased[2]  # the second box: a lone brush gets its mask's box
    decision, rows = annotation_to_rows(erased, "img", "egypt", "koshari", 320, 240, "amira", 9, when)
    assert decision == "corrected" and len(rows) == 1 and rows[0].bbox == auto[1].bbox and rows[0].mask == auto[1].mask
    reject = {"from_name": "decision", "type": "choices", "value": {"choices": ["reject"]}}
    assert annotation_to_rows([reject], "img", "egypt", "koshari", 320, 240, None, 9, when) == ("rejected", [])
