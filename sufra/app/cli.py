"""The ``sufra`` command line: options in, settings models out, flows run, results printed.

Every default lives once, in a settings model (or a flow's signature): options default to None and only the values a
user gave go into ``Model.model_validate``; ``--help`` reads the model's default. Heavy imports live inside the
commands so ``sufra --help`` is instant."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer._click.exceptions import ClickException as TyperClickException
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperCommand

from sufra.core.errors import SufraError


class DefaultFrom(str):
    """``show_default`` of an option whose default lives elsewhere: ``"module:Model.field"`` (a pydantic model's
    field) or ``"module:function.parameter"`` (a flow's or function's parameter)."""

    def value(self) -> Any:
        """The default: a literal read from the module's source when it is one (so ``--help`` imports no torch or
        Prefect), else the model's field default or the function's parameter default after importing the module."""
        module, _, path = self.partition(":")
        owner_path, _, name = path.rpartition(".")
        try:
            return _literal_default(module, owner_path, name)
        except LookupError:
            pass
        owner: Any = importlib.import_module(module)
        for part in owner_path.split("."):
            owner = getattr(owner, part)
        if isinstance(owner, type) and hasattr(owner, "model_fields"):
            return owner.model_fields[name].get_default(call_default_factory=True)
        return inspect.signature(getattr(owner, "fn", owner)).parameters[name].default  # a Prefect flow wraps .fn


def _literal_default(module: str, owner: str, name: str) -> Any:
    """``name = <literal>`` (or ``Field(<literal>, ...)``) in the body of top-level class ``owner``, or the literal
    default of parameter ``name`` of top-level function ``owner``; LookupError when the source does not say."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise LookupError(module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    node = next((n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == owner), None)
    value = None
    if isinstance(node, ast.ClassDef):
        value = next((n.value for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
                      and n.target.id == name), None)
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "Field":
            keywords = {k.arg: k.value for k in value.keywords}
            value = value.args[0] if value.args else keywords.get("default")
    elif isinstance(node, ast.FunctionDef):
        args = node.args
        positional = args.posonlyargs + args.args
        pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
        value = next((d for a, d in pairs if a.arg == name), None)
    if value is None:
        raise LookupError(f"{module}:{owner}.{name}")
    try:
        return ast.literal_eval(value)
    except ValueError:  # a name, a call, a lambda: only the imported module knows
        raise LookupError(f"{module}:{owner}.{name}") from None


