"""A polite, safe HTTP fetcher for crawling untrusted URLs.

Safety: every hop of a request (the first URL and each redirect) must resolve only to public addresses unless the
address is allowed in settings; redirects are followed by hand (so each hop's host is checked before we connect)
and bounded; bodies are streamed under a byte cap and a total deadline (a server that drips one byte per second
cannot hold a worker). Retries are urllib3's :class:`~urllib3.util.Retry`: timeouts, reset connections and
429/500/502/503/504 with exponential backoff, honouring Retry-After; never a 4xx, and never what no retry can fix
(a name that does not resolve, no route to the network): those fail at once (:attr:`FetchError.retryable`).
Politeness: per-host concurrency and request rate; the total deadline starts once the host's slot is held (time queued
behind other fetches of that host is not counted against a URL).

One parser: a URL is read once (:func:`parse_target`, WHATWG-like: percent-decoded, IDNA-mapped hosts, numeric IPv4
forms; credentials, backslashes and control characters refused as ``bad_url``), its host resolved once, every address
checked (IPv6 forms that embed IPv4 unwrapped), and the connection goes to the checked IP with the name in the
``Host`` header and TLS server name: what the guard saw is what is contacted, and DNS rebinding has no second lookup
to change.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from urllib.parse import unquote, urljoin

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


# -- one URL parser for the guard and the connection ----------------------------------------------------------
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?([^/?#]*)(.*)$", re.DOTALL)
_BAD_HOST_RE = re.compile(r"[\x00-\x20\x7f #%/:<>?@\[\\\]^|]")  # WHATWG forbidden host code points, and controls
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_LABEL_RE = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use translation prefix
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated RFC 4291 form ::a.b.c.d


@dataclass(frozen=True)
class Target:
    """One parsed, resolved and checked URL: what the guard approved is exactly what is connected to.

    ``host`` is the canonical host (a lowercase ASCII name, or an IP address's text); ``address`` the checked IP the
    connection goes to (the name is sent only in the ``Host`` header and, for https, as TLS server name).
    """

    url: str  # canonical form: scheme://host[:port]/path?query (no credentials, no fragment)
    scheme: str
    host: str
    port: int
    request_uri: str  # path and query, percent-encoded
    is_ip: bool
    address: str = ""

    @property
    def host_key(self) -> str:
        """Per-host politeness key: ``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _bad(detail: str) -> FetchError:
    return FetchError("bad_url", detail)


def _ipv4_number(part: str) -> int | None:
    """One part of a WHATWG IPv4 host: ``0x`` hex, leading-``0`` octal or decimal; None when not a number."""
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:] or "0", 16
    elif len(part) > 1 and part[0] == "0":
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    try:
        return int(digits, base) if digits.isalnum() and digits.isascii() else None
    except ValueError:
        return None


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address of a host that WHATWG reads as one (``2130706434``, ``0177.0.0.2``, ``0x7f000002``,
    ``127.2``, ``127.0.0.2.``); None when the host is a domain name; ``bad_url`` when it ends in a number but is no
    valid address (browsers refuse it too)."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    ends_in_number = (last.isascii() and last.isdigit()) or (
        last[:2] in ("0x", "0X") and all(c in "0123456789abcdefABCDEF" for c in last[2:]))
    if not ends_in_number:
        return None
    numbers = [_ipv4_number(part) for part in parts] if all(parts) and len(parts) <= 4 else [None]
    if any(n is None for n in numbers) or any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise _bad(f"host '{host}' is not a valid IPv4 address")
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _canonical_host(raw: str) -> tuple[str, IPAddress | None]:
    """(canonical host text, IP address or None for a name) of a URL's host, as a browser reads it: percent-decoded,
    IDNA/UTS 46 mapped (fullwidth digits, ideographic full stops), numeric IPv4 forms decoded."""
    import idna

    if raw.startswith("["):
        if not raw.endswith("]") or "%" in raw:
            raise _bad(f"bad IPv6 host '{raw}' (zone ids are not allowed)")
        try:
            address = ipaddress.IPv6Address(raw[1:-1])
        except ValueError:
            raise _bad(f"bad IPv6 host '{raw}'") from None
        return address.compressed, address
    try:
        host = unquote(raw, errors="strict") if "%" in raw else raw
    except UnicodeError:
        raise _bad(f"bad host '{raw}'") from None
    if not host or _BAD_HOST_RE.search(host):
        raise _bad(f"bad host '{raw}'")
    try:  # UTS 46 maps an ASCII host to its lower case: only others need the (slow) table
        host = host.lower() if host.isascii() else idna.uts46_remap(host, std3_rules=False, transitional=False).lower()
    except (idna.IDNAError, UnicodeError):
        raise _bad(f"bad host '{raw}'") from None
    if _BAD_HOST_RE.search(host):
        raise _bad(f"bad host '{raw}'")
    v4 = _parse_ipv4(host)
    if v4 is not None:
        return str(v4), v4
    labels = host.removesuffix(".").split(".")
    try:
        labels = [label if label.isascii() else idna.encode(label, uts46=False).decode("ascii") for label in labels]
    except (idna.IDNAError, UnicodeError):
        raise _bad(f"bad host '{raw}'") from None
    name = ".".join(labels)
    if len(name) > 253 or not all(_LABEL_RE.match(label) for label in labels):
        raise _bad(f"bad host '{raw}'")
    return name, None


