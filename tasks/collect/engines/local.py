"""Sources without a search engine: a list of URLs, a local folder of images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sufra.tasks.collect.engines.base import Discovered
from sufra.tasks.collect.engines.licences import normalise_licence


def read_url_list(path: str | Path) -> list[Discovered]:
    """One URL per line (``#`` comments and blank lines skipped); optional tab-separated page URL, licence (a name
    such as ``CC BY 4.0`` or a licence URL, normalised by :func:`normalise_licence`) and creator.

    URLs are kept as written: one that is not http(s) (``file:``, ``ftp:``, ``gopher:`` ...) becomes a ``bad_url``
    row at download, never a local read (only the folder source reads local files).
    """
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() or None for f in line.split("\t")] + [None] * 3
        url, page_url, licence, creator = fields[:4]
        licence_url = licence if licence and licence.startswith(("http://", "https://")) else None
        out.append(Discovered(url, page_url, normalise_licence(licence, licence_url) if licence else None,
                              license_url=licence_url, creator=creator))
    return out


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}


def list_folder(path: str | Path) -> list[Discovered]:
    """Every image file below a local folder, as ``file://`` URLs (read from disk, never over the network).

    Regular files only, and only those that stay below the folder once symlinks are followed (no FIFO, device or
    link to elsewhere); the download checks the same again when it reads (``download.read_local``).
    """
    root = Path(path).resolve()
    found = []
    for p in sorted(Path(path).rglob("*")):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            real = p.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real.is_relative_to(root) and real.is_file():  # is_file: a regular file (FIFOs and devices are not)
            found.append(Discovered(real.as_uri()))
    return found


Source = Callable[[str, int], list[Discovered]]
