import itertools
from collections import Counter

import numpy as np
import pytest
from sufra.schemas import DUPLICATES, HASHES, IMAGES, SPLITS
from sufra.schemas.tables import ImageRecord
from sufra.tasks.curate.dedup import CurateSettings, images_to_hash
from sufra.tasks.curate.hashing import DedupSettings, hash_bytes, pack, pair_search
from sufra.tasks.curate.split import SplitSettings, Unit, assign_splits

from sufra.core.store import DataRoot, utcnow
from tests.support.imaging import jpeg, scene, store, transforms
from tests.support.pipeline import SINGLE, run_curate


def groups_of(root, country="egypt"):
    groups = {}
    for row in root.read_records(DUPLICATES, country):
        groups.setdefault(row.group_id, set()).add(row.image_id)
    return groups


@pytest.mark.slow
def test_near_duplicates_recall_and_no_false_merges(tmp_path):
    root = DataRoot(tmp_path / "data")
    n_distinct = 60
    items, truth = [], {}
    for seed in range(n_distinct):
        base = scene(seed)
        items.append(("koshari", jpeg(base)))
        for name, variant in transforms(base, seed).items():
            items.append(("koshari", jpeg(variant)))
            truth[len(items) - 1] = (seed, name)
    ids = store(root, "egypt", items)
    source = {}
    index = 0
    for seed in range(n_distinct):
        source[ids[index]] = seed
        for k in range(5):
            source[ids[index + 1 + k]] = seed
        index += 6
    run_curate(root)
    groups = groups_of(root)
    seeds_per_group = [{source[i] for i in members} for members in groups.values()]
    assert all(len(s) == 1 for s in seeds_per_group), "a group merged distinct images"
    found = Counter()
    group_of = {i: g for g, members in groups.items() for i in members}
    per_transform = Counter()
    for pos, (seed, name) in truth.items():
        original = ids[[k for k, i in enumerate(ids) if source[i] == seed][0]]
        per_transform[name] += 1
        if ids[pos] in group_of and group_of[ids[pos]] == group_of.get(original):
            found[name] += 1
    recall = sum(found.values()) / len(truth)
    assert recall >= 0.95, (recall, found)
    kept = [r.image_id for r in root.read_records(SPLITS, "egypt")]
    assert len(kept) == len({source[i] for i in kept}) == n_distinct  # one image per distinct scene remains


@pytest.mark.parametrize("in_size, out_size", [(64, 32), (48, 64), (61, 32), (500, 64), (20, 32), (1, 32), (33, 33)])
@pytest.mark.parametrize("name", ["bilinear", "lanczos"])
def test_resample_weights_are_pillows_float_resize(in_size, out_size, name):
    """One axis of Pillow's resize of an 'F' (float) image: down, up, odd ratios, a one-pixel side, no change."""
    from PIL import Image
    from sufra.tasks.curate.hashing import resample_weights

    pixels = np.random.default_rng(in_size).uniform(0, 255, (3, in_size)).astype(np.float32)
    resized = Image.fromarray(pixels, "F").resize((out_size, 3), getattr(Image.Resampling, name.upper()))
    np.testing.assert_allclose(pixels @ resample_weights(in_size, out_size, name).T, np.asarray(resized), atol=2e-3)


def float_resized(grey: np.ndarray, side: int, filter_name: str) -> np.ndarray:
    """Pillow's resize of a grey array as an 'F' (float) image: no 8-bit rounding or clipping."""
    from PIL import Image

    image = Image.fromarray(grey.astype(np.float32), "F")
    return np.asarray(image.resize((side, side), getattr(Image.Resampling, filter_name)), dtype=np.float64)


def low_dct(pixels: np.ndarray, k: int) -> np.ndarray:
    """imagehash's pHash transform: scipy's 2-D DCT-II, the top-left k x k block."""
    import scipy.fft

    return scipy.fft.dct(scipy.fft.dct(pixels, axis=0), axis=1)[:k, :k]


