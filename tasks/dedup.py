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
    decode_px: int = 64  # JPEG draft target: the decoder scales down (1/2..1/8) to at least this
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


@functools.lru_cache(maxsize=16)
def _phash_plan(crops: tuple[float, ...], hash_size: int, window: float, grid: int) -> tuple[np.ndarray, ...]:
    """Linear maps from the 64 x 64 base to the low DCT blocks of every inner crop and verification window.

    A window's block is ``L @ base @ R`` with ``L = B @ S_y`` and ``R = (B @ S_x).T`` (``S``: its nearest-index
    resampling, ``B``: the first rows of the DCT-II basis), so all crops are two batched matrix products, and so are
    all windows. Returns (crop L, crop R, window L, window R) as k x h x 64 and k x 64 x h stacks.
    """
    base = VERIFY_BASE_PX
    side = hash_size * 4  # imagehash's highfreq_factor
    basis = _dct_basis(side, hash_size)
    crop_l, crop_r = [], []
    for fraction in crops:
        if fraction < 1.0:
            x0, y0, x1, y1 = _centre_box((base, base), fraction)
            ys = np.linspace(y0, y1 - 1, side).round().astype(int)
            xs = np.linspace(x0, x1 - 1, side).round().astype(int)
            crop_l.append(basis @ _selection(ys, base))
            crop_r.append((basis @ _selection(xs, base)).T)
    win = round(base * window)
    vbasis = _dct_basis(win, VERIFY_BITS_SIDE)
    offsets = [round((base - win) * k / max(1, grid - 1)) for k in range(grid)]
    spans = [np.linspace(0, base - 1, win).round().astype(int)]  # the full square resized to the window side
    pairs = [(spans[0], spans[0])] + [(np.arange(y, y + win), np.arange(x, x + win)) for y in offsets for x in offsets]
    win_l = np.stack([vbasis @ _selection(ys, base) for ys, _ in pairs])
    win_r = np.stack([(vbasis @ _selection(xs, base)).T for _, xs in pairs])
    empty = np.zeros((0, hash_size, base)), np.zeros((0, base, hash_size))
    crop_l = np.stack(crop_l) if crop_l else empty[0]
    crop_r = np.stack(crop_r) if crop_r else empty[1]
    return crop_l, crop_r, win_l, win_r


