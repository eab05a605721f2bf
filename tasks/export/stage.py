"""The export stage in one call: a dataset version for one country or ``all``.

``run`` is the whole stage in-process (no Prefect) for tests and the REPL; ``sufra.flows.export`` runs
:func:`export_release` as a task and adds the run manifest and the long-tail artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sufra.schemas.tables import SPLITS
from sufra.tasks.export.release import ExportSettings, write_export
from sufra.tasks.export.statistics import long_tail

from sufra.core.catalog import load_catalog, load_country
from sufra.core.errors import SufraError
from sufra.core.store import DataRoot

__all__ = ["ALL", "ExportRun", "ExportSettings", "export_countries", "export_release", "run"]

ALL = "all"


@dataclass
class ExportRun:
    """Where the version was written, how many images and instances it holds, and its long tail (rows per
    category: images, instances, share)."""

    path: str
    images: int
    instances: int
    long_tail: list[dict] = field(default_factory=list)

    def counts(self) -> dict:
        return {"path": self.path, "images": self.images, "instances": self.instances}


def export_countries(root: DataRoot, country: str) -> list[str]:
    """``[country]`` for a catalog slug; for ``all`` the catalog's countries the store holds splits for (curated
    data), sorted. The store answers, not a guess about its folder layout."""
    if country != ALL:
        load_country(country)  # an unknown slug fails with the catalog's one-line error
        return [country]
    curated = set(root.countries_with(SPLITS))
    countries = [c for c in sorted(load_catalog()) if c in curated]
    if not countries:
        raise SufraError("nothing to export for all: no country of the catalog has curated data (run curate)")
    return countries


def export_release(root: DataRoot, countries: list[str], version: str, settings: ExportSettings, name: str) -> ExportRun:
    """Write ``exports/<name>/<version>/`` for these countries."""
    path, selection = write_export(root, [load_country(c) for c in countries], version, settings, name)
    return ExportRun(path=path, images=len(selection.images), instances=len(selection.instances),
                     long_tail=long_tail(selection))


def run(root: DataRoot, country: str, settings: ExportSettings | None = None, run_id: str | None = None, *,
        version: str) -> ExportRun:
    """The whole export stage without Prefect. ``run_id`` is unused (an export is named by its version) and
    accepted for the common stage signature."""
    settings = settings or ExportSettings()
    return export_release(root, export_countries(root, country), version, settings, country)
