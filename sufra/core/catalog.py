"""The data catalog: one YAML per country (dishes, names, queries, prompts), validated by pydantic.

A broken file raises :class:`CatalogError` with one line naming the file, the dish and the field, and the YAML
line where the problem is.
"""

from __future__ import annotations

import hashlib
import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sufra.core.errors import CatalogError

SLUG = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")


def _strip_all(values: list[str], what: str) -> list[str]:
    out = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{what} must be non-empty text, got {value!r}")
        out.append(value.strip())
    return out


class Dish(BaseModel):
    """One dish: its id, names per language, search queries per language and detection prompt phrases."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    names: dict[str, str]  # language code -> name (English ``en`` required; native script where it exists)
    queries: dict[str, list[str]]  # language code -> search queries
    prompts: list[str]  # open-vocabulary detection phrases
    negative_terms: list[str] = Field(default_factory=list)
    food101_index: int | None = None  # Food-101 class index (0..100), for the Food-101 subsets

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError(f"must be a lowercase slug like 'ful_medames', got {value!r}")
        return value

    @field_validator("names")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        if "en" not in value:
            raise ValueError("needs an English name under 'en'")
        for lang, name in value.items():
            _strip_all([name], f"name '{lang}'")
        return value

    @field_validator("queries")
    @classmethod
    def _queries(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value or not any(value.values()):
            raise ValueError("needs at least one search query")
        return {lang: _strip_all(qs, f"query ({lang})") for lang, qs in value.items()}

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one detection prompt")
        return _strip_all(value, "prompt")

    @field_validator("food101_index")
    @classmethod
    def _food101(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 100:
            raise ValueError(f"Food-101 class index must be 0..100, got {value}")
        return value

    @property
    def all_queries(self) -> list[tuple[str, str]]:
        """``(language, query)`` pairs in file order."""
        return [(lang, q) for lang, qs in self.queries.items() for q in qs]


class Country(BaseModel):
    """A catalog file: a country's cuisine (or a benchmark subset such as ``food101_25``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    country: str
    name: str
    languages: list[str]
    description: str = ""
    benchmark_sets: dict[str, list[str]] = Field(default_factory=dict)
    dishes: list[Dish]

    @field_validator("country")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError(f"must be a lowercase slug like 'egypt', got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Country:
        if not self.dishes:
            raise ValueError("needs at least one dish")
        seen: set[str] = set()
        for dish in self.dishes:
            if dish.id in seen:
                raise ValueError(f"duplicate dish id '{dish.id}'")
            seen.add(dish.id)
        for set_name, members in self.benchmark_sets.items():
            unknown = [m for m in members if m not in seen]
            if unknown:
                raise ValueError(f"benchmark set '{set_name}' names unknown dish(es) {', '.join(unknown)}")
        return self

    @cached_property
    def by_id(self) -> dict[str, Dish]:
        return {d.id: d for d in self.dishes}

    def dish(self, dish_id: str) -> Dish:
        try:
            return self.by_id[dish_id]
        except KeyError:
            raise CatalogError(
                f"country '{self.country}' has no dish '{dish_id}'; known: {', '.join(self.by_id)}"
            ) from None

    def select(self, dish_ids: list[str] | None) -> list[Dish]:
        return list(self.dishes) if not dish_ids else [self.dish(d) for d in dish_ids]

    def category_ids(self) -> dict[str, int]:
        """Stable COCO category ids: 1-based position in the catalog file (append new dishes at the end)."""
        return {d.id: i + 1 for i, d in enumerate(self.dishes)}

    def content_hash(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


# -- loading with line-aware errors ----------------------------------------------------------------------------
def _node_at(node: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """Follow a pydantic error location into the composed YAML tree (deepest node found)."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == part), None)
            if nxt is None:  # an unknown key: point at the key itself
                key = next((k for k, _ in node.value if k.value == part), None)
                return key or node
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node


def _describe(error: dict[str, Any], raw: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    loc = tuple(error["loc"])
    where = []
    field_loc = loc
    if len(loc) >= 2 and loc[0] == "dishes" and isinstance(loc[1], int):
        dishes = raw.get("dishes") or []
        dish = dishes[loc[1]] if loc[1] < len(dishes) and isinstance(dishes[loc[1]], dict) else {}
        where.append(f"dish '{dish.get('id', f'#{loc[1] + 1}')}'")
        field_loc = loc[2:]
    if field_loc:
        where.append("field '" + ".".join(str(p) for p in field_loc) + "'")
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; see data_catalog/egypt.yaml for the fields)"
    elif error["type"] == "missing":
        msg = "is required"
    return ": ".join([*where, msg]), loc


def load_country_file(path: str | Path) -> Country:
    """Parse and validate one catalog YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        root_node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogError(f"{path}: invalid YAML{line}: {problem}") from None
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: expected a mapping with 'country' and 'dishes' at the top level")
    try:
        return Country.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        message, loc = _describe(first, raw)
        node = _node_at(root_node, loc)
        line = f" (line {node.start_mark.line + 1})" if node is not None else ""
        more = f" [+{exc.error_count() - 1} more]" if exc.error_count() > 1 else ""
        raise CatalogError(f"{path}{line}: {message}{more}") from None


def bundled_catalog_dir() -> Path:
    return Path(str(resources.files("sufra.data_catalog")))


def catalog_files(directory: str | Path | None = None) -> list[Path]:
    folder = Path(directory) if directory else bundled_catalog_dir()
    return sorted(folder.glob("*.yaml"))


def load_catalog(directory: str | Path | None = None) -> dict[str, Country]:
    """All catalog files of a folder (the bundled one by default), keyed by country slug."""
    out: dict[str, Country] = {}
    for file in catalog_files(directory):
        country = load_country_file(file)
        if country.country != file.stem:
            raise CatalogError(f"{file}: field 'country' is '{country.country}' but the file is {file.name}")
        out[country.country] = country
    return out


def load_country(country: str, directory: str | Path | None = None) -> Country:
    folder = Path(directory) if directory else bundled_catalog_dir()
    file = folder / f"{country}.yaml"
    if not file.exists():
        known = ", ".join(p.stem for p in catalog_files(folder)) or "none"
        raise CatalogError(f"no catalog for country '{country}' in {folder}; known: {known}")
    return load_country_file(file)
