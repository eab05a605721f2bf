"""A polite, safe HTTP fetcher for crawling untrusted URLs.

Safety: every hop of a request (the first URL and each redirect) must resolve only to public addresses unless the
address is allowed in settings; redirects are followed by hand (so each hop's host is checked before we connect)
and bounded; bodies are streamed under a byte cap and a total deadline (a server that drips one byte per second
cannot hold a worker). Retries are urllib3's :class:`~urllib3.util.Retry`: timeouts, reset connections and
429/500/502/503/504 with exponential backoff, honouring Retry-After; never a 4xx, and never what no retry can fix
(a name that does not resolve, no route to the network): those fail at once (:attr:`FetchError.retryable`).
Politeness: per-host concurrency and request rate.

Known limit: a host name is resolved for the check and again by the socket layer, so a DNS answer that changes in
between (rebinding) is not caught; literal-IP URLs and the loopback test servers are exact.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from pydantic import BaseModel, Field
from urllib3 import exceptions as http_errors
from urllib3.util import Retry

from sufra.core.errors import is_no_network

DEFAULT_USER_AGENT = "sufra/0.1 (food dataset research crawler; +https://github.com/sufra-food/sufra)"


class FetchSettings(BaseModel):
    """Limits of one fetch. Times in seconds, sizes in bytes."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 30.0
    max_bytes: int = 25 * 1024 * 1024
    max_redirects: int = 5
    max_retries: int = 3
    """Retries of one fetch (shared along its redirect chain) after a timeout, a reset or refused connection or
    429/500/502/503/504 (urllib3 ``Retry``); none start past ``total_timeout_s``."""
    backoff_s: float = 0.5
    """Wait before the first retry; doubled for each further one (urllib3 ``backoff_factor``)."""
    max_retry_after_s: float = 30.0
    """A longer Retry-After (or backoff) is cut to this."""
    per_host_concurrency: int = 4
    per_host_requests_per_s: float = 10.0  # 0 = no rate limit
    allow_networks: list[str] = Field(default_factory=list)
    """IPs or CIDRs that may be contacted although not public (e.g. ``127.0.0.1`` for a local test server)."""
    user_agent: str = DEFAULT_USER_AGENT


RETRY_STATUS_CODES = (429, 500, 502, 503, 504)
"""Statuses a later attempt can get past (urllib3 ``status_forcelist``)."""
TRANSIENT_REASONS = frozenset({"timeout", "timeout_total", "connect_timeout", "connect_error"})
"""Reason codes of failures a later attempt can get past (with ``http_<code>`` of :data:`RETRY_STATUS_CODES`)."""
NO_NETWORK_REASONS = frozenset({"dns_error", "network_unreachable"})
"""Reason codes of "this machine cannot reach that host at all": the host name does not resolve, or no route."""


