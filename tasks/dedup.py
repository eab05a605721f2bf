"""Perceptual hashing and exact near-duplicate search.

Hashing: one decode per image (JPEG ``draft`` to ~``decode_px``, grayscale), imagehash hashes of several centre
crops (a single global hash misses 5% crops), and 256-bit pHashes of a grid of shifted windows for verification.
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

from schemas.tables import HashRecord
from sufra.pools import discard_pool, process_pool

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
    import imagehash

    if kind == "phash":
        value = imagehash.phash(image, hash_size=size)
    elif kind == "dhash":
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


def _selection(indices: np.ndarray, size: int) -> np.ndarray:
    """The 0/1 matrix that picks ``indices`` out of ``size`` rows (nearest-index resampling as a matrix)."""
    out = np.zeros((len(indices), size))
    out[np.arange(len(indices)), indices] = 1.0
    return out


class _BlockPlan:
    """Distinct row maps (stacked into ``left``) and column maps (side by side in ``right``) on the 64 x 64 base,
    with the flat indices of each wanted block in the ``left @ base @ right`` product."""

    def __init__(self, base: int):
        self.base = base
        self.maps: dict[str, list[np.ndarray]] = {"rows": [], "cols": []}
        self.placed: dict[str, dict[tuple, tuple[int, int]]] = {"rows": {}, "cols": {}}

    def _place(self, side: str, basis: np.ndarray, indices: np.ndarray) -> tuple[int, int]:
        """(first row, row count) of ``basis @ S(indices)`` in the stacked maps of ``side``, added once."""
        key = (basis.shape, tuple(indices))
        if key not in self.placed[side]:
            start = sum(len(m) for m in self.maps[side])
            self.maps[side].append(basis @ _selection(indices, self.base))
            self.placed[side][key] = (start, len(basis))
        return self.placed[side][key]

    def block(self, basis: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
        """The DCT block ``basis @ base[ys][:, xs] @ basis.T`` (nearest-index resampling as 0/1 matrices)."""
        return self._place("rows", basis, ys), self._place("cols", basis, xs)

    def matrices(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.maps["rows"]), np.concatenate(self.maps["cols"]).T

    def index(self, blocks: list[tuple[tuple[int, int], tuple[int, int]]], width: int) -> np.ndarray:
        """Flat indices (blocks x values, row-major within a block) into the ``left @ base @ right`` product."""
        out = [((np.arange(r0, r0 + nr)[:, None]) * width + np.arange(c0, c0 + nc)[None, :]).ravel()
               for (r0, nr), (c0, nc) in blocks]
        return np.array(out, dtype=np.intp).reshape(len(blocks), -1)


@functools.lru_cache(maxsize=16)
def _phash_plan(crops: tuple[float, ...], hash_size: int, window: float, grid: int) -> tuple[np.ndarray, ...]:
    """Linear maps from the 64 x 64 base to the low DCT blocks of every inner crop and verification window.

    A block is ``L @ base @ R`` with ``L = B @ S_y`` and ``R = (B @ S_x).T`` (``S``: its nearest-index resampling,
    ``B``: the first rows of the DCT-II basis). Crops and windows share their row and column ranges (a 3 x 3 grid
    of windows has 3 distinct row ranges), so ``left @ base @ right`` with the distinct maps stacked computes every
    block in two matrix products, and the indices pick them out. Returns (left, right, crop index, window index).
    """
    base = VERIFY_BASE_PX
    side = hash_size * 4  # imagehash's highfreq_factor
    basis = _dct_basis(side, hash_size)
    plan = _BlockPlan(base)
    crop_blocks = []
    for fraction in crops:
        if fraction < 1.0:
            x0, y0, x1, y1 = _centre_box((base, base), fraction)
            crop_blocks.append(plan.block(basis, np.linspace(y0, y1 - 1, side).round().astype(int),
                                          np.linspace(x0, x1 - 1, side).round().astype(int)))
    win = round(base * window)
    vbasis = _dct_basis(win, VERIFY_BITS_SIDE)
    offsets = [round((base - win) * k / max(1, grid - 1)) for k in range(grid)]
    full = np.linspace(0, base - 1, win).round().astype(int)  # the full square resized to the window side
    pairs = [(full, full)] + [(np.arange(y, y + win), np.arange(x, x + win)) for y in offsets for x in offsets]
    window_blocks = [plan.block(vbasis, ys, xs) for ys, xs in pairs]
    left, right = plan.matrices()
    width = right.shape[1]
    crop_index = plan.index(crop_blocks, width) if crop_blocks else np.zeros((0, hash_size**2), np.intp)
    return left, right, crop_index, plan.index(window_blocks, width)


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
    from tasks.jpeg import decode_scaled, needs_pillow

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


Hashes = tuple[list[bytes], list[bytes], tuple[int, int]]  # crop hashes, verification hashes, decoded (w, h)


def hash_many(datas: Sequence[bytes], settings: DedupSettings) -> list[Hashes | Exception]:
    """Hashes of encoded images, or the exception that made one undecodable (in its place).

    One decode per image, scaled down in the JPEG decoder to about ``decode_px``, EXIF orientation applied; then
    two Pillow resizes: the 64 x 64 bilinear base and, for pHash, imagehash's 32 x 32 LANCZOS input. pHash of the
    full frame is exactly imagehash.phash of the decoded image; the inner crops and the 256-bit verification
    windows (the pHash recipe on 61 x 61 windows of the base) are blocks of one ``left @ base @ right`` product
    (:func:`_phash_plan`). The medians and bit packing of a batch run as array operations.
    """
    from PIL import Image

    phash = settings.hash_kind == "phash"
    side = settings.hash_size * 4
    out: list[Hashes | Exception] = []
    bases, fulls, images = [], [], []
    for data in datas:
        try:
            grey = None if settings.hash_kind == "colorhash" else _decode_grey_jpeg(data, settings.decode_px)
            image = _decode_pillow(data, settings.hash_kind == "colorhash", settings.decode_px) if grey is None \
                else Image.fromarray(grey)
            gray = image.convert("L") if image.mode != "L" else image
            bases.append(np.asarray(gray.resize((VERIFY_BASE_PX, VERIFY_BASE_PX), Image.Resampling.BILINEAR),
                                    dtype=np.float64))
            if phash:
                fulls.append(np.asarray(gray.resize((side, side), Image.Resampling.LANCZOS), dtype=np.float64))
            images.append(None if phash else image)  # imagehash's other kinds hash the Pillow image
            out.append(image.size)
        except Exception as exc:  # one undecodable file is its own row, not a crash
            out.append(exc)
    if not bases:
        return out
    left, right, crop_index, window_index = _phash_plan(tuple(settings.crops), settings.hash_size,
                                                         settings.verify_window, settings.verify_grid)
    products = [(left @ base @ right).ravel() for base in bases]
    n = len(bases)
    verify = None
    if settings.verify:
        values = np.stack([p[window_index] for p in products])  # N x windows x 256
        verify = _above_median(values.reshape(-1, values.shape[2])).reshape(n, len(window_index), -1)
    if phash:
        basis = _dct_basis(side, settings.hash_size)
        blocks = np.stack([np.concatenate([(basis @ full @ basis.T).ravel()[None], p[crop_index]])
                           for full, p in zip(fulls, products, strict=True)])  # N x (1 + inner crops) x bits
        packed = _above_median(blocks.reshape(n * blocks.shape[1], -1)).reshape(n, blocks.shape[1], -1)
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
    from sufra.store import DataRoot

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

    Chunks are at most ``chunk_size`` images and at least four per worker when there are enough images, so that the
    last chunks do not leave a worker idle."""
    per_worker = -(-len(items) // (max(1, settings.workers) * 4))
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


HASH_PRELOAD = ("tasks.dedup", "tasks.jpeg", "schemas.tables", "sufra.store", "PIL.Image", "simplejpeg")


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
