"""Every command: --help works, and each bad input gives one line on stderr, exit code 2, no traceback."""

import json
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


# -- defaults live once: in the settings models (or a flow's signature) ---------------------------------------
# (command, option, module, model or flow, field): --help shows that field's default, parsing passes None
DEFAULTS = [
    ("collect", "engine", "sufra.tasks.collect.query", "CollectSettings", "engines"),
    ("collect", "max_per_query", "sufra.tasks.collect.query", "CollectSettings", "max_per_query"),
    ("collect", "threads", "sufra.tasks.collect.query", "CollectSettings", "threads"),
    ("collect", "data_root", "sufra.core.settings", "SufraSettings", "data_root"),
    ("curate", "hash_kind", "sufra.tasks.curate.hashing", "DedupSettings", "hash_kind"),
    ("curate", "threshold", "sufra.tasks.curate.hashing", "DedupSettings", "candidate_threshold"),
    ("curate", "cross_class", "sufra.tasks.curate.dedup", "CurateSettings", "cross_class"),
    ("curate", "seed", "sufra.tasks.curate.split", "SplitSettings", "seed"),
    ("curate", "data_root", "sufra.core.settings", "SufraSettings", "data_root"),
    ("annotate", "preset", "sufra.tasks.annotate.instances", "AnnotateSettings", "preset"),
    ("annotate", "box_threshold", "sufra.models.detectors", "DetectorSpec", "box_threshold"),
    ("annotate", "text_threshold", "sufra.models.detectors", "DetectorSpec", "text_threshold"),
    ("annotate", "device", "sufra.tasks.annotate.instances", "AnnotateSettings", "device"),
    ("annotate", "data_root", "sufra.core.settings", "SufraSettings", "data_root"),
    ("export", "images", "sufra.tasks.export.release", "ExportSettings", "images"),
    ("export", "segmentation", "sufra.tasks.export.release", "ExportSettings", "segmentation"),
    ("export", "overwrite", "sufra.tasks.export.release", "ExportSettings", "overwrite"),
    ("export", "data_root", "sufra.core.settings", "SufraSettings", "data_root"),
    ("build", "preset", "sufra.tasks.annotate.instances", "AnnotateSettings", "preset"),
    ("build", "max_per_query", "sufra.tasks.collect.query", "CollectSettings", "max_per_query"),
    ("build", "engine", "sufra.tasks.collect.query", "CollectSettings", "engines"),
    ("build", "data_root", "sufra.core.settings", "SufraSettings", "data_root"),
    ("deployments", "pool", "sufra.app.deployments", "deployments_yaml", "pool"),
    ("engines check", "engine", "sufra.tasks.collect.engines.health", "check_engines", "names"),
    ("engines check", "query", "sufra.tasks.collect.engines.health", "check_engines", "query"),
    ("demo", "data_root", "sufra.app.demo", "demo", "data_root"),
    ("demo", "per_dish", "sufra.app.demo", "demo", "per_dish"),
    ("demo", "train", "sufra.app.demo", "demo", "train"),
    ("features", "backbone", "sufra.models.extractors", "ExtractorSpec", "backbone"),
    ("features", "backbone_weights", "sufra.models.extractors", "ExtractorSpec", "backbone_weights"),
    ("features", "depth_model", "sufra.models.extractors", "ExtractorSpec", "depth_model"),
    ("features", "data_root", "sufra.core.settings", "SufraSettings", "data_root"),
    ("train", "epochs", "sufra.tasks.learn.train", "TrainSettings", "epochs"),
    ("train", "lr", "sufra.tasks.learn.train", "TrainSettings", "lr"),
    ("train", "schedule", "sufra.tasks.learn.train", "TrainSettings", "schedule"),
    ("train", "seed", "sufra.tasks.learn.train", "TrainSettings", "seed"),
    ("train", "data_root", "sufra.core.settings", "SufraSettings", "data_root"),
    ("evaluate", "split", "sufra.flows.evaluate", "evaluate", "split"),
    ("evaluate", "data_root", "sufra.core.settings", "SufraSettings", "data_root"),
    ("baselines", "benchmark_set", "sufra.flows.baselines", "baselines", "benchmark_set"),
    ("baselines", "general_set", "sufra.flows.baselines", "baselines", "general_set"),
    ("baselines", "clip_model", "sufra.models.clip_baselines", "ClipSpec", "model"),
    ("baselines", "pretrained", "sufra.models.clip_baselines", "ClipSpec", "pretrained"),
    ("baselines", "data_root", "sufra.core.settings", "SufraSettings", "data_root"),
    ("predict", "proposer_weights", "sufra.tasks.learn.predict", "PredictSettings", "proposer_weights"),
    ("predict", "score_threshold", "sufra.tasks.learn.predict", "PredictSettings", "score_threshold"),
    ("predict", "device", "sufra.tasks.learn.predict", "PredictSettings", "device"),
    ("review push", "which", "sufra.flows.review", "push_for_review", "which"),
    ("review push", "data_root", "sufra.core.settings", "SufraSettings", "data_root"),
    ("review pull", "data_root", "sufra.core.settings", "SufraSettings", "data_root"),
]


