import json
import subprocess
import sys
from pathlib import Path

import pytest

from sufra.core.catalog import catalog_files, load_catalog, load_country, load_country_file
from sufra.core.errors import CatalogError

GOOD = """\
country: testland
name: Testland
languages: [en, ar]
dishes:
  - id: koshari
    names: {en: Koshari, ar: كشري}
    queries: {en: [koshari], ar: [كشري]}
    prompts: [koshari]
  - id: ful_medames
    names: {en: Ful}
    queries: {en: [ful]}
    prompts: [ful medames]
"""

BROKEN = {
    # kind: (text, expected fragments of the one-line message)
    "bad_yaml": (GOOD.replace("prompts: [koshari]", "prompts: [koshari"), ["invalid YAML", "line"]),
    "duplicate_dish": (GOOD.replace("id: ful_medames", "id: koshari"), ["duplicate dish id 'koshari'"]),
    "missing_query": (GOOD.replace("queries: {en: [ful]}", "queries: {en: []}"),
                      ["dish 'ful_medames'", "field 'queries'", "at least one search query", "line 11"]),
    "unknown_field": (GOOD.replace("    prompts: [ful medames]", "    prompts: [ful medames]\n    colour: brown"),
                      ["dish 'ful_medames'", "field 'colour'", "unknown field", "line 13"]),
    "empty_prompt": (GOOD.replace("prompts: [ful medames]", "prompts: ['  ']"),
                     ["dish 'ful_medames'", "field 'prompts'", "non-empty", "line 12"]),
}


def test_bundled_catalog_is_valid():
    catalog = load_catalog()
    egypt = catalog["egypt"]
    assert len(egypt.dishes) >= 12
    assert set(egypt.benchmark_sets["egypt5"]) == {"koshari", "ful_medames", "taameya", "molokhia", "mahshi"}
    others = [c for name, c in catalog.items() if name not in ("egypt", "food101_25")]
    assert len(others) >= 3 and all(len(c.dishes) >= 6 for c in others)
    food = catalog["food101_25"]
    assert len(food.dishes) == 25 and all(d.food101_index is not None for d in food.dishes)
    assert len({d.food101_index for d in food.dishes}) == 25


@pytest.mark.parametrize("country", ["egypt", "ethiopia", "nigeria", "peru"])
def test_dishes_have_native_names_and_bilingual_queries(country):
    c = load_country(country)
    for dish in c.dishes:
        assert len(dish.names) >= 2, dish.id
        assert len([q for q in dish.queries.values() if q]) >= 2, dish.id


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_catalog_gives_one_line(kind, tmp_path):
    text, fragments = BROKEN[kind]
    path = tmp_path / "testland.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_country_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_cli_validate_exit_code_2(kind, tmp_path):
    path = tmp_path / "testland.yaml"
    path.write_text(BROKEN[kind][0], encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "sufra.app.cli", "catalog", "validate", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("sufra: error: ")
    assert "Traceback" not in proc.stderr


def test_cli_validate_bundled_and_list_json():
    proc = subprocess.run([sys.executable, "-m", "sufra.app.cli", "catalog", "validate"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.count("ok ") == len(catalog_files())
    proc = subprocess.run([sys.executable, "-m", "sufra.app.cli", "catalog", "list", "--json"],
                          capture_output=True, text=True)
    rows = json.loads(proc.stdout)
    assert {"country", "dish", "names", "queries", "prompts"} <= set(rows[0])
    assert any(r["country"] == "egypt" and r["dish"] == "koshari" for r in rows)


def test_file_name_must_match_country(tmp_path):
    (tmp_path / "elsewhere.yaml").write_text(GOOD, encoding="utf-8")
    with pytest.raises(CatalogError, match="'country' is 'testland'"):
        load_catalog(tmp_path)


def test_unknown_country_names_the_known_ones():
    with pytest.raises(CatalogError, match="known: .*egypt"):
        load_country("atlantis")


def test_debug_shows_traceback(tmp_path):
    path = Path(tmp_path / "x.yaml")
    path.write_text("dishes: [", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "sufra.app.cli", "--debug", "catalog", "validate", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
