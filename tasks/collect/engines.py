"""Search engines that turn a query into candidate image URLs.

The web engines reuse icrawler's own feeders (result-page URLs) and parsers (links out of a result page); we only
point them at a configurable base URL and fetch the pages through our guarded :class:`~sufra.utils.http.Fetcher`,
so tests run icrawler's real parsers against a local server shaped like the engine.

A failed result page is an :class:`EngineError` a retry can fix (timeout, 429, 5xx, reset connection) or an
:class:`EngineUnavailableError` (a :class:`~sufra.core.errors.PermanentError`) no retry can: the engine's host does
not resolve, there is no network, it answered 401/403.
"""

from __future__ import annotations

import html
import json
import queue
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sufra.core.errors import AccessDeniedError, NetworkUnavailableError, PermanentError
from sufra.utils.http import NO_NETWORK_REASONS, Fetcher, FetchError

PAGE_TYPES = ("text/html", "application/json", "text/plain", "application/javascript", "text/javascript")


@dataclass(frozen=True)
class Discovered:
    """One candidate image: its URL, the page it was found on and its licence when the engine reports one."""

    url: str
    page_url: str | None = None
    license: str | None = None


class EngineError(Exception):
    """The engine itself failed (result page unreachable or unparsable) for a reason a later attempt can get past
    (timeout, 429, 5xx, reset connection, a page that did not parse): the whole query is retried."""

    retryable = True

    def __init__(self, message: str, reason: str = ""):
        super().__init__(" ".join(str(message).split()))
        self.reason = reason  # the FetchError reason code, when a fetch failed

    def __reduce__(self):  # keep the reason through pickling (Prefect results)
        return (type(self), (str(self), self.reason))


class EngineUnavailableError(EngineError, PermanentError):
    """The engine cannot be used from here and waiting will not change that (its result page answered 404, a key
    is missing ...): the query fails at once, one line, no retry."""

    retryable = False


class EngineUnreachableError(EngineUnavailableError, NetworkUnavailableError):
    """The engine's host does not resolve or its network cannot be reached (offline machine): no retry."""


class EngineAccessDeniedError(EngineUnavailableError, AccessDeniedError):
    """The engine answered 401/403 (missing or wrong key, or it blocks this machine): no retry."""


def engine_error(engine: str, page_url: str, error: FetchError) -> EngineError:
    """The engine error for a failed result page: one line naming the engine, the host and the cause; retryable
    exactly when the fetch error is (:attr:`FetchError.retryable`)."""
    host = urlsplit(page_url).netloc or page_url
    if error.retryable:
        return EngineError(f"engine {engine}: result page {page_url}: {error}", error.reason)
    if error.reason in NO_NETWORK_REASONS:
        what = "does not resolve" if error.reason == "dns_error" else "cannot be reached (no network)"
        return EngineUnreachableError(
            f"engine {engine}: {host} {what} ({error.detail}); check the network and DNS, then run again", error.reason)
    if error.reason in ("http_401", "http_403"):
        return EngineAccessDeniedError(
            f"engine {engine}: {host} refused access ({error.detail}); check the engine's API key or whether it "
            "blocks this machine", error.reason)
    return EngineUnavailableError(f"engine {engine}: result page {page_url}: {error}", error.reason)


class _Response:
    """The part of ``requests.Response`` that icrawler's parsers read."""

    def __init__(self, url: str, content: bytes):
        self.url = url
        self.content = content
        self.status_code = 200

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "ignore")

    def json(self) -> Any:
        return json.loads(self.content)


class _GuardedSession:
    """What icrawler parsers call ``self.session``: GETs go through the guarded fetcher."""

    def __init__(self, fetcher: Fetcher):
        self.fetcher = fetcher

    def get(self, url: str, **_: Any) -> _Response:
        result = self.fetcher.fetch(url, accept=PAGE_TYPES)
        return _Response(result.final_url, result.content)


def _rebase(url: str, base_url: str | None) -> str:
    """Replace scheme and host of an engine URL by ``base_url`` (keeps path and query)."""
    if not base_url:
        return url
    base = urlsplit(base_url)
    parts = urlsplit(url)
    path = base.path.rstrip("/") + parts.path
    return urlunsplit((base.scheme, base.netloc, path, parts.query, parts.fragment))


