"""Perceptual hashing and exact near-duplicate search.

Hashing: one decode per image (JPEG DCT-scaled to ~``decode_px``, grayscale), hashes of several centre crops (a
single global hash misses 5% crops; pHash by imagehash's recipe as matrix products, other kinds by imagehash), and
256-bit pHashes of a grid of shifted windows for verification.
Search: candidates are image pairs whose crop hashes are within ``candidate_threshold`` bits (exact: faiss binary
range search over blocks, only pairs that involve a new image); each candidate is verified by the aligned 256-bit
distance. Groups are connected components of verified pairs.
"""

from __future__ import annotations

import functools
import io
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from sufra.schemas.tables import HashRecord

from sufra.utils.pools import discard_pool, process_pool

HashKind = Literal["phash", "dhash", "whash", "colorhash"]


class DedupSettings(BaseModel):
    """Near-duplicate settings (saved in the curate run manifest)."""

    hash_kind: HashKind = "phash"
    hash_size: int = 8  # phash/dhash/whash: hash_size**2 bits; colorhash: binbits = hash_size // 2 (14*binbits bits)
    crops: list[float] = Field(default_factory=lambda: [1.0, 0.95, 0.90])  # centre crops: fraction of each side
    candidate_threshold: int = 12  # Hamming distance between any two crop hashes (bits of hash_kind)
    verify: bool = True
    verify_threshold: int = 64  # of 256 bits, aligned windows vs full image
    verify_window: float = 0.95
    verify_grid: int = 3
    # JPEG decode target: the decoder scales down (1/2..1/8) keeping both sides >= this; 32 = the pHash input side
    # (a 512 x 384 photo decodes at 64 x 48: DC coefficients only; the 5%-crop transform set keeps recall 1.0)
    decode_px: int = 32
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    block_size: int = 131072  # hashes per search block


@dataclass
class HashInput:
    image_id: str
    country: str
    dish: str
    path: str  # image path in the data root
    width: int
    height: int


