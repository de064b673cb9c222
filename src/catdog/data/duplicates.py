"""Duplicate images: the same photo twice, byte for byte or re-encoded, resized, lightly
cropped or brightened.

Two fingerprints find them, chosen by measurement (benchmarks/audit.md):

- `perceptual_hash`, computed while a scan checks each file (from the small decode the
  check makes anyway): pHash, the 64 signs of the lowest 8x8 frequencies of the discrete
  cosine transform of the image at 32x32 in grey, against their median (the algorithm of
  `imagehash.phash`, written out here because it is one matrix product, and that package
  would bring SciPy and PyWavelets into every install). It finds re-encoded, resized and
  brightened copies; a crop of a few percent moves it by more bits.
- the backbone's embedding (`catdog.audit`), which finds crops as well, at the cost of
  running the network over every image.

Pairs are found by comparing tiles of the whole matrix of pairs at once (numpy), never
pair by pair in Python, so a search over 100,000 images is a matter of minutes; `groups`
joins the pairs into groups (connected components).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

EXACT = "exact"
NEAR = "near"
# Two images are the same photo when their perceptual hashes differ in at most this many of 64 bits;
# chosen by measurement on copies of the reference photos (benchmarks/audit.md).
NEAR_DUPLICATE_HASH_BITS = 8

_HASH_SIZE = 8
_HASH_INPUT = 4 * _HASH_SIZE  # pixels per side of the grey image the transform sees
_DCT = np.cos(np.pi * np.arange(_HASH_SIZE)[:, None] * (2 * np.arange(_HASH_INPUT)[None, :] + 1) / (2 * _HASH_INPUT))
# The lowest 8x8 frequencies of a 32x32 image (flattened by rows) in one product: D @ image @ D.T, flattened.
_DCT_2D = np.kron(_DCT, _DCT).astype(np.float32)
# Tiles of the pair matrix: 2048 x 2048 float32 similarities (16 MB) or uint64 hash differences (32 MB).
_TILE = 2048


@dataclass(frozen=True)
class DuplicateGroup:
    """Files that hold the same photo: `exact` when they are the same bytes, else `near`.
    `paths` are sorted, relative to the data folder."""

    kind: str
    paths: tuple[str, ...]


def perceptual_hash(image: Image.Image) -> int:
    """The 64-bit pHash of an image (any mode): similar photos differ in few bits. (Scaled down
    with Pillow's bilinear filter, which averages over the area it shrinks, as decoding does.)"""
    grey = image.convert("L").resize((_HASH_INPUT, _HASH_INPUT), Image.Resampling.BILINEAR)
    low = _DCT_2D @ np.asarray(grey, dtype=np.float32).ravel()
    middle = np.partition(low, (31, 32))[31:33].mean()  # the median of the 64
    return int.from_bytes(np.packbits(low > middle).tobytes(), "big")


def file_digest(path) -> str:
    """The sha256 of a file's bytes: equal digests are exact duplicates."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def hash_pairs(hashes: Sequence[int] | np.ndarray, others: Sequence[int] | np.ndarray | None = None,
               max_bits: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) of hashes that differ in at most `max_bits` bits: within `hashes`
    (i < j), or between `hashes` (i) and `others` (j)."""
    a = np.asarray(hashes, dtype=np.uint64)
    b = a if others is None else np.asarray(others, dtype=np.uint64)
    return _pairs(a, b, others is None, lambda x, y: np.bitwise_count(x[:, None] ^ y[None, :]) <= max_bits)


def similar_pairs(vectors: np.ndarray, others: np.ndarray | None = None,
                  min_cosine: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) of rows whose cosine similarity is at least `min_cosine`: within
    `vectors` (i < j), or between `vectors` (i) and `others` (j)."""
    a = _unit_rows(vectors)
    b = a if others is None else _unit_rows(others)
    return _pairs(a, b, others is None, lambda x, y: x @ y.T >= min_cosine)


def groups(n: int, pairs: tuple[np.ndarray, np.ndarray]) -> list[list[int]]:
    """The groups of indices 0..n-1 joined by `pairs` (connected components of two or more),
    each sorted, in the order of their first index."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving keeps the trees shallow
            i = parent[i]
        return i

    for i, j in zip(*(p.tolist() for p in pairs), strict=True):
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    return sorted((group for group in members.values() if len(group) > 1), key=lambda group: group[0])


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float32).tiny)


def _pairs(a: np.ndarray, b: np.ndarray, within: bool, close) -> tuple[np.ndarray, np.ndarray]:
    """The pairs for which `close(a tile, b tile)` (a boolean matrix) holds, tile by tile;
    `within`: a and b are the same, and only pairs i < j count."""
    found_i, found_j = [], []
    for i0, j0 in _tiles(len(a), len(b), within):
        i, j = np.nonzero(close(a[i0:i0 + _TILE], b[j0:j0 + _TILE]))
        i, j = i + i0, j + j0
        if within and i0 == j0:
            keep = i < j
            i, j = i[keep], j[keep]
        found_i.append(i)
        found_j.append(j)
    if not found_i:
        return np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(found_i), np.concatenate(found_j)


def _tiles(n: int, m: int, within: bool) -> Iterator[tuple[int, int]]:
    for i0 in range(0, n, _TILE):
        for j0 in range(i0 if within else 0, m, _TILE):
            yield i0, j0
