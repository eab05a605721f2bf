"""What an export folder (``exports/<country>/<version>/``, written by :mod:`sufra.tasks.export.release`) holds:
the file names that tell one apart, and the check a later stage runs before reading it."""

from __future__ import annotations

from pathlib import Path

from sufra.core.errors import SufraError

IMAGES_FILE = "images.parquet"  # one row per exported image (+ split)
INSTANCES_FILE = "instances.parquet"  # one row per instance (RLE mask, box, dish)
REPORT_FILE = "report.html"
CARD_FILE = "README.md"  # the dataset card
MARKERS = (IMAGES_FILE, INSTANCES_FILE)  # an export is written to a staging folder and renamed: both or neither


def require_export(folder: str | Path) -> Path:
    """``folder`` as a Path, or one line naming the missing file when it is not an export folder."""
    for marker in MARKERS:
        if not Path(folder, marker).exists():
            raise SufraError(f"'{folder}' is not an export folder (no {marker}); run `sufra export` first")
    return Path(folder)
