"""The collect stage against a local server shaped like Bing and Baidu (sufra's own engine parsers run)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow.compute as pc
import pytest
from sufra.schemas import CANDIDATES, IMAGES
from sufra.tasks.collect.query import CollectSettings, QuerySpec, collect_query

from sufra.core.store import DataRoot
from sufra.utils.http import FetchSettings

QUERY = "koshari egyptian food"

EXPECTED = {
    # payload -> status of its images row
    "truncated": "rejected:corrupt",
    "zero": "rejected:empty",
    "html": "rejected:not_an_image",
    "svg": "rejected:unsupported_format",
    "bomb": "rejected:decompression_bomb",
    "huge": "rejected:too_large",
    "loop": "rejected:too_many_redirects",
    "forbidden": "rejected:forbidden_address",
    "notfound": "rejected:http_404",
    "error500": "rejected:http_500",
    "ratelimited": "ok",
    "drip": "rejected:timeout_total",
    "tiny": "rejected:too_small",
    "wide": "rejected:extreme_aspect",
    "cmyk": "ok",
    "png16": "ok",
    "palette": "ok",
    "webp": "ok",
    "exif": "ok",
    "animated": "rejected:animated",
}


def settings_for(server, **overrides) -> CollectSettings:
    fetch = FetchSettings(allow_networks=["127.0.0.1"], total_timeout_s=4, read_timeout_s=3, max_bytes=5 * 2**20,
                          max_retries=2, backoff_s=0.05, max_retry_after_s=2, per_host_concurrency=16,
                          per_host_requests_per_s=0)
    values = dict(engines=["bing"], base_urls={"bing": server.base_url, "baidu": server.base_url},
                  max_per_query=100, threads=16, fetch=fetch)
    values.update(overrides)
    return CollectSettings(**values)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["bing", "baidu"])
def test_every_payload_ends_as_image_or_reason(engine, engine_server, canary, tmp_path):
    canary_port, canary_hits = canary
    engine_server.forbidden_port = canary_port
    engine_server.forbidden_host = "127.0.0.2"
    engine_server.add_bad_and_odd(QUERY)
    engine_server.add_food_images(QUERY, 5)
    root = DataRoot(tmp_path / "data")
    spec = QuerySpec(country="egypt", dish="koshari", query=QUERY, engine=engine)
    start = time.monotonic()
    counts = collect_query(spec, root, settings_for(engine_server), run_id="r1")
    elapsed = time.monotonic() - start
    images = {r.source_url.rsplit("/", 1)[-1].removesuffix(".jpg"): r for r in root.read_records(IMAGES, "egypt")}
    for kind, status in EXPECTED.items():
        assert images[kind].status == status, (kind, images[kind].error_message)
        if status != "ok":
            assert images[kind].error_message or status in ("rejected:empty",)
    assert sum(r.status == "ok" for r in images.values()) == 5 + 6  # 5 food + ratelimited + 5 odd-but-valid
    assert counts["discovered"] == len(EXPECTED) + 5
    exif = images["exif"]
    assert (exif.width, exif.height) == (240, 320)  # EXIF orientation applied
    for r in images.values():
        if r.status == "ok":
            assert root.has_image(r.image_id, r.format)
            assert r.engine == engine and r.query == QUERY and r.dish == "koshari"
    if engine == "bing":  # Bing pages carry the page URL (provenance)
        assert images["cmyk"].page_url.endswith("/page/cmyk")
    assert engine_server.requests["/img/ratelimited.jpg"] == 2  # honoured Retry-After, then succeeded
    assert canary_hits == []  # the forbidden address was never contacted
    assert elapsed < 30  # the drip server was cut by the total deadline
    assert root.temp_files() == []


def test_forbidden_redirect_never_connects(engine_server, canary, tmp_path):
    canary_port, canary_hits = canary
    from sufra.utils.http import Fetcher, FetchError

    fetcher = Fetcher(FetchSettings(allow_networks=["127.0.0.1"]))
    with pytest.raises(FetchError, match="forbidden_address"):
        fetcher.fetch(f"http://127.0.0.2:{canary_port}/img/x.jpg")
    assert canary_hits == []


def test_rerun_skips_known_urls(engine_server, tmp_path):
    engine_server.add_food_images(QUERY, 12)
    root = DataRoot(tmp_path / "data")
    spec = QuerySpec(country="egypt", dish="koshari", query=QUERY, engine="bing")
    first = collect_query(spec, root, settings_for(engine_server), run_id="r1")
    served = sum(v for k, v in engine_server.requests.items() if k.startswith("/img/"))
    second = collect_query(spec, root, settings_for(engine_server), run_id="r2")
    assert first["ok"] == 12 and first["new_candidates"] == 12
    assert second.get("ok", 0) == 0 and second["skipped_already_fetched"] == 12 and second["new_candidates"] == 0
    assert sum(v for k, v in engine_server.requests.items() if k.startswith("/img/")) == served
    assert root.read_table(CANDIDATES, "egypt").num_rows == 12


def test_same_bytes_under_two_dishes_is_recorded_as_exact_duplicate(engine_server, tmp_path):
    names = engine_server.add_food_images("q1", 3)
    for name in names:  # the same bytes at other URLs, listed under another dish's query
        engine_server.images[f"{name}-mirror"] = engine_server.images[name]
    engine_server.results["q2"] = [f"{name}-mirror" for name in names]
    root = DataRoot(tmp_path / "data")
    settings = settings_for(engine_server)
    collect_query(QuerySpec(country="egypt", dish="koshari", query="q1", engine="bing"), root, settings, "r1")
    counts = collect_query(QuerySpec(country="egypt", dish="mahshi", query="q2", engine="bing"), root, settings, "r2")
    assert counts["rejected:exact_duplicate"] == 3
    table = root.read_table(IMAGES, "egypt")
    dups = table.filter(pc.equal(table["status"], "rejected:exact_duplicate")).to_pylist()
    ok_ids = set(table.filter(pc.equal(table["status"], "ok"))["image_id"].to_pylist())
    assert {d["duplicate_of"] for d in dups} == ok_ids and {d["dish"] for d in dups} == {"mahshi"}


def test_url_list_and_folder_sources(tmp_path, engine_server):
    from sufra.app.devserver import food_image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        food_image(i).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    names = engine_server.add_food_images("list", 2)
    url_list = tmp_path / "urls.txt"
    url_list.write_text("# comment\n" + "\n".join(engine_server.image_url(n) for n in names) + "\n")
    root = DataRoot(tmp_path / "data")
    settings = settings_for(engine_server, engines=["folder", "urllist"])
    a = collect_query(QuerySpec(country="egypt", dish="koshari", query=str(folder), engine="folder"), root, settings, "r")
    b = collect_query(QuerySpec(country="egypt", dish="koshari", query=str(url_list), engine="urllist"), root, settings, "r")
    assert a["ok"] == 3 and b["ok"] == 2


@pytest.mark.slow
def test_large_batch_in_worker_processes_matches_threads(tmp_path, engine_server):
    """1,000 URLs (the size where collect shards over worker processes): every URL ends as one row, the same rows
    as the single-process path, and the pool is reused by the next query."""
    names = engine_server.add_food_images("many", 1000, size=(96, 80))
    url_list = tmp_path / "urls.txt"
    url_list.write_text("\n".join(engine_server.image_url(n) for n in names) + "\n")
    spec = QuerySpec(country="egypt", dish="koshari", query=str(url_list), engine="urllist")
    rows = {}
    for processes in (1, 2):
        root = DataRoot(tmp_path / f"data-{processes}")
        counts = collect_query(spec, root, settings_for(engine_server, engines=["urllist"], max_per_query=1000,
                                                        processes=processes), "r")
        assert counts["ok"] == 1000, counts
        rows[processes] = {(r.source_url, r.status, r.image_id) for r in root.read_records(IMAGES, "egypt")}
        assert len(rows[processes]) == 1000
        assert len(list((tmp_path / f"data-{processes}" / "images").rglob("*.jpg"))) == 1000
    assert rows[1] == rows[2]
    from sufra.utils.pools import _pools

    assert any(workers == 2 for workers, _ in _pools)  # warm for the next query


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from sufra.core.store import DataRoot
    from sufra.tasks.collect.query import CollectSettings, QuerySpec, collect_query
    settings = CollectSettings.model_validate_json(sys.argv[2])
    spec = QuerySpec(country="egypt", dish="koshari", query=sys.argv[3], engine="bing")
    collect_query(spec, DataRoot(sys.argv[1]), settings, run_id="killed")
    """
)