@pytest.mark.parametrize("shape", [(48, 64), (61, 61), (20, 37)])
def test_dct_blocks_follow_their_recipe(shape):
    """Every block the hashes come from, against its definition with Pillow's float resize and scipy's DCT: the
    full frame LANCZOS to 32 x 32; inner crops and windows cut from the 64 x 64 BILINEAR base (nearest index)."""
    from sufra.tasks.curate.hashing import dct_blocks

    def near(side, start, stop):  # nearest-index resampling of [start, stop) to ``side`` samples
        return np.linspace(start, stop - 1, side).round().astype(int)

    grey = np.asarray(scene(7, shape[::-1]).convert("L"))
    hashes, windows = dct_blocks([grey], DedupSettings())
    base = float_resized(grey, 64, "BILINEAR")
    d = round(64 * 0.05 / 2)  # the 0.95 crop and window; the 0.90 crop
    d90 = round(64 * 0.10 / 2)
    expected_hashes = [low_dct(float_resized(grey, 32, "LANCZOS"), 8),
                       low_dct(base[np.ix_(near(32, d, 64 - d), near(32, d, 64 - d))], 8),
                       low_dct(base[np.ix_(near(32, d90, 64 - d90), near(32, d90, 64 - d90))], 8)]
    offsets = [round(3 * k / 2) for k in range(3)]  # 64 - 61 = 3 px of play over a 3 x 3 grid: 0, 2, 3
    expected_windows = [low_dct(base[np.ix_(near(61, 0, 64), near(61, 0, 64))], 16)]
    expected_windows += [low_dct(base[y : y + 61, x : x + 61], 16) for y in offsets for x in offsets]
    scale = np.abs(expected_windows[0]).max()
    np.testing.assert_allclose(hashes[0], np.array(expected_hashes), atol=1e-4 * scale)
    np.testing.assert_allclose(windows[0], np.array(expected_windows), atol=1e-4 * scale)


def test_phash_is_imagehash_recipe_and_is_stable():
    """The full-frame hash is imagehash's pHash of the decoded image (LANCZOS to 32 x 32, DCT, low 8 x 8 above
    the median) with the resize in float; imagehash's 8-bit resize differs from it by a bit or two at most."""
    import io

    import imagehash
    from PIL import Image

    for seed in range(4):
        data = jpeg(scene(seed))
        crops, verify, _ = hash_bytes(data, DedupSettings(decode_px=4096))
        low = low_dct(float_resized(np.asarray(Image.open(io.BytesIO(data)).convert("L")), 32, "LANCZOS"), 8)
        assert crops[0] == pack((low > np.median(low)).ravel())
        eight_bit = imagehash.phash(Image.open(io.BytesIO(data)).convert("L"))
        assert imagehash.hex_to_hash(crops[0].hex()) - eight_bit <= 2
        assert len(crops) == 3 and len(verify) == 10 and all(len(v) == 32 for v in verify)
        assert hash_bytes(data, DedupSettings())[0] == hash_bytes(data, DedupSettings())[0]


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_hash_applies_exif_orientation(orientation, byte_order):
    """The fast grey JPEG path (simplejpeg) and Pillow's exif_transpose path agree: an image stored sideways with
    an EXIF orientation hashes like the upright image; orientation 1 written explicitly changes nothing."""
    import io

    from PIL import Image

    upright = scene(5, (320, 200))
    stored = upright.transpose({1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                                8: Image.Transpose.ROTATE_270}[orientation]) if orientation != 1 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif.endian = byte_order  # both TIFF byte orders (MM / II)
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=95, exif=exif.tobytes())
    reference = hash_bytes(jpeg(upright, 95), DedupSettings())
    rotated = hash_bytes(out.getvalue(), DedupSettings())
    assert rotated[2][0] > rotated[2][1]  # decoded upright (landscape), whichever decoder scale was used
    distance = sum(bin(a ^ b).count("1") for a, b in zip(rotated[0][0], reference[0][0], strict=True))
    assert distance <= 4  # the same picture (JPEG of a rotated image differs by rounding only)


@pytest.mark.parametrize("kind", ["phash", "dhash"])
def test_hashing_a_batch_equals_hashing_one_by_one(kind):
    """A batch keeps each image's hashes in its place, undecodable files included (their exception in place)."""
    import io

    from sufra.tasks.curate.hashing import hash_many

    png = io.BytesIO()
    scene(4).save(png, "PNG")
    datas = [jpeg(scene(1)), b"not an image", jpeg(scene(2), 60), png.getvalue(), jpeg(scene(3))[:200]]
    settings = DedupSettings(hash_kind=kind)
    batch = hash_many(datas, settings)
    assert [isinstance(r, Exception) for r in batch] == [False, True, False, False, True]
    for data, result in zip(datas, batch, strict=True):
        if not isinstance(result, Exception):
            assert result == hash_bytes(data, settings)
    assert batch[0][0] != batch[2][0]  # distinct pictures, distinct hashes


@pytest.mark.parametrize("kind, bits", [("phash", 64), ("dhash", 64), ("whash", 64), ("colorhash", 56)])
def test_hash_kinds_selectable(kind, bits):
    crops, _, _ = hash_bytes(jpeg(scene(1)), DedupSettings(hash_kind=kind))
    assert len(crops[0]) == (bits + 7) // 8


