"""A local HTTP server shaped like image search engines, for tests, benchmarks and the offline demo.

Serves Bing-like result pages (``/images/async?q=&first=``, parsed by sufra's Bing engine), Baidu-like JSON
(``/search/acjson?word=&pn=``, parsed by sufra's Baidu engine, ``objURL`` encrypted the way Baidu does), generated food-like
images, and the bad payloads a crawler meets on the web (``/img/<kind>.jpg``; see :data:`BAD_KINDS`).
Only ever binds loopback addresses.
"""

from __future__ import annotations

import errno
import hashlib
import html
import io
import json
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
from PIL import Image, ImageDraw

from sufra.core.errors import SufraError

BAD_KINDS = (
    "truncated", "zero", "html", "svg", "bomb", "huge", "loop", "forbidden", "notfound", "error500", "ratelimited",
    "drip", "tiny", "wide",
)
ODD_OK_KINDS = ("cmyk", "png16", "palette", "webp", "exif", "animated")  # animated is rejected, the rest stored


def food_image(seed: int, size: tuple[int, int] = (320, 240), label: int | None = None) -> Image.Image:
    """A deterministic synthetic 'plate of food': a plate, blobs and texture; ``label`` shifts the palette."""
    rng = np.random.default_rng(seed)
    width, height = size
    base = rng.integers(40, 200, 3) if label is None else np.array([(label * 67) % 200 + 30, (label * 131) % 200 + 30, (label * 29) % 200 + 30])
    noise = rng.integers(0, 40, (height, width, 3))
    array = np.clip(base[None, None, :] * 0.6 + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(array)
    draw = ImageDraw.Draw(image)
    cx, cy, r = width // 2, height // 2, int(min(width, height) * 0.42)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(235, 235, 228))
    for _ in range(int(rng.integers(4, 9))):
        x, y = rng.integers(cx - r // 2, cx + r // 2, 2)
        br = int(rng.integers(r // 8, r // 3))
        colour = tuple(int(c) for c in np.clip(base + rng.integers(-60, 60, 3), 0, 255))
        draw.ellipse([x - br, y - br, x + br, y + br], fill=colour)
    return image


def jpeg_bytes(image: Image.Image, quality: int = 90, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, **kwargs)
    return out.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG (1-bit, all zero) that claims ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def odd_payload(kind: str, seed: int = 7) -> tuple[bytes, str]:
    """Valid but unusual images: (bytes, content type)."""
    image = food_image(seed)
    out = io.BytesIO()
    if kind == "cmyk":
        image.convert("CMYK").save(out, "JPEG", quality=90)
        return out.getvalue(), "image/jpeg"
    if kind == "png16":
        gray = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(gray).save(out, "PNG")  # uint16 -> mode I;16
        return out.getvalue(), "image/png"
    if kind == "palette":
        pal = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
        pal.info["transparency"] = 0
        pal.save(out, "PNG", transparency=0)
        return out.getvalue(), "image/png"
    if kind == "webp":
        image.save(out, "WEBP", quality=80)
        return out.getvalue(), "image/webp"
    if kind == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 CW on display: stored 320x240 becomes 240x320 upright
        image.save(out, "JPEG", quality=90, exif=exif.tobytes())
        return out.getvalue(), "image/jpeg"
    if kind == "animated":
        frames = [food_image(seed + i).convert("P") for i in range(3)]
        frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
        return out.getvalue(), "image/gif"
    raise ValueError(kind)


_BAIDU_PLAIN = "abcdefghijklmnopqrstuvw1234567890"
_BAIDU_CIPHER = "wkv1ju2it3hs4g5rq6fp7eo8dn9cm0bla"


def baidu_encrypt(url: str) -> str:
    """Inverse of Baidu's objURL obfuscation (decoded by sufra's Baidu engine)."""
    table = str.maketrans(_BAIDU_PLAIN, _BAIDU_CIPHER)
    out = url.translate(table)
    return out.replace(":", "_z2C$q").replace(".", "_z&e3B").replace("/", "AzdH3F")


class PortInUseError(SufraError):
    """The fixed port asked for is taken."""


class EngineServer:
    """Threaded loopback server; ``images`` maps a name to (bytes, content type) served at ``/img/<name>.jpg``.

    ``results`` maps a query to the image names its result pages list (20 per Bing page, 30 per Baidu page).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, forbidden_host: str = "127.0.0.2"):
        if not host.startswith("127."):
            raise ValueError("the engine server only binds loopback addresses")
        self.images: dict[str, tuple[bytes, str]] = {}
        self.results: dict[str, list[str]] = {}
        self.requests: Counter[str] = Counter()
        self.forbidden_host = forbidden_host
        self.forbidden_port: int | None = None  # where /img/forbidden.jpg redirects (default: our port)
        self.image_delay_s = 0.0  # added to every /img/ answer (slow servers, kill-and-resume tests)
        self._ratelimited_seen: set[str] = set()
        self._lock = threading.Lock()
        handler = _make_handler(self)
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            if port and exc.errno == errno.EADDRINUSE:
                raise PortInUseError(f"port {port} on {host} is already in use (another demo running?): stop it or "
                                     "choose another port (SUFRA_DEMO_PORT)") from None
            raise
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="engine-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def image_url(self, name: str) -> str:
        return f"{self.base_url}/img/{quote(name)}.jpg"

    def start(self) -> EngineServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> EngineServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def add_food_images(self, query: str, n: int, seed: int = 0, label: int | None = None,
                        size: tuple[int, int] = (320, 240)) -> list[str]:
        """Generate ``n`` distinct images listed under ``query``; returns their names."""
        names = []
        for i in range(n):
            name = f"{hashlib.sha1(f'{query}-{seed}-{i}'.encode()).hexdigest()[:12]}"
            self.images[name] = (jpeg_bytes(food_image(seed * 100003 + i, size, label)), "image/jpeg")
            names.append(name)
        self.results.setdefault(query, []).extend(names)
        return names

    def add_bad_and_odd(self, query: str) -> list[str]:
        """List every bad and odd payload kind under ``query``."""
        for kind in ODD_OK_KINDS:
            self.images[kind] = odd_payload(kind)
        names = list(BAD_KINDS) + list(ODD_OK_KINDS)
        self.results.setdefault(query, []).extend(names)
        return names


def _bing_page(server: EngineServer, names: list[str]) -> bytes:
    divs = []
    for name in names:
        meta = {"murl": server.image_url(name), "purl": f"{server.base_url}/page/{quote(name)}", "t": name}
        divs.append(f'<div class="imgpt"><a class="iusc" m="{html.escape(json.dumps(meta, separators=(",", ":")))}" href="#">'
                    f'<img src="/thumb/{name}"></a></div>')
    return ("<!DOCTYPE html><html><body><div id='mmComponent_images_1'>" + "".join(divs)
            + "</div></body></html>").encode()


def _baidu_page(server: EngineServer, names: list[str]) -> bytes:
    data = [{"objURL": baidu_encrypt(server.image_url(n)), "fromURL": "", "width": 320} for n in names]
    return json.dumps({"queryExt": "", "listNum": len(names), "data": data + [{}]}).encode()


def _make_handler(server: EngineServer) -> Callable[..., BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            with server._lock:
                server.requests[parts.path] += 1
            try:
                if parts.path == "/images/async":
                    q = query.get("q", [""])[0]
                    first = int(query.get("first", ["0"])[0])
                    self._send(200, _bing_page(server, server.results.get(q, [])[first : first + 20]), "text/html; charset=utf-8")
                elif parts.path == "/search/acjson":
                    q = query.get("word", [""])[0]
                    pn = int(query.get("pn", ["0"])[0])
                    self._send(200, _baidu_page(server, server.results.get(q, [])[pn : pn + 30]), "application/json")
                elif parts.path.startswith("/page/"):
                    self._send(200, b"<html><body>recipe page</body></html>", "text/html")
                elif parts.path.startswith("/img/"):
                    if server.image_delay_s:
                        time.sleep(server.image_delay_s)
                    self._image(parts.path[len("/img/"):].removesuffix(".jpg"))
                else:
                    self._send(404, b"not found", "text/plain")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _image(self, name: str) -> None:
            if name in server.images:
                body, content_type = server.images[name]
                self._send(200, body, content_type)
            elif name == "truncated":
                full = jpeg_bytes(food_image(99))
                self._send(200, full[: len(full) // 2], "image/jpeg")
            elif name == "zero":
                self._send(200, b"", "image/jpeg")
            elif name == "html":
                self._send(200, b"<!DOCTYPE html><html><body>hotlinking denied</body></html>", "image/jpeg")
            elif name == "svg":
                self._send(200, b'<svg xmlns="http://www.w3.org/2000/svg" width="300" height="300"><circle r="9"/></svg>',
                           "image/svg+xml")
            elif name == "bomb":
                self._send(200, _BOMB(), "image/png")
            elif name == "huge":  # 200 MB, no Content-Length: only a streaming cap stops it
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Connection", "close")
                self.end_headers()
                block = b"\xff\xd8\xff" + b"\x00" * (1024 * 1024 - 3)
                for _ in range(200):
                    self.wfile.write(block)
                self.close_connection = True
            elif name == "loop":
                self._send(302, b"", "text/plain", {"Location": "/img/loop.jpg"})
            elif name == "forbidden":
                self._send(302, b"", "text/plain",
                           {"Location": f"http://{server.forbidden_host}:{server.forbidden_port or server.port}/img/{next(iter(server.images), 'x')}.jpg"})
            elif name == "notfound":
                self._send(404, b"gone", "text/plain")
            elif name == "error500":
                self._send(500, b"oops", "text/plain")
            elif name == "ratelimited":
                with server._lock:
                    first = name not in server._ratelimited_seen
                    server._ratelimited_seen.add(name)
                if first:
                    self._send(429, b"slow down", "text/plain", {"Retry-After": "1"})
                else:
                    self._send(200, jpeg_bytes(food_image(4242)), "image/jpeg")
            elif name == "drip":  # one byte per second, forever (until the client gives up)
                body = jpeg_bytes(food_image(77))
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(1.0)
            elif name == "tiny":
                self._send(200, jpeg_bytes(food_image(5, (40, 30))), "image/jpeg")
            elif name == "wide":
                self._send(200, jpeg_bytes(food_image(6, (1000, 100))), "image/jpeg")
            else:
                self._send(404, b"no such image", "text/plain")

    return Handler


_bomb_cache: list[bytes] = []


def _BOMB() -> bytes:  # noqa: N802 - built once, lazily (it takes ~0.3 s)
    if not _bomb_cache:
        _bomb_cache.append(png_bomb())
    return _bomb_cache[0]