def _hash_bits(image, kind: HashKind, size: int) -> np.ndarray:
    """imagehash's dhash, whash or colorhash of a Pillow image (pHash is computed for a batch: :func:`dct_blocks`)."""
    import imagehash

    if kind == "dhash":
        value = imagehash.dhash(image, hash_size=size)
    elif kind == "whash":
        value = imagehash.whash(image, hash_size=size)
    else:
        value = imagehash.colorhash(image, binbits=max(1, size // 2))
    return np.asarray(value.hash, dtype=bool).ravel()


def pack(bits: np.ndarray) -> bytes:
    """Pack a bool vector big-endian, padded with zero bits to whole bytes."""
    return np.packbits(bits).tobytes()


def _centre_box(size: tuple[int, int], fraction: float) -> tuple[int, int, int, int]:
    w, h = size
    dx, dy = round(w * (1 - fraction) / 2), round(h * (1 - fraction) / 2)
    return (dx, dy, w - dx, h - dy)


def centre_crop(image, fraction: float):
    return image if fraction >= 1.0 else image.crop(_centre_box(image.size, fraction))


@functools.lru_cache(maxsize=16)
def _dct_basis(n: int, k: int) -> np.ndarray:
    """Rows 0..k-1 of the unnormalised DCT-II matrix of size n (scipy's ``dct(type=2, norm=None)``)."""
    rows = np.arange(k)[:, None]
    cols = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * rows * (2 * cols + 1) / (2 * n))


VERIFY_BASE_PX = 64
VERIFY_BITS_SIDE = 16  # verification hashes: 16 x 16 = 256 bits
HASH_DTYPE = np.float32  # same hashes as float64 on the 1,500 benchmark photos, ~10% faster


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where((x >= -3.0) & (x < 3.0), np.sinc(x) * np.sinc(x / 3.0), 0.0)


_FILTERS = {"bilinear": (_bilinear, 1.0), "lanczos": (_lanczos, 3.0)}  # Pillow's filters and their supports


def resample_weights(in_size: int, out_size: int, filter_name: str) -> np.ndarray:
    """The ``out_size x in_size`` matrix of the weights Pillow's ``Image.resize`` applies along one axis (its
    ``precompute_coeffs``: the filter stretched by the downscale factor, every row normalised), in float: one
    axis of Pillow's resize of an 'F' (float) image. 8-bit images differ from it by Pillow's rounding and clipping
    of each pass."""
    function, support = _FILTERS[filter_name]
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    centres = (np.arange(out_size) + 0.5) * scale
    first = np.maximum(np.trunc(centres - support * stretch + 0.5), 0)[:, None]  # C's (int) cast truncates
    end = np.minimum(np.trunc(centres + support * stretch + 0.5), in_size)[:, None]
    x = np.arange(in_size)[None, :]
    weights = np.where((x >= first) & (x < end), function((x - centres[:, None] + 0.5) / stretch), 0.0)
    total = weights.sum(axis=1, keepdims=True)
    return weights / np.where(total == 0.0, 1.0, total)


@dataclass(frozen=True, eq=False)  # cached: compared and hashed by identity
class _HashPlan:
    """The DCT blocks of one image as ``M_r(h) @ grey @ M_c(w).T``, with ``M_r``, ``M_c`` linear maps from an image
    side of any length (:func:`_side_maps`). Maps are named by ``(DCT rows, resampling, sample indices or None)``
    and stacked in ``maps`` order; ``hash_maps`` (blocks x k: pHash blocks are square, one map for rows and
    columns) and ``window_rows``/``window_cols`` (blocks x 16) are their row numbers in the stack, per block."""

    maps: tuple[tuple[int, str, tuple[int, ...] | None], ...]
    hash_maps: np.ndarray
    window_rows: np.ndarray
    window_cols: np.ndarray


@functools.lru_cache(maxsize=16)
def _hash_plan(crops: tuple[float, ...], hash_size: int, window: float, grid: int, phash: bool) -> _HashPlan:
    """pHash blocks (``phash``: full frame, then the inner crops) and the verification windows.

    Full frame: imagehash's pHash recipe (the grey image resized to ``4 * hash_size`` square with LANCZOS, low DCT
    block). Inner crops and windows are cut from a 64 x 64 BILINEAR base, resampled to their DCT side by nearest
    index: the crop of ``fraction`` of each side around the centre, the whole base, and a ``grid`` x ``grid`` grid
    of windows of ``window`` of each side (a 3 x 3 grid has only 3 distinct row and column ranges).
    """
    base = VERIFY_BASE_PX
    side = hash_size * 4  # imagehash's highfreq_factor
    maps: list[tuple[int, str, tuple[int, ...] | None]] = []

    def rows_of(spec: tuple[int, str, tuple[int, ...] | None]) -> np.ndarray:
        if spec not in maps:
            maps.append(spec)
        start = sum(k for k, _, _ in maps[: maps.index(spec)])
        return np.arange(start, start + spec[0])

    hash_specs = []
    if phash:
        hash_specs.append((hash_size, "lanczos", None))
        for fraction in crops:
            if fraction < 1.0:
                x0, _, x1, _ = _centre_box((base, base), fraction)
                hash_specs.append((hash_size, "bilinear", tuple(np.linspace(x0, x1 - 1, side).round().astype(int))))
    win = round(base * window)
    offsets = [round((base - win) * k / max(1, grid - 1)) for k in range(grid)]
    full = (VERIFY_BITS_SIDE, "bilinear", tuple(np.linspace(0, base - 1, win).round().astype(int)))
    shifted = [(VERIFY_BITS_SIDE, "bilinear", tuple(range(o, o + win))) for o in offsets]
    window_pairs = [(full, full)] + [(y, x) for y in shifted for x in shifted]
    hash_index = np.array([rows_of(s) for s in hash_specs], dtype=np.intp).reshape(len(hash_specs), hash_size)
    window_rows = np.array([rows_of(y) for y, _ in window_pairs], dtype=np.intp)
    window_cols = np.array([rows_of(x) for _, x in window_pairs], dtype=np.intp)
    return _HashPlan(tuple(maps), hash_index, window_rows, window_cols)


@functools.lru_cache(maxsize=256)  # ~0.2 MB each for a side of 300 px (a 2,400 px photo at 1/8)
def _side_maps(n: int, plan: _HashPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an image side of ``n`` pixels: the stacked maps (rows x n), and the column factors of the hash and window
    blocks (blocks x n x k), in :data:`HASH_DTYPE`."""
    base = VERIFY_BASE_PX
    stacked = []
    for k, resampling, indices in plan.maps:
        if indices is None:  # the full frame: DCT of the LANCZOS-resized side
            stacked.append(_dct_basis(k * 4, k) @ resample_weights(n, k * 4, resampling))
        else:
            stacked.append(_dct_basis(len(indices), k) @ resample_weights(n, base, resampling)[list(indices)])
    maps = np.concatenate(stacked).astype(HASH_DTYPE)
    return maps, maps[plan.hash_maps].transpose(0, 2, 1).copy(), maps[plan.window_cols].transpose(0, 2, 1).copy()


def dct_blocks(greys: Sequence[np.ndarray], settings: DedupSettings) -> tuple[np.ndarray, np.ndarray]:
    """The values the hash bits are taken from, for grey H x W images: (N x pHash blocks x k x k, N x windows x
    16 x 16); pHash blocks (``hash_kind`` phash only) are the full frame then the inner crops. Images of one shape
    are computed together: ``maps(h) @ stack @ maps(w).T``, the second product per block."""
    plan = _hash_plan(tuple(settings.crops), settings.hash_size, settings.verify_window, settings.verify_grid,
                      settings.hash_kind == "phash")
    k = plan.hash_maps.shape[1]
    hashes = np.empty((len(greys), len(plan.hash_maps), k, k), HASH_DTYPE)
    windows = np.empty((len(greys), len(plan.window_rows), VERIFY_BITS_SIDE, VERIFY_BITS_SIDE), HASH_DTYPE)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, grey in enumerate(greys):
        by_shape.setdefault(grey.shape, []).append(i)
    for (h, w), members in by_shape.items():
        row_maps = _side_maps(h, plan)[0]
        _, hash_cols, window_cols = _side_maps(w, plan)
        stage = row_maps @ np.stack([greys[i] for i in members]).astype(HASH_DTYPE)  # N x rows x w
        if len(plan.hash_maps):
            hashes[members] = stage[:, plan.hash_maps] @ hash_cols
        windows[members] = stage[:, plan.window_rows] @ window_cols
    return hashes, windows


def _above_median(blocks: np.ndarray) -> np.ndarray:
    """Each block's bits above its median (imagehash's rule; the median of an even count is the mean of the two
    middle values, as ``np.median`` computes it), packed big-endian: one row of bytes per block."""
    flat = blocks.reshape(len(blocks), -1)
    n = flat.shape[1]
    ordered = np.sort(flat, axis=1)
    median = (ordered[:, (n - 1) // 2 : (n - 1) // 2 + 1] + ordered[:, n // 2 : n // 2 + 1]) * 0.5
    return np.packbits(flat > median, axis=1)


def _decode_grey_jpeg(data: bytes, min_px: int) -> np.ndarray | None:
    """Upright single-picture JPEGs: grey straight from libjpeg-turbo, DCT-scaled (the pixels Pillow's ``draft``
    gives, without Pillow's parsing: ~25% of the hashing time). ``None`` when Pillow has to decide."""
    from sufra.utils.jpeg import decode_scaled, needs_pillow

    if needs_pillow(data):
        return None
    grey = decode_scaled(data, min_px)
    return None if grey is None else grey[:, :, 0]


def _decode_pillow(data: bytes, colour: bool, min_px: int):
    from PIL import Image, ImageOps

    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft("RGB" if colour else "L", (min_px, min_px))
    image = ImageOps.exif_transpose(image)
    return image.convert("RGB" if colour else "L")


def _decode(data: bytes, settings: DedupSettings):
    """(grey H x W uint8 array, the Pillow image imagehash hashes: ``None`` for pHash, which needs none)."""
    from PIL import Image

    colour = settings.hash_kind == "colorhash"
    grey = None if colour else _decode_grey_jpeg(data, settings.decode_px)
    if grey is not None:
        return grey, None if settings.hash_kind == "phash" else Image.fromarray(grey)
    image = _decode_pillow(data, colour, settings.decode_px)
    return np.asarray(image.convert("L") if colour else image), None if settings.hash_kind == "phash" else image


Hashes = tuple[list[bytes], list[bytes], tuple[int, int]]  # crop hashes, verification hashes, decoded (w, h)


def hash_many(datas: Sequence[bytes], settings: DedupSettings) -> list[Hashes | Exception]:
    """Hashes of encoded images, or the exception that made one undecodable (in its place).

    One decode per image, scaled down in the JPEG decoder to about ``decode_px``, EXIF orientation applied. Every
    pHash block (full frame and inner crops) and 256-bit verification window is a linear function of the grey
    pixels: Pillow's resampling weights (:func:`resample_weights`), nearest-index crops and the DCT basis compose
    into one map per image side (:func:`_side_maps`, cached per side length), so an image costs two matrix
    products (:func:`dct_blocks`) and the medians and bit packing of a batch run as array operations. The full
    frame is imagehash's pHash recipe with Pillow's LANCZOS evaluated in float (imagehash's 8-bit resize rounds and
    clips: 1-2 of 64 bits differ on ~6% of photos). Other kinds hash the decoded image with imagehash itself.
    """
    phash = settings.hash_kind == "phash"
    out: list[Hashes | Exception] = []
    greys, images = [], []
    for data in datas:
        try:
            grey, image = _decode(data, settings)
            greys.append(grey)
            images.append(image)
            out.append((grey.shape[1], grey.shape[0]))
        except Exception as exc:  # one undecodable file is its own row, not a crash
            out.append(exc)
    if not greys:
        return out
    hash_blocks, window_blocks = dct_blocks(greys, settings)
    n = len(greys)
    verify = None
    if settings.verify:
        verify = _above_median(window_blocks.reshape(n * window_blocks.shape[1], -1)).reshape(n, window_blocks.shape[1], -1)
    if phash:
        packed = _above_median(hash_blocks.reshape(n * hash_blocks.shape[1], -1)).reshape(n, hash_blocks.shape[1], -1)
    results = iter(range(n))
    for at, size in enumerate(out):
        if isinstance(size, Exception):
            continue
        i = next(results)
        if phash:
            inner = iter(packed[i, 1:])
            crop_hashes = [(packed[i, 0] if f >= 1.0 else next(inner)).tobytes() for f in settings.crops]
        else:
            crop_hashes = [pack(_hash_bits(centre_crop(images[i], f), settings.hash_kind, settings.hash_size))
                           for f in settings.crops]
        windows = [] if verify is None else [row.tobytes() for row in verify[i]]
        out[at] = (crop_hashes, windows, size)
    return out


def hash_bytes(data: bytes, settings: DedupSettings) -> Hashes:
    """Hashes of one encoded image (see :func:`hash_many`). Raises on undecodable data."""
    result = hash_many([data], settings)[0]
    if isinstance(result, Exception):
        raise result
    return result


def _hash_records(items: Sequence[HashInput], datas: Sequence[bytes | None], settings: DedupSettings,
                  errors: Sequence[str | None]) -> list[HashRecord]:
    crops = [f"{f:.2f}" for f in settings.crops]
    bits = hash_bit_count(settings)
    readable = [i for i, data in enumerate(datas) if data is not None]
    hashed = dict(zip(readable, hash_many([datas[i] for i in readable], settings), strict=True))
    out = []
    for i, item in enumerate(items):
        base = dict(image_id=item.image_id, country=item.country, dish=item.dish, hash_kind=settings.hash_kind,
                    crops=crops, width=item.width, height=item.height, hash_bits=bits)
        result = hashed.get(i)
        if result is None:
            out.append(HashRecord(**base, hashes=[], verify_hashes=[], status="rejected:unreadable",
                                  error_message=errors[i]))
        elif isinstance(result, Exception):  # a corrupt stored file is a row, not a crash
            out.append(HashRecord(**base, hashes=[], verify_hashes=[], status="rejected:corrupt",
                                  error_message=f"{type(result).__name__}: {result}"[:200]))
        else:
            out.append(HashRecord(**base, hashes=result[0], verify_hashes=result[1]))
    return out


def hash_bit_count(settings: DedupSettings) -> int:
    if settings.hash_kind == "colorhash":
        return 14 * max(1, settings.hash_size // 2)
    return settings.hash_size**2


def _hash_chunk(items: list[HashInput], data_root: str, settings: DedupSettings) -> list[HashRecord]:
    from sufra.core.store import DataRoot

    read = DataRoot(data_root).read_bytes
    datas: list[bytes | None] = []
    errors: list[str | None] = []
    for item in items:
        try:
            datas.append(read(item.path))
            errors.append(None)
        except OSError as exc:
            datas.append(None)
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
    return _hash_records(items, datas, settings, errors)


def hash_images(items: Sequence[HashInput], data_root: str, settings: DedupSettings,
                chunk_size: int = 200) -> Iterator[list[HashRecord]]:
    """Hash images in worker processes (each reads its own files); yields one list of records per chunk.

    Chunks are at most ``chunk_size`` images and at least eight per worker when there are enough images, so that the
    last chunks do not leave a worker idle."""
    per_worker = -(-len(items) // (max(1, settings.workers) * 8))
    size = max(1, min(chunk_size, max(per_worker, 16)))
    chunks = [list(items[i : i + size]) for i in range(0, len(items), size)]
    # a daemonic process (e.g. a Dask worker) may not start children: hash in-process there
    if settings.workers <= 1 or len(chunks) <= 1 or multiprocessing.current_process().daemon:
        for chunk in chunks:
            yield _hash_chunk(chunk, data_root, settings)
        return
    pool = process_pool(settings.workers, HASH_PRELOAD)
    try:
        yield from pool.map(_hash_chunk, chunks, [data_root] * len(chunks), [settings] * len(chunks))
    except BrokenProcessPool:
        discard_pool(settings.workers, HASH_PRELOAD)
        raise


HASH_PRELOAD = ("sufra.tasks.curate.hashing", "sufra.utils.jpeg", "sufra.schemas.tables", "sufra.core.store", "PIL.Image", "simplejpeg")


# -- search ----------------------------------------------------------------------------------------------------
def pair_search(codes: np.ndarray, owners: np.ndarray, threshold: int, first_new: int = 0,
                block_size: int = 131072) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs of rows within ``threshold`` bits that involve at least one row at or after ``first_new``.

    ``codes``: N x B uint8 packed hashes; ``owners``: N image indices (pairs of the same owner are skipped).
    Returns (owner_a, owner_b, distance) with owner_a < owner_b and the minimum distance per owner pair.
    Exact: faiss brute-force Hamming range search, block by block (each pair compared once).
    """
    import faiss

    n = len(codes)
    out_a, out_b, out_d = [], [], []
    if n == 0 or first_new >= n:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int32)
    dim = codes.shape[1] * 8
    for q_start in range(first_new, n, block_size):
        q_end = min(n, q_start + block_size)
        queries = np.ascontiguousarray(codes[q_start:q_end])
        for i_start in range(0, q_end, block_size):
            i_end = min(q_end, i_start + block_size)
            index = faiss.IndexBinaryFlat(dim)
            index.add(np.ascontiguousarray(codes[i_start:i_end]))
            lims, dist, ids = index.range_search(queries, threshold + 1)  # faiss: strictly below the radius
            rows = np.repeat(np.arange(q_start, q_end), np.diff(lims).astype(np.int64))
            cols = ids.astype(np.int64) + i_start
            keep = cols < rows  # each pair once: a later row against earlier rows
            rows, cols, dist = rows[keep], cols[keep], dist[keep]
            a, b = owners[rows], owners[cols]
            other = a != b
            out_a.append(np.minimum(a, b)[other])
            out_b.append(np.maximum(a, b)[other])
            out_d.append(dist[other])
    a = np.concatenate(out_a)
    b = np.concatenate(out_b)
    d = np.concatenate(out_d).astype(np.int32)
    if len(a) == 0:
        return a, b, d
    order = np.lexsort((d, b, a))  # per owner pair keep the smallest distance
    a, b, d = a[order], b[order], d[order]
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first], d[first]


def popcount_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Hamming distances between packed rows (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(x, y)).sum(axis=-1)


def verified_distance(verify_a: np.ndarray, verify_b: np.ndarray) -> int:
    """Aligned distance: min over windows of one image against the other's full frame (row 0), both ways."""
    one = popcount_distance(verify_a, verify_b[0][None, :]).min()
    two = popcount_distance(verify_b, verify_a[0][None, :]).min()
    return int(min(one, two))


def connected_groups(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component label per node (0..n-1) of the undirected graph with edges (a, b)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels
