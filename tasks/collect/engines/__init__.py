"""Search engines that turn a query into candidate image URLs, one module per engine, each with its own small
parser of the engine's real result shape, registered by name (:func:`register_engine`, :func:`make_engine`).

Web engines: ``commons`` (Wikimedia Commons, licence metadata), ``openverse`` (openly licensed), ``flickr``
(``FLICKR_API_KEY``), ``bing``, ``baidu``; ``google`` is registered only to say it is unsupported today. Sources
without an engine: :func:`read_url_list`, :func:`list_folder`. Every page goes through the guarded
:class:`~sufra.utils.http.Fetcher`; tests serve real-shaped responses from a loopback server.
"""

from sufra.tasks.collect.engines import baidu, bing, commons, flickr, google, openverse  # noqa: F401 - registers
from sufra.tasks.collect.engines.base import (
    ENGINES,
    PAGE_TYPES,
    Discovered,
    EngineAccessDeniedError,
    EngineError,
    EngineUnavailableError,
    EngineUnreachableError,
    ParsedPage,
    WebEngine,
    engine_error,
    make_engine,
    register_engine,
)
from sufra.tasks.collect.engines.health import (
    EngineHealthRow,
    EnginesDownError,
    check_engines,
    health_table,
    raise_if_unhealthy,
)
from sufra.tasks.collect.engines.licences import OPEN_LICENCES, is_open_licence, normalise_licence
from sufra.tasks.collect.engines.local import IMAGE_SUFFIXES, Source, list_folder, read_url_list

__all__ = [
    "ENGINES", "IMAGE_SUFFIXES", "OPEN_LICENCES", "PAGE_TYPES", "Discovered", "EngineAccessDeniedError", "EngineError",
    "EngineHealthRow", "EnginesDownError", "EngineUnavailableError", "EngineUnreachableError", "ParsedPage", "Source",
    "WebEngine", "check_engines", "engine_error", "health_table", "is_open_licence", "list_folder", "make_engine",
    "normalise_licence", "raise_if_unhealthy", "read_url_list", "register_engine",
]