def parse_target(url: str) -> Target:
    """Parse an http(s) URL once, strictly: the one reading both the guard and the connection use.

    ``bad_url`` for another scheme, credentials (``user@``), a backslash, a control character or a space in the
    host, a zone id, a bad port or host. Not resolved yet (:func:`resolve_target`).
    """
    from urllib3.util import parse_url

    url = url.strip(" \t\r\n\f")
    if _CONTROL_RE.search(url):
        raise _bad("control character in URL")
    if "\\" in url:
        raise _bad("backslash in URL (read differently by different parsers)")
    match = _URL_RE.match(url)
    if not match:
        raise _bad("not an absolute URL")
    scheme, slashes, authority, rest = match.groups()
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise _bad(f"scheme '{scheme}' is not http(s)")
    if not slashes:
        raise _bad("no host")
    if "@" in authority:
        raise _bad("credentials in URL")
    port_text = ""
    if authority.startswith("["):
        close = authority.find("]")
        host_raw, after = authority[: close + 1], authority[close + 1 :]
        if close < 0 or (after and not after.startswith(":")):
            raise _bad(f"bad host '{authority}'")
        port_text = after[1:]
    else:
        host_raw, _, port_text = authority.partition(":")
    if not host_raw:
        raise _bad("no host")
    if port_text and not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise _bad("bad port")
    port = int(port_text) if port_text else (443 if scheme == "https" else 80)
    host, ip = _canonical_host(host_raw)
    rest = rest.partition("#")[0]
    netloc = f"[{host}]" if ":" in host else host
    if port_text and port != (443 if scheme == "https" else 80):
        netloc += f":{port}"
    canonical = f"{scheme}://{netloc}{rest}"
    try:
        parsed = parse_url(canonical)
    except ValueError as exc:
        raise _bad(type(exc).__name__) from None
    return Target(url=canonical, scheme=scheme, host=host, port=port, request_uri=parsed.request_uri,
                  is_ip=ip is not None, address=str(ip) if ip is not None else "")


# -- address guard ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _parsed_networks(allow: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in allow)


