"""demo: the whole DAG offline, no internet and no weights: a local server shaped like Bing serves generated dish
images, tiny random models annotate them, a real export (and a trained head) comes out.

THE LABELS, MASKS AND METRICS OF THE DEMO ARE MEANINGLESS: the models are random and the images synthetic.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from sufra.app.devserver import EngineServer, food_image, jpeg_bytes
from sufra.core.catalog import load_country
from sufra.flows.build import BuildSettings, build
from sufra.models.tiny import save_tiny_grounding_dino, save_tiny_sam
from sufra.tasks.annotate.instances import AnnotateSettings
from sufra.tasks.annotate.postfilter import PostFilterSettings
from sufra.tasks.collect.query import CollectSettings
from sufra.tasks.curate.dedup import CurateSettings
from sufra.tasks.curate.hashing import DedupSettings
from sufra.tasks.export.release import ExportSettings
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


@flow(name="demo", log_prints=True)
def demo(data_root: str = "./demo-data", per_dish: int = 12, train: bool = True, port: int = 0) -> dict:
    """Run the demo build into ``data_root`` and return its counts. ``port``: the fake engine's port (0: any free
    one); a fixed port keeps image URLs the same across re-runs, as a real engine's are."""
    logger = get_run_logger()
    logger.warning(MEANINGLESS)
    catalog = load_country(DEMO_COUNTRY)
    dishes = catalog.benchmark_sets["egypt5"]
    with EngineServer(port=port) as server:
        served = serve_demo_images(server, dishes, per_dish)
        settings = demo_settings(server, Path(data_root) / "models", dishes, per_dish)
        counts = build(country=DEMO_COUNTRY, dishes=dishes, version="demo", data_root=data_root, settings=settings)
    counts["served_images"] = served
    if train:
        from sufra.flows.train import demo_train_and_evaluate

        counts["train"] = demo_train_and_evaluate(data_root=data_root, country=DEMO_COUNTRY, version="demo")
    counts["note"] = MEANINGLESS
    logger.warning(MEANINGLESS)
    return counts
