import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sufra.schemas import SCHEMA_VERSION, TABLES
from sufra.schemas.tables import SCHEMA_VERSION_KEY

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)

SAMPLES = {
    "candidates": dict(url_hash="a" * 64, country="egypt", dish="koshari", query="koshari", engine="bing",
                       url="http://x/1.jpg", page_url="http://x/", license=None, discovered_at=NOW),
    "images": dict(image_id="b" * 64, url_hash="a" * 64, country="egypt", dish="koshari", query="koshari",
                   engine="bing", source_url="http://x/1.jpg", page_url=None, license="CC-BY", width=640,
                   height=480, format="jpg", n_bytes=1234, fetched_at=NOW, status="ok", error_message=None,
                   duplicate_of=None, run_id="r1"),
    "hashes": dict(image_id="b" * 64, country="egypt", dish="koshari", hash_kind="phash", hash_bits=64,
                   crops=["1.00", "0.95"], hashes=[b"\x01" * 8, b"\x02" * 8], verify_hashes=[b"\x03" * 32],
                   width=640, height=480),
    "duplicates": dict(image_id="b" * 64, country="egypt", dish="koshari", group_id="g1",
                       representative_id="c" * 64, distance=3, kind="near", dropped=True),
    "splits": dict(image_id="b" * 64, country="egypt", dish="koshari", split="val", group_id="g1"),
    "instances": dict(instance_id="i1", image_id="b" * 64, country="egypt", label="koshari", phrase="koshari",
                      bbox=[1.0, 2.0, 30.0, 40.0], box_score=0.8, mask={"size": [480, 640], "counts": "abc"},
                      mask_score=0.9, area=1000.0, source="auto", model_versions={"detector": "gdino-t"},
                      created_at=NOW),
    "annotations": dict(image_id="b" * 64, country="egypt", dish="koshari", split="train", status="needs_review",
                        reason="low score", n_instances=2, width=640, height=480, config_hash="abc",
                        model_versions={"detector": "x"}, annotated_at=NOW),
    "reviews": dict(image_id="b" * 64, country="egypt", decision="corrected", reviewer="amira",
                    ls_task_id=7, reviewed_at=NOW),
}


def test_every_table_has_a_sample():
    assert set(SAMPLES) == set(TABLES)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_record_parquet_record_round_trip(name, data_root):
    table = TABLES[name]
    record = table.record.model_validate(SAMPLES[name])
    path = data_root.write_table(table, "egypt", [record], run_id="r1")
    with data_root.fs.open(path, "rb") as fh:
        on_disk = pq.read_table(fh)
    assert on_disk.schema.metadata[SCHEMA_VERSION_KEY] == SCHEMA_VERSION.encode()
    assert on_disk.column_names == table.columns
    back = data_root.read_records(table, "egypt")
    assert back == [record]


@pytest.mark.parametrize("name", sorted(TABLES))
def test_schema_is_derived_from_record(name):
    table = TABLES[name]
    assert table.schema.names == list(table.record.model_fields)
    key_field = table.schema.field(table.key)
    assert not key_field.nullable


def test_bad_row_is_rejected_before_writing(local_root):
    bad = dict(SAMPLES["splits"], split="holdout")
    with pytest.raises(Exception, match="split"):
        local_root.write_table(TABLES["splits"], "egypt", [bad], run_id="r1")
    assert local_root.table_parts(TABLES["splits"]) == []


def test_arrow_types():
    schema = TABLES["instances"].schema
    assert schema.field("bbox").type == pa.list_(pa.float64())
    assert schema.field("mask").type == pa.struct(
        [pa.field("size", pa.list_(pa.int64()), nullable=False), pa.field("counts", pa.string(), nullable=False)]
    )
    assert schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("mask").nullable and not schema.field("box_score").nullable


@pytest.mark.parametrize("name", sorted(TABLES))
def test_no_arrow_map_types(name):
    """Hugging Face `datasets` cannot load Arrow maps: dicts are lists of key/value structs."""
    def walk(t):
        assert not pa.types.is_map(t)
        if pa.types.is_list(t):
            walk(t.value_type)
        if pa.types.is_struct(t):
            for i in range(t.num_fields):
                walk(t.field(i).type)

    for field in TABLES[name].schema:
        walk(field.type)
