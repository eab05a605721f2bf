"""Every stage's plain ``run`` (no Prefect) and its flow write the same tables: both run on two copies of one tiny
generated data root and the tables (or files) they write are compared value by value.

The module builds the pipeline once (collect from a local folder, curate, annotate with tiny random models,
export, features, train) with the ``run`` functions and keeps a copy of the root before each stage.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from sufra.schemas.tables import TABLES
from sufra.tasks.annotate import stage as annotate_stage
from sufra.tasks.annotate.instances import AnnotateSettings
from sufra.tasks.annotate.postfilter import PostFilterSettings
from sufra.tasks.collect import stage as collect_stage
from sufra.tasks.collect.query import CollectSettings
from sufra.tasks.curate import stage as curate_stage
from sufra.tasks.curate.dedup import CurateSettings
from sufra.tasks.curate.hashing import DedupSettings
from sufra.tasks.export import stage as export_stage
from sufra.tasks.export.release import ExportSettings
from sufra.tasks.learn import stages as learn
from sufra.tasks.learn.features import FeatureSettings
from sufra.tasks.learn.train import TrainSettings

from sufra.core.errors import SufraError
from sufra.core.store import DataRoot

COUNTRY = "egypt"
DISHES = ("koshari", "mahshi")  # both in the egypt5 benchmark set
VERSION = "v1"
PER_DISH = 6
LEARN_STAGES = ("features", "train", "evaluate", "baselines")
STAGES = ("collect", "curate", "annotate", "export", *LEARN_STAGES)
VOLATILE = {"run_id"}  # differs between any two runs; timestamps are dropped by type


def normalized(table: pa.Table) -> list[dict]:
    """Rows without run ids and timestamps (they differ between two runs of the same work), sorted."""
    keep = [f.name for f in table.schema if f.name not in VOLATILE and not pa.types.is_timestamp(f.type)]
    rows = table.select(keep).to_pylist()
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def tables_of(root: DataRoot) -> dict[str, list[dict]]:
    return {name: normalized(root.read_table(table, COUNTRY)) for name, table in sorted(TABLES.items())}


def export_contents(folder: Path) -> dict:
    """File names of an export and the rows of its Parquet files."""
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    parquet = {name: normalized(pq.read_table(folder / name)) for name in files if name.endswith(".parquet")}
    return {"files": files, "parquet": parquet}


def cache_contents(folder: Path) -> dict:
    from sufra.tasks.learn.features import load_cache

    tensors, index = load_cache(folder)
    return {"index": sorted((r["instance_id"], r["label"], r["split"]) for r in index),
            "tensors": {k: v.double().sum().item() for k, v in tensors.items()}}


def cache_folder(data: Path) -> str:
    return str(next((data / "features").glob("*/index.jsonl")).parent)


def checkpoint_of(data: Path) -> str:
    return str(next((data / "checkpoints").glob("*/best.pt")))


def export_path(data: Path) -> str:
    return str(data / "exports" / COUNTRY / VERSION)


class FakeClip:
    """A stand-in for ``ClipModel``: embeddings from image colour statistics and from the class name's hash."""

    name = "fake-clip"

    def encode_images(self, images: list) -> torch.Tensor:
        import numpy as np

        stats = [np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3) for im in images]
        x = torch.tensor([[*s.mean(0), *s.std(0), 1.0, 0.5] for s in stats], dtype=torch.float32)
        return torch.nn.functional.normalize(x, dim=-1)

    def class_embeddings(self, class_names: list[str], templates=()) -> torch.Tensor:
        import hashlib

        rows = [[b / 255 for b in hashlib.sha256(n.encode()).digest()[:8]] for n in class_names]
        return torch.nn.functional.normalize(torch.tensor(rows), dim=-1)


def fake_clip_load(cls, spec, device: str = "cpu"):
    return FakeClip()