def test_pair_search_is_exact_against_brute_force():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (600, 8), dtype=np.uint8)
    codes[300:320] = codes[0:20] ^ (rng.random((20, 8)) < 0.08).astype(np.uint8) * rng.integers(1, 256, (20, 8)).astype(np.uint8)
    owners = np.arange(600)
    a, b, d = pair_search(codes, owners, threshold=14, block_size=128)
    bits = np.unpackbits(codes, axis=1).astype(np.int32)
    full = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    ia, ib = np.nonzero(np.triu(full <= 14, 1))
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == set(zip(ia.tolist(), ib.tolist(), strict=True))
    assert all(full[x, y] == z for x, y, z in zip(a, b, d, strict=True))
    # incremental: only pairs with a row >= 300
    a2, b2, _ = pair_search(codes, owners, threshold=14, first_new=300, block_size=128)
    assert set(zip(a2.tolist(), b2.tolist(), strict=True)) == {(x, y) for x, y in zip(ia.tolist(), ib.tolist(), strict=True) if y >= 300}


def test_cross_class_group_is_flagged(tmp_path):
    root = DataRoot(tmp_path / "data")
    base = scene(11)
    ids = store(root, "egypt", [("koshari", jpeg(base)), ("mahshi", jpeg(transforms(base, 1)["jpeg60"])),
                                ("koshari", jpeg(scene(12)))])
    run_curate(root)
    rows = {r.image_id: r for r in root.read_records(DUPLICATES, "egypt")}
    assert {rows[ids[0]].kind, rows[ids[1]].kind} == {"cross_class"}
    assert [rows[i].dropped for i in ids[:2]].count(False) == 1  # review mode: representative kept, flagged
    assert ids[2] not in rows
    drop = CurateSettings(dedup=DedupSettings(workers=1), cross_class="drop")
    root2 = DataRoot(tmp_path / "data2")
    ids2 = store(root2, "egypt", [("koshari", jpeg(base)), ("mahshi", jpeg(transforms(base, 1)["jpeg60"]))])
    run_curate(root2, settings=drop)
    assert all(r.dropped for r in root2.read_records(DUPLICATES, "egypt"))
    assert {r.image_id for r in root2.read_records(SPLITS, "egypt")}.isdisjoint(ids2)


def test_exact_duplicates_from_collect_join_the_group(tmp_path):
    root = DataRoot(tmp_path / "data")
    ids = store(root, "egypt", [("koshari", jpeg(scene(5)))])
    dup = ImageRecord(image_id="url:abc", url_hash="abc", country="egypt", dish="mahshi", query="q", engine="bing",
                      fetched_at=utcnow(), status="rejected:exact_duplicate", duplicate_of=ids[0])
    root.write_table(IMAGES, "egypt", [dup], "collect2")
    run_curate(root)
    rows = {r.image_id: r for r in root.read_records(DUPLICATES, "egypt")}
    assert rows["url:abc"].representative_id == ids[0] and rows["url:abc"].kind == "cross_class"
    assert rows[ids[0]].kind == "cross_class" and not rows[ids[0]].dropped


def test_corrupt_file_is_a_rejected_row_and_flow_goes_on(tmp_path):
    root = DataRoot(tmp_path / "data")
    ids = store(root, "egypt", [("koshari", jpeg(scene(1))), ("koshari", jpeg(scene(2)))])
    path = root.image_path(ids[0], "jpg")
    with open(path, "wb") as fh:
        fh.write(b"\xff\xd8\xff garbage")
    result = run_curate(root)
    hashes = {r.image_id: r for r in root.read_records(HASHES, "egypt")}
    assert hashes[ids[0]].status == "rejected:corrupt" and hashes[ids[0]].error_message
    assert [r.image_id for r in root.read_records(SPLITS, "egypt")] == [ids[1]]
    assert result.counts["rejected_hash"] == 1


def test_missing_file_is_a_rejected_row(tmp_path):
    root = DataRoot(tmp_path / "data")
    ids = store(root, "egypt", [("koshari", jpeg(scene(1)))])
    import os

    os.remove(root.image_path(ids[0], "jpg"))
    run_curate(root)
    assert root.read_records(HASHES, "egypt")[0].status == "rejected:unreadable"


