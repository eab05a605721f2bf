"""build: collect -> curate -> annotate -> (review) -> export for one country, one run manifest; every stage skips
what is already done (resume after a crash by running it again)."""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field
from sufra.flows.annotate import annotate
from sufra.flows.collect import collect
from sufra.flows.common import permanent_failure, run_manifest
from sufra.flows.curate import curate
from sufra.flows.export import export
from sufra.tasks.annotate.instances import AnnotateSettings
from sufra.tasks.collect.query import CollectSettings, sweep_temp_files
from sufra.tasks.curate.dedup import CurateSettings
from sufra.tasks.export.release import ExportSettings

from sufra.core.catalog import load_country
from sufra.core.errors import PermanentError
from sufra.core.store import DataRoot


class BuildSettings(BaseModel):
    collect: CollectSettings = Field(default_factory=CollectSettings)
    curate: CurateSettings = Field(default_factory=CurateSettings)
    annotate: AnnotateSettings = Field(default_factory=AnnotateSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    stages: list[str] = Field(default_factory=lambda: ["collect", "curate", "annotate", "review", "export"])


@flow(name="build", log_prints=True)
def build(
    country: str,
    dishes: list[str] | None = None,
    review: bool = False,
    version: str | None = None,
    data_root: str = "./data",
    settings: BuildSettings | None = None,
) -> dict:
    """The whole dataset for a country. ``review`` pushes images to Label Studio and pulls finished reviews
    (needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)."""
    settings = settings or BuildSettings()
    load_country(country)
    root = DataRoot(data_root)
    version = version or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    logger = get_run_logger()
    stages = settings.stages
    try:
        with run_manifest(root, "build", {"country": country, "dishes": dishes, "review": review, "version": version,
                                          "settings": settings.model_dump()}) as manifest:
            counts: dict = {"temp_files_swept": sweep_temp_files(root, settings.collect.stale_temp_age_s)}
            if "collect" in stages:
                counts["collect"] = collect(country=country, dishes=dishes, data_root=data_root, settings=settings.collect)
            if "curate" in stages:
                counts["curate"] = curate(country=country, data_root=data_root, settings=settings.curate)
            if "annotate" in stages:
                counts["annotate"] = annotate(country=country, data_root=data_root, settings=settings.annotate)
            if review and "review" in stages:
                from sufra.flows.review import pull_reviews, push_for_review

                counts["review_push"] = push_for_review(country=country, data_root=data_root, version=version)
                counts["review_pull"] = pull_reviews(country=country, data_root=data_root, version=version)
            if "export" in stages:
                export_settings = settings.export.model_copy(update={"overwrite": True})
                counts["export"] = export(country=country, version=version, data_root=data_root, settings=export_settings)
            manifest.counts = counts
            logger.info("build %s %s: done", country, version)
    except PermanentError as exc:  # no network, no weights, 401/403: the stage said it in one line already
        return permanent_failure(exc)
    return manifest.counts
