import datetime as dt

import pytest
from sufra.schemas import IMAGES, SPLITS

from sufra.core.errors import StoreError
from sufra.core.store import RunManifest, new_run_id, sha256_hex
from tests.support.pipeline import split_row

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_images_are_content_addressed(data_root):
    data = b"\xff\xd8\xff fake jpeg bytes"
    image_id = data_root.put_image(data, "jpg")
    assert image_id == sha256_hex(data)
    assert data_root.image_path(image_id, "jpg").endswith(f"images/{image_id[:2]}/{image_id}.jpg")
    assert data_root.read_image_bytes(image_id, "jpg") == data
    assert data_root.put_image(data, "jpg") == image_id  # second put is a no-op
    assert data_root.temp_files() == []


def test_latest_record_wins_per_key(data_root):
    data_root.write_table(SPLITS, "egypt", [split_row("a", "train"), split_row("b", "train")], "run1")
    data_root.write_table(SPLITS, "egypt", [split_row("a", "test")], "run0")  # older run id, newer write
    latest = {r.image_id: r.split for r in data_root.read_records(SPLITS, "egypt")}
    assert latest == {"a": "test", "b": "train"}
    assert data_root.read_table(SPLITS, "egypt", latest=False).num_rows == 3


def test_countries_are_partitions(data_root):
    data_root.write_table(SPLITS, "egypt", [split_row("a", "train")], "r")
    data_root.write_table(SPLITS, "peru", [dict(split_row("b", "val"), country="peru")], "r")
    assert data_root.read_table(SPLITS, "egypt").num_rows == 1
    assert data_root.read_table(SPLITS).num_rows == 2
    assert data_root.read_table(SPLITS, "nigeria").num_rows == 0


def test_part_left_by_killed_writer_is_never_read(data_root):
    data_root.write_table(SPLITS, "egypt", [split_row("a", "train")], "r")
    # a killed writer leaves its temp file (possibly truncated) next to the final parts
    folder = data_root.table_dir(SPLITS, "egypt")
    with data_root.fs.open(f"{folder}/.tmp-deadbeef-r-99.parquet", "wb") as fh:
        fh.write(b"PAR1 truncated")
    assert [r.image_id for r in data_root.read_records(SPLITS, "egypt")] == ["a"]
    assert len(data_root.temp_files()) == 1


def test_unreadable_part_gives_one_line_error(local_root):
    local_root.write_table(SPLITS, "egypt", [split_row("a", "train")], "r")
    folder = local_root.table_dir(SPLITS, "egypt")
    with open(f"{folder}/r-1.parquet", "wb") as fh:
        fh.write(b"not parquet")
    with pytest.raises(StoreError, match="unreadable"):
        local_root.read_table(SPLITS, "egypt")


def test_empty_table_reads_with_schema(data_root):
    table = data_root.read_table(IMAGES, "egypt")
    assert table.num_rows == 0 and table.schema.names == IMAGES.columns


def test_manifest_round_trip(data_root):
    manifest = RunManifest(run_id=new_run_id("collect"), flow="collect", parameters={"country": "egypt"})
    data_root.write_manifest(manifest)
    assert data_root.read_manifest(manifest.run_id) == manifest
    with pytest.raises(StoreError, match="no run manifest"):
        data_root.read_manifest("nope")


def test_data_root_pickles(data_root):
    import pickle

    clone = pickle.loads(pickle.dumps(data_root))
    assert clone.url == data_root.url and clone.root == data_root.root


def test_run_ids_sort_by_time_and_are_unique(monkeypatch):
    import datetime as dt

    import sufra.core.store as store

    times = iter([dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
                  dt.datetime(2026, 1, 2, 3, 4, 6, tzinfo=dt.UTC), dt.datetime(2025, 12, 31, 23, 59, 59, tzinfo=dt.UTC)])
    monkeypatch.setattr(store, "utcnow", lambda: next(times))
    same_a, same_b, later, earlier = (new_run_id("x") for _ in range(4))
    assert same_a.startswith("20260102T030405-x-") and same_a != same_b  # same second: still distinct
    assert sorted([later, same_a, earlier]) == [earlier, same_a, later]


def test_countries_with_lists_partitions_that_hold_a_final_part(data_root):
    assert data_root.countries_with(SPLITS) == []
    data_root.write_table(SPLITS, "peru", [dict(split_row("b", "val"), country="peru")], "r")
    data_root.write_table(SPLITS, "egypt", [split_row("a", "train")], "r")
    data_root.write_table(IMAGES, "nigeria", [], "r")  # zero rows: nothing written
    # a killed writer leaves only its temp file in a new partition: no data there (the folder test said yes)
    folder = data_root.table_dir(SPLITS, "morocco")
    data_root.fs.makedirs(folder, exist_ok=True)
    with data_root.fs.open(f"{folder}/.tmp-deadbeef-r-1.parquet", "wb") as fh:
        fh.write(b"PAR1 truncated")
    assert data_root.fs.exists(folder)
    assert data_root.countries_with(SPLITS) == data_root.countries_with("splits") == ["egypt", "peru"]
    assert data_root.countries_with(IMAGES) == []