class SettingsCommand(TyperCommand):
    """A command whose ``--help`` shows defaults read from settings models, and only then (their modules import
    numpy, pyarrow, torch: every other invocation stays fast). Parsing never sees them: an option not given is None."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.defaults_from: dict[str, DefaultFrom] = {}
        for param in self.params:
            if isinstance(param.show_default, DefaultFrom):
                self.defaults_from[param.name] = param.show_default
                param.show_default = True

    def help_defaults(self) -> dict[str, Any]:
        """Option name -> the default its settings field (or flow parameter) has."""
        return {name: ref.value() for name, ref in self.defaults_from.items()}

    def format_help(self, ctx, formatter) -> None:
        # the real defaults only while the help is rendered (typer reads a flag's own default for --x/--no-x)
        defaults = self.help_defaults()
        params = [p for p in self.params if p.name in defaults]
        for param in params:
            param.default = defaults[param.name]
        try:
            super().format_help(ctx, formatter)
        finally:
            for param in params:
                param.default = None


app = typer.Typer(
    name="sufra",
    help="Build fine-grained food-recognition datasets for under-represented cuisines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
review_app = typer.Typer(help="Human review in Label Studio (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY).", no_args_is_help=True)
catalog_app = typer.Typer(help="List and validate the data catalog (dishes, queries, prompts).", no_args_is_help=True)
engines_app = typer.Typer(help="Search engines: is each one answering as sufra expects?", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(engines_app, name="engines")
app.add_typer(review_app, name="review")


def _command(group: typer.Typer = app, name: str | None = None):
    return group.command(name, cls=SettingsCommand)


def _from(ref: str) -> DefaultFrom:
    return DefaultFrom(ref)


COLLECT = "sufra.tasks.collect.query:CollectSettings."
DEDUP = "sufra.tasks.curate.hashing:DedupSettings."
DETECTOR = "sufra.models.detectors:DetectorSpec."
EXTRACTOR = "sufra.models.extractors:ExtractorSpec."
TRAIN = "sufra.tasks.learn.train:TrainSettings."
PREDICT = "sufra.tasks.learn.predict:PredictSettings."

DataRootOpt = Annotated[
    str | None,
    typer.Option("--data-root", help="Local folder or fsspec URL of the data root (or SUFRA_DATA_ROOT).",
                 show_default=_from("sufra.core.settings:SufraSettings.data_root")),
]
CountryOpt = Annotated[
    str | None, typer.Option("--country", "-c", help="Country slug from the catalog, e.g. egypt (or SUFRA_COUNTRY).")
]
DishesOpt = Annotated[
    list[str] | None, typer.Option("--dish", "-d", help="Restrict to these dish ids (repeatable).")
]


@app.callback()
def _root(
    debug: Annotated[bool | None, typer.Option("--debug", help="Show tracebacks on errors (or SUFRA_DEBUG=1).")] = None,
) -> None:
    """sufra: collect -> curate -> annotate -> (review) -> export -> features -> train -> evaluate."""
    # read back by _settings through the context: nothing is written to the environment


def _given(**values: Any) -> dict[str, Any]:
    """The options a user gave: None (not given) and empty nested dicts left out, so the models' defaults apply."""
    return {k: v for k, v in values.items() if v is not None and v != {}}


def _cli_debug() -> bool | None:
    """``--debug`` of this invocation (None: not given)."""
    from typer._click.globals import get_current_context  # typer 0.2x bundles click: its context, not click's

    ctx = get_current_context(silent=True)
    return ctx.find_root().params.get("debug") if ctx is not None else None


def _settings(data_root: str | None = None):
    """:class:`SufraSettings` from the environment; ``--data-root`` and ``--debug`` win when given."""
    from pydantic import ValidationError

    from sufra.core.settings import SufraSettings

    try:
        return SufraSettings(**_given(data_root=data_root, debug=_cli_debug()))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SufraError(f"SUFRA_{str(first['loc'][0]).upper()}: {first['msg']}") from None


def _country(country: str | None, settings) -> str:
    """``--country``, else SUFRA_COUNTRY; one line when neither is set."""
    chosen = country or settings.country
    if not chosen:
        raise SufraError("Missing option '--country' / '-c' (or set SUFRA_COUNTRY)")
    return chosen


@catalog_app.command("list")
def catalog_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array instead of a table.")] = False,
    country: Annotated[str | None, typer.Option("--country", "-c", help="Only this country.")] = None,
    catalog_dir: Annotated[Path | None, typer.Option("--catalog-dir", help="Folder of catalog YAML files (default: the bundled catalog).")] = None,
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
    files: Annotated[list[Path] | None, typer.Argument(help="Catalog YAML files (default: every bundled file).")] = None,
) -> None:
    """Validate catalog files; a broken one prints one line naming the file, dish and field, exit code 2."""
    from sufra.core.catalog import catalog_files, load_country_file

    paths = files or catalog_files()
    for path in paths:
        country = load_country_file(path)
        typer.echo(f"ok  {path}  ({country.country}: {len(country.dishes)} dishes)")