class IcrawlerEngine:
    """A web engine built from an icrawler feeder and parser class."""

    results_per_page = 20

    def __init__(self, name: str, feeder_cls: type, parser_cls: type, base_url: str | None, fetcher: Fetcher,
                 feed_kwargs: dict[str, Any] | None = None, parse_kwargs: dict[str, Any] | None = None):
        self.name = name
        self.feeder_cls = feeder_cls
        self.parser_cls = parser_cls
        self.base_url = base_url
        self.fetcher = fetcher
        self.feed_kwargs = feed_kwargs or {}
        self.parse_kwargs = parse_kwargs or {}

    def page_urls(self, query: str, max_num: int) -> list[str]:
        from icrawler.utils import Signal

        feeder = self.feeder_cls(thread_num=1, signal=Signal(), session=None)
        feeder.out_queue = queue.Queue()  # icrawler's default queue is bounded (5) and would block here
        feeder.feed(keyword=query, offset=0, max_num=max_num, **self.feed_kwargs)
        urls = []
        while not feeder.out_queue.empty():
            urls.append(_rebase(feeder.out_queue.get_nowait(), self.base_url))
        return urls

    def discover(self, query: str, max_num: int) -> list[Discovered]:
        from icrawler.utils import Signal

        session = _GuardedSession(self.fetcher)
        parser = self.parser_cls(thread_num=1, signal=Signal(), session=session)
        found: dict[str, Discovered] = {}
        for page_url in self.page_urls(query, max_num):
            try:
                page = session.get(page_url)
            except FetchError as exc:
                raise engine_error(self.name, page_url, exc) from None
            extra = self.page_details(page.content)
            try:
                items = list(parser.parse(page, **self.parse_kwargs) or [])
            except FetchError as exc:  # a parser that fetches more pages itself
                raise engine_error(self.name, page_url, exc) from None
            except Exception as exc:  # a changed result page must not crash the flow
                raise EngineError(f"{self.name}: cannot parse {page_url}: {type(exc).__name__}: {exc}") from None
            new = 0
            for item in items:
                url = item["file_url"]
                if url in found:
                    continue
                meta = item.get("meta") or {}
                details = extra.get(url, {})
                found[url] = Discovered(
                    url=url,
                    page_url=details.get("page_url") or meta.get("page_url"),
                    license=details.get("license") or (str(meta["license"]) if "license" in meta else None),
                )
                new += 1
                if len(found) >= max_num:
                    return list(found.values())
            if new == 0:  # the engine ran out of results
                break
        return list(found.values())

    def page_details(self, content: bytes) -> dict[str, dict[str, str]]:
        """Provenance the icrawler parser drops (e.g. the page URL), keyed by image URL."""
        return {}


_BING_M = re.compile(r'\bm="([^"]*)"')


class BingEngine(IcrawlerEngine):
    def page_details(self, content: bytes) -> dict[str, dict[str, str]]:
        details = {}
        for raw in _BING_M.findall(content.decode("utf-8", "ignore")):
            try:
                meta = json.loads(html.unescape(raw))
            except ValueError:
                continue
            if meta.get("murl"):
                details[meta["murl"]] = {"page_url": meta.get("purl")}
        return details


def make_engine(name: str, fetcher: Fetcher, base_urls: dict[str, str] | None = None) -> IcrawlerEngine:
    """Build a web engine by name: bing, baidu, google or flickr (needs ``FLICKR_API_KEY``)."""
    from icrawler.builtin.baidu import BaiduFeeder, BaiduParser
    from icrawler.builtin.bing import BingFeeder, BingParser
    from icrawler.builtin.flickr import FlickrFeeder, FlickrParser
    from icrawler.builtin.google import GoogleFeeder, GoogleParser

    base = (base_urls or {}).get(name)
    if name == "bing":
        return BingEngine("bing", BingFeeder, BingParser, base, fetcher)
    if name == "baidu":
        return IcrawlerEngine("baidu", BaiduFeeder, BaiduParser, base, fetcher)
    if name == "google":
        return IcrawlerEngine("google", GoogleFeeder, GoogleParser, base, fetcher)
    if name == "flickr":
        from sufra.core.settings import sufra_settings

        secret = sufra_settings().flickr_api_key
        api_key = secret.get_secret_value() if secret else None
        if not api_key:
            raise EngineUnavailableError(
                "engine 'flickr' needs an API key: set FLICKR_API_KEY (or drop flickr from --engine)")
        engine = _FlickrEngine("flickr", FlickrFeeder, FlickrParser, base, fetcher,
                               parse_kwargs={"apikey": api_key, "size_preference": ["large", "medium"]})
        engine.api_key = api_key
        return engine
    from sufra.core.errors import SufraError

    raise SufraError(f"unknown engine '{name}'; use bing, baidu, google, flickr, urllist or folder")


class _FlickrEngine(IcrawlerEngine):
    api_key = ""

    def page_urls(self, query: str, max_num: int) -> list[str]:
        from icrawler.utils import Signal

        feeder = self.feeder_cls(thread_num=1, signal=Signal(), session=None)
        feeder.out_queue = queue.Queue()
        feeder.feed(apikey=self.api_key, max_num=max_num, text=query, per_page=100, license="1,2,3,4,5,6,9,10")
        urls = []
        while not feeder.out_queue.empty() and len(urls) * 100 < max_num:
            urls.append(_rebase(feeder.out_queue.get_nowait(), self.base_url))
        return urls


# -- sources without a search engine ---------------------------------------------------------------------------
def read_url_list(path: str | Path) -> list[Discovered]:
    """One URL per line (``#`` comments and blank lines skipped); optional tab-separated page URL and licence.

    URLs are kept as written: one that is not http(s) (``file:``, ``ftp:``, ``gopher:`` ...) becomes a ``bad_url``
    row at download, never a local read (only the folder source reads local files).
    """
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        out.append(Discovered(fields[0], fields[1] if len(fields) > 1 else None, fields[2] if len(fields) > 2 else None))
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
