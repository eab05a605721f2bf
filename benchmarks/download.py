"""Download throughput: sufra's collect unit (fetch + validation + content-addressed store + provenance rows)
vs img2dataset and a bare requests thread pool (the ceiling), on one URL list served from 127.0.0.1.

    .venv/bin/python benchmarks/download.py [--quick] [--n 5000] [--threads 16]

The server is Debian's nginx when installed (``apt-get install nginx-light``), else a threaded Python server in a
separate process. Each image is a sample photo with a unique JPEG comment, so every URL has distinct bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    BENCH_DIR,
    add_smoke_flag,
    baseline_python,
    emit,
    sample_photos,
    timer,
    with_jpeg_comment,
)

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  types {{ image/jpeg jpg; }}
  sendfile on;
  keepalive_requests 100000;
  client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  server {{ listen 127.0.0.1:{port}; root {root}/www; }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(n: int, root: Path, smoke: bool = False) -> list[str]:
    www = root / "www" / "img"
    if www.exists() and len(list(www.iterdir())) == n:
        return [f"/img/{i:06d}.jpg" for i in range(n)]
    shutil.rmtree(www, ignore_errors=True)
    www.mkdir(parents=True)
    photos = [p.read_bytes() for p in sample_photos(smoke=smoke)]
    for i in range(n):
        (www / f"{i:06d}.jpg").write_bytes(with_jpeg_comment(photos[i % len(photos)], f"sufra-bench-{i}"))
    return [f"/img/{i:06d}.jpg" for i in range(n)]


def start_server(root: Path) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx:
        (root / "tmp").mkdir(exist_ok=True)
        conf = root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(root=root, port=port))
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(root)], stderr=subprocess.DEVNULL)
        name = "nginx"
    else:
        proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                 "--directory", str(root / "www")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        name = "python http.server"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}", name


def run_bare(urls: list[str], out: Path, threads: int) -> float:
    import requests

    out.mkdir(parents=True, exist_ok=True)
    local = threading.local()

    def get(i_url):
        i, url = i_url
        session = getattr(local, "s", None) or requests.Session()
        local.s = session
        (out / f"{i}.jpg").write_bytes(session.get(url, timeout=10).content)

    with timer() as t, ThreadPoolExecutor(threads) as pool:
        list(pool.map(get, enumerate(urls)))
    return t["seconds"]


def run_ours(urls: list[str], out: Path, threads: int) -> tuple[float, dict]:
    from sufra.tasks.collect.query import CollectSettings, QuerySpec, collect_query

    from sufra.core.store import DataRoot
    from sufra.utils.http import FetchSettings

    listing = out.parent / "ours-urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    settings = CollectSettings(
        engines=["urllist"], max_per_query=len(urls), threads=threads, flush_every=1000,
        fetch=FetchSettings(allow_networks=["127.0.0.1"], per_host_concurrency=threads, per_host_requests_per_s=0),
    )
    spec = QuerySpec(country="bench", dish="bench", query=str(listing), engine="urllist")
    with timer() as t:
        counts = collect_query(spec, DataRoot(out), settings, run_id="bench")
    return t["seconds"], counts


def run_img2dataset(python: Path, urls: list[str], out: Path, processes: int, threads: int) -> float:
    listing = out.parent / "i2d-urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    per_shard = max(1, len(urls) // processes)
    code = (
        "from img2dataset import download\n"
        f"download(url_list={str(listing)!r}, input_format='txt', output_folder={str(out)!r}, output_format='files',"
        f" processes_count={processes}, thread_count={threads}, resize_mode='no', number_sample_per_shard={per_shard},"
        " timeout=10, retries=0, distributor='multiprocessing', disallowed_header_directives=[], enable_wandb=False)\n"
    )
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", WANDB_MODE="disabled")
    with timer() as t:
        subprocess.run([str(python), "-c", code], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stored = len(list(out.rglob("*.jpg")))
    if stored < len(urls) * 0.99:
        raise RuntimeError(f"img2dataset stored only {stored} of {len(urls)} images")
    return t["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 images instead of 5,000")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--threads", type=int, default=16)
    add_smoke_flag(parser)
    args = parser.parse_args()
    n = args.n or (10 if args.smoke else 1000 if args.quick else 5000)
    if args.smoke:  # tiny generated photos in a temp folder; no img2dataset venv
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="sufra-smoke-download-"))
        args.threads = min(args.threads, 4)
    else:
        root = BENCH_DIR / "download"
    paths = prepare(n, root, smoke=args.smoke)
    python = None if args.smoke else baseline_python("img2dataset", ["img2dataset"])
    proc, base, server_name = start_server(root)
    try:
        urls = [base + p for p in paths]
        results: dict[str, float] = {}
        runs = root / "runs"
        shutil.rmtree(runs, ignore_errors=True)
        runs.mkdir()
        results["bare requests (bytes only)"] = n / run_bare(urls, runs / "bare", args.threads)
        seconds, counts = run_ours(urls, runs / "ours", args.threads)
        if counts.get("ok", 0) != n:
            raise RuntimeError(f"sufra stored {counts.get('ok', 0)} of {n}: {counts}")
        results["sufra collect (validated + provenance)"] = n / seconds
        for processes in (1, 2) if python is not None else ():
            results[f"img2dataset {processes} process(es) x {args.threads} threads"] = n / run_img2dataset(
                python, urls, runs / f"i2d-{processes}", processes, args.threads)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    baselines = [(k, v) for k, v in results.items() if k.startswith("img2dataset")]
    best_name, best = max(baselines, key=lambda kv: kv[1]) if baselines else ("img2dataset (skipped: --smoke)", None)
    ours = results["sufra collect (validated + provenance)"]
    print(f"server: {server_name}; {n} images of {len(sample_photos(smoke=args.smoke))} distinct sample photos; {args.threads} threads")
    for name, rate in results.items():
        print(f"  {name:45s} {rate:8.1f} images/s")
    emit({"ours": round(ours, 1), "baseline": None if best is None else round(best, 1), "unit": "images/s",
          "ratio": None if best is None else round(ours / best, 2),
          "baseline_name": best_name, "ceiling_bare_requests": round(results["bare requests (bytes only)"], 1),
          "server": server_name, "n": n})


if __name__ == "__main__":
    main()