@pytest.fixture(scope="module")
def settings(tiny_models, tmp_path_factory) -> dict:
    from sufra.models.extractors import ExtractorSpec
    from sufra.models.tiny import save_tiny_depth

    from sufra.app.devserver import food_image

    sources = tmp_path_factory.mktemp("sources")
    folders = {}
    for label, dish in enumerate(DISHES):
        folder = sources / dish
        folder.mkdir()
        for k in range(PER_DISH):
            food_image(1000 * (label + 1) + k, (256, 192), label).save(folder / f"{k}.jpg", quality=90)
        food_image(1000 * (label + 1), (256, 192), label).resize((192, 144)).save(folder / "dup.jpg", quality=70)
        folders[dish] = str(folder)
    depth = save_tiny_depth(tmp_path_factory.mktemp("models") / "dpt-tiny")
    return {
        "collect": CollectSettings(engines=["folder"], folders=folders, threads=2, processes=1, stale_temp_age_s=0),
        "curate": CurateSettings(dedup=DedupSettings(workers=1), shard_size=5),
        "annotate": AnnotateSettings(detector=tiny_models["detector"], segmenter=tiny_models["sam"], batch_size=4,
                                     shard_size=4, postfilter=PostFilterSettings(min_area_ratio=0.0005)),
        "export": ExportSettings(images="copy"),
        "features": FeatureSettings(extractor=ExtractorSpec(backbone="efficientnet_b0", backbone_weights=None,
                                                            depth_model=depth, input_size=128)),
        "train": TrainSettings(epochs=3, batch_size=8),
        "evaluate": learn.EvaluateSettings(split="train"),  # every class of the head; the only split sure to be filled
        "baselines": learn.BaselineSettings(benchmark_set="egypt5", general_set="food101_25"),
    }


def run_stage(stage: str, data: Path, settings: dict) -> None:
    """The stage through its plain ``run`` function."""
    root, s = DataRoot(data), settings[stage]
    if stage == "collect":
        collect_stage.run(root, COUNTRY, s, dishes=list(DISHES))
    elif stage == "curate":
        curate_stage.run(root, COUNTRY, s)
    elif stage == "annotate":
        annotate_stage.run(root, COUNTRY, s)
    elif stage == "export":
        export_stage.run(root, COUNTRY, s, version=VERSION)
    elif stage == "features":
        learn.features_stage(root, export_path(data), s)
    elif stage == "train":
        learn.train_stage(root, cache_folder(data), s)
    elif stage == "evaluate":
        learn.evaluate_stage(root, checkpoint_of(data), cache_folder(data), s)
    elif stage == "baselines":
        learn.baselines_stage(root, export_path(data), s, clip_model=FakeClip())


def run_flow(stage: str, data: Path, settings: dict) -> dict:
    """The stage through its Prefect flow."""
    s, url = settings[stage], str(data)
    if stage == "collect":
        from sufra.flows.collect import collect

        return collect(country=COUNTRY, dishes=list(DISHES), data_root=url, settings=s)
    if stage == "curate":
        from sufra.flows.curate import curate

        return curate(country=COUNTRY, data_root=url, settings=s)
    if stage == "annotate":
        from sufra.flows.annotate import annotate

        return annotate(country=COUNTRY, data_root=url, settings=s)
    if stage == "export":
        from sufra.flows.export import export

        return export(country=COUNTRY, version=VERSION, data_root=url, settings=s)
    if stage == "features":
        from sufra.flows.features import features

        return features(export_path=export_path(data), data_root=url, settings=s)
    if stage == "train":
        from sufra.flows.train import train

        return train(cache_folder=cache_folder(data), data_root=url, settings=s)
    if stage == "evaluate":
        from sufra.flows.evaluate import evaluate

        return evaluate(checkpoint=checkpoint_of(data), cache_folder=cache_folder(data), benchmark_set=s.benchmark_set,
                        split=s.split, data_root=url)
    from sufra.flows.baselines import baselines

    return baselines(export_path=export_path(data), benchmark_set=s.benchmark_set, general_set=s.general_set,
                     data_root=url)


