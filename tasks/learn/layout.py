"""What a feature cache (``features/<model_key>/``, written by :mod:`sufra.tasks.learn.features`) holds: the file
names that tell one apart, and the check a later stage runs before reading it."""

from __future__ import annotations

from pathlib import Path

from sufra.core.errors import SufraError

INDEX_FILE = "index.jsonl"  # one JSON line per cached instance (shard, row, label, split)
SHARD_NAME = "shard-{n:05d}.safetensors"  # the instance tensors, shard ``n`` from 0


def require_cache(folder: str | Path) -> Path:
    """``folder`` as a Path, or one line naming the missing file when it is not a feature cache."""
    if not Path(folder, INDEX_FILE).exists():
        raise SufraError(f"'{folder}' is not a feature cache (no {INDEX_FILE}); run `sufra features` first")
    return Path(folder)
