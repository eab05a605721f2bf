"""Scale-out: curate and annotate on a Dask LocalCluster (2 workers) give the same tables as the default runner."""

import shutil

import pytest
from sufra.schemas import ANNOTATIONS, DUPLICATES, INSTANCES, SPLITS
from sufra.tasks.curate.dedup import CurateSettings
from sufra.tasks.curate.hashing import DedupSettings

from sufra.core.store import DataRoot
from tests.support.imaging import jpeg, scene, store, transforms


def snapshot(root: DataRoot) -> dict:
    def rows(table, columns):
        return sorted(tuple(str(r[c]) for c in columns) for r in root.read_table(table, "egypt").to_pylist())

    return {
        "duplicates": rows(DUPLICATES, ["image_id", "group_id", "representative_id", "kind", "dropped", "distance"]),
        "splits": rows(SPLITS, ["image_id", "split", "group_id"]),
        "instances": rows(INSTANCES, ["instance_id", "image_id", "label"]),
        "numbers": {r["instance_id"]: (r["box_score"], r["area"], r["bbox"]) for r in root.read_table(INSTANCES, "egypt").to_pylist()},
        "annotations": rows(ANNOTATIONS, ["image_id", "status", "n_instances", "config_hash"]),
    }


@pytest.mark.slow
def test_dask_runner_gives_the_same_tables(tmp_path, tiny_models, prefect_harness):
    from prefect_dask import DaskTaskRunner
    from sufra.flows.annotate import annotate
    from sufra.flows.curate import curate

    from tests.support.pipeline import annotate_settings

    items = []
    for i in range(24):
        base = scene(500 + i)
        items.append((["koshari", "mahshi", "taameya"][i % 3], jpeg(base)))
        if i % 4 == 0:
            items.append((["koshari", "mahshi", "taameya"][i % 3], jpeg(transforms(base, i)["jpeg60"])))
    first = tmp_path / "default"
    store(DataRoot(first), "egypt", items)
    shutil.copytree(first, tmp_path / "dask")
    curate_settings = CurateSettings(dedup=DedupSettings(workers=1), shard_size=8)
    a_settings = annotate_settings(tiny_models, shard_size=6)
    results = {}
    for name, runner in (("default", None), ("dask", DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1}))):
        url = f"file://{tmp_path / name}"  # an fsspec URL, as an object store would be
        curate_flow = curate if runner is None else curate.with_options(task_runner=runner)
        annotate_flow = annotate if runner is None else annotate.with_options(task_runner=runner)
        curate_flow(country="egypt", data_root=url, settings=curate_settings)
        counts = annotate_flow(country="egypt", data_root=url, settings=a_settings)
        assert counts["shards"] >= 3
        results[name] = snapshot(DataRoot(url))
    assert results["default"]["instances"] and results["default"]["duplicates"]
    numbers = {name: r.pop("numbers") for name, r in results.items()}
    assert results["dask"] == results["default"]  # ids, labels, groups, splits, statuses: identical
    # Dask workers run torch with OMP_NUM_THREADS=1: float sums in another order, last-bit differences only
    for instance_id, (score, area, bbox) in numbers["default"].items():
        other_score, other_area, other_bbox = numbers["dask"][instance_id]
        assert other_score == pytest.approx(score, rel=1e-3, abs=1e-4)
        assert other_area == pytest.approx(area, rel=0.02, abs=4)
        assert other_bbox == pytest.approx(bbox, abs=2)