def _validated(model, values: dict[str, Any], options: dict[str, str] | None = None):
    """``model.model_validate(values)``; a bad value becomes one line naming the option (``options``: field name ->
    option, where they differ)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][-1]) if first["loc"] else ""
        option = (options or {}).get(field) or f"--{field.replace('_', '-')}"
        raise SufraError(f"{option}: {first['msg']}") from None


def _parse_pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise SufraError(f"{what} must look like NAME=VALUE, got '{value}'")
        out[key.strip()] = rest.strip()
    return out


def _none(value: str | None) -> str | None:
    """The option value ``none`` (no weights, no model) as None; None (not given) stays None."""
    return None if value is None or value == "none" else value


def _prefect_env(debug: bool) -> None:
    """Prefect reads its PREFECT_* settings from the environment once, when it is first imported: setting them here,
    before any flow module is imported, is the only way to give this process our defaults (a user's own PREFECT_*
    values win). Prefect logs stay in its API/UI; on the console a failure is our one line (its logs with --debug)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # a newcomer's first run on a busy machine must not time out while Prefect's ephemeral API starts (default 20 s)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if debug else "CRITICAL")


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, default=str))


@_command()
def collect(
    country: CountryOpt = None,
    dish: DishesOpt = None,
    engine: Annotated[list[str] | None, typer.Option("--engine", "-e", help="commons, openverse, bing, flickr, baidu, urllist, folder (repeatable; `sufra engines check` tests them).", show_default=_from(COLLECT + "engines"))] = None,
    max_per_query: Annotated[int | None, typer.Option(min=1, help="Images to discover per (dish, query, engine).", show_default=_from(COLLECT + "max_per_query"))] = None,
    threads: Annotated[int | None, typer.Option(min=1, max=256, help="Download threads per query.", show_default=_from(COLLECT + "threads"))] = None,
    base_url: Annotated[list[str] | None, typer.Option(help="ENGINE=URL: point an engine at another host (mirrors, tests).")] = None,
    url_list: Annotated[list[str] | None, typer.Option(help="DISH=FILE: URLs for engine 'urllist'.")] = None,
    folder: Annotated[list[str] | None, typer.Option(help="DISH=FOLDER: local images for engine 'folder'.")] = None,
    allow_network: Annotated[list[str] | None, typer.Option(help="IP or CIDR that may be contacted although private/loopback.")] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Crawl images for a country's dishes into the data root (re-runs only fetch new URLs)."""
    from sufra.core.catalog import load_country
    from sufra.tasks.collect.query import CollectSettings, plan_queries

    settings = _settings(data_root)
    country = _country(country, settings)
    collect_settings = _validated(CollectSettings, _given(
        engines=engine, max_per_query=max_per_query, threads=threads,
        base_urls=_parse_pairs(base_url, "--base-url"), url_lists=_parse_pairs(url_list, "--url-list"),
        folders=_parse_pairs(folder, "--folder"), fetch=_given(allow_networks=allow_network),
    ), {"engines": "--engine", "allow_networks": "--allow-network"})
    specs = plan_queries(load_country(country), dish, collect_settings)  # validates before Prefect starts
    if not specs:
        raise SufraError(f"nothing to collect for {country}: no query matches the engines {collect_settings.engines}")
    _prefect_env(settings.debug)
    from sufra.flows.collect import collect as collect_flow

    _echo_json(collect_flow(country=country, dishes=dish, data_root=settings.data_root, settings=collect_settings,
                            show_progress=True))


@_command(engines_app, "check")
def engines_check(
    engine: Annotated[list[str] | None, typer.Option("--engine", "-e", help="Engines to check (repeatable).", show_default=_from("sufra.tasks.collect.engines.health:check_engines.names"))] = None,
    query: Annotated[str | None, typer.Option(help="The query each engine runs.", show_default=_from("sufra.tasks.collect.engines.health:check_engines.query"))] = None,
    base_url: Annotated[list[str] | None, typer.Option(help="ENGINE=URL: point an engine at another host (mirrors, tests).")] = None,
    allow_network: Annotated[list[str] | None, typer.Option(help="IP or CIDR that may be contacted although private/loopback.")] = None,
) -> None:
    """Run one query per engine and print a health table (exit 1 when an engine is down or failing)."""
    from sufra.tasks.collect.engines import check_engines, health_table, raise_if_unhealthy
    from sufra.utils.http import Fetcher, FetchSettings

    fetch = _validated(FetchSettings, _given(allow_networks=allow_network), {"allow_networks": "--allow-network"})
    rows = check_engines(**_given(names=engine, query=query), fetcher=Fetcher(fetch),
                         base_urls=_parse_pairs(base_url, "--base-url"))
    typer.echo(health_table(rows))
    raise_if_unhealthy(rows)


@_command()
def curate(
    country: CountryOpt = None,
    hash_kind: Annotated[str | None, typer.Option(help="phash, dhash, whash or colorhash.", show_default=_from(DEDUP + "hash_kind"))] = None,
    threshold: Annotated[int | None, typer.Option(min=0, help="Hamming threshold between crop hashes (candidates).", show_default=_from(DEDUP + "candidate_threshold"))] = None,
    cross_class: Annotated[str | None, typer.Option(help="Groups spanning dishes: 'review' (keep one, flagged) or 'drop'.", show_default=_from("sufra.tasks.curate.dedup:CurateSettings.cross_class"))] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the split assignment.", show_default=_from("sufra.tasks.curate.split:SplitSettings.seed"))] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Hash images, group near-duplicates (exact + perceptual), assign leakage-free splits."""
    from sufra.core.catalog import load_country
    from sufra.tasks.curate.dedup import CurateSettings

    settings = _settings(data_root)
    country = _country(country, settings)
    load_country(country)
    curate_settings = _validated(CurateSettings, _given(
        dedup=_given(hash_kind=hash_kind, candidate_threshold=threshold), cross_class=cross_class,
        split=_given(seed=seed)), {"candidate_threshold": "--threshold"})
    _prefect_env(settings.debug)
    from sufra.flows.curate import curate as curate_flow

    _echo_json(curate_flow(country=country, data_root=settings.data_root, settings=curate_settings))


@_command()
def annotate(
    country: CountryOpt = None,
    preset: Annotated[str | None, typer.Option(help="quality, balanced or fast (detector + segmenter pair).", show_default=_from("sufra.tasks.annotate.instances:AnnotateSettings.preset"))] = None,
    detector: Annotated[str | None, typer.Option(help="Detector hub id or local folder (transformers), or groundingdino[:CHECKPOINT] for the original package (extra 'groundingdino'; overrides the preset).")] = None,
    segmenter: Annotated[str | None, typer.Option(help="sam:vit_b[:CHECKPOINT] or sam2:HUB_ID_OR_FOLDER (overrides the preset).")] = None,
    box_threshold: Annotated[float | None, typer.Option(min=0, max=1, help="Detector box score kept.", show_default=_from(DETECTOR + "box_threshold"))] = None,
    text_threshold: Annotated[float | None, typer.Option(min=0, max=1, help="Detector phrase score kept.", show_default=_from(DETECTOR + "text_threshold"))] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:1 ...", show_default=_from("sufra.tasks.annotate.instances:AnnotateSettings.device"))] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Boxes (Grounding DINO) and masks (SAM) for curated images, with the paper's mask post-filters."""
    from sufra.core.catalog import load_country
    from sufra.models.detectors import DetectorSpec
    from sufra.models.segmenters import SegmenterSpec
    from sufra.tasks.annotate.instances import AnnotateSettings

    settings = _settings(data_root)
    country = _country(country, settings)
    load_country(country)
    annotate_settings = _validated(AnnotateSettings, _given(preset=preset, device=device))
    detector_spec, segmenter_spec = annotate_settings.resolved()  # the preset's pair (unknown preset: one line)
    thresholds = _given(box_threshold=box_threshold, text_threshold=text_threshold)
    if thresholds:
        detector_spec = _validated(DetectorSpec, {**detector_spec.model_dump(), **thresholds})
    if detector is not None:
        detector_spec = DetectorSpec.parse(detector, detector_spec)
    if segmenter is not None:
        segmenter_spec = SegmenterSpec.parse(segmenter)
    annotate_settings = annotate_settings.model_copy(update={"detector": detector_spec, "segmenter": segmenter_spec})
    _prefect_env(settings.debug)
    from sufra.flows.annotate import annotate as annotate_flow
    from sufra.tasks.annotate.instances import load_models

    load_models(annotate_settings)  # fail fast (one line) before Prefect starts when weights are missing
    _echo_json(annotate_flow(country=country, data_root=settings.data_root, settings=annotate_settings))


@_command()
def export(
    version: Annotated[str, typer.Option(help="Dataset version name, e.g. v1 or 2026-11-23.")],
    country: Annotated[str | None, typer.Option("--country", "-c", help="Country slug, or 'all' for every country with data (or SUFRA_COUNTRY).")] = None,
    images: Annotated[str | None, typer.Option(help="link, copy or none: how the export's images/ folder is filled.", show_default=_from("sufra.tasks.export.release:ExportSettings.images"))] = None,
    segmentation: Annotated[str | None, typer.Option(help="rle or polygon (polygon needs opencv).", show_default=_from("sufra.tasks.export.release:ExportSettings.segmentation"))] = None,
    overwrite: Annotated[bool | None, typer.Option(help="Replace an existing export of this version (atomically).", show_default=_from("sufra.tasks.export.release:ExportSettings.overwrite"))] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Write exports/<country>/<version>/: Parquet, COCO per split, label maps, card and HTML report."""
    from sufra.core.catalog import load_country
    from sufra.tasks.export.release import ExportSettings

    settings = _settings(data_root)
    country = _country(country, settings)
    if country != "all":
        load_country(country)
    export_settings = _validated(ExportSettings, _given(images=images, segmentation=segmentation, overwrite=overwrite))
    _prefect_env(settings.debug)
    from sufra.flows.export import export as export_flow

    _echo_json(export_flow(country=country, version=version, data_root=settings.data_root, settings=export_settings))


@_command()
def build(
    country: CountryOpt = None,
    dish: DishesOpt = None,
    review: Annotated[bool, typer.Option(help="Send images to Label Studio and pull reviews (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY).")] = False,
    version: Annotated[str | None, typer.Option(help="Export version (default: today's date).")] = None,
    preset: Annotated[str | None, typer.Option(help="Annotation preset: quality, balanced or fast.", show_default=_from("sufra.tasks.annotate.instances:AnnotateSettings.preset"))] = None,
    max_per_query: Annotated[int | None, typer.Option(min=1, help="Images to discover per (dish, query, engine).", show_default=_from(COLLECT + "max_per_query"))] = None,
    engine: Annotated[list[str] | None, typer.Option("--engine", "-e", help="Search engines (repeatable).", show_default=_from(COLLECT + "engines"))] = None,
    data_root: DataRootOpt = None,
) -> None:
    """The whole pipeline for a country: collect -> curate -> annotate -> (review) -> export."""
    from sufra.core.catalog import load_country
    from sufra.flows.build import BuildSettings
    from sufra.tasks.annotate.instances import load_models
    from sufra.tasks.collect.query import plan_queries

    settings = _settings(data_root)
    country = _country(country, settings)
    catalog = load_country(country)
    build_settings = _validated(BuildSettings, _given(collect=_given(engines=engine, max_per_query=max_per_query),
                                                      annotate=_given(preset=preset)), {"engines": "--engine"})
    plan_queries(catalog, dish, build_settings.collect)
    load_models(build_settings.annotate)  # fail fast (one line) when weights are neither cached nor downloadable
    if review:
        from sufra.tasks.review.labelstudio import LabelStudioSettings

        LabelStudioSettings.from_env()
    _prefect_env(settings.debug)
    from sufra.flows.build import build as build_flow

    _echo_json(build_flow(country=country, dishes=dish, review=review, version=version, data_root=settings.data_root,
                          settings=build_settings))


@_command()
def deployments(
    write: Annotated[bool, typer.Option("--write", help="Write prefect.yaml in the current folder.")] = False,
    pool: Annotated[str | None, typer.Option(help="Process work pool name.", show_default=_from("sufra.app.deployments:deployments_yaml.pool"))] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Create or update the gpu and engine:<name> task concurrency limits on the Prefect server (PREFECT_API_URL).")] = False,
) -> None:
    """Print (or write) prefect.yaml: weekly collect and monthly build per country, and the offline demo; --apply
    sets the concurrency limits the deployments rely on."""
    from sufra.app.deployments import deployments_yaml

    text = deployments_yaml(**_given(pool=pool))
    if write:
        Path("prefect.yaml").write_text(text, encoding="utf-8")
        typer.echo("wrote prefect.yaml")
    elif not apply:
        typer.echo(text, nl=False)
    if apply:
        _prefect_env(_settings().debug)
        from prefect import get_client

        from sufra.app.deployments import apply_limits

        try:
            with get_client(sync_client=True) as client:
                limits = apply_limits(client)
        except Exception as exc:  # noqa: BLE001 - any failure to reach the API is one line
            raise SufraError(f"could not set concurrency limits on the Prefect API: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}; is PREFECT_API_URL set and the server up?") from None
        typer.echo(json.dumps({"concurrency_limits": limits}))


@_command()
def demo(
    data_root: Annotated[str | None, typer.Option("--data-root", help="Where the demo writes its data root.", show_default=_from("sufra.app.demo:demo.data_root"))] = None,
    per_dish: Annotated[int | None, typer.Option(min=3, max=500, help="Generated images per dish.", show_default=_from("sufra.app.demo:demo.per_dish"))] = None,
    train: Annotated[bool | None, typer.Option(help="Also extract features, train the fusion head and evaluate.", show_default=_from("sufra.app.demo:demo.train"))] = None,
) -> None:
    """Run the whole DAG offline (local fake search engine, tiny random models). Its labels are meaningless."""
    _prefect_env(_settings().debug)
    from sufra.app.demo import MEANINGLESS
    from sufra.app.demo import demo as demo_flow

    typer.echo(MEANINGLESS, err=True)
    counts = demo_flow(**_given(data_root=data_root, per_dish=per_dish, train=train))
    _echo_json(counts)
    typer.echo(f"export: {counts['export']['path']} (open report.html there). {MEANINGLESS}", err=True)


@_command()
def features(
    export: Annotated[str, typer.Option(help="Export folder (exports/<country>/<version>).")],
    backbone: Annotated[str | None, typer.Option(help="efficientnet_b0 .. efficientnet_b7.", show_default=_from(EXTRACTOR + "backbone"))] = None,
    backbone_weights: Annotated[str | None, typer.Option(help="DEFAULT (ImageNet), a .pth path, or none (random).", show_default=_from(EXTRACTOR + "backbone_weights"))] = None,
    depth_model: Annotated[str | None, typer.Option(help="Depth model hub id or folder (ZoeDepth, DPT), or none.", show_default=_from(EXTRACTOR + "depth_model"))] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Cache per-instance tensors (ROIAlign features, mask and depth ROIs, depth stats) of an export."""
    from sufra.tasks.export.layout import require_export
    from sufra.tasks.learn.features import FeatureSettings, load_extractors

    settings = _settings(data_root)
    require_export(export)
    extractor = _given(backbone=backbone, backbone_weights=backbone_weights, depth_model=depth_model)
    feature_settings = _validated(FeatureSettings, _given(extractor={k: _none(v) for k, v in extractor.items()}))
    load_extractors(feature_settings)  # fail fast on missing weights
    _prefect_env(settings.debug)
    from sufra.flows.features import features as features_flow

    _echo_json(features_flow(export_path=export, data_root=settings.data_root, settings=feature_settings,
                             show_progress=True))


@_command()
def train(
    cache: Annotated[str, typer.Option(help="Feature cache folder (features/<model_key>).")],
    epochs: Annotated[int | None, typer.Option(min=1, help="Most epochs (early stopping on validation top-1).", show_default=_from(TRAIN + "epochs"))] = None,
    lr: Annotated[float | None, typer.Option(min=0, help="AdamW learning rate.", show_default=_from(TRAIN + "lr"))] = None,
    schedule: Annotated[str | None, typer.Option(help="cosine or step.", show_default=_from(TRAIN + "schedule"))] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation and batch order.", show_default=_from(TRAIN + "seed"))] = None,
    no_depth: Annotated[bool, typer.Option("--no-depth", help="Ablation: no depth ROI and no depth stats.")] = False,
    no_mask: Annotated[bool, typer.Option("--no-mask", help="Ablation: masks replaced by ones.")] = False,
    no_film: Annotated[bool, typer.Option("--no-film", help="Ablation: plain concat instead of FiLM.")] = False,
    no_stats: Annotated[bool, typer.Option("--no-stats", help="Ablation: no depth statistics.")] = False,
    benchmark_set: Annotated[str | None, typer.Option("--set", help="Train on a benchmark set's classes only (egypt5, food101_25).")] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Train the instance-aware fusion head from a feature cache; best checkpoint by validation top-1."""
    from sufra.tasks.learn.layout import require_cache
    from sufra.tasks.learn.train import TrainSettings

    settings = _settings(data_root)
    require_cache(cache)
    classes = None
    if benchmark_set:
        from sufra.flows.evaluate import benchmark_classes

        classes = benchmark_classes(benchmark_set)
    ablations = {"use_depth": no_depth, "use_mask": no_mask, "use_film": no_film, "use_stats": no_stats}
    train_settings = _validated(TrainSettings, {
        **_given(epochs=epochs, lr=lr, schedule=schedule, seed=seed, classes=classes),
        **{field: False for field, off in ablations.items() if off},
    })
    _prefect_env(settings.debug)
    from sufra.flows.train import train as train_flow

    _echo_json(train_flow(cache_folder=cache, data_root=settings.data_root, settings=train_settings, show_progress=True))


@_command()
def evaluate(
    checkpoint: Annotated[str, typer.Option(help="best.pt of a training run.")],
    cache: Annotated[str, typer.Option(help="Feature cache folder.")],
    benchmark_set: Annotated[str | None, typer.Option("--set", help="egypt5, food101_25 (from the catalog).")] = None,
    split: Annotated[str | None, typer.Option(help="train, val or test.", show_default=_from("sufra.flows.evaluate:evaluate.split"))] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Top-1, top-5, macro-F1, per-class precision/recall and a confusion matrix (PNG + CSV)."""
    settings = _settings(data_root)
    if benchmark_set:
        from sufra.flows.evaluate import benchmark_classes

        benchmark_classes(benchmark_set)
    _prefect_env(settings.debug)
    from sufra.flows.evaluate import evaluate as evaluate_flow

    metrics = evaluate_flow(checkpoint=checkpoint, cache_folder=cache, benchmark_set=benchmark_set,
                            data_root=settings.data_root, **_given(split=split))
    _echo_json({k: metrics[k] for k in ("n", "top1", "top5", "macro_f1")})


@_command()
def baselines(
    export: Annotated[str, typer.Option(help="Export folder (exports/<country>/<version>).")],
    benchmark_set: Annotated[str | None, typer.Option("--set", help="Specialist classes (a benchmark set of the catalog).", show_default=_from("sufra.flows.baselines:baselines.benchmark_set"))] = None,
    general_set: Annotated[str | None, typer.Option("--general", help="General head classes (a benchmark set).", show_default=_from("sufra.flows.baselines:baselines.general_set"))] = None,
    clip_model: Annotated[str | None, typer.Option("--clip", help="open_clip architecture.", show_default=_from("sufra.models.clip_baselines:ClipSpec.model"))] = None,
    pretrained: Annotated[str | None, typer.Option(help="open_clip pretrained tag or checkpoint path.", show_default=_from("sufra.models.clip_baselines:ClipSpec.pretrained"))] = None,
    data_root: DataRootOpt = None,
) -> None:
    """CLIP zero-shot and Hybrid CLIP (general head + specialist probe, tau on validation) on an export."""
    from sufra.tasks.export.layout import require_export

    settings = _settings(data_root)
    require_export(export)
    from sufra.flows.evaluate import benchmark_classes
    from sufra.models.clip_baselines import ClipModel, ClipSpec

    sets = _given(benchmark_set=benchmark_set, general_set=general_set)
    for name in sets.values():
        benchmark_classes(name)
    spec = _validated(ClipSpec, _given(model=clip_model, pretrained=pretrained), {"model": "--clip"})
    ClipModel.load(spec)  # fail fast on missing weights
    _prefect_env(settings.debug)
    from sufra.flows.baselines import baselines as baselines_flow

    _echo_json(baselines_flow(export_path=export, clip=spec, data_root=settings.data_root, **sets))


@_command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    checkpoint: Annotated[str, typer.Option(help="best.pt of a training run.")],
    proposer_weights: Annotated[str | None, typer.Option(help="Mask R-CNN weights: DEFAULT (COCO), a .pth path, or none.", show_default=_from(PREDICT + "proposer_weights"))] = None,
    score_threshold: Annotated[float | None, typer.Option(min=0, max=1, help="Mask R-CNN proposal score kept.", show_default=_from(PREDICT + "score_threshold"))] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ...", show_default=_from(PREDICT + "device"))] = None,
    draw_dir: Annotated[Path | None, typer.Option("--draw", help="Write images with masks, boxes and dishes here.")] = None,
) -> None:
    """Instances (Mask R-CNN proposals, post-filtered) with their dish predictions: one JSON line per image, and
    optionally drawn."""
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise SufraError(f"image not found: {missing[0]}")
    from sufra.tasks.learn.predict import PredictSettings, draw, predict_images

    given = _given(score_threshold=score_threshold, device=device)
    if proposer_weights is not None:
        given["proposer_weights"] = _none(proposer_weights)  # "none": random weights (tests, the demo)
    for prediction in predict_images(images, checkpoint, _validated(PredictSettings, given)):
        if draw_dir:
            draw(prediction, draw_dir)
        _echo_json(prediction.to_record())


VersionOpt = Annotated[str, typer.Option(help="Dataset version (one Label Studio project per country and version).")]


def _review_setup(country: str | None, data_root: str | None):
    """Settings, country and a fail-fast check of LABEL_STUDIO_* before Prefect starts (one line each)."""
    from sufra.core.catalog import load_country
    from sufra.tasks.review.labelstudio import LabelStudioSettings

    settings = _settings(data_root)
    country = _country(country, settings)
    load_country(country)
    LabelStudioSettings.from_env()
    _prefect_env(settings.debug)
    return settings, country


@_command(review_app, "push")
def review_push(
    version: VersionOpt,
    country: CountryOpt = None,
    which: Annotated[str | None, typer.Option(help="needs_review, all, or sample:N.", show_default=_from("sufra.flows.review:push_for_review.which"))] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Send images with their boxes and masks as pre-annotations (a re-push adds only new images)."""
    settings, country = _review_setup(country, data_root)
    from sufra.flows.review import push_for_review

    _echo_json(push_for_review(country=country, version=version, data_root=settings.data_root, **_given(which=which)))


@_command(review_app, "pull")
def review_pull(version: VersionOpt, country: CountryOpt = None, data_root: DataRootOpt = None) -> None:
    """Bring finished reviews back (reviewer edits win over automatic annotations in the export)."""
    settings, country = _review_setup(country, data_root)
    from sufra.flows.review import pull_reviews

    _echo_json(pull_reviews(country=country, version=version, data_root=settings.data_root))


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