def outputs(stage: str, data: Path) -> dict:
    """What a stage wrote, comparable between two roots."""
    if stage in ("collect", "curate", "annotate"):
        return tables_of(DataRoot(data))
    if stage == "export":
        return export_contents(Path(export_path(data)))
    if stage == "features":
        return cache_contents(Path(cache_folder(data)))
    if stage == "train":
        metrics = json.loads((Path(checkpoint_of(data)).parent / "metrics.json").read_text())
        return {k: metrics[k] for k in ("history", "best_val_top1", "classes", "validated_on")}
    if stage == "evaluate":
        folder = next((data / "checkpoints").glob("*/eval-all-train"))
        return {"metrics": json.loads((folder / "metrics.json").read_text()),
                "files": sorted(p.name for p in folder.iterdir())}
    return json.loads(next((data / "runs").glob("*/baselines.json")).read_text())


@pytest.fixture(scope="module")
def before(settings, tmp_path_factory) -> dict[str, Path]:
    """A copy of the data root before each stage, the pipeline run with the plain ``run`` functions."""
    work = tmp_path_factory.mktemp("pipeline")
    data = work / "data"
    data.mkdir()
    copies = {}
    for stage in STAGES:
        copies[stage] = work / f"before-{stage}"
        shutil.copytree(data, copies[stage], symlinks=True)
        run_stage(stage, data, settings)
    root = DataRoot(data)
    instances = root.read_table(TABLES["instances"], COUNTRY)
    assert instances.num_rows > 0  # the learning stages have instances to work on
    return copies


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_run_and_flow_write_the_same(stage, before, settings, tmp_path, prefect_harness, monkeypatch):
    from sufra.models.clip_baselines import ClipModel

    monkeypatch.setattr(ClipModel, "load", classmethod(fake_clip_load))  # the flow loads its CLIP model itself
    plain, flowed = tmp_path / "plain", tmp_path / "flow"
    shutil.copytree(before[stage], plain, symlinks=True)
    shutil.copytree(before[stage], flowed, symlinks=True)
    run_stage(stage, plain, settings)
    counts = run_flow(stage, flowed, settings)
    expected = outputs(stage, plain)
    assert expected and outputs(stage, flowed) == expected
    assert counts  # the flow reports what it did
    if stage not in LEARN_STAGES or stage in ("features", "train"):
        assert any(expected.values()), stage  # the stage wrote something to compare
    manifests = [json.loads(p.read_text()) for p in (flowed / "runs").glob("*.json")]
    assert [m["status"] for m in manifests if m["flow"] == stage] == ["completed"]


@pytest.mark.slow
def test_stage_tables_hold_the_pipeline(before, settings):
    """The tables the plain runs wrote: collect stored every image, curate grouped each resized copy with its
    original and kept one image per group."""
    from sufra.core.store import sha256_hex

    root = DataRoot(before["annotate"])
    ok = [r for r in root.read_table(TABLES["images"], COUNTRY).to_pylist() if r["status"] == "ok"]
    assert sorted(r["dish"] for r in ok) == sorted(DISHES * (PER_DISH + 1))
    duplicates = root.read_table(TABLES["duplicates"], COUNTRY).to_pylist()
    group = {r["image_id"]: r["group_id"] for r in duplicates}
    for folder in settings["collect"].folders.values():
        copy, original = (sha256_hex((Path(folder) / name).read_bytes()) for name in ("dup.jpg", "0.jpg"))
        assert group[copy] == group[original]
    dropped = {r["image_id"] for r in duplicates if r["dropped"]}
    assert len(dropped) >= len(DISHES)
    assert sorted(r["image_id"] for r in root.read_table(TABLES["splits"], COUNTRY).to_pylist()) == \
        sorted(r["image_id"] for r in ok if r["image_id"] not in dropped)


