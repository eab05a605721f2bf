"""The ``sufra`` command line. Heavy imports live inside the commands so ``sufra --help`` is instant."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from typer._click.exceptions import ClickException as TyperClickException
from typer._click.exceptions import NoArgsIsHelpError

from sufra.core.errors import SufraError

app = typer.Typer(
    name="sufra",
    help="Build fine-grained food-recognition datasets for under-represented cuisines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
review_app = typer.Typer(help="Human review in Label Studio (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY).", no_args_is_help=True)
catalog_app = typer.Typer(help="List and validate the data catalog (dishes, queries, prompts).", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(review_app, name="review")

DataRootOpt = Annotated[
    str | None,
    typer.Option("--data-root", envvar="SUFRA_DATA_ROOT", help="Local folder or fsspec URL of the data root [default: ./data]."),
]
CountryOpt = Annotated[str, typer.Option("--country", "-c", envvar="SUFRA_COUNTRY", help="Country slug from the catalog, e.g. egypt.")]
DishesOpt = Annotated[
    list[str] | None, typer.Option("--dish", "-d", help="Restrict to these dish ids (repeatable).")
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", envvar="SUFRA_DEBUG", help="Show tracebacks on errors.")] = False,
) -> None:
    """sufra: collect -> curate -> annotate -> (review) -> export -> features -> train -> evaluate."""
    if debug:
        os.environ["SUFRA_DEBUG"] = "1"


def _settings(data_root: str | None):
    from sufra.core.settings import SufraSettings

    settings = SufraSettings()
    if data_root:
        settings = settings.model_copy(update={"data_root": data_root})
    return settings


@catalog_app.command("list")
def catalog_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array instead of a table.")] = False,
    country: Annotated[str | None, typer.Option("--country", "-c", help="Only this country.")] = None,
    catalog_dir: Annotated[Path | None, typer.Option("--catalog-dir", help="Folder of catalog YAML files [default: bundled].")] = None,
) -> None:
    """List countries and dishes of the catalog."""
    from sufra.core.catalog import load_catalog, load_country

    countries = [load_country(country, catalog_dir)] if country else list(load_catalog(catalog_dir).values())
    rows = [
        {
            "country": c.country,
            "dish": d.id,
            "names": d.names,
            "queries": d.queries,
            "prompts": d.prompts,
            "negative_terms": d.negative_terms,
        }
        for c in countries
        for d in c.dishes
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("country", "dish", "names", "queries", "prompts")
    for r in rows:
        table.add_row(
            r["country"], r["dish"], " / ".join(r["names"].values()),
            str(sum(len(q) for q in r["queries"].values())), "; ".join(r["prompts"]),
        )
    Console().print(table)


@catalog_app.command("validate")
def catalog_validate(
    files: Annotated[list[Path] | None, typer.Argument(help="Catalog YAML files [default: every bundled file].")] = None,
) -> None:
    """Validate catalog files; a broken one prints one line naming the file, dish and field, exit code 2."""
    from sufra.core.catalog import catalog_files, load_country_file

    paths = files or catalog_files()
    for path in paths:
        country = load_country_file(path)
        typer.echo(f"ok  {path}  ({country.country}: {len(country.dishes)} dishes)")


def _validated(model, what: str = "", **values):
    """Build a settings model; a bad value becomes one line naming the option."""
    from pydantic import ValidationError

    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SufraError(f"--{str(first['loc'][-1]).replace('_', '-')}: {first['msg']}{what}") from None


def _require_output(folder: str | Path, marker: str, kind: str, command: str) -> None:
    """One line when ``folder`` is not what ``sufra <command>`` writes (its ``marker`` file is missing)."""
    if not Path(folder, marker).exists():
        raise SufraError(f"'{folder}' is not {kind} (no {marker}); run `sufra {command}` first")


def _parse_pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise SufraError(f"{what} must look like NAME=VALUE, got '{value}'")
        out[key.strip()] = rest.strip()
    return out


def _quiet_prefect() -> None:
    """Prefect logs stay in its API/UI; on the console a failure is our one line (Prefect's own logs with --debug)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # a newcomer's first run on a busy machine must not time out while Prefect's ephemeral API starts (default 20 s)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    debug = _env_debug()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if debug else "CRITICAL")


@app.command()
def collect(
    country: CountryOpt,
    dish: DishesOpt = None,
    engine: Annotated[list[str] | None, typer.Option("--engine", "-e", help="bing, baidu, google, flickr, urllist, folder (repeatable).")] = None,
    max_per_query: Annotated[int, typer.Option(min=1, help="Images to discover per (dish, query, engine).")] = 100,
    threads: Annotated[int, typer.Option(min=1, max=256, help="Download threads per query.")] = 16,
    base_url: Annotated[list[str] | None, typer.Option(help="ENGINE=URL: point an engine at another host (mirrors, tests).")] = None,
    url_list: Annotated[list[str] | None, typer.Option(help="DISH=FILE: URLs for engine 'urllist'.")] = None,
    folder: Annotated[list[str] | None, typer.Option(help="DISH=FOLDER: local images for engine 'folder'.")] = None,
    allow_network: Annotated[list[str] | None, typer.Option(help="IP or CIDR that may be contacted although private/loopback.")] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Crawl images for a country's dishes into the data root (re-runs only fetch new URLs)."""
    from sufra.core.catalog import load_country
    from sufra.tasks.collect.query import CollectSettings, plan_queries
    from sufra.utils.http import FetchSettings

    settings = _settings(data_root)
    collect_settings = CollectSettings(
        engines=engine or ["bing"], max_per_query=max_per_query, threads=threads,
        base_urls=_parse_pairs(base_url, "--base-url"), url_lists=_parse_pairs(url_list, "--url-list"),
        folders=_parse_pairs(folder, "--folder"), fetch=FetchSettings(allow_networks=allow_network or []),
    )
    specs = plan_queries(load_country(country), dish, collect_settings)  # validates before Prefect starts
    if not specs:
        raise SufraError(f"nothing to collect for {country}: no query matches the engines {collect_settings.engines}")
    _quiet_prefect()
    from sufra.flows.collect import collect as collect_flow

    counts = collect_flow(country=country, dishes=dish, data_root=settings.data_root, settings=collect_settings,
                          show_progress=True)
    typer.echo(json.dumps(counts, ensure_ascii=False))


@app.command()
def curate(
    country: CountryOpt,
    hash_kind: Annotated[str, typer.Option(help="phash, dhash, whash or colorhash.")] = "phash",
    threshold: Annotated[int, typer.Option(min=0, help="Hamming threshold between crop hashes (candidates).")] = 12,
    cross_class: Annotated[str, typer.Option(help="Groups spanning dishes: 'review' (keep one, flagged) or 'drop'.")] = "review",
    seed: Annotated[int, typer.Option(help="Seed of the split assignment.")] = 0,
    data_root: DataRootOpt = None,
) -> None:
    """Hash images, group near-duplicates (exact + perceptual), assign leakage-free splits."""
    from sufra.core.catalog import load_country
    from sufra.tasks.curate.dedup import CurateSettings

    settings = _settings(data_root)
    load_country(country)
    curate_settings = _validated(CurateSettings, dedup={"hash_kind": hash_kind, "candidate_threshold": threshold},
                                 cross_class=cross_class, split={"seed": seed})
    _quiet_prefect()
    from sufra.flows.curate import curate as curate_flow

    typer.echo(json.dumps(curate_flow(country=country, data_root=settings.data_root, settings=curate_settings)))


@app.command()
def annotate(
    country: CountryOpt,
    preset: Annotated[str, typer.Option(help="quality, balanced or fast (detector + segmenter pair).")] = "fast",
    detector: Annotated[str | None, typer.Option(help="Detector hub id or local folder (transformers), or groundingdino[:CHECKPOINT] for the original package (extra 'groundingdino'; overrides the preset).")] = None,
    segmenter: Annotated[str | None, typer.Option(help="sam:vit_b[:CHECKPOINT] or sam2:HUB_ID_OR_FOLDER (overrides the preset).")] = None,
    box_threshold: Annotated[float, typer.Option(min=0, max=1)] = 0.3,
    text_threshold: Annotated[float, typer.Option(min=0, max=1)] = 0.25,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    data_root: DataRootOpt = None,
) -> None:
    """Boxes (Grounding DINO) and masks (SAM) for curated images, with the paper's mask post-filters."""
    from sufra.core.catalog import load_country
    from sufra.models.presets import preset as get_preset
    from sufra.models.segmenters import SegmenterSpec
    from sufra.tasks.annotate.instances import AnnotateSettings

    settings = _settings(data_root)
    load_country(country)
    chosen = get_preset(preset)
    detector_spec = chosen.detector.model_copy(update={"box_threshold": box_threshold, "text_threshold": text_threshold})
    if detector and detector.split(":", 1)[0] == "groundingdino":
        checkpoint = detector.partition(":")[2]
        detector_spec = detector_spec.model_copy(update={"backend": "groundingdino", "checkpoint": checkpoint or None})
    elif detector:
        detector_spec = detector_spec.model_copy(update={"model": detector})
    segmenter_spec = chosen.segmenter
    if segmenter:
        backend, _, rest = segmenter.partition(":")
        if backend == "sam":
            model_type, _, checkpoint = rest.partition(":")
            segmenter_spec = SegmenterSpec(backend="sam", model_type=model_type or "vit_b", checkpoint=checkpoint or None)
        elif backend == "sam2" and rest:
            segmenter_spec = SegmenterSpec(backend="sam2", model=rest)
        else:
            raise SufraError(f"--segmenter must be sam:MODEL_TYPE[:CHECKPOINT] or sam2:MODEL, got '{segmenter}'")
    annotate_settings = AnnotateSettings(preset=preset, detector=detector_spec, segmenter=segmenter_spec, device=device)
    _quiet_prefect()
    from sufra.flows.annotate import annotate as annotate_flow
    from sufra.tasks.annotate.instances import load_models

    load_models(annotate_settings)  # fail fast (one line) before Prefect starts when weights are missing
    typer.echo(json.dumps(annotate_flow(country=country, data_root=settings.data_root, settings=annotate_settings)))


@app.command()
def export(
    country: Annotated[str, typer.Option("--country", "-c", envvar="SUFRA_COUNTRY", help="Country slug, or 'all' for every country with data.")],
    version: Annotated[str, typer.Option(help="Dataset version name, e.g. v1 or 2026-11-23.")],
    images: Annotated[str, typer.Option(help="link, copy or none: how the export's images/ folder is filled.")] = "link",
    segmentation: Annotated[str, typer.Option(help="rle or polygon (polygon needs opencv).")] = "rle",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing export of this version (atomically).")] = False,
    data_root: DataRootOpt = None,
) -> None:
    """Write exports/<country>/<version>/: Parquet, COCO per split, label maps, card and HTML report."""
    from sufra.core.catalog import load_country
    from sufra.tasks.export.release import ExportSettings

    settings = _settings(data_root)
    if country != "all":
        load_country(country)
    export_settings = _validated(ExportSettings, images=images, segmentation=segmentation, overwrite=overwrite)
    _quiet_prefect()
    from sufra.flows.export import export as export_flow

    typer.echo(json.dumps(export_flow(country=country, version=version, data_root=settings.data_root, settings=export_settings)))


@app.command()
def build(
    country: CountryOpt,
    dish: DishesOpt = None,
    review: Annotated[bool, typer.Option(help="Send images to Label Studio and pull reviews (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY).")] = False,
    version: Annotated[str | None, typer.Option(help="Export version [default: today's date].")] = None,
    preset: Annotated[str, typer.Option(help="Annotation preset: quality, balanced or fast.")] = "fast",
    max_per_query: Annotated[int, typer.Option(min=1)] = 100,
    engine: Annotated[list[str] | None, typer.Option("--engine", "-e", help="Search engines (repeatable).")] = None,
    data_root: DataRootOpt = None,
) -> None:
    """The whole pipeline for a country: collect -> curate -> annotate -> (review) -> export."""
    from sufra.core.catalog import load_country
    from sufra.flows.build import BuildSettings
    from sufra.tasks.annotate.instances import AnnotateSettings, load_models
    from sufra.tasks.collect.query import CollectSettings, plan_queries

    settings = _settings(data_root)
    catalog = load_country(country)
    build_settings = BuildSettings(collect=CollectSettings(engines=engine or ["bing"], max_per_query=max_per_query),
                                   annotate=AnnotateSettings(preset=preset))
    plan_queries(catalog, dish, build_settings.collect)
    load_models(build_settings.annotate)  # fail fast (one line) when weights are neither cached nor downloadable
    if review:
        from sufra.tasks.review.labelstudio import LabelStudioSettings

        LabelStudioSettings.from_env()
    _quiet_prefect()
    from sufra.flows.build import build as build_flow

    typer.echo(json.dumps(build_flow(country=country, dishes=dish, review=review, version=version,
                                     data_root=settings.data_root, settings=build_settings), default=str))


@app.command()
def deployments(
    write: Annotated[bool, typer.Option("--write", help="Write prefect.yaml in the current folder.")] = False,
    pool: Annotated[str, typer.Option(help="Process work pool name.")] = "sufra-process",
) -> None:
    """Print (or write) prefect.yaml: weekly collect and monthly build per country, and the offline demo."""
    from sufra.app.deployments import deployments_yaml

    text = deployments_yaml(pool)
    if write:
        Path("prefect.yaml").write_text(text, encoding="utf-8")
        typer.echo("wrote prefect.yaml")
    else:
        typer.echo(text, nl=False)


@app.command()
def demo(
    data_root: Annotated[str, typer.Option("--data-root", help="Where the demo writes its data root.")] = "./demo-data",
    per_dish: Annotated[int, typer.Option(min=3, max=500, help="Generated images per dish.")] = 12,
    train: Annotated[bool, typer.Option(help="Also extract features, train the fusion head and evaluate.")] = True,
) -> None:
    """Run the whole DAG offline (local fake search engine, tiny random models). Its labels are meaningless."""
    _quiet_prefect()
    from sufra.app.demo import MEANINGLESS
    from sufra.app.demo import demo as demo_flow

    typer.echo(MEANINGLESS, err=True)
    counts = demo_flow(data_root=data_root, per_dish=per_dish, train=train)
    typer.echo(json.dumps(counts, default=str))
    typer.echo(f"export: {counts['export']['path']} (open report.html there). {MEANINGLESS}", err=True)


@app.command()
def features(
    export: Annotated[str, typer.Option(help="Export folder (exports/<country>/<version>).")],
    backbone: Annotated[str, typer.Option(help="efficientnet_b0 .. efficientnet_b7.")] = "efficientnet_b0",
    backbone_weights: Annotated[str, typer.Option(help="DEFAULT (ImageNet), a .pth path, or none (random).")] = "DEFAULT",
    depth_model: Annotated[str, typer.Option(help="Depth model hub id or folder (ZoeDepth, DPT), or none.")] = "Intel/zoedepth-nyu-kitti",
    data_root: DataRootOpt = None,
) -> None:
    """Cache per-instance tensors (ROIAlign features, mask and depth ROIs, depth stats) of an export."""
    from sufra.models.extractors import ExtractorSpec
    from sufra.tasks.learn.features import FeatureSettings, load_extractors

    settings = _settings(data_root)
    _require_output(export, "instances.parquet", "an export folder", "export")
    feature_settings = FeatureSettings(extractor=ExtractorSpec(
        backbone=backbone, backbone_weights=None if backbone_weights == "none" else backbone_weights,
        depth_model=None if depth_model == "none" else depth_model))
    load_extractors(feature_settings)  # fail fast on missing weights
    _quiet_prefect()
    from sufra.flows.features import features as features_flow

    typer.echo(json.dumps(features_flow(export_path=export, data_root=settings.data_root, settings=feature_settings,
                                        show_progress=True)))


@app.command()
def train(
    cache: Annotated[str, typer.Option(help="Feature cache folder (features/<model_key>).")],
    epochs: Annotated[int, typer.Option(min=1)] = 40,
    lr: Annotated[float, typer.Option(min=0)] = 1e-3,
    schedule: Annotated[str, typer.Option(help="cosine or step.")] = "cosine",
    seed: int = 0,
    no_depth: Annotated[bool, typer.Option("--no-depth", help="Ablation: no depth ROI and no depth stats.")] = False,
    no_mask: Annotated[bool, typer.Option("--no-mask", help="Ablation: masks replaced by ones.")] = False,
    no_film: Annotated[bool, typer.Option("--no-film", help="Ablation: plain concat instead of FiLM.")] = False,
    no_stats: Annotated[bool, typer.Option("--no-stats", help="Ablation: no depth statistics.")] = False,
    benchmark_set: Annotated[str | None, typer.Option("--set", help="Train on a benchmark set's classes only (egypt5, food101_25).")] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Train the instance-aware fusion head from a feature cache; best checkpoint by validation top-1."""
    from sufra.tasks.learn.train import TrainSettings

    settings = _settings(data_root)
    _require_output(cache, "index.jsonl", "a feature cache", "features")
    classes = None
    if benchmark_set:
        from sufra.flows.evaluate import benchmark_classes

        classes = benchmark_classes(benchmark_set)
    train_settings = _validated(TrainSettings, epochs=epochs, lr=lr, schedule=schedule, seed=seed, use_depth=not no_depth,
                                use_mask=not no_mask, use_film=not no_film, use_stats=not no_stats, classes=classes)
    _quiet_prefect()
    from sufra.flows.train import train as train_flow

    typer.echo(json.dumps(train_flow(cache_folder=cache, data_root=settings.data_root, settings=train_settings,
                                     show_progress=True)))


@app.command()
def evaluate(
    checkpoint: Annotated[str, typer.Option(help="best.pt of a training run.")],
    cache: Annotated[str, typer.Option(help="Feature cache folder.")],
    benchmark_set: Annotated[str | None, typer.Option("--set", help="egypt5, food101_25 (from the catalog).")] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    data_root: DataRootOpt = None,
) -> None:
    """Top-1, top-5, macro-F1, per-class precision/recall and a confusion matrix (PNG + CSV)."""
    settings = _settings(data_root)
    if benchmark_set:
        from sufra.flows.evaluate import benchmark_classes

        benchmark_classes(benchmark_set)
    _quiet_prefect()
    from sufra.flows.evaluate import evaluate as evaluate_flow

    metrics = evaluate_flow(checkpoint=checkpoint, cache_folder=cache, benchmark_set=benchmark_set, split=split,
                            data_root=settings.data_root)
    typer.echo(json.dumps({k: metrics[k] for k in ("n", "top1", "top5", "macro_f1")}))


@app.command()
def baselines(
    export: Annotated[str, typer.Option(help="Export folder (exports/<country>/<version>).")],
    benchmark_set: Annotated[str, typer.Option("--set", help="Specialist classes (egypt5).")] = "egypt5",
    general_set: Annotated[str, typer.Option("--general", help="General head classes (food101_25).")] = "food101_25",
    clip_model: Annotated[str, typer.Option("--clip", help="open_clip architecture.")] = "ViT-B-32",
    pretrained: Annotated[str, typer.Option(help="open_clip pretrained tag or checkpoint path.")] = "openai",
    data_root: DataRootOpt = None,
) -> None:
    """CLIP zero-shot and Hybrid CLIP (general head + specialist probe, tau on validation) on an export."""
    from sufra.flows.evaluate import benchmark_classes
    from sufra.models.clip_baselines import ClipModel, ClipSpec

    settings = _settings(data_root)
    _require_output(export, "images.parquet", "an export folder", "export")
    benchmark_classes(benchmark_set)
    benchmark_classes(general_set)
    spec = ClipSpec(model=clip_model, pretrained=pretrained)
    ClipModel.load(spec)  # fail fast on missing weights
    _quiet_prefect()
    from sufra.flows.baselines import baselines as baselines_flow

    typer.echo(json.dumps(baselines_flow(export_path=export, benchmark_set=benchmark_set, general_set=general_set,
                                         clip=spec, data_root=settings.data_root)))


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    checkpoint: Annotated[str, typer.Option(help="best.pt of a training run.")],
    proposer_weights: Annotated[str, typer.Option(help="Mask R-CNN weights: DEFAULT (COCO), a .pth path, or none.")] = "DEFAULT",
    draw_dir: Annotated[Path | None, typer.Option("--draw", help="Write images with masks, boxes and dishes here.")] = None,
) -> None:
    """Instances (Mask R-CNN proposals, post-filtered) with their dish predictions, printed and optionally drawn."""
    from sufra.tasks.learn.predict import draw, predict_images

    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise SufraError(f"image not found: {missing[0]}")
    results = predict_images(images, checkpoint, None if proposer_weights == "none" else proposer_weights)
    for result in results:
        if draw_dir:
            draw_dir.mkdir(parents=True, exist_ok=True)
            draw(Path(result["image"]), result, draw_dir / (Path(result["image"]).stem + "-pred.png"))
        result.pop("masks")
        typer.echo(json.dumps(result, ensure_ascii=False))


VersionOpt = Annotated[str, typer.Option(help="Dataset version (one Label Studio project per country and version).")]


@review_app.command("push")
def review_push(
    country: CountryOpt,
    version: VersionOpt,
    which: Annotated[str, typer.Option(help="needs_review, all, or sample:N.")] = "needs_review",
    data_root: DataRootOpt = None,
) -> None:
    """Send images with their boxes and masks as pre-annotations (a re-push adds only new images)."""
    from sufra.core.catalog import load_country
    from sufra.tasks.review.labelstudio import LabelStudioSettings, push

    settings = _settings(data_root)
    from sufra.core.store import DataRoot

    typer.echo(json.dumps(push(DataRoot(settings.data_root), load_country(country), version, LabelStudioSettings.from_env(), which)))


@review_app.command("pull")
def review_pull(country: CountryOpt, version: VersionOpt, data_root: DataRootOpt = None) -> None:
    """Bring finished reviews back (reviewer edits win over automatic annotations in the export)."""
    from sufra.core.catalog import load_country
    from sufra.core.store import DataRoot
    from sufra.tasks.review.labelstudio import LabelStudioSettings, pull

    settings = _settings(data_root)
    typer.echo(json.dumps(pull(DataRoot(settings.data_root), load_country(country), version, LabelStudioSettings.from_env())))


@app.command()
def version() -> None:
    """Print the versions of sufra and the libraries it runs on."""
    from sufra.core.store import package_versions

    for name, value in package_versions().items():
        typer.echo(f"{name} {value}")


def _is_debug(argv: list[str]) -> bool:
    return "--debug" in argv or _env_debug()


def _env_debug() -> bool:
    from pydantic import ValidationError

    from sufra.core.settings import sufra_settings

    try:
        return sufra_settings().debug
    except ValidationError:  # e.g. SUFRA_DEBUG=maybe: not debug; the command itself reports bad settings
        return False


def _usage_line(exc: Exception) -> str:
    """A bad option, a missing one, an unknown one: one line that names it and where to read more."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see '{ctx.command_path} --help')" if ctx is not None else message


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors (exit 2) unless ``--debug``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _is_debug(argv)
    try:
        app(args=argv, prog_name="sufra", standalone_mode=False)
    except (typer.Exit, click.exceptions.Exit) as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, click.exceptions.Abort):
        typer.echo("sufra: aborted", err=True)
        sys.exit(130)
    except NoArgsIsHelpError as exc:  # bare `sufra` or a bare group: the help, then exit 2 as click does
        exc.show()
        sys.exit(2)
    except (TyperClickException, click.ClickException) as exc:  # typer 0.2x raises its bundled click's exceptions
        typer.echo(f"sufra: error: {_usage_line(exc)}", err=True)
        sys.exit(2)
    except SufraError as exc:
        if debug:
            raise
        typer.echo(f"sufra: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("sufra: interrupted; completed work is kept, re-run to resume", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place that turns crashes into one line
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        typer.echo(f"sufra: internal error: {type(exc).__name__}: {first} (re-run with --debug for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
