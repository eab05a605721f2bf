"""What every engine shares: the candidate type, the engine errors, the registry and the result-page loop.

A failed result page is an :class:`EngineError` a retry can fix (timeout, 429, 5xx, reset connection, a rate limit
the engine announced) or an :class:`EngineUnavailableError` (a :class:`~sufra.core.errors.PermanentError`) no retry
can: the engine's host does not resolve, there is no network, it answered 401/403, it refused a crawler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from sufra.core.errors import AccessDeniedError, NetworkUnavailableError, PermanentError
from sufra.core.registry import Registry
from sufra.utils.http import NO_NETWORK_REASONS, Fetcher, FetchError

PAGE_TYPES = ("text/html", "application/json", "text/plain", "application/javascript", "text/javascript")


@dataclass(frozen=True)
class Discovered:
    """One candidate image: its URL, the page it was found on and, when the engine reports them, its licence
    (normalised id, :func:`~sufra.tasks.collect.engines.licences.normalise_licence`), licence URL, creator and
    attribution text."""

    url: str
    page_url: str | None = None
    license: str | None = None
    license_url: str | None = None
    creator: str | None = None
    attribution: str | None = None


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


@dataclass
class ParsedPage:
    """What one result page holds: its candidates, whether it is the engine's genuine "no results" page, and
    whether no further page can be asked for (``last_page``)."""

    items: list[Discovered] = field(default_factory=list)
    no_results: bool = False
    last_page: bool = False


class WebEngine:
    """A search engine behind one result-page URL scheme: :meth:`page_url` builds page ``n`` (0-based) of a query,
    :meth:`parse` reads it. Subclasses set ``name``, ``default_base_url`` and ``page_size``.

    :meth:`discover` walks pages until ``max_num`` candidates, the last page or a page with nothing new. A first
    page with zero candidates that is not the engine's "no results" page is an :class:`EngineError` naming the
    engine and the query (a changed page layout must not look like an empty success).
    """

    name = "?"
    default_base_url = ""
    page_size = 20
    max_pages = 50

    def __init__(self, fetcher: Fetcher, base_url: str | None = None):
        self.fetcher = fetcher
        self.base_url = (base_url or self.default_base_url).rstrip("/")

    # -- what an engine defines ------------------------------------------------------------------------------
    def page_url(self, query: str, page: int, page_size: int) -> str | None:
        """The URL of result page ``page`` (0-based) asking for ``page_size`` items; None when the engine allows no
        such page (page depth limits)."""
        raise NotImplementedError

    def parse(self, content: bytes, query: str) -> ParsedPage:
        """Candidates of one result page (``content``: the raw body)."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------------------
    def url(self, path: str, params: dict[str, Any]) -> str:
        """``base_url + path`` with ``params`` url-encoded (``|`` kept as MediaWiki writes it)."""
        return f"{self.base_url}{path}?{urlencode(params, safe='|,')}"

    def get(self, url: str) -> bytes:
        """The body of one result page; a failed fetch becomes the engine error (:func:`engine_error`)."""
        try:
            return self.fetcher.fetch(url, accept=PAGE_TYPES).content
        except FetchError as exc:
            raise engine_error(self.name, url, exc) from None

    def start(self) -> None:
        """Called once before the first page (a session warm-up, for engines that need one)."""

    def discover(self, query: str, max_num: int) -> list[Discovered]:
        """Up to ``max_num`` candidates for ``query``, in the engine's order, each URL once."""
        self.start()
        found: dict[str, Discovered] = {}
        page_size = max(1, min(self.page_size, max_num))
        for page in range(self.max_pages):
            url = self.page_url(query, page, page_size)
            if url is None:
                break
            content = self.get(url)
            try:
                parsed = self.parse(content, query)
            except EngineError:
                raise
            except Exception as exc:  # a changed result page must not crash the flow
                raise EngineError(f"engine {self.name}: query {query!r}: cannot parse {url}: "
                                  f"{type(exc).__name__}: {exc}") from None
            if page == 0 and not parsed.items and not parsed.no_results:
                raise EngineError(f"engine {self.name}: query {query!r}: the first result page ({url}) holds no image "
                                  "and is not a 'no results' page; the engine's page layout may have changed",
                                  "unparsed_page")
            new = 0
            for item in parsed.items:
                if item.url in found:
                    continue
                found[item.url] = item
                new += 1
                if len(found) >= max_num:
                    return list(found.values())
            if new == 0 or parsed.last_page:
                break
        return list(found.values())


ENGINES: Registry[type[WebEngine]] = Registry("engine")
"""Engine name -> class (:func:`register_engine`)."""


def register_engine(name: str) -> Callable[[type[WebEngine]], type[WebEngine]]:
    """Class decorator: make an engine available to :func:`make_engine` under ``name``."""

    def add(cls: type[WebEngine]) -> type[WebEngine]:
        cls.name = name
        return ENGINES.register(name)(cls)

    return add


def make_engine(name: str, fetcher: Fetcher, base_urls: dict[str, str] | None = None) -> WebEngine:
    """Build a web engine by name (:data:`ENGINES`), its base URL from ``base_urls`` (tests, mirrors) or its own."""
    known = ", ".join(sorted(n for n in ENGINES if n != "google")) + ", urllist or folder"
    return ENGINES.lookup(name, known)(fetcher, (base_urls or {}).get(name))
