"""Search engines against real response shapes (tests/tasks/collect/fixtures/engines, served from loopback so the real client
code runs), licences as data, and ``sufra engines check``.

The fixtures reproduce the structure of real answers: MediaWiki ``action=query&generator=search&prop=imageinfo``
with ``extmetadata`` (formatversion 2), Openverse ``/v1/images/``, Flickr ``flickr.photos.search`` with extras,
Bing's async result page (``a.iusc`` with an ``m`` JSON attribute), Baidu's ``acjson`` and its antiFlag answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sufra.tasks.collect.engines import (
    ENGINES,
    EngineAccessDeniedError,
    EngineError,
    EngineUnavailableError,
    check_engines,
    is_open_licence,
    make_engine,
    normalise_licence,
)

from sufra.core.errors import PermanentError, SufraError, is_retryable
from sufra.utils.http import Fetcher, FetchSettings
from tests.support.servers import FixtureServer

FIXTURES = Path(__file__).parent / "fixtures" / "engines"
QUERY = "koshari"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def answer(name: str, status: int = 200, headers: dict | None = None):
    content_type = "application/json" if name.endswith(".json") else "text/html; charset=utf-8"
    return lambda query: (status, fixture(name), content_type, headers or {})


@pytest.fixture
def server():
    with FixtureServer() as srv:
        yield srv


def fetcher(**overrides) -> Fetcher:
    values = dict(allow_networks=["127.0.0.1"], total_timeout_s=4, read_timeout_s=3, max_retries=0,
                  per_host_requests_per_s=0)
    values.update(overrides)
    return Fetcher(FetchSettings(**values))


def engine(name: str, srv: FixtureServer, **kwargs):
    if kwargs:
        return ENGINES[name](fetcher(), srv.base_url, **kwargs)
    return make_engine(name, fetcher(), {name: srv.base_url})


# -- licences ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "url", "expected"), [
    ("CC BY-SA 4.0", None, "cc-by-sa-4.0"),
    ("CC BY-SA 3.0", "https://creativecommons.org/licenses/by-sa/3.0", "cc-by-sa-3.0"),
    ("CC BY-SA 3.0 de", None, "cc-by-sa-3.0"),
    ("by-sa", "https://creativecommons.org/licenses/by-sa/3.0/de/", "cc-by-sa-3.0"),
    ("CC BY 4.0", None, "cc-by-4.0"),
    ("cc-by-2.5", None, "cc-by-2.5"),
    ("by 2.0", None, "cc-by-2.0"),
    (None, "https://creativecommons.org/licenses/by/2.0/", "cc-by-2.0"),
    (None, "http://creativecommons.org/licenses/by-nc-nd/4.0/", "cc-by-nc-nd-4.0"),
    ("CC BY-NC-SA 2.0", None, "cc-by-nc-sa-2.0"),
    ("Attribution-ShareAlike 2.0", None, "cc-by-sa-2.0"),
    ("CC0", None, "cc0-1.0"),
    ("cc0 1.0", "https://creativecommons.org/publicdomain/zero/1.0/", "cc0-1.0"),
    ("Public domain", None, "public-domain"),
    ("PD-old-70", None, "public-domain"),
    ("pdm", "https://creativecommons.org/publicdomain/mark/1.0/", "public-domain"),
    ("United States Government Work", None, "public-domain"),
    ("No known copyright restrictions", None, "no-known-copyright"),
    ("All Rights Reserved", None, "all-rights-reserved"),
    ("GFDL", None, "gfdl"),
    ("some words", None, "unknown"),
    ("", None, "unknown"),
    (None, None, "unknown"),
    (None, "https://example.com/licence", "unknown"),
])
def test_normalise_licence(text, url, expected):
    assert normalise_licence(text, url) == expected


@pytest.mark.parametrize(("licence", "is_open"), [
    ("cc-by-4.0", True), ("cc-by-sa-3.0", True), ("cc0-1.0", True), ("public-domain", True),
    ("no-known-copyright", True), ("cc-by-nc-2.0", False), ("cc-by-nd-2.0", False), ("cc-by-nc-sa-2.0", False),
    ("all-rights-reserved", False), ("unknown", False), (None, False), ("gfdl", False),
])
def test_open_licences(licence, is_open):
    assert is_open_licence(licence) is is_open


# -- registry ---------------------------------------------------------------------------------------------------
def test_registry_names_and_unknown_engine():
    assert {"bing", "baidu", "commons", "openverse", "flickr", "google"} <= set(ENGINES)
    with pytest.raises(SufraError) as info:
        make_engine("altavista", fetcher())
    assert str(info.value).startswith("unknown engine 'altavista'; use ") and "commons" in str(info.value)


def test_google_says_unsupported_in_one_line(server):
    server.routes["/search"] = answer("google_js_only.html")
    with pytest.raises(EngineUnavailableError) as info:
        make_engine("google", fetcher(), {"google": server.base_url})
    assert str(info.value).startswith("engine google: unsupported today: Google serves a JavaScript-only page")
    assert "\n" not in str(info.value) and not is_retryable(info.value)
    assert server.requests == []  # nothing asked


def test_a_new_engine_registers_itself(server):
    from sufra.tasks.collect.engines import Discovered, ParsedPage, WebEngine, register_engine

    @register_engine("tiny-test-engine")
    class Tiny(WebEngine):
        def page_url(self, query, page, page_size):
            return self.url("/tiny", {"q": query, "page": page})

        def parse(self, content, query):
            return ParsedPage([Discovered(u) for u in json.loads(content)], last_page=True)

    try:
        server.routes["/tiny"] = lambda q: (200, b'["http://a/1.png", "http://a/1.png", "http://a/2"]',
                                            "application/json", {})
        found = make_engine("tiny-test-engine", fetcher(), {"tiny-test-engine": server.base_url}).discover(QUERY, 10)
        assert [d.url for d in found] == ["http://a/1.png", "http://a/2"]
    finally:
        ENGINES.pop("tiny-test-engine")


# -- bing -------------------------------------------------------------------------------------------------------
def test_bing_keeps_every_image_type_query_string_and_page(server):
    server.routes["/images/async"] = lambda q: (
        200, fixture("bing_async.html") if q["first"] == "0" else b"", "text/html; charset=utf-8", {})
    found = engine("bing", server).discover(QUERY, 100)
    # icrawler's BingParser kept only the first (and cut its query string): the PNG, WebP, .jpeg and extension-less
    # images were lost, and the PNG whose title says ".jpg" became a garbage URL; single-quoted m= lost its page
    assert [(d.url, d.page_url) for d in found] == [
        ("https://www.egypt-food.example/images/koshari.jpg?w=800&h=600", "https://www.egypt-food.example/koshari-recipe"),
        ("https://cdn.example.org/kushari.png", "https://blog.example.org/kushari"),
        ("https://food.example.net/img/3.webp", "https://food.example.net/p/3"),
        ("https://food.example.net/img/4.jpeg", "https://food.example.net/p/4"),
        ("https://images.example.com/render?id=5&size=large", "https://images.example.com/view?id=5&lang=ar"),
    ]
    first, second = server.paths("/images/async")
    assert first["q"] == QUERY and first["first"] == "0" and second["first"] == "5"  # next page after what came


@pytest.mark.parametrize("body", [fixture("bing_no_results.html"), b"", b"  \n",
                                  b"<!DOCTYPE html><html><body><div id='mmComponent_images_1'></div></body></html>"])
def test_bing_no_results_page_is_an_empty_success(server, body):
    server.routes["/images/async"] = lambda q: (200, body, "text/html", {})
    assert engine("bing", server).discover("zzqxkoshariqq", 10) == []


@pytest.mark.parametrize("body", [fixture("bing_changed_layout.html"), fixture("google_js_only.html"),
                                  b"<html><body><img src='/captcha.png'></body></html>",
                                  b"<html><body><p>Unusual traffic from your network</p></body></html>"])
def test_bing_pages_without_results_that_show_something_else_are_errors(server, body):
    server.routes["/images/async"] = lambda q: (200, body, "text/html", {})
    with pytest.raises(EngineError, match="^engine bing: query 'koshari': the first result page"):
        engine("bing", server).discover(QUERY, 10)


def test_bing_page_that_parses_to_nothing_is_an_engine_error(server):
    server.routes["/images/async"] = answer("bing_changed_layout.html")
    with pytest.raises(EngineError) as info:
        engine("bing", server).discover(QUERY, 10)
    message = str(info.value)
    assert message.startswith("engine bing: query 'koshari': the first result page") and "no image" in message
    assert "\n" not in message and is_retryable(info.value) and info.value.reason == "unparsed_page"


def test_bing_parser_reads_both_quote_styles_and_entities():
    from sufra.tasks.collect.engines.bing import bing_results

    page = ("<a class=\"iusc\" m='{\"murl\":\"http://x/a b.png?x=1&amp;y=2\",\"purl\":\"http://x/p\"}'>"
            "<a class='iusc' m=\"{&quot;murl&quot;:&quot;http://x/&#233;.webp&quot;}\">"
            "<a class=iusc m=\"{&#34;murl&#34;:&#34;http://x/c&#34;}\">")
    assert [m["murl"] for m in bing_results(page)] == ["http://x/a b.png?x=1&y=2", "http://x/é.webp", "http://x/c"]


# -- commons ----------------------------------------------------------------------------------------------------
def test_commons_licence_artist_page_and_pages(server):
    server.routes["/w/api.php"] = lambda q: (200, fixture(
        "commons_search_page2.json" if q.get("gsroffset") == "3" else "commons_search_page1.json"),
        "application/json", {})
    found = engine("commons", server).discover(QUERY, 100)
    base = server.base_url
    assert [(d.url, d.page_url, d.license, d.license_url, d.creator, d.attribution) for d in found] == [
        (f"{base}/img/kushari.png", "https://commons.wikimedia.org/wiki/File:Kushari.png", "public-domain", None,
         "Unknown author", None),
        (f"{base}/img/koshary_cairo.jpg", "https://commons.wikimedia.org/wiki/File:Koshary_in_Cairo.jpg",
         "cc-by-sa-4.0", "https://creativecommons.org/licenses/by-sa/4.0", "Mohamed Ali", "Own work"),
        (f"{base}/img/koshary_plate.webp", "https://commons.wikimedia.org/wiki/File:Egyptian_koshary_plate.webp",
         "cc-by-2.0", "https://creativecommons.org/licenses/by/2.0", "Sara & Omar", "https://www.flickr.com/photos/x/1"),
    ]  # in search order (index), the PDF left out
    first, second = server.paths("/w/api.php")
    assert {k: first[k] for k in ("action", "generator", "gsrsearch", "gsrnamespace", "prop", "iiprop", "maxlag",
                                  "format")} == {
        "action": "query", "generator": "search", "gsrsearch": QUERY, "gsrnamespace": "6", "prop": "imageinfo",
        "iiprop": "url|size|mime|extmetadata", "maxlag": "5", "format": "json"}
    assert "gsroffset" not in first and second["gsroffset"] == "3" and second["continue"] == "gsroffset||"
    agents = {headers["User-Agent"] for path, _, headers in server.requests}
    assert len(agents) == 1 and "https://" in agents.pop()  # contactable


def test_commons_user_agent_gets_a_contact_when_it_has_none(server):
    server.routes["/w/api.php"] = answer("commons_no_results.json")
    ENGINES["commons"](fetcher(user_agent="foodbot/1.0"), server.base_url).discover(QUERY, 5)
    agent = server.requests[0][2]["User-Agent"]
    assert agent.startswith("foodbot/1.0 ") and "+https://" in agent


def test_commons_asks_one_request_at_a_time(server):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    active, most = [0], [0]
    lock = threading.Lock()

    def slow(q):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.15)
        with lock:
            active[0] -= 1
        return 200, fixture("commons_no_results.json"), "application/json", {}

    server.routes["/w/api.php"] = slow
    shared = fetcher(per_host_concurrency=8)
    with ThreadPoolExecutor(4) as pool:  # four queries of a dish at once
        list(pool.map(lambda q: make_engine("commons", shared, {"commons": server.base_url}).discover(q, 5),
                      ["a", "b", "c", "d"]))
    assert len(server.requests) == 4 and most[0] == 1


@pytest.mark.parametrize("name", ["commons_maxlag.json", "commons_ratelimited.json"])
def test_commons_maxlag_and_ratelimited_are_retryable(server, name):
    server.routes["/w/api.php"] = answer(name, headers={"Retry-After": "5"})
    with pytest.raises(EngineError) as info:
        engine("commons", server).discover(QUERY, 5)
    code = name.removeprefix("commons_").removesuffix(".json")
    assert str(info.value).startswith(f"engine commons: query 'koshari': API error {code}: ")
    assert is_retryable(info.value) and not isinstance(info.value, PermanentError)
    assert info.value.reason == f"api_{code}"


def test_commons_no_results_is_an_empty_success(server):
    server.routes["/w/api.php"] = answer("commons_no_results.json")
    assert engine("commons", server).discover(QUERY, 5) == []
    assert len(server.requests) == 1


# -- openverse --------------------------------------------------------------------------------------------------
def test_openverse_licence_creator_attribution_landing(server, monkeypatch):
    monkeypatch.delenv("SUFRA_OPENVERSE_TOKEN", raising=False)
    server.routes["/v1/images/"] = answer("openverse_images.json")
    found = engine("openverse", server).discover(QUERY, 50)
    base = server.base_url
    assert [(d.url, d.page_url, d.license, d.license_url, d.creator) for d in found] == [
        (f"{base}/img/openverse_koshari.jpg?w=1024", "https://www.flickr.com/photos/48889646@N07/5219873231",
         "cc-by-sa-2.0", "https://creativecommons.org/licenses/by-sa/2.0/", "Jenny Salt"),
        (f"{base}/img/openverse_street.png", "https://commons.wikimedia.org/w/index.php?curid=1234", "cc0-1.0",
         "https://creativecommons.org/publicdomain/zero/1.0/", "Ahmed"),
        (f"{base}/img/openverse_market", "https://www.europeana.eu/item/1/2", "public-domain",
         "https://creativecommons.org/publicdomain/mark/1.0/", None),
    ]
    assert found[0].attribution.startswith('"Koshari" by Jenny Salt is licensed under CC BY-SA 2.0.')
    (asked,) = server.paths("/v1/images/")
    assert asked == {"q": QUERY, "page_size": "20", "page": "1"}
    assert "Authorization" not in server.requests[0][2]


def test_openverse_anonymous_page_depth_is_respected(server, monkeypatch):
    monkeypatch.delenv("SUFRA_OPENVERSE_TOKEN", raising=False)

    def full_page(q):
        page = int(q["page"])
        results = [{"url": f"http://img.example/{page}-{i}.jpg", "license": "by", "license_version": "4.0"}
                   for i in range(int(q["page_size"]))]
        return 200, json.dumps({"result_count": 10000, "page_count": 500, "page": page, "results": results}).encode(), \
            "application/json", {}

    server.routes["/v1/images/"] = full_page
    found = engine("openverse", server).discover(QUERY, 1000)
    assert len(found) == 240 and [q["page"] for q in server.paths("/v1/images/")] == [str(p) for p in range(1, 13)]
    assert {d.license for d in found} == {"cc-by-4.0"}


def test_openverse_token_from_settings(server, monkeypatch):
    monkeypatch.setenv("SUFRA_OPENVERSE_TOKEN", "tok-123")
    server.routes["/v1/images/"] = answer("openverse_images.json")
    found = engine("openverse", server).discover(QUERY, 1000)
    assert len(found) == 3
    (path, query, headers) = server.requests[0]
    assert headers["Authorization"] == "Bearer tok-123" and query["page_size"] == "500"


def test_openverse_licence_type_filter(server):
    server.routes["/v1/images/"] = answer("openverse_images.json")
    engine("openverse", server, license_type="commercial,modification").discover(QUERY, 5)
    assert server.paths("/v1/images/")[0]["license_type"] == "commercial,modification"


def test_openverse_no_results_is_an_empty_success(server):
    server.routes["/v1/images/"] = answer("openverse_no_results.json")
    assert engine("openverse", server).discover(QUERY, 5) == []


# -- flickr -----------------------------------------------------------------------------------------------------
def test_flickr_extras_licences_and_photo_pages_in_one_request(server, monkeypatch):
    monkeypatch.setenv("FLICKR_API_KEY", "k3y")
    server.routes["/services/rest/"] = answer("flickr_search.json")
    found = engine("flickr", server).discover(QUERY, 50)
    base = server.base_url
    assert [(d.url, d.page_url, d.license, d.creator) for d in found] == [
        (f"{base}/img/flickr_5219873231_b.jpg", "https://www.flickr.com/photos/48889646@N07/5219873231",
         "cc-by-sa-2.0", "Jenny Salt"),
        ("https://live.staticflickr.com/65535/3101_aaaa_b.jpg", "https://www.flickr.com/photos/11111111@N00/3101",
         "cc0-1.0", "Omar K"),
        (f"{base}/img/flickr_3102_o.png", "https://www.flickr.com/photos/22222222@N00/3102", "cc-by-nc-sa-2.0",
         "22222222@N00"),
    ]
    assert found[0].license_url == "https://creativecommons.org/licenses/by-sa/2.0/"
    (asked,) = server.paths("/services/rest/")  # one request: no getSizes per photo
    assert asked["method"] == "flickr.photos.search" and asked["extras"] == "license,owner_name,url_l,url_o"
    assert asked["api_key"] == "k3y" and asked["text"] == QUERY and asked["nojsoncallback"] == "1"


def test_flickr_licence_ids_cover_getinfo():
    from sufra.tasks.collect.engines.flickr import FLICKR_LICENCES

    assert sorted(FLICKR_LICENCES, key=int) == [str(i) for i in range(11)]
    assert FLICKR_LICENCES["4"][0] == "cc-by-2.0" and FLICKR_LICENCES["10"][0] == "public-domain"
    for licence, url in FLICKR_LICENCES.values():  # the id map agrees with the URL normaliser
        if url and "creativecommons.org" in url:
            assert normalise_licence(None, url) == licence


def test_flickr_no_results_and_bad_key(server):
    server.routes["/services/rest/"] = answer("flickr_no_results.json")
    assert engine("flickr", server, api_key="k3y").discover(QUERY, 5) == []
    server.routes["/services/rest/"] = answer("flickr_invalid_key.json")
    with pytest.raises(EngineAccessDeniedError) as info:
        engine("flickr", server, api_key="s3cret-key").discover(QUERY, 5)
    assert str(info.value) == "engine flickr: query 'koshari': API error 100: Invalid API Key (Key has invalid format)"
    assert not is_retryable(info.value)


def test_flickr_hides_the_key_in_fetch_errors(server):
    server.routes["/services/rest/"] = lambda q: (404, b"no", "text/plain", {})
    with pytest.raises(EngineError) as info:
        engine("flickr", server, api_key="s3cret-key").discover(QUERY, 5)
    assert "s3cret-key" not in str(info.value) and "api_key=***" in str(info.value)


def test_flickr_without_key_is_one_line(monkeypatch):
    monkeypatch.delenv("FLICKR_API_KEY", raising=False)
    monkeypatch.delenv("SUFRA_FLICKR_API_KEY", raising=False)
    with pytest.raises(EngineUnavailableError, match="^engine 'flickr' needs an API key: set FLICKR_API_KEY"):
        make_engine("flickr", fetcher())


# -- baidu ------------------------------------------------------------------------------------------------------
def test_baidu_warms_up_a_browser_session_then_decodes_results(server):
    server.routes["/"] = lambda q: (200, b"<html>home</html>", "text/html", {"Set-Cookie": [
        "BAIDUID=ABC123:FG=1; expires=Thu, 31-Dec-37 23:55:55 GMT; max-age=2147483647; path=/; domain=.baidu.com",
        "BIDUPSID=XYZ; path=/"]})
    server.routes["/search/acjson"] = answer("baidu_acjson.json")
    found = engine("baidu", server).discover(QUERY, 50)
    assert [(d.url, d.page_url) for d in found] == [
        ("https://img.example-food.cn/koshari/1.jpg", "https://www.example-food.cn/recipe/1.html"),
        ("https://pic.example.com/food/kushari.png?x-oss-process=image/resize,w_800", "https://example.com/kushari"),
    ]
    paths = [p for p, _, _ in server.requests]
    assert paths == ["/", "/search/acjson"]  # the warm-up first; 2 of 30: the last page
    headers = server.requests[1][2]
    assert headers["Cookie"] == "BAIDUID=ABC123:FG=1; BIDUPSID=XYZ"
    assert headers["Accept-Language"].startswith("zh-CN") and headers["Referer"] == f"{server.base_url}/"
    assert server.requests[1][1]["word"] == QUERY and server.requests[1][1]["pn"] == "0"


def test_baidu_antiflag_is_a_clear_access_denied_line(server):
    server.routes["/search/acjson"] = answer("baidu_antiflag.json")  # and no home page: the warm-up 404 is fine
    with pytest.raises(EngineAccessDeniedError) as info:
        engine("baidu", server).discover(QUERY, 5)
    message = str(info.value)
    assert message.startswith("engine baidu: query 'koshari': Baidu refused the request as a crawler (Forbid spider "
                              "access, antiFlag)")
    assert "\n" not in message and not is_retryable(info.value) and info.value.reason == "anti_spider"
    assert len(server.paths("/search/acjson")) == 1  # asked once (it raised KeyError: 'data' three times)


def test_baidu_no_results_is_an_empty_success(server):
    server.routes["/search/acjson"] = answer("baidu_no_results.json")
    assert engine("baidu", server).discover(QUERY, 5) == []


def test_baidu_url_decoding_matches_the_obfuscation():
    from sufra.tasks.collect.engines.baidu import decode_baidu_url

    from sufra.app.devserver import baidu_encrypt

    for url in ("http://img.example.com/a/b_1.jpg", "https://x.cn/1234567890/z.png?q=1"):
        assert decode_baidu_url(baidu_encrypt(url)) == url
    assert decode_baidu_url("https://plain.example/x.jpg") == "https://plain.example/x.jpg"


# -- licences reach the images table ---------------------------------------------------------------------------
def test_download_keeps_licence_fields_in_the_images_row(tmp_path, server):
    from sufra.schemas import IMAGES
    from sufra.schemas.tables import Candidate
    from sufra.tasks.collect.download import download_one
    from sufra.tasks.collect.validate import ValidationSettings

    from sufra.app.devserver import food_image, jpeg_bytes
    from sufra.core.store import DataRoot, utcnow

    image = jpeg_bytes(food_image(3))
    server.routes["/img/koshary_cairo.jpg"] = lambda q: (200, image, "image/jpeg", {})
    server.routes["/w/api.php"] = answer("commons_search_page1.json")
    found = {d.url: d for d in engine("commons", server).discover(QUERY, 2)}
    item = found[f"{server.base_url}/img/koshary_cairo.jpg"]
    candidate = Candidate(url_hash="h1", country="egypt", dish="koshari", query=QUERY, engine="commons", url=item.url,
                          page_url=item.page_url, license=item.license, license_url=item.license_url,
                          creator=item.creator, attribution=item.attribution, discovered_at=utcnow())
    root = DataRoot(tmp_path / "data")
    row = download_one(candidate, root, fetcher(), ValidationSettings(min_side_px=16))
    assert row.status == "ok"
    root.write_table(IMAGES, "egypt", [row], "r")
    (back,) = root.read_table(IMAGES, "egypt").to_pylist()
    assert {k: back[k] for k in ("license", "license_url", "creator", "attribution", "page_url")} == {
        "license": "cc-by-sa-4.0", "license_url": "https://creativecommons.org/licenses/by-sa/4.0",
        "creator": "Mohamed Ali", "attribution": "Own work",
        "page_url": "https://commons.wikimedia.org/wiki/File:Koshary_in_Cairo.jpg"}


def test_collect_query_with_commons_stores_licence_and_page(tmp_path, server):
    from sufra.schemas import IMAGES
    from sufra.tasks.collect.query import CollectSettings, QuerySpec, collect_query

    from sufra.app.devserver import food_image, jpeg_bytes
    from sufra.core.store import DataRoot

    images = {name: jpeg_bytes(food_image(i)) for i, name in enumerate(["koshary_cairo.jpg", "kushari.png"])}
    for name, data in images.items():
        server.routes[f"/img/{name}"] = lambda q, data=data: (200, data, "image/jpeg", {})
    server.routes["/w/api.php"] = answer("commons_search_page1.json")
    settings = CollectSettings(engines=["commons"], base_urls={"commons": server.base_url}, max_per_query=2,
                               threads=2, fetch=FetchSettings(allow_networks=["127.0.0.1"], total_timeout_s=4,
                                                              per_host_requests_per_s=0))
    spec = QuerySpec(country="egypt", dish="koshari", query=QUERY, engine="commons")
    root = DataRoot(tmp_path / "data")
    counts = collect_query(spec, root, settings, run_id="r")
    assert counts["ok"] == 2
    rows = {r["source_url"].rsplit("/", 1)[-1]: r for r in root.read_table(IMAGES, "egypt").to_pylist()}
    assert rows["koshary_cairo.jpg"]["license"] == "cc-by-sa-4.0"
    assert rows["kushari.png"]["license"] == "public-domain"
    assert rows["kushari.png"]["page_url"] == "https://commons.wikimedia.org/wiki/File:Kushari.png"


def test_old_images_parts_without_licence_columns_stay_readable(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sufra.schemas import IMAGES

    from sufra.core.store import DataRoot

    root = DataRoot(tmp_path / "data")
    new = ("license_url", "creator", "attribution")
    old_schema = pa.schema([f for f in IMAGES.schema if f.name not in new],
                           metadata={b"sufra.schema_version": b"1.0", b"sufra.table": b"images"})
    import datetime as dt

    row = {f.name: None for f in old_schema}
    row.update(image_id="url:h", country="egypt", dish="koshari", query=QUERY, engine="bing", status="rejected:x",
               fetched_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), license="CC-BY")
    part = Path(root.table_dir(IMAGES, "egypt")) / "old-1.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), part)
    (back,) = root.read_table(IMAGES, "egypt").to_pylist()
    assert back["license"] == "CC-BY" and all(back[name] is None for name in new)


# -- sufra engines check ---------------------------------------------------------------------------------------
def _health_server(server: FixtureServer) -> dict[str, str]:
    server.routes["/images/async"] = lambda q: (
        200, fixture("bing_async.html") if q["first"] == "0" else b"", "text/html", {})
    server.routes["/w/api.php"] = answer("commons_search_page1.json")
    server.routes["/v1/images/"] = answer("openverse_no_results.json")
    server.routes["/search/acjson"] = answer("baidu_antiflag.json")
    return {name: server.base_url for name in ("bing", "commons", "openverse", "baidu", "google")}


def test_check_engines_reports_one_row_per_engine(server, monkeypatch):
    monkeypatch.delenv("SUFRA_OPENVERSE_TOKEN", raising=False)
    rows = check_engines(["bing", "commons", "openverse", "baidu", "google"], fetcher(), _health_server(server))
    summary = [(r.engine, r.status, r.n_found, r.n_licensed) for r in rows]
    assert summary == [("bing", "ok", 5, 0), ("commons", "ok", 2, 2), ("openverse", "empty", 0, 0),
                       ("baidu", "down", 0, 0), ("google", "down", 0, 0)]
    assert rows[3].detail.startswith("engine baidu: query 'pizza': Baidu refused the request as a crawler")
    assert "unsupported today" in rows[4].detail and all(r.elapsed_s >= 0 for r in rows)


def test_cli_engines_check_prints_the_table(server, monkeypatch, capsys):
    from sufra.app.cli import main

    monkeypatch.delenv("SUFRA_OPENVERSE_TOKEN", raising=False)
    base = _health_server(server)
    args = ["engines", "check", "-e", "bing", "-e", "commons", "-e", "baidu", "--allow-network", "127.0.0.1"]
    for name in ("bing", "commons", "baidu"):
        args += ["--base-url", f"{name}={base[name]}"]
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert info.value.code == 1  # an engine is down
    assert captured.err == "sufra: error: engines check: 1 of 3 engines cannot be used now: baidu (see the table above)\n"
    assert out[0].split() == ["engine", "status", "found", "licensed", "seconds", "detail"]
    assert [line.split()[:4] for line in out[1:]] == [["bing", "ok", "5", "0"], ["commons", "ok", "2", "2"],
                                                        ["baidu", "down", "0", "0"]]


def test_cli_engines_check_all_healthy_exits_0(server, capsys):
    from sufra.app.cli import main

    base = _health_server(server)
    main(["engines", "check", "-e", "commons", "--allow-network", "127.0.0.1", "--base-url", f"commons={base['commons']}",
          "--query", "koshari"])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].split()[:4] == ["commons", "ok", "2", "2"]
    assert server.paths("/w/api.php")[0]["gsrsearch"] == "koshari"


def test_cli_engines_check_bad_option_is_one_line(capsys):
    from sufra.app.cli import main

    with pytest.raises(SystemExit) as info:
        main(["engines", "check", "--base-url", "nonsense"])
    assert info.value.code == 2
    assert capsys.readouterr().err == "sufra: error: --base-url must look like NAME=VALUE, got 'nonsense'\n"


def test_url_list_licence_column_is_normalised(tmp_path):
    from sufra.tasks.collect.engines import read_url_list

    path = tmp_path / "urls.txt"
    path.write_text("# url, page, licence, creator\n"
                    "http://a/1.jpg\thttp://a/p1\tCC BY-SA 4.0\tAmal\n"
                    "http://a/2.jpg\t\thttps://creativecommons.org/publicdomain/zero/1.0/\n"
                    "http://a/3.jpg\n")
    assert [(d.url, d.page_url, d.license, d.license_url, d.creator) for d in read_url_list(path)] == [
        ("http://a/1.jpg", "http://a/p1", "cc-by-sa-4.0", None, "Amal"),
        ("http://a/2.jpg", None, "cc0-1.0", "https://creativecommons.org/publicdomain/zero/1.0/", None),
        ("http://a/3.jpg", None, None, None, None),
    ]


# -- broken answers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, path", [("commons", "/w/api.php"), ("openverse", "/v1/images/"),
                                        ("flickr", "/services/rest/"), ("baidu", "/search/acjson")])
@pytest.mark.parametrize("body", [b"not json {", b'{"unexpected": true', b"\xff\xfe\x00"])
def test_a_broken_answer_is_one_engine_error_naming_engine_and_query(server, monkeypatch, name, path, body):
    monkeypatch.setenv("FLICKR_API_KEY", "k3y")
    server.routes["/"] = lambda q: (200, b"<html>home</html>", "text/html", {})
    server.routes[path] = lambda q: (200, body, "application/json", {})
    with pytest.raises(EngineError) as info:
        engine(name, server).discover(QUERY, 5)
    message = str(info.value)
    assert message.startswith(f"engine {name}: query 'koshari'") and "\n" not in message
    assert is_retryable(info.value)  # a garbled page may be a one-off: retried, never a crash of the flow
