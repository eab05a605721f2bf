import time

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