@pytest.mark.slow
def test_kill_and_resume(engine_server, tmp_path, prefect_harness):
    from sufra.flows.collect import collect

    names = engine_server.add_food_images(QUERY, 120)
    engine_server.image_delay_s = 0.03
    data = tmp_path / "data"
    settings = settings_for(engine_server, threads=4, flush_every=10, stale_temp_age_s=0, max_per_query=200)
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(data), settings.model_dump_json(), QUERY],
                            cwd=os.getcwd())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stored = list((data / "images").rglob("*.jpg")) if (data / "images").exists() else []
        if len(stored) >= 30:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    root = DataRoot(data)
    before = root.read_table(IMAGES, "egypt").num_rows
    assert 0 < len(stored) < 120 and before < 120  # really killed mid-way
    # a writer killed during a rename leaves a temp file: plant one to be sure the sweep handles it
    (data / "images" / "ab").mkdir(parents=True, exist_ok=True)
    (data / "images" / "ab" / ".tmp-deadbeef-x.jpg").write_bytes(b"\xff\xd8 half")
    engine_server.image_delay_s = 0
    counts = collect(country="egypt", dishes=["koshari"], data_root=str(data),
                     settings=settings.model_copy(update={"threads": 16}))
    table = root.read_table(IMAGES, "egypt", latest=False)
    ok = table.filter(pc.equal(table["status"], "ok"))
    assert ok.num_rows == 120 == len(set(ok["image_id"].to_pylist()))  # every image recorded exactly once
    assert len(set(ok["url_hash"].to_pylist())) == 120
    files = sorted(p.name for p in (data / "images").rglob("*") if p.is_file())
    assert len(files) == 120 and all(not f.startswith(".") for f in files)  # stored once, no half-written file
    assert root.temp_files() == []
    assert counts["temp_files_swept"] >= 1
    assert root.read_table(CANDIDATES, "egypt").num_rows == 120
    assert {engine_server.image_url(n) for n in names} == set(ok["source_url"].to_pylist())