# -- splits ------------------------------------------------------------------------------------------------------
def make_units(n_dishes=3, per_dish=47, group_every=9):
    units = []
    for d in range(n_dishes):
        for i in range(per_dish):
            group = f"d{d}-g{i // 3}" if i % group_every < 3 else f"d{d}-s{i}"
            units.append(Unit(f"d{d}-img{i}", f"dish{d}", group))
    return units


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_split_invariants(seed):
    settings = SplitSettings(seed=seed)
    units = make_units()
    splits = assign_splits(units, {}, settings)
    assert set(splits) == {u.image_id for u in units}
    by_group = {}
    for u in units:
        by_group.setdefault(u.group_id, set()).add(splits[u.image_id])
    assert all(len(s) == 1 for s in by_group.values())  # no group crosses splits
    for dish in {u.dish for u in units}:
        members = [u for u in units if u.dish == dish]
        counts = Counter(splits[u.image_id] for u in members)
        for split, ratio in settings.ratios.items():
            assert abs(counts[split] - ratio * len(members)) <= 1, (dish, counts)
    assert assign_splits(units, {}, settings) == splits  # deterministic


def test_split_is_stable_when_images_arrive():
    settings = SplitSettings(seed=3)
    old = make_units(per_dish=30)
    first = assign_splits(old, {}, settings)
    new = old + [Unit(f"new{i}", f"dish{i % 3}", f"new-g{i}") for i in range(40)] + [Unit("late", "dish0", old[0].group_id)]
    second = assign_splits(new, first, settings)
    assert set(second) == {u.image_id for u in new} - set(first)
    assert second["late"] == first[old[0].image_id]  # joins its group's split
    merged = {**first, **second}
    for dish in ("dish0", "dish1", "dish2"):
        members = [u for u in new if u.dish == dish]
        counts = Counter(merged[u.image_id] for u in members)
        assert abs(counts["train"] - 0.8 * len(members)) <= 2


def test_curate_rerun_keeps_assignments_and_only_checks_new(tmp_path):
    root = DataRoot(tmp_path / "data")
    store(root, "egypt", [("koshari", jpeg(scene(s))) for s in range(20)])
    run_curate(root, run_id="c1")
    before = {r.image_id: r.split for r in root.read_records(SPLITS, "egypt")}
    base = scene(3)
    new_ids = store(root, "egypt", [("koshari", jpeg(transforms(base, 0)["jpeg60"]).replace(b"", b"")),
                                    ("koshari", jpeg(scene(100)))], run_id="seed2")
    result = run_curate(root, run_id="c2")
    after = {r.image_id: r.split for r in root.read_records(SPLITS, "egypt")}
    assert all(after[i] == s for i, s in before.items())
    assert result.counts["new_images"] == 2
    hashed_twice = Counter(r["image_id"] for r in root.read_table(HASHES, "egypt", latest=False).to_pylist())
    assert max(hashed_twice.values()) == 1  # old images were not re-hashed
    dup = {r.image_id: r for r in root.read_records(DUPLICATES, "egypt")}
    assert dup[new_ids[0]].dropped and new_ids[1] in after


def test_hashing_in_worker_processes_matches_single(tmp_path):
    root = DataRoot(tmp_path / "data")
    store(root, "egypt", [("koshari", jpeg(scene(s))) for s in range(30)])
    items = images_to_hash(root, "egypt")
    from sufra.tasks.curate.hashing import hash_images

    single = [r for chunk in hash_images(items, root.url, DedupSettings(workers=1)) for r in chunk]
    multi = [r for chunk in hash_images(items, root.url, DedupSettings(workers=2), chunk_size=8) for r in chunk]
    assert sorted(single, key=lambda r: r.image_id) == sorted(multi, key=lambda r: r.image_id)
    assert len(list(itertools.chain(single))) == 30


def test_curate_flow_writes_tables_report_and_manifest(tmp_path, prefect_harness):
    from sufra.flows.curate import curate

    root = DataRoot(tmp_path / "data")
    base = scene(42)
    store(root, "egypt", [("koshari", jpeg(scene(s))) for s in range(8)] +
          [("koshari", jpeg(base)), ("koshari", jpeg(transforms(base, 2)["crop5"]))])
    counts = curate(country="egypt", data_root=str(root.root), settings=SINGLE)
    assert counts["hash_ok"] == 10 and counts["duplicate_groups"] == 1 and counts["dropped"] == 1
    report = (tmp_path / "data" / counts["report"].split("/data/", 1)[1]).read_text()
    assert "group of 2" in report and report.count("data:image/jpeg;base64,") == 2
    manifests = list((tmp_path / "data" / "runs").glob("*.json"))
    assert len(manifests) == 1 and '"status": "completed"' in manifests[0].read_text()
    assert len(root.read_records(SPLITS, "egypt")) == 9
