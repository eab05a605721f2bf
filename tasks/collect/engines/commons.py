"""Wikimedia Commons through the MediaWiki Action API: files (namespace 6) found by full-text search, with their
URL, size, MIME type and licence metadata in one request per page.

``action=query&generator=search&gsrnamespace=6&prop=imageinfo&iiprop=url|size|mime|extmetadata``; ``maxlag`` asks
the API to refuse when its replicas lag, and a ``maxlag`` or ``ratelimited`` answer is a retryable
:class:`EngineError`. Pages are asked one at a time (Wikimedia's API etiquette) with a contactable User-Agent.
"""

from __future__ import annotations

import html
import json
import re

from sufra.tasks.collect.engines.base import (
    Discovered,
    EngineError,
    EngineUnavailableError,
    ParsedPage,
    WebEngine,
    register_engine,
)
from sufra.tasks.collect.engines.licences import normalise_licence

from sufra.utils.http import DEFAULT_USER_AGENT, Fetcher

IMAGE_MIMES = ("image/jpeg", "image/png", "image/webp", "image/gif")
"""Files kept (namespace 6 also holds SVG, TIFF, PDF, audio and video)."""
MAXLAG_S = 5
RETRYABLE_API_ERRORS = ("maxlag", "ratelimited", "readonly")
_TAG = re.compile(r"<[^>]+>")


def strip_html(text: str | None) -> str | None:
    """Plain text of an extmetadata HTML value (tags dropped, entities unescaped, whitespace collapsed)."""
    if not text:
        return None
    plain = " ".join(html.unescape(_TAG.sub(" ", text)).split())
    return plain or None


def contactable_user_agent(user_agent: str) -> str:
    """Wikimedia asks for a User-Agent with a way to contact the operator (a URL or an e-mail address)."""
    if "http" in user_agent or "@" in user_agent:
        return user_agent
    return f"{user_agent} {DEFAULT_USER_AGENT}"


@register_engine("commons")
class CommonsEngine(WebEngine):
    default_base_url = "https://commons.wikimedia.org"
    page_size = 50  # gsrlimit with imageinfo/extmetadata
    _continue: dict[str, str] | None = None

    def __init__(self, fetcher: Fetcher, base_url: str | None = None):
        # one API request at a time per process (every commons engine shares the limiter of these settings)
        settings = fetcher.settings.model_copy(update={
            "user_agent": contactable_user_agent(fetcher.settings.user_agent), "per_host_concurrency": 1})
        super().__init__(Fetcher(settings), base_url)

    def page_url(self, query: str, page: int, page_size: int) -> str | None:
        params = {
            "action": "query", "format": "json", "formatversion": "2", "maxlag": MAXLAG_S,
            "generator": "search", "gsrsearch": query, "gsrnamespace": "6", "gsrlimit": page_size,
            "prop": "imageinfo", "iiprop": "url|size|mime|extmetadata",
            "iiextmetadatafilter": "LicenseShortName|LicenseUrl|Artist|Credit|AttributionRequired|UsageTerms",
        }
        if page:
            if not self._continue:
                return None
            params.update(self._continue)
        return self.url("/w/api.php", params)

    def parse(self, content: bytes, query: str) -> ParsedPage:
        data = json.loads(content)
        if "error" in data:
            code = str(data["error"].get("code", "?"))
            info = data["error"].get("info", "")
            cls = EngineError if code in RETRYABLE_API_ERRORS else EngineUnavailableError
            raise cls(f"engine commons: query {query!r}: API error {code}: {info}", f"api_{code}")
        self._continue = {k: str(v) for k, v in (data.get("continue") or {}).items()}
        pages = (data.get("query") or {}).get("pages") or []
        if isinstance(pages, dict):  # formatversion=1: keyed by page id
            pages = list(pages.values())
        pages = sorted(pages, key=lambda p: p.get("index", 0))
        items = []
        for page in pages:
            for info in page.get("imageinfo") or []:
                if info.get("mime") not in IMAGE_MIMES or not info.get("url"):
                    continue
                meta = {k: (v or {}).get("value") for k, v in (info.get("extmetadata") or {}).items()}
                licence_url = meta.get("LicenseUrl") or None
                items.append(Discovered(
                    url=info["url"], page_url=info.get("descriptionurl"),
                    license=normalise_licence(meta.get("LicenseShortName"), licence_url),
                    license_url=licence_url, creator=strip_html(meta.get("Artist")),
                    attribution=strip_html(meta.get("Credit")),
                ))
        return ParsedPage(items, no_results=not pages, last_page=not self._continue)
