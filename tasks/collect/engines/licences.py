"""Licences as data: one normalised id per image, from whatever text and URL an engine reports.

Ids: ``cc-<kinds>-<version>`` (``cc-by-4.0``, ``cc-by-sa-3.0``, ``cc-by-nc-nd-2.0``; a jurisdiction port such as
``3.0/de`` keeps only the version), ``cc0-1.0``, ``public-domain`` (public domain mark, PD, US government work),
``no-known-copyright`` (Flickr Commons), ``all-rights-reserved``, ``gfdl``, and ``unknown`` for anything else.
"""

from __future__ import annotations

import re

UNKNOWN = "unknown"
OPEN_LICENCES = ("cc-by-", "cc-by-sa-", "cc0-", "public-domain", "no-known-copyright")
"""Prefixes of ids that allow redistribution and derivatives, commercial use included (free cultural works)."""

_CC_KINDS = {"by", "by-sa", "by-nd", "by-nc", "by-nc-sa", "by-nc-nd"}
_CC_URL = re.compile(r"creativecommons\.org/licen[cs]es/([a-z-]+)/(\d(?:\.\d)?)", re.I)
_CC0_URL = re.compile(r"creativecommons\.org/publicdomain/zero/(\d\.\d)", re.I)
_PDM_URL = re.compile(r"creativecommons\.org/publicdomain/mark/", re.I)
_CC_TEXT = re.compile(r"^(?:cc[\s_-]*)?(by(?:[\s_-]+(?:nc|sa|nd))*)(?:[\s_-]*(\d(?:\.\d)?))?(?:[\s_/-]+[a-z]{2,3})?$")
_CC0_TEXT = re.compile(r"^cc[\s_-]*(?:0|zero)(?:[\s_-]*(\d\.\d))?(?:\b.*)?$")
_PD_TEXT = re.compile(r"^(?:public[\s_-]*domain.*|pd(?:[\s_-].*)?|pdm(?:[\s_-].*)?|no[\s_-]+restrictions)$")


def _cc_id(kinds: str, version: str | None) -> str | None:
    kind = "-".join(re.split(r"[\s_-]+", kinds.lower()))
    if kind not in _CC_KINDS:
        return None
    return f"cc-{kind}-{version}" if version else f"cc-{kind}"


def normalise_licence(text: str | None, url: str | None = None) -> str:
    """The normalised licence id of an engine's licence text (``"CC BY-SA 4.0"``, ``"by-sa"``, ``"CC0"``,
    ``"Public domain"`` ...) and/or URL (``https://creativecommons.org/licenses/by/2.0/``); the URL wins when both
    are given and it is a Creative Commons one. ``unknown`` when neither says."""
    if url:
        if m := _CC_URL.search(url):
            found = _cc_id(m.group(1), m.group(2) if "." in m.group(2) else f"{m.group(2)}.0")
            if found:
                return found
        if m := _CC0_URL.search(url):
            return f"cc0-{m.group(1)}"
        if _PDM_URL.search(url):
            return "public-domain"
    raw = " ".join((text or "").split()).strip().lower()
    if not raw:
        return UNKNOWN
    raw = raw.removeprefix("creative commons ").replace("attribution-sharealike", "by-sa").replace(
        "attribution", "by")
    if m := _CC0_TEXT.match(raw):
        return f"cc0-{m.group(1) or '1.0'}"
    if m := _CC_TEXT.match(raw):
        version = m.group(2)
        found = _cc_id(m.group(1), f"{version}.0" if version and "." not in version else version)
        if found:
            return found
    if _PD_TEXT.match(raw) or raw in ("united states government work", "us government work"):
        return "public-domain"
    if raw.startswith("no known copyright"):
        return "no-known-copyright"
    if raw in ("all rights reserved", "arr", "copyrighted"):
        return "all-rights-reserved"
    if raw.startswith("gfdl") or raw.startswith("gnu free documentation"):
        return "gfdl"
    return UNKNOWN


def is_open_licence(licence: str | None) -> bool:
    """True for a normalised id that allows redistribution with derivatives and commercial use (:data:`OPEN_LICENCES`;
    ``cc-by-nc-*`` and ``cc-by-nd-*`` are not open)."""
    if not licence:
        return False
    return any(licence == p.rstrip("-") or licence.startswith(p) for p in OPEN_LICENCES) and not (
        licence.startswith(("cc-by-nc", "cc-by-nd")))