class FetchError(Exception):
    """A fetch that failed for a reason worth recording: ``reason`` is a short code, ``detail`` human text."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    @property
    def retryable(self) -> bool:
        """Whether a later attempt can succeed: timeouts, reset connections, 429/500/502/503/504; never another
        4xx or 5xx, a forbidden address, a bad URL, or a host that does not resolve or cannot be routed to."""
        if self.reason in TRANSIENT_REASONS or self.reason == "http_429":
            return True
        code = self.reason.removeprefix("http_")
        return self.reason.startswith("http_") and code.isdigit() and int(code) in RETRY_STATUS_CODES

    def __reduce__(self):  # keep reason and detail through pickling (Prefect results, worker processes)
        return (type(self), (self.reason, self.detail))


@dataclass
class FetchResult:
    url: str
    final_url: str
    status_code: int
    content_type: str
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)


# -- address guard ---------------------------------------------------------------------------------------------
def _networks(allow: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry, strict=False) for entry in allow]


def check_url_allowed(url: str, allow_networks: list[str]) -> None:
    """Raise :class:`FetchError` ``forbidden_address`` unless every address of the URL's host may be contacted.

    Forbidden unless allowed: private, loopback, link-local (cloud metadata 169.254.169.254), multicast, reserved,
    shared and unspecified addresses, also when written as IPv4-mapped IPv6.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError("bad_url", f"scheme '{parts.scheme}' is not http(s)")
    host = parts.hostname
    if not host:
        raise FetchError("bad_url", "no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError("bad_url", "bad port") from None
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError("dns_error", f"{host}: {exc.strerror}") from None
        addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    allowed = _networks(allow_networks)
    for address in addresses:
        mapped = getattr(address, "ipv4_mapped", None)
        effective = mapped or address
        if any(effective in net for net in allowed):
            continue
        if not effective.is_global or effective.is_multicast:
            raise FetchError("forbidden_address", f"{host} resolves to non-public address {effective}")


# -- politeness ------------------------------------------------------------------------------------------------
class HostLimiter:
    """Per-host concurrency (a semaphore per host) and minimum spacing between request starts."""

    def __init__(self, concurrency: int, requests_per_s: float):
        self.concurrency = max(1, concurrency)
        self.interval_s = 1.0 / requests_per_s if requests_per_s > 0 else 0.0
        self._lock = threading.Lock()
        self._sems: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(self.concurrency)
        )
        self._next_start: dict[str, float] = defaultdict(float)

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        with self._lock:
            sem = self._sems[host]
        sem.acquire()
        try:
            if self.interval_s:
                with self._lock:
                    now = time.monotonic()
                    start = max(now, self._next_start[host])
                    self._next_start[host] = start + self.interval_s
                if start > now:
                    time.sleep(start - now)
            yield
        finally:
            sem.release()