def _click_command(path: str):
    from typer.main import get_command

    from sufra.app.cli import app

    command = get_command(app)
    for name in path.split():
        command = command.commands[name]
    return command


def _owner_default(module: str, owner: str, field: str):
    """The default as a user of the model sees it: an attribute of a model built without arguments, or the
    parameter default of a flow's function."""
    import importlib
    import inspect

    target = getattr(importlib.import_module(module), owner)
    if isinstance(target, type):
        return getattr(target(), field)
    return inspect.signature(getattr(target, "fn", target)).parameters[field].default


@pytest.mark.parametrize("command, option, module, owner, field", DEFAULTS, ids=[f"{c}.{o}" for c, o, *_ in DEFAULTS])
def test_help_default_is_the_model_default_and_parsing_passes_none(command, option, module, owner, field):
    click_command = _click_command(command)
    (param,) = [p for p in click_command.params if p.name == option]
    assert param.default is None  # not given: the model's own default applies, nothing copied into the CLI
    assert click_command.help_defaults()[option] == _owner_default(module, owner, field)


def test_every_help_default_is_in_the_table():
    from typer.main import get_command

    from sufra.app.cli import SettingsCommand, app

    def walk(command, path=()):
        if isinstance(command, SettingsCommand):
            yield from ((" ".join(path), name) for name in command.defaults_from)
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, (*path, name))

    assert set(walk(get_command(app))) == {(c, o) for c, o, *_ in DEFAULTS}


@pytest.mark.parametrize("command, shown", [
    ("collect", ["[default: 16]", "[default: bing]", "[default: 100]"]),
    ("features", ["[default: ./data]", "[default: efficientnet_b0]"]),  # ./data was eaten by rich markup before
    ("demo", ["[default: train]", "[default: ./demo-data]"]),  # a --x/--no-x flag shows the model's True
    ("annotate", ["[default: 0.3]", "[default: fast]"]),
    ("build", ["(default: today's date)"]),  # square brackets in help text are rich markup: they were eaten
    ("catalog list", ["(default: the bundled catalog)"]),
])
def test_help_shows_the_model_defaults(command, shown):
    proc = subprocess.run([SUFRA, *command.split(), "--help"], capture_output=True, text=True, timeout=60,
                          env=dict(ENV, COLUMNS="250", TERMINAL_WIDTH="250"))
    assert proc.returncode == 0, proc.stderr
    for text in shown:
        assert text in proc.stdout


