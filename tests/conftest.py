"""Shared fixtures: tiny generated data only (tests never need ../shared)."""

from __future__ import annotations

import uuid

import pytest

from sufra.store import DataRoot


@pytest.fixture(params=["local", "memory"])
def data_root(request, tmp_path) -> DataRoot:
    """A data root on a local folder and on fsspec's in-memory filesystem."""
    if request.param == "local":
        yield DataRoot(tmp_path / "data")
        return
    root = DataRoot(f"memory://sufra-test-{uuid.uuid4().hex[:8]}")
    yield root
    if root.fs.exists(root.root):
        root.fs.rm(root.root, recursive=True)


@pytest.fixture
def local_root(tmp_path) -> DataRoot:
    return DataRoot(tmp_path / "data")