def _above_median(blocks: np.ndarray) -> list[bytes]:
    """Each block's bits above its median (imagehash's rule; the median of an even count is the mean of the two
    middle values, as ``np.median`` computes it), packed big-endian."""
    flat = blocks.reshape(len(blocks), -1)
    n = flat.shape[1]
    ordered = np.sort(flat, axis=1)
    median = (ordered[:, (n - 1) // 2 : (n - 1) // 2 + 1] + ordered[:, n // 2 : n // 2 + 1]) * 0.5
    packed = np.packbits(flat > median, axis=1)
    width = packed.shape[1]
    raw = packed.tobytes()
    return [raw[i : i + width] for i in range(0, len(raw), width)]


def _decode_grey_jpeg(data: bytes, min_px: int):
    """Upright single-picture JPEGs: grey straight from libjpeg-turbo, DCT-scaled (the pixels Pillow's ``draft``
    gives, without Pillow's parsing: ~25% of the hashing time). ``None`` when Pillow has to decide."""
    from PIL import Image

    from tasks.jpeg import decode_scaled, needs_pillow

    if needs_pillow(data):
        return None
    grey = decode_scaled(data, min_px)
    return None if grey is None else Image.fromarray(grey[:, :, 0])


def _decode_pillow(data: bytes, colour: bool, min_px: int):
    from PIL import Image, ImageOps

    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft("RGB" if colour else "L", (min_px, min_px))
    image = ImageOps.exif_transpose(image)
    return image.convert("RGB" if colour else "L")


def hash_bytes(data: bytes, settings: DedupSettings) -> tuple[list[bytes], list[bytes], tuple[int, int]]:
    """Hashes of one encoded image: (crop hashes, verification hashes, decoded size). Raises on undecodable data.

    One decode, scaled down in the JPEG decoder to about ``decode_px``, EXIF orientation applied. pHash: the full
    frame exactly as imagehash.phash (LANCZOS to 32x32, DCT, median); inner crops and the 256-bit verification
    windows (the pHash recipe on 61x61 windows of a 64x64 bilinear base) through the linear maps of
    :func:`_phash_plan`.
    """
    from PIL import Image

    colour = settings.hash_kind == "colorhash"
    image = None if colour else _decode_grey_jpeg(data, settings.decode_px)
    if image is None:
        image = _decode_pillow(data, colour, settings.decode_px)
    gray = image.convert("L") if colour else image
    base = np.asarray(gray.resize((VERIFY_BASE_PX, VERIFY_BASE_PX), Image.Resampling.BILINEAR), dtype=np.float64)
    crop_l, crop_r, win_l, win_r = _phash_plan(tuple(settings.crops), settings.hash_size, settings.verify_window,
                                                 settings.verify_grid)
    if settings.hash_kind == "phash":
        side = settings.hash_size * 4
        basis = _dct_basis(side, settings.hash_size)
        full = np.asarray(image.resize((side, side), Image.Resampling.LANCZOS), dtype=np.float64)
        whole, *inner = _above_median(np.concatenate([(basis @ full @ basis.T)[None], crop_l @ base @ crop_r]))
        inner_hashes = iter(inner)
        crop_hashes = [whole if f >= 1.0 else next(inner_hashes) for f in settings.crops]
    else:
        crop_hashes = [pack(_hash_bits(centre_crop(image, f), settings.hash_kind, settings.hash_size)) for f in settings.crops]
    verify = _above_median(win_l @ base @ win_r) if settings.verify else []
    return crop_hashes, verify, image.size


def hash_one(item: HashInput, data: bytes | None, settings: DedupSettings, error: str | None = None) -> HashRecord:
    base = dict(image_id=item.image_id, country=item.country, dish=item.dish, hash_kind=settings.hash_kind,
                crops=[f"{f:.2f}" for f in settings.crops], width=item.width, height=item.height)
    bits = hash_bit_count(settings)
    if data is None:
        return HashRecord(**base, hash_bits=bits, hashes=[], verify_hashes=[], status="rejected:unreadable",
                          error_message=error)
    try:
        crop_hashes, verify, _ = hash_bytes(data, settings)
    except Exception as exc:  # a corrupt stored file is a row, not a crash
        return HashRecord(**base, hash_bits=bits, hashes=[], verify_hashes=[], status="rejected:corrupt",
                          error_message=f"{type(exc).__name__}: {exc}"[:200])
    return HashRecord(**base, hash_bits=bits, hashes=crop_hashes, verify_hashes=verify)


def hash_bit_count(settings: DedupSettings) -> int:
    if settings.hash_kind == "colorhash":
        return 14 * max(1, settings.hash_size // 2)
    return settings.hash_size**2


def _hash_chunk(items: list[HashInput], data_root: str, settings: DedupSettings) -> list[HashRecord]:
    from sufra.store import DataRoot

    root = DataRoot(data_root)
    out = []
    for item in items:
        try:
            data = root.read_bytes(item.path)
        except OSError as exc:
            out.append(hash_one(item, None, settings, f"{type(exc).__name__}: {exc}"[:200]))
            continue
        out.append(hash_one(item, data, settings))
    return out


def hash_images(items: Sequence[HashInput], data_root: str, settings: DedupSettings,
                chunk_size: int = 200) -> Iterator[list[HashRecord]]:
    """Hash images in worker processes (each reads its own files); yields one list of records per chunk."""
    chunks = [list(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]
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


HASH_PRELOAD = ("tasks.dedup", "tasks.jpeg", "schemas.tables", "sufra.store", "PIL.Image", "imagehash", "simplejpeg")


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
