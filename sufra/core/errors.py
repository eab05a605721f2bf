"""User-facing errors: one line that names the thing and the fix (the CLI prints them without a traceback).

Two kinds of failure meet the retry rules (urllib3's per request, Prefect's per task): what can succeed later (a
timeout, 429, 5xx, a reset connection) and what no retry can fix (a name that does not resolve, no network, 401/403,
missing weights). The second kind is a :class:`PermanentError`; :func:`is_retryable` tells them apart.
"""

from __future__ import annotations

import errno


class SufraError(Exception):
    """An error caused by user input or the environment, explained in one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class CatalogError(SufraError):
    """A data catalog file is broken: the message names the file, the dish and the field (or YAML line)."""


class StoreError(SufraError):
    """The data root cannot be read or written."""


class PermanentError(SufraError):
    """A failure no retry can fix: fail at once, with one line naming the host (or file) and the cause."""

    retryable = False


class NetworkUnavailableError(PermanentError):
    """A host name does not resolve or the network is unreachable (offline machine, no route)."""


class AccessDeniedError(PermanentError):
    """A server refused access (HTTP 401/403): a key or permission is missing, waiting does not help."""


class ModelUnavailableError(PermanentError):
    """Model weights are neither cached locally nor downloadable."""


# OS errors that say "this machine cannot reach that network", not "the server is busy"
_NO_NETWORK_ERRNOS = frozenset({errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH})
# ... and the ones a later attempt can get past (a server restarting, a dropped connection, a slow peer)
_TRANSIENT_ERRNOS = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT, errno.ECONNREFUSED})


def is_no_network(exc: BaseException) -> bool:
    """True for an OS-level "no route / network down" error (``ENETUNREACH``, ``ENETDOWN``, ``EHOSTUNREACH``)."""
    return isinstance(exc, OSError) and exc.errno in _NO_NETWORK_ERRNOS


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying what raised ``exc`` can succeed later (for Prefect's ``retry_condition_fn`` and urllib3).

    Retryable: an exception that says so (``retryable = True``, as ``EngineError`` for a timeout, 429, 5xx or reset
    connection, ``FetchError`` by its reason), timeouts and reset/refused connections. Not retryable: every
    :class:`PermanentError` (no DNS, no network, 401/403, missing weights), every other :class:`SufraError` (a user
    error), and anything unknown (a bug does not go away by running it again).
    """
    flag = getattr(exc, "retryable", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(exc, SufraError):
        return False
    if isinstance(exc, OSError):  # socket.timeout is TimeoutError; ConnectionResetError etc. carry an errno
        if is_no_network(exc):
            return False
        return isinstance(exc, TimeoutError) or exc.errno in _TRANSIENT_ERRNOS
    return False
