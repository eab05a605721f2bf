"""demo: the whole DAG offline, no internet and no weights: a local server shaped like Bing serves generated dish
images, tiny random models annotate them, a real export (and a trained head) comes out.

THE LABELS, MASKS AND METRICS OF THE DEMO ARE MEANINGLESS: the models are random and the images synthetic.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, tags

from sufra.app.devserver import EngineServer, food_image, jpeg_bytes
from sufra.core.catalog import load_country
from sufra.core.settings import sufra_settings
from sufra.core.store import DataRoot
from sufra.flows.build import BuildSettings, build
from sufra.flows.train import train as train_flow
from sufra.models.tiny import save_tiny_grounding_dino, save_tiny_sam
from sufra.tasks.annotate.instances import AnnotateSettings
from sufra.tasks.annotate.postfilter import PostFilterSettings
from sufra.tasks.collect.query import CollectSettings
from sufra.tasks.curate.dedup import CurateSettings
from sufra.tasks.curate.hashing import DedupSettings
from sufra.tasks.export.release import ExportSettings
from sufra.tasks.learn.train import TrainSettings
from sufra.utils.http import FetchSettings

MEANINGLESS = "DEMO: synthetic images and random models - every label, mask and metric here is meaningless."
DEMO_COUNTRY = "egypt"


def demo_settings(server: EngineServer, model_dir: Path, dishes: list[str], per_dish: int) -> BuildSettings:
    catalog = load_country(DEMO_COUNTRY)
    words = [p for d in dishes for p in catalog.dish(d).prompts] + ["food", "dish"]
    detector = save_tiny_grounding_dino(model_dir / "grounding-dino-tiny-random", words)
    segmenter = save_tiny_sam(model_dir / "sam-tiny-random.pth")
    return BuildSettings(
        collect=CollectSettings(engines=["bing"], base_urls={"bing": server.base_url}, max_per_query=per_dish * 2,
                                threads=8, processes=1, stale_temp_age_s=0,
                                fetch=FetchSettings(allow_networks=["127.0.0.1"], per_host_requests_per_s=0,
                                                    per_host_concurrency=8)),
        curate=CurateSettings(dedup=DedupSettings(workers=1)),
        annotate=AnnotateSettings(detector=detector, segmenter=segmenter, batch_size=4,
                                  postfilter=PostFilterSettings(min_area_ratio=0.001)),
        export=ExportSettings(images="copy"),
    )


def serve_demo_images(server: EngineServer, dishes: list[str], per_dish: int) -> int:
    """Each dish's first query lists ``per_dish`` distinct images plus two near-duplicates (resized copies)."""
    catalog = load_country(DEMO_COUNTRY)
    total = 0
    for label, dish in enumerate(dishes):
        query = catalog.dish(dish).all_queries[0][1]
        names = server.add_food_images(query, per_dish, seed=label + 1, label=label)
        for k, name in enumerate(names[:2]):
            copy = f"{name}-small"
            image = food_image((label + 1) * 100003 + k, (320, 240), label).resize((240, 180))
            server.images[copy] = (jpeg_bytes(image, quality=70), "image/jpeg")
            server.results[query].append(copy)
        total += per_dish + 2
    return total


def demo_train_and_evaluate(data_root: str, country: str, version: str) -> dict:
    """The demo's tail: random EfficientNet-B0 + tiny DPT features, a short training, evaluation on egypt5."""
    from sufra.core.errors import SufraError
    from sufra.flows.evaluate import benchmark_classes, evaluate
    from sufra.flows.features import features
    from sufra.models.extractors import ExtractorSpec
    from sufra.models.tiny import save_tiny_depth
    from sufra.tasks.learn.features import FeatureSettings, read_index
    from sufra.tasks.learn.metrics import split_rows

    root = DataRoot(data_root)
    depth = save_tiny_depth(Path(root.root) / "models" / "dpt-tiny-random")
    settings = FeatureSettings(extractor=ExtractorSpec(backbone="efficientnet_b0", backbone_weights=None,
                                                       depth_model=depth, input_size=256))
    cache = features(export_path=root.path("exports", country, version), data_root=data_root, settings=settings)
    trained = train_flow(cache_folder=cache["folder"], data_root=data_root, settings=TrainSettings(epochs=5, batch_size=32))
    wanted = benchmark_classes("egypt5")
    index = read_index(Path(cache["folder"]))
    split = next((s for s in ("test", "val") if split_rows(index, wanted, s)), None)
    if split is None:  # tiny demo caches: never evaluate on training rows
        raise SufraError(f"no instance of split 'test' or 'val' in the demo cache (classes: {', '.join(wanted)})")
    metrics = evaluate(checkpoint=trained["checkpoint"], cache_folder=cache["folder"], benchmark_set="egypt5",
                       split=split, data_root=data_root)
    return {"features": cache, "train": trained,
            "evaluate": {"split": split, **{k: metrics[k] for k in ("top1", "top5", "macro_f1", "n")}}}


@flow(name="demo", log_prints=True)
def demo(data_root: str = "./demo-data", per_dish: int = 12, train: bool = True, port: int | None = None) -> dict:
    """Run the demo build into ``data_root`` and return its counts. ``port``: the fake engine's loopback port
    (default ``SUFRA_DEMO_PORT``, 8765): fixed, so image URLs are the same on every run and a re-run on the same data
    root finds everything done and adds no row (a taken port is a one-line error). Every run, subflow and artifact
    is tagged ``demo`` (artifact keys ``demo-…``)."""
    logger = get_run_logger()
    logger.warning(MEANINGLESS)
    catalog = load_country(DEMO_COUNTRY)
    dishes = catalog.benchmark_sets["egypt5"]
    port = sufra_settings().demo_port if port is None else port
    with tags("demo"), EngineServer(port=port) as server:
        served = serve_demo_images(server, dishes, per_dish)
        settings = demo_settings(server, Path(data_root) / "models", dishes, per_dish)
        counts = build(country=DEMO_COUNTRY, dishes=dishes, version="demo", data_root=data_root, settings=settings)
    counts["served_images"] = served
    if train:
        with tags("demo"):
            counts["train"] = demo_train_and_evaluate(data_root=data_root, country=DEMO_COUNTRY, version="demo")
    counts["note"] = MEANINGLESS
    logger.warning(MEANINGLESS)
    return counts
