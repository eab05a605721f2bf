"""The address guard against a hostile loopback web: disguised forms of a forbidden address, redirect chains, DNS
answers through a resolver hook, and local-file URLs. A canary listener on the forbidden address counts every
connection the crawler wrongly makes; a tripwire refuses (and records) any connect outside 127.0.0.0/8, so no
packet ever leaves loopback even if the guard fails."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sufra.utils.http import (
    Fetcher,
    FetchError,
    FetchSettings,
    check_url_allowed,
    embedded_ipv4,
    parse_target,
)

ALLOWED = ["127.0.0.1"]  # the guard of these tests: 127.0.0.1 may be contacted, 127.0.0.2 is forbidden
FORBIDDEN = "127.0.0.2"
JPEG = b"\xff\xd8\xff\xe0 fine"


class Hostile:
    """An allowed server on 127.0.0.1:P and a canary on 127.0.0.2:P (the same port, as in the attack that found the
    bug). The server answers ``/img.jpg``, ``/host`` (echoes the Host header) and ``redirects[path]`` with a 302."""

    def __init__(self):
        self.redirects: dict[str, str] = {}
        self.requests: Counter[str] = Counter()
        self.hosts: list[str] = []
        self.canary_hits: list[tuple[str, int]] = []
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                hostile.requests[self.path] += 1
                hostile.hosts.append(self.headers.get("Host", ""))
                if self.path in hostile.redirects:
                    self.send_response(302)
                    # raw UTF-8, as servers send it (http.client reads it back as latin-1)
                    self._headers_buffer.append(b"Location: " + hostile.redirects[self.path].encode() + b"\r\n")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = JPEG if self.path == "/img.jpg" else self.headers.get("Host", "").encode()
                self.send_response(200 if self.path in ("/img.jpg", "/host") else 404)
                self.send_header("Content-Type", "image/jpeg" if self.path == "/img.jpg" else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        for _ in range(20):  # find a port free on both addresses
            self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self.port = self.httpd.server_address[1]
            self.canary = socket.socket()
            try:
                self.canary.bind((FORBIDDEN, self.port))
                break
            except OSError:
                self.canary.close()
                self.httpd.server_close()
        else:
            raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")
        self.httpd.daemon_threads = True
        self.canary.listen(16)
        self.canary.settimeout(0.1)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self.httpd.serve_forever, daemon=True),
                         threading.Thread(target=self._count, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _count(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.canary.accept()
                self.canary_hits.append(peer)
                conn.close()
            except OSError:
                pass

    def close(self):
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for thread in self._threads:
            thread.join()
        self.canary.close()


@pytest.fixture
def hostile():
    server = Hostile()
    yield server
    server.close()


@pytest.fixture
def tripwire(monkeypatch):
    """Every connect urllib3 makes, recorded; one outside 127.0.0.0/8 is refused before a packet is sent."""
    import urllib3.util.connection

    real = urllib3.util.connection.create_connection
    connects: list[str] = []
    outside: list[str] = []

    def create_connection(address, *args, **kwargs):
        host = address[0].strip("[]")
        connects.append(host)
        try:
            loopback = ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
        except ValueError:
            loopback = False  # a name: urllib3 would resolve it again, which must never happen
        if not loopback:
            outside.append(host)
            raise OSError(101, "tripwire: connect outside 127.0.0.0/8 refused")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    return connects, outside


def fetcher(**overrides) -> Fetcher:
    values = dict(allow_networks=ALLOWED, backoff_s=0.01, max_retries=1, per_host_requests_per_s=0,
                  total_timeout_s=5, connect_timeout_s=1, read_timeout_s=2)
    values.update(overrides)
    return Fetcher(FetchSettings(**values))


# Disguised forms of 127.0.0.2 (P = the canary's port). Each must end as bad_url or forbidden_address.
FORMS = [
    ("plain", "http://127.0.0.2:P/img.jpg"),
    ("backslash before @ (the bug that was found)", "http://127.0.0.2:P\\@127.0.0.1:P/img.jpg"),
    ("backslash as path", "http://127.0.0.2:P\\img.jpg"),
    ("credentials naming the allowed host", "http://127.0.0.1:P@127.0.0.2:P/img.jpg"),
    ("user and password", "http://user:pw@127.0.0.2:P/img.jpg"),
    ("percent-encoded @ in userinfo", "http://127.0.0.1%40@127.0.0.2:P/img.jpg"),
    ("decimal", "http://2130706434:P/img.jpg"),
    ("octal", "http://0177.0.0.2:P/img.jpg"),
    ("octal, one number", "http://017700000002:P/img.jpg"),
    ("hex", "http://0x7f000002:P/img.jpg"),
    ("hex, dotted", "http://0x7f.0x0.0x0.0x2:P/img.jpg"),
    ("short, two parts", "http://127.2:P/img.jpg"),
    ("short, three parts", "http://127.0.2:P/img.jpg"),
    ("mixed bases", "http://0x7f.0.00.2:P/img.jpg"),
    ("trailing dot", "http://127.0.0.2.:P/img.jpg"),
    ("upper-case scheme", "HTTP://127.0.0.2:P/img.jpg"),
    ("percent-encoded host", "http://%31%32%37%2e%30%2e%30%2e%32:P/img.jpg"),
    ("fullwidth digits (IDNA)", "http://\uff11\uff12\uff17.\uff10.\uff10.\uff12:P/img.jpg"),
    ("ideographic full stops (IDNA)", "http://127\u30020\u30020\u30022:P/img.jpg"),
    ("tab in host", "http://127.0.0.2\t:P/img.jpg"),
    ("newline before @", "http://127.0.0.1:P\n@127.0.0.2:P/img.jpg"),
    ("IPv4-mapped", "http://[::ffff:127.0.0.2]:P/img.jpg"),
    ("IPv4-mapped, hex", "http://[::ffff:7f00:2]:P/img.jpg"),
    ("IPv4-mapped with zone id", "http://[::ffff:127.0.0.2%25lo]:P/img.jpg"),
    ("IPv4-compatible", "http://[::127.0.0.2]:P/img.jpg"),
    ("NAT64 well-known prefix", "http://[64:ff9b::127.0.0.2]:P/img.jpg"),
    ("NAT64 local-use prefix", "http://[64:ff9b:1::7f00:2]:P/img.jpg"),
    ("6to4", "http://[2002:7f00:2::1]:P/img.jpg"),
    ("Teredo (obfuscated client)", "http://[2001:0:4136:e378:8000:63bf:80ff:fffd]:P/img.jpg"),
    ("ISATAP", "http://[2001:db8::5efe:127.0.0.2]:P/img.jpg"),
]


@pytest.mark.parametrize("name, form", FORMS, ids=[name for name, _ in FORMS])
def test_disguised_forbidden_address_is_refused(name, form, hostile, tripwire):
    url = form.replace("P", str(hostile.port))
    with pytest.raises(FetchError) as info:
        fetcher().fetch(url)
    assert info.value.reason in ("bad_url", "forbidden_address"), (name, info.value)
    connects, outside = tripwire
    assert connects == [] and outside == []  # refused before any connect
    assert hostile.canary_hits == []


def test_the_table_is_big_enough():
    assert len(FORMS) >= 20
    ipv6 = [form for _, form in FORMS if "[" in form]
    assert len(ipv6) >= 8


REDIRECT_FORMS = [(name, form) for name, form in FORMS if form.isprintable()]  # a header holds no control chars


@pytest.mark.parametrize("name, form", REDIRECT_FORMS, ids=[name for name, _ in REDIRECT_FORMS])
def test_redirect_to_a_disguised_form_is_refused(name, form, hostile, tripwire):
    """An allowed host 302s to the form (two hops: allowed -> allowed -> form): the last hop is refused."""
    hostile.redirects["/a"] = "/b"
    hostile.redirects["/b"] = form.replace("P", str(hostile.port))
    with pytest.raises(FetchError) as info:
        fetcher().fetch(f"http://127.0.0.1:{hostile.port}/a")
    assert info.value.reason in ("bad_url", "forbidden_address"), (name, info.value)
    assert hostile.requests["/a"] == 1 and hostile.requests["/b"] == 1
    connects, outside = tripwire
    assert set(connects) <= {"127.0.0.1"} and outside == []
    assert hostile.canary_hits == []


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x.jpg", "gopher://127.0.0.1:70/_x",
                                      "//user@127.0.0.2:P/img.jpg", "/..\\..\\img.jpg"])
def test_redirect_to_another_scheme_or_form_is_bad_url(location, hostile, tripwire):
    hostile.redirects["/a"] = location.replace("P", str(hostile.port))
    with pytest.raises(FetchError, match="bad_url"):
        fetcher().fetch(f"http://127.0.0.1:{hostile.port}/a")
    assert hostile.requests["/a"] == 1 and hostile.canary_hits == [] and tripwire[1] == []


def test_the_allowed_address_in_disguise_is_fetched(hostile):
    """The same parser reads allowed forms as browsers do (so the table above fails for the right reason)."""
    for form in ("http://2130706433:P/img.jpg", "http://0x7f.1:P/img.jpg", "http://127.1:P/img.jpg",
                 "http://%31%32%37.0.0.1:P/img.jpg"):
        result = fetcher().fetch(form.replace("P", str(hostile.port)))
        assert result.content == JPEG and result.final_url == f"http://127.0.0.1:{hostile.port}/img.jpg"
    mapped = fetcher().fetch(f"http://[::ffff:127.0.0.1]:{hostile.port}/img.jpg")  # connects to 127.0.0.1 itself
    assert mapped.content == JPEG and mapped.final_url == f"http://[::ffff:7f00:1]:{hostile.port}/img.jpg"
    assert hostile.canary_hits == []


@pytest.mark.parametrize("answer", [[FORBIDDEN], ["127.0.0.1", FORBIDDEN], [FORBIDDEN, "127.0.0.1"],
                                    ["::ffff:127.0.0.2"], ["64:ff9b::7f00:2"], ["2002:7f00:2::"]])
def test_name_answered_with_a_forbidden_address(answer, hostile, resolver, tripwire):
    """Every address of the answer is checked: one forbidden address is enough to refuse the name."""
    answers, calls = resolver
    answers["images.example.test"] = [answer]
    with pytest.raises(FetchError) as info:
        fetcher().fetch(f"http://images.example.test:{hostile.port}/img.jpg")
    assert info.value.reason == "forbidden_address"
    assert calls["images.example.test"] == 1
    connects, outside = tripwire
    assert connects == [] and outside == [] and hostile.canary_hits == []


def test_redirect_to_a_name_answered_with_a_forbidden_address(hostile, resolver, tripwire):
    answers, _ = resolver
    answers["cdn.example.test"] = [[FORBIDDEN]]
    hostile.redirects["/a"] = f"http://cdn.example.test:{hostile.port}/img.jpg"
    with pytest.raises(FetchError, match="forbidden_address"):
        fetcher().fetch(f"http://127.0.0.1:{hostile.port}/a")
    assert hostile.requests["/a"] == 1 and hostile.canary_hits == [] and tripwire[1] == []


def test_dns_rebinding_cannot_move_the_connection(hostile, resolver, tripwire):
    """The name answers the allowed address for the guard and the forbidden one on every later lookup: the
    connection goes to the checked address, the Host header carries the name, the canary hears nothing."""
    answers, calls = resolver
    answers["rebind.example.test"] = [["127.0.0.1"], [FORBIDDEN]]
    fetch = fetcher(max_retries=0)
    result = fetch.fetch(f"http://rebind.example.test:{hostile.port}/host")
    assert result.content == f"rebind.example.test:{hostile.port}".encode()
    assert calls["rebind.example.test"] == 1
    assert tripwire[0] == ["127.0.0.1"] and hostile.canary_hits == []
    with pytest.raises(FetchError, match="forbidden_address"):  # the next fetch looks up again and is refused
        fetch.fetch(f"http://rebind.example.test:{hostile.port}/host")
    assert hostile.canary_hits == []


def test_https_sends_the_name_as_tls_server_name(hostile, resolver):
    """https connects to the checked IP and verifies the certificate against the name (SNI and hostname check)."""
    answers, _ = resolver
    answers["tls.example.test"] = [["127.0.0.1"]]
    fetch = fetcher(max_retries=0)
    with pytest.raises(FetchError, match="connect_error"):  # our server speaks plain HTTP
        fetch.fetch(f"https://tls.example.test:{hostile.port}/img.jpg")
    keys = list(fetch._pool.pools.keys())
    assert any(k.key_host == "127.0.0.1" and k.key_server_hostname == "tls.example.test"
               and k.key_assert_hostname == "tls.example.test" for k in keys), keys


@pytest.mark.parametrize(
    "address, inner",
    [("64:ff9b::7f00:2", ["127.0.0.2"]), ("2002:7f00:2::", ["127.0.0.2"]), ("::7f00:2", ["127.0.0.2"]),
     ("2001:0:4136:e378:8000:63bf:80ff:fffd", ["65.54.227.120", "127.0.0.2"]), ("2606:4700::1111", [])],
)
def test_embedded_ipv4_is_unwrapped(address, inner):
    assert [str(a) for a in embedded_ipv4(ipaddress.ip_address(address))] == inner


@pytest.mark.parametrize("url", ["http://[64:ff9b::808:808]/x", "http://[2002:808:808::1]/x", "http://8.8.8.8/x",
                                 "http://134744072/x"])
def test_public_addresses_in_any_form_pass_the_check(url):
    """Checked only: never contacted."""
    check_url_allowed(url, [])


@pytest.mark.parametrize("url", ["http://[64:ff9b::7f00:1]/x", "http://[2002:7f00:1::]/x"])
def test_allowed_ipv4_inside_a_translation_prefix_is_refused(url):
    """An allow entry names an address we contact; 64:ff9b::127.0.0.1 would send a packet to a NAT64 gateway."""
    with pytest.raises(FetchError, match="forbidden_address"):
        check_url_allowed(url, ALLOWED)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.jpg", "gopher://127.0.0.1:70/_x",
                                 "data:image/jpeg;base64,/9j/", "javascript:alert(1)", "//127.0.0.1/x.jpg",
                                 "http:/127.0.0.1/x", "http://127.0.0.1:0/x", "http://127.0.0.1:99999/x",
                                 "http://127.0.0.1.2/x", "http://999.0.0.1/x", "http:///x", "http://a b/x"])
def test_not_a_fetchable_url(url):
    with pytest.raises(FetchError) as info:
        parse_target(url)
    assert info.value.reason == "bad_url"


# -- local files: only from the folder source; other sources' file:/ftp:/gopher: URLs are bad_url rows ------------
def _collect(tmp_path, spec_engine, query, base_url, **overrides):
    from sufra.schemas import IMAGES
    from sufra.tasks.collect.query import CollectSettings, QuerySpec, collect_query

    from sufra.core.store import DataRoot

    fetch = FetchSettings(allow_networks=ALLOWED, total_timeout_s=3, read_timeout_s=2, max_retries=0,
                          per_host_requests_per_s=0, **overrides)
    settings = CollectSettings(engines=[spec_engine], base_urls={"bing": base_url} if base_url else {},
                               max_per_query=50, threads=4, fetch=fetch)
    root = DataRoot(tmp_path / "data")
    collect_query(QuerySpec(country="egypt", dish="koshari", query=query, engine=spec_engine), root, settings, "r")
    return {r.source_url: r for r in root.read_records(IMAGES, "egypt")}


def _food_png(path):
    from sufra.app.devserver import food_image

    food_image(1).save(path)


def _secret(tmp_path):
    secret = tmp_path / "private" / "secret.jpg"
    secret.parent.mkdir()
    _food_png(secret)  # a valid image: if read, it would be stored as ok
    return secret


def test_url_list_with_local_and_other_schemes_gives_bad_url_rows(tmp_path, hostile, tripwire):
    secret = _secret(tmp_path)
    fifo = tmp_path / "never-ends.jpg"
    os.mkfifo(fifo)
    urls = [secret.as_uri(), fifo.as_uri(), "file:///dev/zero", "ftp://127.0.0.1/x.jpg",
            "gopher://127.0.0.1:70/1x.jpg", f"http://127.0.0.2:{hostile.port}\\@127.0.0.1:{hostile.port}/img.jpg"]
    url_list = tmp_path / "urls.txt"
    url_list.write_text("\n".join(urls) + "\n")
    rows = _collect(tmp_path, "urllist", str(url_list), None)
    assert {url: row.status for url, row in rows.items()} == {url: "rejected:bad_url" for url in urls}
    assert hostile.canary_hits == [] and tripwire[1] == []


def test_result_page_with_local_and_other_scheme_links_gives_bad_url_rows(tmp_path, hostile, tripwire):
    import html
    import json

    secret = _secret(tmp_path)
    links = [secret.as_uri(), "ftp://127.0.0.1/x.jpg", "gopher://127.0.0.1:70/1x.jpg"]
    good = f"http://127.0.0.1:{hostile.port}/img.jpg"
    divs = "".join(f'<div class="imgpt"><a class="iusc" href="#" '
                   f'm="{html.escape(json.dumps({"murl": url, "purl": good}, separators=(",", ":")))}">x</a></div>'
                   for url in links)  # Bing's result-page shape, read by sufra's Bing parser
    page = f"<html><body><div id='mmComponent_images_1'>{divs}</div></body></html>".encode()

    class Page(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            first = "first=0" in self.path or "first=" not in self.path
            body = page if first else b"<html></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        rows = _collect(tmp_path, "bing", "koshari", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert {url: row.status for url, row in rows.items()} == {url: "rejected:bad_url" for url in links}
    assert hostile.canary_hits == []


def test_folder_source_reads_regular_files_below_the_folder_only(tmp_path, hostile):
    from sufra.tasks.collect.download import read_local
    from sufra.tasks.collect.engines import list_folder

    secret = _secret(tmp_path)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    _food_png(folder / "a.png")
    _food_png(folder / "sub" / "b.png")
    (folder / "escape.jpg").symlink_to(secret)
    (folder / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo.jpg")
    (folder / "big.jpg").write_bytes(b"\xff\xd8" + b"\0" * 5000)

    listed = {d.url for d in list_folder(folder)}
    assert listed == {(folder.resolve() / n).as_uri() for n in ("a.png", "sub/b.png", "big.jpg")}
    rows = _collect(tmp_path, "folder", str(folder), None)
    assert sorted(row.status for row in rows.values()) == ["ok", "rejected:exact_duplicate", "rejected:not_an_image"]

    # what list_folder filters, read_local refuses too (a folder changed between listing and download)
    cap = 4096
    for name, reason in [("escape.jpg", "bad_url"), ("zero.jpg", "bad_url"), ("fifo.jpg", "not_a_file"),
                         ("big.jpg", "too_large"), ("missing.jpg", "unreadable_file")]:
        with pytest.raises(FetchError) as info:
            read_local((folder / name).as_uri(), folder, cap)
        assert info.value.reason == reason, name
    with pytest.raises(FetchError, match="not_a_file"):
        read_local(folder.as_uri(), tmp_path, cap)  # a directory
    with pytest.raises(FetchError, match="bad_url"):
        read_local(f"http://127.0.0.1:{hostile.port}/img.jpg", folder, cap)
    assert read_local((folder / "a.png").as_uri(), folder, 10**6) == (folder / "a.png").read_bytes()
