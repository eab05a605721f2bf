"""export: a dataset version (Parquet, COCO, label maps, multi-label table, card, report) for a country or all."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sufra.flows.common import run_manifest, table_artifact
from sufra.tasks.export import stage
from sufra.tasks.export.release import ExportSettings

from sufra.core.store import DataRoot


@task(name="write-export", cache_policy=NO_CACHE)
def write_export_task(data_root: str, countries: list[str], version: str, settings: ExportSettings,
                      name: str) -> stage.ExportRun:
    return stage.export_release(DataRoot(data_root), countries, version, settings, name)


@flow(name="export", log_prints=True)
def export(country: str, version: str, data_root: str = "./data", settings: ExportSettings | None = None) -> dict:
    """``country`` is a catalog slug or ``all`` (every country that has curated data; categories country/dish)."""
    settings = settings or ExportSettings()
    root = DataRoot(data_root)
    countries = stage.export_countries(root, country)
    with run_manifest(root, "export", {"country": country, "version": version, "settings": settings.model_dump()}) as manifest:
        result = write_export_task(data_root, countries, version, settings, country)
        manifest.counts = result.counts()
        table_artifact(f"export-{country}-{version}".replace("_", "-").replace(".", "-").lower(), result.long_tail,
                       f"export {country} {version}: {result.path} (report.html, README.md inside)")
        get_run_logger().info("export %s %s: %s", country, version, manifest.counts)
    return manifest.counts
