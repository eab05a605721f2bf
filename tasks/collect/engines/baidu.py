"""Baidu image search through its JSON endpoint (``/search/acjson?tn=resultjson_com&word=&pn=&rn=30``).

Baidu answers ``{"antiFlag":1,"message":"Forbid spider access"}`` to a client without a browser-like session, so
the engine first visits the home page (its cookies, e.g. ``BAIDUID``, go with every later request) and sends
``Accept-Language`` and ``Referer`` as a browser does; an ``antiFlag`` answer is an
:class:`EngineAccessDeniedError` (no retry). ``objURL``/``fromURL`` may be obfuscated (``ippr_z2C$q...``) and are
decoded.
"""

from __future__ import annotations

import json
import re

from sufra.tasks.collect.engines.base import (
    Discovered,
    EngineAccessDeniedError,
    ParsedPage,
    WebEngine,
    engine_error,
    register_engine,
)

from sufra.utils.http import FetchError

BROWSER_HEADERS = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
                   "Accept": "text/plain, */*; q=0.01", "X-Requested-With": "XMLHttpRequest"}
_WORDS = {"_z2C$q": ":", "_z&e3B": ".", "AzdH3F": "/"}
_CHARS = str.maketrans("wkv1ju2it3hs4g5rq6fp7eo8dn9cm0bla", "abcdefghijklmnopqrstuvw1234567890")
_COOKIE_SPLIT = re.compile(r",\s*(?=[^;,=\s]+=)")


def decode_baidu_url(url: str) -> str:
    """A plain URL from Baidu's obfuscated ``objURL``/``fromURL`` (``ippr_z2C$qAzdH3F...``); plain ones unchanged."""
    if not url.startswith("ippr"):
        return url
    for word, char in _WORDS.items():
        url = url.replace(word, char)
    return url.translate(_CHARS)


def cookie_header(set_cookie: str) -> str:
    """The ``Cookie`` request header for the ``Set-Cookie`` values of a response (joined by ``, `` as urllib3
    does): ``name=value`` pairs, attributes dropped."""
    pairs = [part.split(";", 1)[0].strip() for part in _COOKIE_SPLIT.split(set_cookie) if "=" in part]
    return "; ".join(p for p in pairs if p)


@register_engine("baidu")
class BaiduEngine(WebEngine):
    default_base_url = "https://image.baidu.com"
    page_size = 30

    def start(self) -> None:
        """Warm-up: the home page's cookies and the browser's headers for the session's result pages. A host that
        cannot be reached fails here; a home page answering an error only leaves the session without cookies."""
        home = f"{self.base_url}/"
        headers = dict(BROWSER_HEADERS, Referer=home)
        try:
            response = self.fetcher.with_headers(headers).fetch(home)
            cookies = cookie_header(next((v for k, v in response.headers.items() if k.lower() == "set-cookie"), ""))
            if cookies:
                headers["Cookie"] = cookies
        except FetchError as exc:
            if exc.retryable or not exc.reason.startswith("http_"):
                raise engine_error(self.name, home, exc) from None
        self.fetcher = self.fetcher.with_headers(headers)

    def page_url(self, query: str, page: int, page_size: int) -> str | None:
        return self.url("/search/acjson", {"tn": "resultjson_com", "ipn": "rj", "word": query, "queryWord": query,
                                           "pn": page * self.page_size, "rn": self.page_size})

    def parse(self, content: bytes, query: str) -> ParsedPage:
        text = content.decode("utf-8", "replace").replace("\\'", "'")  # Baidu escapes quotes JSON does not know
        data = json.loads(text, strict=False)
        if data.get("antiFlag"):
            raise EngineAccessDeniedError(
                f"engine baidu: query {query!r}: Baidu refused the request as a crawler ({data.get('message', '')}, "
                "antiFlag); it may need a browser session from this network: drop baidu from --engine or try later",
                "anti_spider")
        entries = [e for e in data.get("data") or [] if e]
        items = []
        for entry in entries:
            replaced = (entry.get("replaceUrl") or [{}])[0] or {}
            url = decode_baidu_url(entry.get("objURL") or "") or replaced.get("ObjURL") or entry.get("middleURL")
            if not url:
                continue
            page = decode_baidu_url(entry.get("fromURL") or "") or replaced.get("FromURL") or None
            items.append(Discovered(url=url, page_url=page))
        total = data.get("listNum", data.get("displayNum"))
        return ParsedPage(items, no_results=not entries and total in (0, "0"), last_page=len(entries) < self.page_size)