def _networks(allow: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return _parsed_networks(tuple(allow))


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries for a translation mechanism: NAT64 (``64:ff9b::/96``, the local-use
    ``64:ff9b:1::/48``), 6to4 (``2002::/16``), Teredo (``2001::/32``: server and de-obfuscated client), ISATAP and
    IPv4-compatible ``::a.b.c.d``. (IPv4-mapped ``::ffff:a.b.c.d`` is not a translation: see :func:`contacted`.)"""
    if address.version != 6:
        return []
    value = int(address)
    low32 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    found = []
    if address in _NAT64 or address in _NAT64_LOCAL or (address in _IPV4_COMPATIBLE and address.ipv4_mapped is None):
        found.append(low32)
    if address in _NAT64_LOCAL:  # RFC 6052 /48 layout: bits 48-63 and 72-87
        found.append(ipaddress.IPv4Address(((value >> 64) & 0xFFFF) << 16 | ((value >> 40) & 0xFFFF)))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if (value >> 32) & 0xFDFFFFFF == 0x00005EFE:  # ISATAP interface id ...:0:5efe:a.b.c.d / 200:5efe
        found.append(low32)
    return found


def contacted(address: IPAddress) -> IPAddress:
    """The address a socket to ``address`` really reaches: the IPv4 of an IPv4-mapped IPv6 address, else itself."""
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _is_public(address: IPAddress) -> bool:
    if address.version == 6 and (address in _NAT64_LOCAL or address in _IPV4_COMPATIBLE):
        return False  # Python < 3.13 calls these global; they are not (RFC 8215, RFC 4291)
    return address.is_global and not address.is_multicast


def check_address(address: IPAddress, allow_networks: list[str], host: str = "") -> IPAddress:
    """The address to connect to, once it may be contacted; else :class:`FetchError` ``forbidden_address``.

    Forbidden unless allowed: private, loopback, link-local (cloud metadata 169.254.169.254), multicast, reserved,
    shared and unspecified addresses, also when written as IPv4-mapped IPv6. An IPv6 address that embeds an IPv4
    address for translation (:func:`embedded_ipv4`) is forbidden unless that IPv4 address is public too: an allow
    entry names an address that is contacted, never one a translator would reach on our behalf.
    """
    effective = contacted(address)
    if not (any(effective in net for net in _networks(allow_networks)) or _is_public(effective)):
        raise FetchError("forbidden_address", f"{host or effective} resolves to non-public address {effective}")
    for inner in embedded_ipv4(effective):
        if not _is_public(inner):
            raise FetchError("forbidden_address",
                             f"{host or effective} resolves to {effective}, which embeds non-public address {inner}")
    return effective


def resolve_target(target: Target, allow_networks: list[str]) -> Target:
    """Resolve the target's host once (``socket.getaddrinfo``, skipped for an IP), check every address and return
    the target with ``address`` set to the first one: the connection goes there, so a DNS answer that changes
    afterwards (rebinding) is never used."""
    if target.is_ip:
        addresses = [ipaddress.ip_address(target.address)]
    else:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError("dns_error", f"{target.host}: {exc.strerror}") from None
        except UnicodeError:
            raise _bad(f"bad host '{target.host}'") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        if not addresses:
            raise FetchError("dns_error", f"{target.host}: no address")
    checked = [check_address(address, allow_networks, target.host) for address in addresses]
    return replace(target, address=str(checked[0]))


def check_url_allowed(url: str, allow_networks: list[str]) -> Target:
    """Parse, resolve and check a URL (:func:`parse_target`, :func:`resolve_target`): the :class:`Target` to connect
    to, or :class:`FetchError` ``bad_url`` / ``forbidden_address`` / ``dns_error``."""
    return resolve_target(parse_target(url), allow_networks)


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

    def __init__(self, settings: FetchSettings, limiter: HostLimiter | None = None,
                 headers: dict[str, str] | None = None):
        """``headers``: sent with every request on top of User-Agent, Accept and Accept-Encoding (an API token,
        a browser's Accept-Language, session cookies)."""
        self.settings = settings
        self.limiter = limiter or shared_limiter(settings)
        self._headers = {"User-Agent": settings.user_agent, "Accept": "*/*", "Accept-Encoding": "gzip, deflate",
                         **(headers or {})}
        self._pool = urllib3.PoolManager(  # pools keyed by checked IP, port and (https) server name
            num_pools=64, maxsize=max(4, settings.per_host_concurrency), block=False, retries=False,
            ca_certs=certifi.where(), headers=self._headers,
        )

    def with_headers(self, headers: dict[str, str]) -> Fetcher:
        """A fetcher with the same settings and per-host limiter that also sends ``headers`` (they win over this
        fetcher's own)."""
        return Fetcher(self.settings, self.limiter, {**self._headers, **headers})

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

        Each hop (the URL and every redirect) is parsed once, resolved once and checked (:func:`check_url_allowed`),
        and the connection goes to the checked IP address. ``total_timeout_s`` counts only time spent holding the
        host's slot: waiting behind other fetches of the same host does not use it up.

        Raises :class:`FetchError` with a reason code: forbidden_address, bad_url, dns_error, network_unreachable,
        too_many_redirects, http_<code>, connect_error, connect_timeout, timeout, timeout_total, too_large,
        content_type. :attr:`FetchError.retryable` tells whether a later attempt can succeed.
        """
        s = self.settings
        left_s = s.total_timeout_s
        retries = self.retry_policy()
        current = url
        for _hop in range(s.max_redirects + 1):
            target = check_url_allowed(current, s.allow_networks)
            if left_s <= 0:
                raise FetchError("timeout_total", f"over {s.total_timeout_s:g} s")
            # the slot is held through urllib3's retry waits: a host that asked us to wait gets no other request
            with self.limiter.slot(target.host_key):
                started = time.monotonic()
                deadline = started + left_s  # the clock runs from here: queueing for the slot is not counted
                retries.deadline = deadline
                response = self._get(target, deadline, retries)
                complete = False
                try:
                    retries = response.retries or retries
                    location = response.get_redirect_location()
                    if location:
                        current = urljoin(target.url, location)
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
                    return FetchResult(url, target.url, code, content_type, content, dict(response.headers))
                finally:
                    if not complete:  # never drain an unwanted body (it may be huge or dripping): drop the connection
                        response.close()
                    response.release_conn()
                    left_s -= time.monotonic() - started
        raise FetchError("too_many_redirects", f"more than {s.max_redirects}")

    def _get(self, target: Target, deadline: float, retries: Retry) -> urllib3.BaseHTTPResponse:
        """One GET (with urllib3's retries) to the target's checked address; the name goes in ``Host`` and, for
        https, in the TLS server name and certificate check."""
        s = self.settings
        timeout = _DeadlineTimeout(s.connect_timeout_s, s.read_timeout_s, deadline)
        tls = {"server_hostname": target.host, "assert_hostname": target.host} if (
            target.scheme == "https" and not target.is_ip) else None
        headers = {**self._headers, "Host": target.host_header}
        try:
            pool = self._pool.connection_from_host(target.address, target.port, target.scheme, pool_kwargs=tls)
            return pool.urlopen("GET", target.request_uri, headers=headers, preload_content=False, redirect=False,
                                retries=retries, timeout=timeout, assert_same_host=False, release_conn=False)
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
