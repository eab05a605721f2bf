"""Finding model weights: a local folder/file, the Hugging Face cache, or a download on first use.

Where nothing is cached and the network is unreachable, loading fails at once with one line
(:class:`~sufra.core.errors.ModelUnavailableError`, a permanent error: never retried) instead of hanging.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sufra.core.errors import ModelUnavailableError

T = TypeVar("T")


def cache_dir() -> Path:
    from sufra.core.settings import sufra_settings

    return sufra_settings().model_cache


def resolve_pretrained(name_or_path: str) -> str:
    """A local folder as is; a hub id from the local cache, else downloaded (bounded timeouts)."""
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if name_or_path.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"model folder '{name_or_path}' does not exist")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name_or_path, local_files_only=True)
    except Exception:  # not cached: try the hub below
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ModelUnavailableError(
            f"model '{name_or_path}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            "download it where there is internet or pass a local folder")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        return snapshot_download(name_or_path)
    except Exception as exc:
        raise ModelUnavailableError(
            f"cannot load model '{name_or_path}': not cached and the hub is unreachable ({type(exc).__name__}); "
            "download it on a machine with internet or pass a local folder") from None


def fetch_checkpoint(url_or_path: str, connect_timeout_s: float = 10, read_timeout_s: float = 60) -> Path:
    """A local checkpoint file as is; an http(s) URL downloaded once into the cache (atomic)."""
    if not url_or_path.startswith(("http://", "https://")):
        path = Path(url_or_path).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(f"checkpoint '{url_or_path}' does not exist")
        return path
    import requests

    target = cache_dir() / "checkpoints" / url_or_path.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        with requests.get(url_or_path, stream=True, timeout=(connect_timeout_s, read_timeout_s)) as response:
            response.raise_for_status()
            with open(tmp, "wb") as fh:
                for chunk in response.iter_content(1 << 20):
                    fh.write(chunk)
        os.replace(tmp, target)
    except requests.RequestException as exc:
        tmp.unlink(missing_ok=True)
        raise ModelUnavailableError(
            f"cannot download checkpoint {url_or_path} ({type(exc).__name__}); "
            "download it where there is internet and pass the file path") from None
    return target


def load_state(path: str | Path, what: str, safe_globals: tuple[type, ...] = ()) -> dict:
    """A PyTorch checkpoint (``weights_only``) as its state dict; a missing or unreadable file is one line."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelUnavailableError(f"{what} '{path}' does not exist") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise ModelUnavailableError(f"cannot read {what} '{path}': not a PyTorch checkpoint ({type(exc).__name__})") from None


class _Factory:
    """Wraps a factory so that it compares equal to every other: ``functools.cache`` then keys on the name alone."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[], object]):
        self.build = build

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Factory)


@functools.cache
def _load(key: str, factory: _Factory) -> object:
    return factory.build()


def load_once(key: str, factory: Callable[[], T]) -> T:
    """The model(s) ``factory`` builds, built once per process and key: the CLI loads them first to fail fast with
    one line, then the flow in the same process reuses them instead of loading again. A factory that raises (e.g.
    :class:`~sufra.core.errors.ModelUnavailableError`, never retried) caches nothing: the next call builds again."""
    return _load(key, _Factory(factory))  # type: ignore[return-value]


def forget_loaded() -> None:
    """Drop every model :func:`load_once` keeps (frees their memory; the next call builds again)."""
    _load.cache_clear()


def model_identity(name_or_path: str) -> str:
    """A location-independent name for a model: the hub id, or a local folder's name + hash of its config."""
    import hashlib

    path = Path(name_or_path).expanduser()
    config = path / "config.json"
    if path.is_dir() and config.exists():
        return f"{path.name}@{hashlib.sha256(config.read_bytes()).hexdigest()[:8]}"
    if path.is_file():
        return f"{path.name}@{path.stat().st_size}"
    return name_or_path