def _run_main(args, monkeypatch, capsys):
    """``sufra ARGS`` in this process; returns (exit code, stdout, stderr)."""
    from sufra.app.cli import main

    for name, value in (("PREFECT_LOGGING_LEVEL", "WARNING"), ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")):
        monkeypatch.setenv(name, value)  # the CLI's setdefault must not leak into the test session
    monkeypatch.delenv("SUFRA_COUNTRY", raising=False)
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _cache(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "index.jsonl").write_text("")
    return str(tmp_path / "cache")


# (args, flow module, flow name, settings the flow must receive: a model built from the given values only)
PASSED = [
    (["curate", "-c", "egypt"], "sufra.flows.curate", "curate", lambda: _model("sufra.tasks.curate.dedup", "CurateSettings")),
    (["curate", "-c", "egypt", "--threshold", "5", "--seed", "3"], "sufra.flows.curate", "curate",
     lambda: _model("sufra.tasks.curate.dedup", "CurateSettings", dedup={"candidate_threshold": 5}, split={"seed": 3})),
    (["export", "-c", "egypt", "--version", "v1"], "sufra.flows.export", "export",
     lambda: _model("sufra.tasks.export.release", "ExportSettings")),
    (["export", "-c", "egypt", "--version", "v1", "--overwrite", "--images", "copy"], "sufra.flows.export", "export",
     lambda: _model("sufra.tasks.export.release", "ExportSettings", overwrite=True, images="copy")),
    (["collect", "-c", "egypt"], "sufra.flows.collect", "collect", lambda: _model("sufra.tasks.collect.query", "CollectSettings")),
    (["collect", "-c", "egypt", "--threads", "3", "--allow-network", "127.0.0.1"], "sufra.flows.collect", "collect",
     lambda: _model("sufra.tasks.collect.query", "CollectSettings", threads=3, fetch={"allow_networks": ["127.0.0.1"]})),
    (["train", "--cache", "CACHE"], "sufra.flows.train", "train", lambda: _model("sufra.tasks.learn.train", "TrainSettings")),
    (["train", "--cache", "CACHE", "--no-depth", "--epochs", "2"], "sufra.flows.train", "train",
     lambda: _model("sufra.tasks.learn.train", "TrainSettings", use_depth=False, epochs=2)),
]


def _model(module: str, name: str, **values):
    import importlib

    return getattr(importlib.import_module(module), name).model_validate(values)


@pytest.mark.parametrize("args, module, flow, expected", PASSED, ids=[" ".join(a) for a, *_ in PASSED])
def test_only_given_options_reach_the_settings(args, module, flow, expected, tmp_path, monkeypatch, capsys):
    import importlib

    seen = {}

    def fake_flow(**kwargs):
        seen.update(kwargs)
        return {"ok": 1}

    monkeypatch.setattr(importlib.import_module(module), flow, fake_flow)
    args = [str(_cache(tmp_path)) if a == "CACHE" else a for a in args]
    code, out, err = _run_main([*args, "--data-root", str(tmp_path / "data")], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads(out) == {"ok": 1}
    assert seen["data_root"] == str(tmp_path / "data")
    assert seen["settings"].model_dump() == expected().model_dump()


def test_country_defaults_to_sufra_country(tmp_path):
    """SufraSettings.country is the default of --country (typer's own envvar is gone: one place reads the env)."""
    env = dict(ENV, SUFRA_COUNTRY="atlantis")
    proc = subprocess.run([SUFRA, "curate", "--data-root", str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "no catalog for country 'atlantis'" in proc.stderr and proc.stderr.count("\n") == 1


def test_bad_environment_is_one_line(tmp_path):
    """A bad SUFRA_* value names the variable (it was an internal error, exit 1, before)."""
    proc = subprocess.run([SUFRA, "curate", "-c", "egypt", "--data-root", str(tmp_path)], capture_output=True, text=True,
                          env=dict(ENV, SUFRA_DEBUG="maybe"), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("sufra: error: SUFRA_DEBUG: ") and proc.stderr.count("\n") == 1


BAD_OPTIONS = [
    (["annotate", "-c", "egypt", "--detector", ""], "--detector must be"),
    (["annotate", "-c", "egypt", "--segmenter", "sam2:"], "--segmenter must be"),
    (["annotate", "-c", "egypt", "--box-threshold", "2"], "--box-threshold"),
    (["curate", "--hash-kind", "phash"], "Missing option '--country'"),
    (["export", "--version", "v1"], "Missing option '--country'"),
    (["review", "push", "--version", "v1"], "Missing option '--country'"),
    (["curate", "-c", "egypt", "--threshold", "-1"], "--threshold"),
    (["train", "--cache", "CACHE", "--schedule", "linear"], "--schedule"),
    (["baselines", "--export", "/nonexistent"], "is not an export folder (no images.parquet)"),
    (["baselines", "--export", "EXPORT", "--set", "pizza10"], "unknown benchmark set 'pizza10'"),
    (["predict", "IMAGE", "--checkpoint", "/nonexistent.pt"], "checkpoint '/nonexistent.pt' does not exist"),
]


@pytest.mark.parametrize("args, fragment", BAD_OPTIONS, ids=[" ".join(a[:4]) for a, _ in BAD_OPTIONS])
def test_bad_option_is_one_line(args, fragment, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    for name in ("images.parquet", "instances.parquet"):
        (export / name).write_bytes(b"")
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    values = {"CACHE": _cache(tmp_path), "EXPORT": str(export), "IMAGE": str(image)}
    args = [values.get(a, a) for a in args]
    env = {k: v for k, v in ENV.items() if k != "SUFRA_COUNTRY"}
    proc = subprocess.run([SUFRA, *args], capture_output=True, text=True, env=dict(env, SUFRA_DATA_ROOT=str(tmp_path)), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("sufra: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr


# -- predict: a typed result, printed by the CLI and drawn by predict.draw -------------------------------------
def _prediction(path):
    import numpy as np
    from sufra.schemas.detections import Detections
    from sufra.tasks.learn.predict import Prediction, classify

    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:10, 3:12] = True
    masks[1, 12:18, 15:28] = True
    det = Detections(np.array([[3, 2, 12, 10], [15, 12, 28, 18]], np.float32), np.array([0.9, 0.7]), ["object"] * 2,
                     masks=masks)
    probs = np.array([[0.1, 0.7, 0.15, 0.05], [0.5, 0.1, 0.1, 0.3]], np.float32)
    return Prediction(path, classify(det, probs, ["koshari", "molokhia", "ful", "taameya"], top_k=3))


def test_prediction_record_and_labels(tmp_path):
    prediction = _prediction(tmp_path / "a.png")
    det = prediction.detections
    assert det.data["label"] == ["molokhia", "koshari"] and det.data["label_score"] == pytest.approx([0.7, 0.5])
    assert prediction.label == "molokhia"
    record = prediction.to_record()
    assert record == {"image": str(tmp_path / "a.png"), "instances": [
        {"box_xyxy": [3.0, 2.0, 12.0, 10.0], "mask_area": 72, "predictions": [
            {"dish": "molokhia", "probability": 0.7}, {"dish": "ful", "probability": 0.15},
            {"dish": "koshari", "probability": 0.1}]},
        {"box_xyxy": [15.0, 12.0, 28.0, 18.0], "mask_area": 78, "predictions": [
            {"dish": "koshari", "probability": 0.5}, {"dish": "taameya", "probability": 0.3},
            {"dish": "molokhia", "probability": 0.1}]},
    ]}


def test_predict_cli_prints_records_and_draws(tmp_path, monkeypatch, capsys):
    import numpy as np
    import sufra.tasks.learn.predict as predict_module
    from PIL import Image

    image = tmp_path / "plate.png"
    Image.new("RGB", (30, 20), (0, 0, 0)).save(image)
    seen = {}

    def fake_predict(paths, checkpoint, settings):
        seen.update(checkpoint=checkpoint, settings=settings)
        return [_prediction(Path(p)) for p in paths]

    monkeypatch.setattr(predict_module, "predict_images", fake_predict)
    code, out, err = _run_main(["predict", str(image), "--checkpoint", "best.pt", "--proposer-weights", "none",
                                "--score-threshold", "0.25", "--draw", str(tmp_path / "drawn")], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads(out) == _prediction(image).to_record()
    assert seen["checkpoint"] == "best.pt" and seen["settings"].proposer_weights is None
    assert seen["settings"].score_threshold == 0.25 and seen["settings"].device == "cpu"  # given; the model's default
    drawn = np.asarray(Image.open(tmp_path / "drawn" / "plate-pred.png").convert("RGB"))
    assert drawn.shape == (20, 30, 3)
    assert drawn[5, 7].sum() > 0 and (drawn[19, 0] == 0).all()  # inside a mask: tinted; outside everything: black


def test_draw_without_instances_writes_the_image(tmp_path):
    import numpy as np
    from PIL import Image
    from sufra.schemas.detections import Detections
    from sufra.tasks.learn.predict import Prediction, classify, draw

    image = tmp_path / "empty.png"
    Image.new("RGB", (8, 6), (10, 20, 30)).save(image)
    out = draw(Prediction(image, classify(Detections.empty(), np.zeros((0, 2)), ["a", "b"], 3)), tmp_path / "drawn")
    assert (np.asarray(Image.open(out)) == (10, 20, 30)).all()


# -- review goes through its flows: a run manifest for every push and pull ------------------------------------
@pytest.fixture
def rejecting_label_studio():
    """A local server answering 401 to everything (the SDK's error path, without starting Label Studio)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Reject(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b'{"detail": "Invalid token."}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_PATCH = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Reject)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("command, flow", [(["push", "--which", "all"], "push-for-review"), (["pull"], "pull-reviews")])
def test_review_writes_a_failed_run_manifest(command, flow, rejecting_label_studio, tmp_path):
    env = dict(ENV, LABEL_STUDIO_URL=rejecting_label_studio)
    proc = subprocess.run([SUFRA, "review", *command, "-c", "egypt", "--version", "v1", "--data-root", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("sufra: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "rejected the API key (401)" in proc.stderr and "k-123-secret" not in proc.stderr
    (path,) = (tmp_path / "runs").glob("*.json")
    manifest = json.loads(path.read_text())
    assert manifest["flow"] == flow and manifest["status"] == "failed" and manifest["parameters"]["country"] == "egypt"
    assert "401" in manifest["error"] and "k-123-secret" not in path.read_text()


def test_debug_flag_reaches_prefect_without_touching_sufra_env(tmp_path, monkeypatch, capsys):
    """--debug is read through the settings (no SUFRA_DEBUG written); Prefect's console level follows it."""
    import sufra.flows.curate as curate_module

    monkeypatch.setattr(curate_module, "curate", lambda **kwargs: {})
    monkeypatch.delenv("SUFRA_DEBUG", raising=False)
    monkeypatch.delenv("PREFECT_LOGGING_LEVEL", raising=False)
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from sufra.app.cli import main

    main(["--debug", "curate", "-c", "egypt", "--data-root", str(tmp_path)])
    assert os.environ["PREFECT_LOGGING_LEVEL"] == "INFO" and "SUFRA_DEBUG" not in os.environ
    capsys.readouterr()


def test_help_defaults_import_neither_torch_nor_prefect():
    """The defaults --help shows are read from the settings modules' source when literal: no torch, no Prefect."""
    code = ("import sys; from typer.main import get_command; from sufra.app.cli import app; root = get_command(app); "
            "[c.help_defaults() for c in (*root.commands.values(), *root.commands['review'].commands.values()) "
            " if hasattr(c, 'help_defaults')]; "
            "print(sorted(m for m in ('torch', 'prefect', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
