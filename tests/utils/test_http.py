import errno
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sufra.utils.http import (
    Fetcher,
    FetchError,
    FetchSettings,
    HostLimiter,
    check_url_allowed,
    retry_after_seconds,
)


@pytest.mark.parametrize(
    "url, allow, ok",
    [
        ("http://127.0.0.1:8080/x.jpg", ["127.0.0.1"], True),
        ("http://127.0.0.2:8080/x.jpg", ["127.0.0.1"], False),
        ("http://127.0.0.1/x.jpg", [], False),
        ("http://10.1.2.3/x.jpg", [], False),
        ("http://192.168.0.10/x.jpg", [], False),
        ("http://172.16.5.4/x.jpg", [], False),
        ("http://169.254.169.254/latest/meta-data/", [], False),  # cloud metadata (link-local)
        ("http://100.64.0.1/x", [], False),  # shared address space
        ("http://0.0.0.0/x", [], False),
        ("http://[::1]/x", [], False),
        ("http://[::ffff:127.0.0.1]/x", [], False),  # IPv4-mapped loopback
        ("http://[fe80::1]/x", [], False),
        ("http://224.0.0.1/x", [], False),
        ("http://8.8.8.8/x.jpg", [], True),  # checked, never contacted
        ("http://127.0.0.5/x", ["127.0.0.0/8"], True),
        ("ftp://8.8.8.8/x", [], False),
        ("file:///etc/passwd", [], False),
    ],
)
def test_address_guard(url, allow, ok):
    if ok:
        check_url_allowed(url, allow)
    else:
        with pytest.raises(FetchError) as info:
            check_url_allowed(url, allow)
        assert info.value.reason in ("forbidden_address", "bad_url")


def test_localhost_name_is_resolved_and_forbidden():
    with pytest.raises(FetchError, match="forbidden_address"):
        check_url_allowed("http://localhost:9/x", [])


@pytest.mark.parametrize("value, expected", [("3", 3.0), (None, None), ("soon", None), ("0", 0.0)])
def test_retry_after(value, expected):
    assert retry_after_seconds(value) == expected


def test_retry_after_http_date():
    import email.utils

    future = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3 <= retry_after_seconds(future) <= 5.5


def test_host_limiter_spaces_requests():
    limiter = HostLimiter(concurrency=2, requests_per_s=20)
    start = time.monotonic()
    for _ in range(5):
        with limiter.slot("h"):
            pass
    assert time.monotonic() - start >= 4 / 20 * 0.9


def test_fetch_pages_and_errors(engine_server):
    fetcher = Fetcher(FetchSettings(allow_networks=["127.0.0.1"], backoff_s=0.05, max_retries=1,
                                    per_host_requests_per_s=0))
    page = fetcher.fetch(f"{engine_server.base_url}/page/x", accept=("text/html",))
    assert page.status_code == 200 and b"recipe" in page.content
    with pytest.raises(FetchError, match="http_404"):
        fetcher.fetch(engine_server.image_url("notfound"))
    with pytest.raises(FetchError, match="http_500"):
        fetcher.fetch(engine_server.image_url("error500"))
    assert engine_server.requests["/img/error500.jpg"] == 2  # one retry with backoff, then given up
    with pytest.raises(FetchError, match="content_type"):
        fetcher.fetch(f"{engine_server.base_url}/page/x", accept=("image/",))


