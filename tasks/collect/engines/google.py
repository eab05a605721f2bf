"""Google image search is not supported today: it serves a JavaScript-only page to non-browser clients, so no
result can be read (icrawler's GoogleParser finds nothing and the query looked empty). The name stays registered
so ``--engine google`` says so in one line instead of "unknown engine"."""

from __future__ import annotations

from sufra.tasks.collect.engines.base import EngineUnavailableError, WebEngine, register_engine

from sufra.utils.http import Fetcher

UNSUPPORTED = ("engine google: unsupported today: Google serves a JavaScript-only page to non-browser clients; "
               "use bing, commons, openverse or flickr")


@register_engine("google")
class GoogleEngine(WebEngine):
    default_base_url = "https://www.google.com"

    def __init__(self, fetcher: Fetcher, base_url: str | None = None):
        raise EngineUnavailableError(UNSUPPORTED, "unsupported")