# -- engine failures: what a retry can fix, what it cannot (issue #22) -------------------------------------------
class _FailedState:
    """What Prefect hands a ``retry_condition_fn``: a state whose ``result()`` raises the task's exception."""

    def __init__(self, exc: BaseException | None):
        self.exc = exc

    def result(self):
        if self.exc is not None:
            raise self.exc
        return {}


@pytest.fixture
def status_server():
    """Loopback server answering every request with ``.status``; ``.paths`` lists the requests."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    state = SimpleNamespace(status=403, paths=[], base_url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            state.paths.append(self.path)
            self.send_response(state.status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_engine_host_that_does_not_resolve_fails_at_once_and_is_not_retried(no_dns, tmp_path):
    from sufra.tasks.collect.engines import EngineUnreachableError
    from sufra.tasks.collect.query import retry_engine_errors

    from sufra.core.errors import NetworkUnavailableError, is_retryable

    settings = CollectSettings(engines=["bing"], base_urls={"bing": "http://www.bing.invalid"},
                               fetch=FetchSettings(max_retries=3, backoff_s=0.01))
    spec = QuerySpec(country="egypt", dish="koshari", query=QUERY, engine="bing")
    with pytest.raises(EngineUnreachableError) as info:
        collect_query(spec, DataRoot(tmp_path / "data"), settings, run_id="r")
    message = str(info.value)
    assert "\n" not in message and message.startswith("engine bing: www.bing.invalid does not resolve")
    assert "Name or service not known" in message
    assert isinstance(info.value, NetworkUnavailableError) and not is_retryable(info.value)
    assert retry_engine_errors(None, None, _FailedState(info.value)) is False  # today: retried (174 attempts)
    assert no_dns == ["www.bing.invalid"]  # one look-up, no retry


@pytest.mark.parametrize("status", [401, 403])
def test_engine_refusing_access_is_asked_once(status_server, status, tmp_path):
    from sufra.tasks.collect.engines import EngineAccessDeniedError
    from sufra.tasks.collect.query import retry_engine_errors

    status_server.status = status
    settings = settings_for(status_server)
    spec = QuerySpec(country="egypt", dish="koshari", query=QUERY, engine="bing")
    with pytest.raises(EngineAccessDeniedError) as info:
        collect_query(spec, DataRoot(tmp_path / "data"), settings, run_id="r")
    assert f"refused access (server answered {status}" in str(info.value) and "127.0.0.1" in str(info.value)
    assert len(status_server.paths) == 1
    assert retry_engine_errors(None, None, _FailedState(info.value)) is False


def test_engine_answering_503_is_retried(status_server, tmp_path):
    from sufra.tasks.collect.engines import EngineError, EngineUnavailableError
    from sufra.tasks.collect.query import retry_engine_errors

    status_server.status = 503
    settings = settings_for(status_server)
    spec = QuerySpec(country="egypt", dish="koshari", query=QUERY, engine="bing")
    with pytest.raises(EngineError) as info:
        collect_query(spec, DataRoot(tmp_path / "data"), settings, run_id="r")
    assert not isinstance(info.value, EngineUnavailableError) and info.value.reason == "http_503"
    assert len(status_server.paths) == 3  # urllib3: max_retries=2
    assert retry_engine_errors(None, None, _FailedState(info.value)) is True  # Prefect may try the query later
    assert retry_engine_errors(None, None, _FailedState(None)) is False
    assert retry_engine_errors(None, None, _FailedState(ValueError("a bug"))) is False


def test_engine_errors_survive_pickling():
    import pickle

    from sufra.tasks.collect.engines import EngineAccessDeniedError, EngineError, EngineUnreachableError

    from sufra.core.errors import is_retryable

    for error in (EngineError("engine bing: timeout", "timeout"),
                  EngineUnreachableError("engine bing: www.bing.com does not resolve", "dns_error"),
                  EngineAccessDeniedError("engine flickr: refused access", "http_401")):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error) and again.reason == error.reason
        assert is_retryable(again) is is_retryable(error)


def _spec(engine: str, query: str) -> QuerySpec:
    return QuerySpec(country="egypt", dish="koshari", query=query, engine=engine)


def test_engine_health_drops_engines_whose_first_query_cannot_succeed():
    from sufra.tasks.collect.engines import EngineError, EngineUnreachableError
    from sufra.tasks.collect.query import EngineHealth

    specs = [_spec("bing", "q1"), _spec("baidu", "q1"), _spec("bing", "q2"), _spec("baidu", "q2"),
             _spec("bing", "q3")]
    health = EngineHealth()
    first, rest = health.split(specs)
    assert first == [specs[0], specs[1]] and rest == specs[2:]
    health.record(first[0], EngineUnreachableError("engine bing: www.bing.com does not resolve"))
    health.record(first[1], EngineError("engine baidu: timeout"))  # a retry may fix it: baidu stays up
    health.raise_if_all_down()  # baidu is not down
    assert health.runnable(rest) == [specs[3]]
    assert health.skipped(rest) == [
        "bing:koshari:q2: not started, engine bing: www.bing.com does not resolve",
        "bing:koshari:q3: not started, engine bing: www.bing.com does not resolve",
    ]


def test_every_engine_down_fails_the_run_at_once_with_one_line():
    from sufra.tasks.collect.engines import EngineAccessDeniedError, EngineUnreachableError
    from sufra.tasks.collect.query import EngineHealth, check_first_results

    from sufra.core.errors import NetworkUnavailableError, PermanentError

    bing = EngineUnreachableError("engine bing: www.bing.com does not resolve (Name or service not known)")
    baidu = EngineUnreachableError("engine baidu: image.baidu.com cannot be reached (no network)")
    with pytest.raises(NetworkUnavailableError) as info:
        check_first_results([(_spec("bing", "q"), bing), (_spec("baidu", "q"), baidu)])
    assert str(info.value) == ("collect: no engine can be reached: engine bing: www.bing.com does not resolve "
                               "(Name or service not known); engine baidu: image.baidu.com cannot be reached "
                               "(no network)")
    denied = EngineAccessDeniedError("engine flickr: api.flickr.com refused access (401)")
    with pytest.raises(PermanentError) as info:
        check_first_results([(_spec("bing", "q"), bing), (_spec("flickr", "q"), denied)])
    assert not isinstance(info.value, NetworkUnavailableError) and "refused access" in str(info.value)
    health = check_first_results([(_spec("bing", "q"), bing), (_spec("urllist", "/x"), None)])  # one still works
    assert isinstance(health, EngineHealth) and set(health.down) == {"bing"}


def test_an_unknown_engine_is_one_line_naming_the_usable_ones():
    from sufra.tasks.collect.query import plan_queries

    from sufra.core.catalog import load_country
    from sufra.core.errors import SufraError

    with pytest.raises(SufraError) as info:
        plan_queries(load_country("egypt"), ["koshari"], CollectSettings(engines=["nosuch"]))
    assert str(info.value) == ("unknown engine 'nosuch'; use one of commons, openverse, bing, flickr, baidu, "
                               "urllist, folder")
