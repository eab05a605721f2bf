"""Bing image search through its async result pages (``/images/async?q=&first=&count=``).

Each result is an ``<a class="iusc" m="{json}">``: ``murl`` is the image, ``purl`` the page it is on. The
attributes are read with the standard library's HTML parser, so single- and double-quoted attributes and HTML
entities are handled as browsers do, and every ``murl`` is kept exactly as written: any image type (PNG, WebP,
``.jpeg``, no extension) and its query string.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser

from sufra.tasks.collect.engines.base import Discovered, ParsedPage, WebEngine, register_engine

NO_RESULTS_MARKERS = ("There are no results for", 'class="no_results"', 'class="dg_u no_results"')
"""Text of Bing's "no results" page; an async page past the last result shows nothing at all."""


class _MetaParser(HTMLParser):
    """Collects the parsed ``m`` JSON of every element that has one (the ``a.iusc`` result links), and whether the
    page shows anything at all (visible text or an image) besides them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.metas: list[dict] = []
        self.shows_content = False
        self._hidden_depth = 0  # inside <script>/<style>

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._hidden_depth += 1
        elif tag in ("img", "figure", "picture", "video"):
            self.shows_content = True
        values = dict(attrs)
        raw = values.get("m")
        if not raw:
            return
        try:
            meta = json.loads(raw)  # attribute values arrive entity-unescaped
        except ValueError:
            return
        if isinstance(meta, dict) and meta.get("murl"):
            self.metas.append(meta)

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._hidden_depth:
            self._hidden_depth -= 1

    def handle_data(self, data):
        if not self._hidden_depth and data.strip():
            self.shows_content = True


def _parse_page(page_html: str) -> _MetaParser:
    parser = _MetaParser()
    parser.feed(page_html)
    parser.close()
    return parser


def bing_results(page_html: str) -> list[dict]:
    """The ``m`` JSON objects (murl, purl, t, turl ...) of a Bing result page, in page order."""
    return _parse_page(page_html).metas


@register_engine("bing")
class BingEngine(WebEngine):
    default_base_url = "https://www.bing.com"
    page_size = 35
    _first = 0

    def page_url(self, query: str, page: int, page_size: int) -> str | None:
        if page == 0:
            self._first = 0
        return self.url("/images/async", {"q": query, "first": self._first, "count": page_size, "mmasync": "1"})

    def parse(self, content: bytes, query: str) -> ParsedPage:
        text = content.decode("utf-8", "replace")
        page = _parse_page(text)
        metas = page.metas
        self._first += len(metas)  # Bing's pages may be shorter than asked: the next one starts after these
        items = [Discovered(url=m["murl"].strip(), page_url=(m.get("purl") or "").strip() or None) for m in metas]
        # no results: Bing's "no results" text, or a page that shows nothing at all (the async page past the end);
        # a page with text or images but no result link is a layout we do not know
        no_results = not metas and (not page.shows_content or any(marker in text for marker in NO_RESULTS_MARKERS))
        return ParsedPage(items, no_results=no_results)
