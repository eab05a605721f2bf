"""Prefect's share of wall time: the demo build (collect -> curate -> annotate -> export, tiny random models, a
local engine server) as the ``build`` flow vs the same domain functions called directly, same inputs.

    .venv/bin/python benchmarks/overhead.py [--quick]

overhead_share = (flow - plain) / flow. The Prefect API is a running local server (as in a deployment), started
before timing. --quick: 200 images; full: 1,000 and 10,000 images.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from benchmarks._common import add_smoke_flag, emit  # noqa: E402


def plain_build(root, catalog, dishes, settings, run_id: str) -> None:
    """The build's work without Prefect: the same domain functions, in the same order."""
    from sufra.schemas.tables import ANNOTATIONS, INSTANCES
    from sufra.tasks.annotate.instances import annotate_items, config_hash, items_to_annotate, load_models
    from sufra.tasks.collect.query import QuerySpec, collect_query, plan_queries
    from sufra.tasks.curate.dedup import dedup_and_split, hash_shard, images_to_hash
    from sufra.tasks.curate.report import render_curate_report
    from sufra.tasks.export.release import write_export

    for spec in plan_queries(catalog, dishes, settings.collect):
        collect_query(QuerySpec.model_validate(spec.model_dump()), root, settings.collect, run_id)
    hash_shard(root, images_to_hash(root, catalog.country), settings.curate.dedup, run_id)
    result = dedup_and_split(root, catalog.country, settings.curate, run_id)
    render_curate_report(root, catalog.country, result.counts, result.groups, {}, {})
    detector, segmenter = load_models(settings.annotate)
    cfg = config_hash(settings.annotate, {"detector": detector.version, "segmenter": segmenter.version})
    items = items_to_annotate(root, catalog.country, settings.annotate, cfg)
    size = settings.annotate.shard_size
    for start in range(0, len(items), size):
        instances, annotations = [], []
        for inst, ann in annotate_items(root, catalog.country, items[start : start + size], catalog, detector, segmenter,
                                        settings.annotate, cfg):
            instances.extend(inst)
            annotations.append(ann)
        root.write_table(INSTANCES, catalog.country, instances, run_id)
        root.write_table(ANNOTATIONS, catalog.country, annotations, run_id)
    write_export(root, [catalog], "demo", settings.export.model_copy(update={"overwrite": True}))


def measure(n_images: int) -> dict:
    from sufra.flows.build import build
    from sufra.tasks.annotate.instances import load_models

    from sufra.app.demo import DEMO_COUNTRY, demo_settings, serve_demo_images
    from sufra.app.devserver import EngineServer
    from sufra.core.catalog import load_country
    from sufra.core.store import DataRoot

    catalog = load_country(DEMO_COUNTRY)
    dishes = catalog.benchmark_sets["egypt5"]
    per_dish = max(3, n_images // len(dishes) - 2)
    work = Path(tempfile.mkdtemp(prefix="sufra-overhead-"))
    with EngineServer() as server:
        served = serve_demo_images(server, dishes, per_dish)
        settings = demo_settings(server, work / "models", dishes, per_dish)
        settings.collect.max_per_query = per_dish + 2
        settings.annotate.shard_size = 64
        # models built before either clock (load_models caches them per process via sufra.models.weights.load_once):
        # both paths then reuse the same instances, so neither pays model construction and the order is no bias
        load_models(settings.annotate)
        start = time.perf_counter()
        plain_build(DataRoot(work / "plain"), catalog, dishes, settings, "plain")
        plain_s = time.perf_counter() - start
        start = time.perf_counter()
        build(country=DEMO_COUNTRY, dishes=dishes, version="demo", data_root=str(work / "flow"), settings=settings)
        flow_s = time.perf_counter() - start
    return {"images": served, "plain_s": plain_s, "flow_s": flow_s, "overhead_share": max(0.0, (flow_s - plain_s) / flow_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*", help="image counts to measure (default: 1000 10000)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    import sufra.tasks.annotate.instances  # noqa: F401  (warm imports for both paths)
    import transformers  # noqa: F401
    from prefect.testing.utilities import prefect_test_harness

    sizes = args.sizes or ([10] if args.smoke else [200] if args.quick else [1000, 10000])
    with prefect_test_harness(server_startup_timeout=120):
        results = [measure(n) for n in sizes]
    for r in results:
        print(f"  {r['images']:>6} images: plain {r['plain_s']:7.1f} s, flow {r['flow_s']:7.1f} s, "
              f"Prefect share {r['overhead_share']:.1%}")
    worst = max(results, key=lambda r: r["overhead_share"])
    emit({"ours": round(worst["flow_s"], 2), "baseline": round(worst["plain_s"], 2), "unit": "seconds (demo build)",
          "ratio": round(worst["plain_s"] / worst["flow_s"], 3), "baseline_name": "the same domain functions without Prefect",
          "overhead_share": round(worst["overhead_share"], 4), "runs": results})


if __name__ == "__main__":
    main()
