"""The package as installed: one import name, layers that import only downward (import-linter), no reach into
another module's private names."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def wheel_tree(tmp_path_factory) -> Path:
    """The distribution installed (not editable) into a folder of its own."""
    target = tmp_path_factory.mktemp("wheel")
    subprocess.run([str(VENV_BIN / "uv"), "pip", "install", "--quiet", "--no-deps", "--no-cache", "--python", sys.executable,
                    "--target", str(target), str(REPO)], check=True, timeout=300)
    return target


def test_distribution_installs_one_top_level_name(wheel_tree):
    (dist_info,) = wheel_tree.glob("sufra-*.dist-info")
    assert (dist_info / "top_level.txt").read_text().split() == ["sufra"]
    record = [line.split(",")[0] for line in (dist_info / "RECORD").read_text().splitlines() if line]
    outside = [p for p in record if not (p.startswith("sufra/") or p.startswith(dist_info.name + "/") or p.startswith("../") or p == "bin/sufra")]
    assert outside == []
    for folder in ("flows", "tasks", "schemas", "models", "data_catalog"):
        assert f"sufra/{folder}/__init__.py" in record
    assert "sufra/data_catalog/egypt.yaml" in record


def test_import_linter_contracts_hold(wheel_tree):
    proc = subprocess.run([str(VENV_BIN / "lint-imports"), str(REPO / "pyproject.toml")], cwd=wheel_tree,
                          env={"PYTHONPATH": str(wheel_tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "3 kept, 0 broken" in proc.stdout


def test_package_list_matches_the_folders():
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == set(PYPROJECT["tool"]["setuptools"]["packages"])


def test_installed_package_imports_from_outside_the_repository(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import sufra.flows.build, sufra.app.cli; print(sufra.flows.build.__name__)"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "sufra.flows.build"


def _source_modules() -> dict[str, Path]:
    out = {}
    for name, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items():
        for file in (REPO / folder).rglob("*.py"):
            rel = file.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if parts and parts[0] in ("flows", "tasks", "schemas", "models", "data_catalog") and name == "sufra":
                continue  # a mapped folder, not part of sufra/
            out[".".join([name, *parts])] = file
    return out


def test_no_module_imports_another_modules_private_names():
    offences = []
    for module, file in _source_modules().items():
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("sufra"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private and node.module != module:
                    offences.append(f"{module} imports {', '.join(private)} from {node.module}")
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("crawl", "annotate", "features", "export", "review"):
                    offences.append(f"{module} reaches {base.id}.{node.attr}")
    assert offences == []