_limiters: dict[tuple[int, float], HostLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(settings: FetchSettings) -> HostLimiter:
    """One limiter per process and limit pair, so concurrent tasks share the per-host budget."""
    key = (settings.per_host_concurrency, settings.per_host_requests_per_s)
    with _limiters_lock:
        if key not in _limiters:
            _limiters[key] = HostLimiter(*key)
        return _limiters[key]


# -- fetching --------------------------------------------------------------------------------------------------
def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header (seconds or an HTTP date) into seconds from now; None when absent or malformed."""
    if not value:
        return None
    try:
        return float(Retry(retry_after_max=math.inf).parse_retry_after(value.strip()))
    except http_errors.InvalidHeader:
        return None


class _OutOfTime(Exception):
    """The next attempt would start after the fetch's deadline: give up with the last failure's reason."""

    def __init__(self, last: FetchError):
        super().__init__(str(last))
        self.last = last


class _DeadlineTimeout(urllib3.Timeout):
    """Connect and read timeouts that never reach past the fetch's deadline, for each attempt urllib3 makes (it
    clones the timeout per attempt, so a retry after a read timeout gets only the time that is left)."""

    def __init__(self, connect: float, read: float, deadline: float):
        super().__init__(connect=connect, read=read)
        self.deadline = deadline

    def clone(self) -> _DeadlineTimeout:
        return _DeadlineTimeout(self._connect, self._read, self.deadline)

    def _left_s(self) -> float:
        return max(0.001, self.deadline - time.monotonic())

    @property
    def connect_timeout(self) -> float:
        return min(self._connect, self._left_s())

    @property
    def read_timeout(self) -> float:
        return min(self._read, self._left_s())


def _cannot_be_retried(error: Exception) -> bool:
    """A connection error no retry can fix: the host name does not resolve, or there is no route to its network."""
    if isinstance(error, http_errors.NameResolutionError):
        return True
    return isinstance(error, http_errors.NewConnectionError) and is_no_network(error.__cause__ or error)


class _FetchRetry(Retry):
    """urllib3's ``Retry`` with the limits of one fetch.

    - no attempt starts when it (after its wait) would begin past the fetch's deadline;
    - a name that does not resolve or a network that cannot be reached ends the fetch at once;
    - the first retry waits ``backoff_factor`` too (urllib3 retries the first failure at once: impolite to a host
      that just answered 503), then the wait doubles;
    - the body of a response we retry past is dropped with its connection, never drained (it may be huge or drip).
    """

    def __init__(self, *args, deadline: float = math.inf, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def new(self, **kw) -> _FetchRetry:
        kw.setdefault("deadline", self.deadline)
        return super().new(**kw)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if error is not None and _cannot_be_retried(error):
            raise error
        if response is not None:
            response.close()
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def get_backoff_time(self) -> float:
        failures = 0
        for entry in reversed(self.history):
            if entry.redirect_location is not None:
                break
            failures += 1
        if failures == 0:
            return 0.0
        return float(min(self.backoff_max, self.backoff_factor * 2 ** (failures - 1)))

    def get_retry_after(self, response) -> float | None:
        try:
            return super().get_retry_after(response)
        except http_errors.InvalidHeader:  # malformed: back off as if there were none
            return None

    def sleep(self, response=None) -> None:
        wait = self.get_retry_after(response) if (self.respect_retry_after_header and response is not None) else None
        if not wait:
            wait = self.get_backoff_time()
        if time.monotonic() + wait >= self.deadline:
            last = self.history[-1] if self.history else None
            if last is not None and last.status:
                raise _OutOfTime(FetchError(f"http_{last.status}", "no time left for a retry"))
            raise _OutOfTime(_error_of(last.error if last else None, "no time left for a retry"))
        super().sleep(response)


def _error_of(error: BaseException | None, detail: str) -> FetchError:
    """The :class:`FetchError` for a urllib3 connection-level error (``detail`` says what became of retries)."""
    conn = getattr(error, "conn", None)
    host = getattr(conn, "host", None) or "host"
    cause = getattr(error, "__cause__", None)
    if isinstance(error, http_errors.NameResolutionError):
        return FetchError("dns_error", f"{host}: {getattr(cause, 'strerror', None) or 'name does not resolve'}")
    if isinstance(error, http_errors.NewConnectionError) and is_no_network(cause or error):
        return FetchError("network_unreachable", f"{host}: {getattr(cause, 'strerror', None) or 'no route'}")
    if isinstance(error, http_errors.ReadTimeoutError):
        return FetchError("timeout", detail)
    if isinstance(error, http_errors.ConnectTimeoutError) and not isinstance(error, http_errors.NewConnectionError):
        return FetchError("connect_timeout", detail)
    name = type(error).__name__ if error is not None else "no answer"
    return FetchError("connect_error", f"{name}; {detail}" if detail else name)


class Fetcher:
    """Fetch URLs under :class:`FetchSettings` through one urllib3 pool manager (requests' transport, without the
    per-request session machinery: ~0.4 ms less per image). Connections are kept alive and reused once a body was
    read in full; no cookies are kept and no proxy is taken from the environment."""

    def __init__(self, settings: FetchSettings, limiter: HostLimiter | None = None):
        self.settings = settings
        self.limiter = limiter or shared_limiter(settings)
        self._pool = urllib3.PoolManager(
            num_pools=64, maxsize=max(4, settings.per_host_concurrency), block=False, retries=False,
            ca_certs=certifi.where(),
            headers={"User-Agent": settings.user_agent, "Accept": "*/*", "Accept-Encoding": "gzip, deflate"},
        )

    def retry_policy(self, deadline: float = math.inf) -> Retry:
        """The urllib3 ``Retry`` of one fetch: ``max_retries`` for connect, read and status failures alike,
        redirects left to :meth:`fetch` (each hop is checked), the last 5xx returned rather than raised."""
        s = self.settings
        return _FetchRetry(
            total=s.max_retries, connect=s.max_retries, read=s.max_retries, status=s.max_retries, other=0,
            redirect=False, status_forcelist=RETRY_STATUS_CODES, backoff_factor=s.backoff_s,
            backoff_max=s.max_retry_after_s, respect_retry_after_header=True, retry_after_max=s.max_retry_after_s,
            raise_on_status=False, deadline=deadline,
        )

    def fetch(self, url: str, accept: tuple[str, ...] | None = None) -> FetchResult:
        """GET ``url`` within the limits; ``accept`` lists allowed Content-Type prefixes (checked before the body).

        Raises :class:`FetchError` with a reason code: forbidden_address, bad_url, dns_error, network_unreachable,
        too_many_redirects, http_<code>, connect_error, connect_timeout, timeout, timeout_total, too_large,
        content_type. :attr:`FetchError.retryable` tells whether a later attempt can succeed.
        """
        s = self.settings
        deadline = time.monotonic() + s.total_timeout_s
        retries = self.retry_policy(deadline)
        current = url
        for _hop in range(s.max_redirects + 1):
            check_url_allowed(current, s.allow_networks)
            host = urlsplit(current).netloc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchError("timeout_total", f"over {s.total_timeout_s:g} s")
            # the slot is held through urllib3's retry waits: a host that asked us to wait gets no other request
            with self.limiter.slot(host):
                response = self._get(current, deadline, retries)
                complete = False
                try:
                    retries = response.retries or retries
                    location = response.get_redirect_location()
                    if location:
                        current = urljoin(current, location)
                        continue
                    code = response.status
                    if code >= 400:
                        attempts = len(retries.history) + 1
                        detail = f"server answered {code} {response.reason or ''}".strip()
                        if attempts > 1:
                            detail += f"; gave up after {attempts} attempts"
                        raise FetchError(f"http_{code}", detail)
                    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
                    if accept is not None and content_type and not content_type.startswith(accept):
                        raise FetchError("content_type", content_type)
                    content = self._read_body(response, deadline)
                    complete = True
                    return FetchResult(url, current, code, content_type, content, dict(response.headers))
                finally:
                    if not complete:  # never drain an unwanted body (it may be huge or dripping): drop the connection
                        response.close()
                    response.release_conn()
        raise FetchError("too_many_redirects", f"more than {s.max_redirects}")

    def _get(self, url: str, deadline: float, retries: Retry) -> urllib3.BaseHTTPResponse:
        s = self.settings
        timeout = _DeadlineTimeout(s.connect_timeout_s, s.read_timeout_s, deadline)
        try:
            return self._pool.request("GET", url, preload_content=False, redirect=False, retries=retries,
                                      timeout=timeout)
        except _OutOfTime as exc:
            raise exc.last from None
        except http_errors.MaxRetryError as exc:
            raise _error_of(exc.reason, f"gave up after {s.max_retries + 1} attempts") from None
        except (http_errors.NameResolutionError, http_errors.NewConnectionError) as exc:  # no retry can fix these
            raise _error_of(exc, "") from None
        except http_errors.ReadTimeoutError:
            raise FetchError("timeout", f"no answer within {s.read_timeout_s:g} s") from None
        except (http_errors.ProtocolError, http_errors.SSLError, http_errors.ProxyError, OSError) as exc:
            raise FetchError("connect_error", type(exc).__name__) from None
        except (http_errors.HTTPError, ValueError) as exc:  # LocationValueError, LocationParseError, bad header values ...
            raise FetchError("bad_url", type(exc).__name__) from None

    def _read_body(self, response, deadline: float) -> bytes:
        s = self.settings
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > s.max_bytes:
            raise FetchError("too_large", f"Content-Length {declared} > {s.max_bytes}")
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                # read1 returns what has arrived (not a full chunk), so the deadline is checked while dripping
                chunk = response.read1(256 * 1024, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > s.max_bytes:
                    raise FetchError("too_large", f"body over {s.max_bytes} bytes")
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise FetchError("timeout_total", f"body not complete within {s.total_timeout_s:g} s")
        except FetchError:
            raise
        except Exception as exc:  # urllib3 ReadTimeoutError / ProtocolError / DecodeError, socket errors
            name = type(exc).__name__
            timed_out = "Timeout" in name or "timed out" in str(exc).lower()
            raise FetchError("timeout" if timed_out else "connect_error", "read timed out" if timed_out else f"body: {name}") from None
        return b"".join(chunks)