# -- retries (urllib3 Retry) and failures no retry can fix, against a scripted loopback server ------------------
class ScriptedServer:
    """Loopback server answering each path from a script, in order (the last answer repeats): ``(status, headers)``
    or ``"reset"`` (the connection is dropped with a TCP RST before any answer) or ``"hang"`` (3 s of silence). Counts requests and their times."""

    def __init__(self):
        self.scripts: dict[str, list] = {}
        self.requests: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                with lock:
                    n = server.requests[self.path]
                    server.requests[self.path] += 1
                    server.times.setdefault(self.path, []).append(time.monotonic())
                script = server.scripts.get(self.path, [(404, {})])
                answer = script[min(n, len(script) - 1)]
                if answer == "hang":  # no answer for a long while
                    time.sleep(3)
                    return
                if answer == "reset":
                    self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.request.close()
                    self.close_connection = True
                    return
                status, headers = answer
                body = b"\xff\xd8 fine" if status == 200 else b"no"
                self.send_response(status)
                for key, value in {"Content-Type": "image/jpeg", "Content-Length": str(len(body)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def gaps_s(self, path: str) -> list[float]:
        t = self.times[path]
        return [b - a for a, b in zip(t, t[1:], strict=False)]


@pytest.fixture
def scripted():
    server = ScriptedServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def quick_fetcher(**overrides) -> Fetcher:
    values = dict(allow_networks=["127.0.0.1"], backoff_s=0.01, max_retries=2, per_host_requests_per_s=0,
                  total_timeout_s=10)
    values.update(overrides)
    return Fetcher(FetchSettings(**values))


@pytest.mark.parametrize("status", [401, 403])
def test_access_denied_is_asked_once_and_not_retryable(scripted, status):
    scripted.scripts["/x"] = [(status, {})]
    with pytest.raises(FetchError) as info:
        quick_fetcher().fetch(scripted.url("/x"))
    assert info.value.reason == f"http_{status}" and info.value.retryable is False
    assert scripted.requests["/x"] == 1


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured_then_succeeds(scripted, status):
    scripted.scripts["/x"] = [(status, {"Retry-After": "1"}), (200, {})]
    result = quick_fetcher().fetch(scripted.url("/x"))
    assert result.status_code == 200 and result.content == b"\xff\xd8 fine"
    assert scripted.requests["/x"] == 2
    assert scripted.gaps_s("/x")[0] >= 0.95  # waited the server's second, not the 0.01 s backoff


def test_retry_after_is_capped(scripted):
    scripted.scripts["/x"] = [(503, {"Retry-After": "120"}), (200, {})]
    start = time.monotonic()
    assert quick_fetcher(max_retry_after_s=0.3).fetch(scripted.url("/x")).status_code == 200
    assert 0.25 <= time.monotonic() - start < 5


def test_no_retry_that_would_start_after_the_deadline(scripted):
    scripted.scripts["/x"] = [(503, {"Retry-After": "20"}), (200, {})]
    start = time.monotonic()
    with pytest.raises(FetchError) as info:
        quick_fetcher(total_timeout_s=2, max_retry_after_s=30).fetch(scripted.url("/x"))
    assert info.value.reason == "http_503" and info.value.retryable
    assert scripted.requests["/x"] == 1 and time.monotonic() - start < 1.5


def test_5xx_retried_with_backoff_then_given_up(scripted):
    scripted.scripts["/x"] = [(502, {})]
    with pytest.raises(FetchError) as info:
        quick_fetcher(backoff_s=0.2, max_retries=2).fetch(scripted.url("/x"))
    assert info.value.reason == "http_502" and info.value.retryable and "3 attempts" in info.value.detail
    assert scripted.requests["/x"] == 3
    gaps = scripted.gaps_s("/x")
    assert gaps[0] >= 0.19 and gaps[1] >= 0.39  # backoff_s, then doubled (urllib3 alone retries the first at once)


def test_read_timeout_is_retried_within_the_total_deadline(scripted):
    scripted.scripts["/x"] = ["hang", (200, {})]
    assert quick_fetcher(read_timeout_s=0.5).fetch(scripted.url("/x")).status_code == 200
    assert scripted.requests["/x"] == 2
    scripted.scripts["/y"] = ["hang"]
    start = time.monotonic()
    with pytest.raises(FetchError) as info:
        quick_fetcher(read_timeout_s=1, total_timeout_s=1.5, max_retries=5).fetch(scripted.url("/y"))
    assert info.value.reason == "timeout" and info.value.retryable
    assert time.monotonic() - start < 2.2  # the retry got only the 0.5 s left, not another full read timeout
    assert scripted.requests["/y"] == 2


def test_reset_connection_is_retried(scripted):
    scripted.scripts["/x"] = ["reset", (200, {})]
    assert quick_fetcher().fetch(scripted.url("/x")).status_code == 200
    assert scripted.requests["/x"] == 2


def test_redirect_hops_share_the_retry_budget_and_are_each_checked(scripted, canary):
    canary_port, canary_hits = canary
    scripted.scripts["/a"] = [(503, {}), (302, {"Location": "/b"})]
    scripted.scripts["/b"] = [(503, {}), (302, {"Location": f"http://127.0.0.2:{canary_port}/c"})]
    with pytest.raises(FetchError, match="forbidden_address"):
        quick_fetcher(max_retries=3).fetch(scripted.url("/a"))
    assert scripted.requests["/a"] == 2 and scripted.requests["/b"] == 2
    assert canary_hits == []
    scripted.scripts["/d"] = [(503, {}), (302, {"Location": "/e"})]
    scripted.scripts["/e"] = [(503, {})]
    with pytest.raises(FetchError, match="http_503"):
        quick_fetcher(max_retries=2).fetch(scripted.url("/d"))
    assert scripted.requests["/d"] == 2 and scripted.requests["/e"] == 2  # 2 retries for the whole chain


def test_name_that_does_not_resolve_fails_at_once(resolver):
    answers, calls = resolver
    answers["engine.invalid"] = [None]
    with pytest.raises(FetchError) as info:
        quick_fetcher().fetch("http://engine.invalid/x")
    assert info.value.reason == "dns_error" and info.value.retryable is False
    assert str(info.value) == "dns_error: engine.invalid: Name or service not known"
    assert calls["engine.invalid"] == 1


def test_name_is_resolved_once_and_the_checked_address_is_contacted(resolver, scripted):
    """Was: the name resolved for the guard and again by urllib3's connect (a second answer, lost or rebound, was
    used). Now the connection goes to the address the guard checked: a later answer never matters."""
    answers, calls = resolver
    answers["flaky.invalid"] = ["127.0.0.1", None]  # the guard sees loopback; a second lookup would find nothing
    scripted.scripts["/x"] = [(200, {})]
    result = quick_fetcher(max_retries=3).fetch(f"http://flaky.invalid:{scripted.port}/x")
    assert result.status_code == 200 and result.final_url == f"http://flaky.invalid:{scripted.port}/x"
    assert calls["flaky.invalid"] == 1  # one lookup, for the guard; the connect used its answer
    assert scripted.requests["/x"] == 1


def test_no_network_fails_at_once(monkeypatch):
    import urllib3.util.connection

    attempts = []

    def unreachable(address, *args, **kwargs):
        attempts.append(address)
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", unreachable)
    with pytest.raises(FetchError) as info:
        quick_fetcher(max_retries=3).fetch("http://127.0.0.1:9/x")
    assert info.value.reason == "network_unreachable" and info.value.retryable is False
    assert str(info.value) == "network_unreachable: 127.0.0.1: Network is unreachable"
    assert len(attempts) == 1


def test_refused_connection_is_retried_then_given_up():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError) as info:
        quick_fetcher(max_retries=2).fetch(f"http://127.0.0.1:{port}/x")
    assert info.value.reason == "connect_error" and info.value.retryable and "3 attempts" in info.value.detail


@pytest.mark.parametrize(
    "reason, retryable",
    [("timeout", True), ("timeout_total", True), ("connect_timeout", True), ("connect_error", True),
     ("http_429", True), ("http_500", True), ("http_503", True), ("http_504", True), ("http_501", False),
     ("http_401", False), ("http_403", False), ("http_404", False), ("dns_error", False),
     ("network_unreachable", False), ("forbidden_address", False), ("bad_url", False), ("too_large", False),
     ("too_many_redirects", False), ("content_type", False)],
)
def test_fetch_error_retryable(reason, retryable):
    import pickle

    from sufra.core.errors import is_retryable

    error = FetchError(reason, "detail")
    assert error.retryable is retryable and is_retryable(error) is retryable
    again = pickle.loads(pickle.dumps(error))
    assert (again.reason, again.detail, str(again)) == (reason, "detail", f"{reason}: detail")


def test_total_deadline_starts_when_the_host_slot_is_acquired(scripted):
    """Was: the 1 s total deadline started before the wait for the host's only slot (held 2 s by a hanging URL), so
    the good image behind it failed ``timeout_total`` without being asked for. The queue does not count now."""
    limiter = HostLimiter(concurrency=1, requests_per_s=0)
    scripted.scripts["/slow"] = ["hang"]
    scripted.scripts["/good"] = [(200, {})]
    slow = Fetcher(FetchSettings(allow_networks=["127.0.0.1"], read_timeout_s=2, total_timeout_s=5, max_retries=0,
                                 per_host_requests_per_s=0), limiter)
    good = Fetcher(FetchSettings(allow_networks=["127.0.0.1"], total_timeout_s=1, max_retries=0,
                                 per_host_requests_per_s=0), limiter)
    errors = []

    def hang():
        with pytest.raises(FetchError) as info:
            slow.fetch(scripted.url("/slow"))
        errors.append(info.value.reason)

    thread = threading.Thread(target=hang)
    thread.start()
    while not scripted.requests["/slow"]:  # the slow fetch holds the slot
        time.sleep(0.01)
    start = time.monotonic()
    result = good.fetch(scripted.url("/good"))
    waited_s = time.monotonic() - start
    thread.join()
    assert result.status_code == 200 and result.content == b"\xff\xd8 fine"
    assert waited_s >= 1.5  # it queued behind the slow fetch for longer than its own total deadline
    assert errors == ["timeout"]


def test_total_deadline_still_bounds_the_transfer(scripted):
    """Time spent holding the slot counts, across redirect hops: a chain of slow answers ends ``timeout_total``."""
    scripted.scripts["/x"] = ["hang"]
    start = time.monotonic()
    with pytest.raises(FetchError) as info:
        quick_fetcher(read_timeout_s=5, total_timeout_s=0.8, max_retries=3).fetch(scripted.url("/x"))
    assert info.value.reason in ("timeout", "timeout_total") and time.monotonic() - start < 1.5
