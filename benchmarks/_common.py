"""Helpers shared by the benchmark scripts: sample photos, throw-away baseline venvs, the final JSON line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_PHOTOS = REPO.parent / "shared" / "data" / "food101_sample"
BENCH_DIR = Path(os.environ.get("SUFRA_BENCH_DIR", "/tmp/sufra-bench"))


_SMOKE_DIR: Path | None = None


def smoke_photos(count: int = 6) -> list[Path]:
    """Tiny generated scenes (tests.support.imaging) in a temp folder: what ``--smoke`` runs use (never ../shared)."""
    global _SMOKE_DIR
    import tempfile

    from tests.support.imaging import jpeg, scene

    if _SMOKE_DIR is None:
        _SMOKE_DIR = Path(tempfile.mkdtemp(prefix="sufra-smoke-"))
    paths = []
    for i in range(count):
        path = _SMOKE_DIR / f"{i:04d}.jpg"
        if not path.exists():
            path.write_bytes(jpeg(scene(i, (96, 72)), 90))
        paths.append(path)
    return paths


def sample_photos(limit: int | None = None, smoke: bool = False) -> list[Path]:
    """Real sample photos when ``../shared/data`` has them, else generated ones (written once to BENCH_DIR);
    ``smoke``: a few tiny generated ones (see :func:`smoke_photos`)."""
    if smoke:
        return smoke_photos(limit or 6)
    photos = sorted(SHARED_PHOTOS.glob("*/*.jpg")) if SHARED_PHOTOS.is_dir() else []
    if not photos:
        from sufra.app.devserver import food_image

        folder = BENCH_DIR / "generated"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(200):
            path = folder / f"{i:04d}.jpg"
            if not path.exists():
                food_image(i, (512, 384), label=i % 10).save(path, quality=90)
            photos.append(path)
    return photos[:limit] if limit else photos


def with_jpeg_comment(data: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment after SOI: distinct bytes (and sha256), identical pixels."""
    payload = text.encode()
    return data[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:]


def baseline_python(name: str, packages: list[str]) -> Path:
    """A throw-away venv holding a baseline tool (never the project's venv). Created on first use."""
    venv = BENCH_DIR / f"venv-{name}"
    python = venv / "bin" / "python"
    marker = venv / ".complete"
    if not marker.exists():
        if venv.exists():
            shutil.rmtree(venv)
        print(f"[setup] creating {venv} with {' '.join(packages)} (first run only)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
        # bytecode compiled at install, as the project venv: neither side pays for compiling imports in a timed run
        subprocess.run([uv, "pip", "install", "-q", "--compile-bytecode", "--python", str(python), *packages], check=True)
        marker.write_text("ok")
    return python


@contextmanager
def timer() -> Iterator[dict]:
    out: dict = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - start


def add_smoke_flag(parser) -> None:
    parser.add_argument("--smoke", action="store_true",
                        help="same code paths on the tiniest generated inputs, in seconds; baselines needing a "
                             "throw-away venv are skipped (baseline and ratio null)")


def emit(result: dict) -> None:
    """Print the result as the last line: one JSON object with ours, baseline, unit, ratio, baseline_name."""
    for key in ("ours", "baseline", "unit", "ratio", "baseline_name"):
        if key not in result:
            raise KeyError(f"benchmark result lacks '{key}'")
    print(json.dumps(result, sort_keys=True))