def test_export_all_asks_the_store(tmp_path):
    """``all`` is the catalog's countries with a final splits part: a partition holding only a killed writer's temp
    file, or a slug outside the catalog, is not a country to export (the old folder test took the first)."""
    from tests.support.pipeline import split_row

    root = DataRoot(tmp_path / "data")
    root.write_table(TABLES["splits"], "egypt", [split_row("a", "train")], "r")
    root.write_table(TABLES["splits"], "atlantis", [dict(split_row("b", "train"), country="atlantis")], "r")
    folder = root.table_dir(TABLES["splits"], "peru")
    Path(folder).mkdir(parents=True)
    (Path(folder) / ".tmp-deadbeef-r-1.parquet").write_bytes(b"PAR1 truncated")
    assert export_stage.export_countries(root, "all") == ["egypt"]
    assert export_stage.export_countries(root, "peru") == ["peru"]  # a named country is taken as asked
    with pytest.raises(SufraError, match="no country of the catalog has curated data"):
        export_stage.export_countries(DataRoot(tmp_path / "empty"), "all")


FLOWS = sorted((Path(__file__).resolve().parents[2] / "flows").glob("*.py"))


@pytest.mark.parametrize("path", FLOWS, ids=[p.stem for p in FLOWS])
def test_flows_hold_no_module_state(path):
    """No module global shared between a flow and its tasks: module level binds only imports, functions, classes,
    ``__all__``, UPPER_CASE constants of immutable literals and ContextVars; no ``global`` statement anywhere."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            assert len(names) == len(targets), f"{path.name}:{node.lineno}: module-level assignment"
            value = node.value
            immutable = isinstance(value, ast.Constant) or (
                isinstance(value, (ast.Tuple, ast.List)) and all(isinstance(e, ast.Constant) for e in value.elts))
            context_local = (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                             and value.func.id == "ContextVar")  # one value per run context: not shared
            assert context_local or (all(n == "__all__" or n.isupper() for n in names) and immutable), \
                f"{path.name}:{node.lineno}: module-level state {names}"
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global)], f"{path.name}: global statement"


def test_collect_runs_each_engines_first_query_before_the_rest():
    """An engine whose first query cannot succeed is not tried for its other queries; outcomes keep plan order."""
    from sufra.tasks.collect.engines import EngineUnreachableError
    from sufra.tasks.collect.query import QuerySpec

    from sufra.core.errors import NetworkUnavailableError

    specs = [QuerySpec(country=COUNTRY, dish=d, query=q, engine=e)
             for d, q, e in [("koshari", "q1", "bing"), ("koshari", "q1", "folder"), ("mahshi", "q2", "bing"),
                             ("mahshi", "q2", "folder")]]
    down = EngineUnreachableError("engine bing: www.bing.com does not resolve")
    executed = []

    def execute(batch):
        executed.append([(s.engine, s.query) for s in batch])
        return [collect_stage.QueryOutcome(s, error=down) if s.engine == "bing" else
                collect_stage.QueryOutcome(s, counts={"ok": 2}) for s in batch]

    outcomes, skipped = collect_stage.run_queries(specs, execute)
    assert executed == [[("bing", "q1"), ("folder", "q1")], [("folder", "q2")]]
    assert [o.spec for o in outcomes] == [specs[0], specs[1], specs[3]]
    assert skipped == ["bing:mahshi:q2: not started, engine bing: www.bing.com does not resolve"]
    result = collect_stage.summarize(outcomes, swept=0, skipped=skipped)
    assert result.counts == {"ok": 4, "queries": 4, "failed_queries": 2, "temp_files_swept": 0}
    assert [r["query"] for r in result.per_query] == ["q1", "q2"] and len(result.failed) == 2
    with pytest.raises(NetworkUnavailableError, match="no engine can be reached"):
        collect_stage.run_queries(specs[::2], lambda batch: [collect_stage.QueryOutcome(s, error=down) for s in batch])
