"""Duplicates found while scanning: copies of real photos (re-encoded, resized, cropped, brightened) are
found, other photos are not; a flat layout keeps each group in one split; the split layout reports them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from catdog.cli import main
from catdog.data import duplicates, scan_and_split
from catdog.data.duplicates import groups, hash_pairs, perceptual_hash, similar_pairs
from catdog.data.scan import scan

from conftest import write_split_layout
from messy import brighten, copy, crop, photos, reencode, resize


def bits(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def test_edited_copies_hash_close_and_other_photos_far(reference_data, tmp_path):
    """Re-encoded, resized and brightened copies always; crops mostly (the backbone's embedding finds the rest)."""
    originals = photos(reference_data, "cats", 12) + photos(reference_data, "dogs", 12)
    hashes, cropped = {}, []
    for path in originals:
        with Image.open(path) as image:
            hashes[path] = perceptual_hash(image)
        for edit in (reencode, resize, brighten):
            with Image.open(edit(path, tmp_path / f"{edit.__name__}-{path.name}")) as copied:
                assert bits(perceptual_hash(copied), hashes[path]) <= 8, (edit.__name__, path.name)
        with Image.open(crop(path, tmp_path / f"crop-{path.name}")) as copied:
            cropped.append(bits(perceptual_hash(copied), hashes[path]))
    assert np.mean(np.array(cropped) <= 8) >= 0.75
    distances = [bits(hashes[a], hashes[b]) for i, a in enumerate(originals) for b in originals[i + 1:]]
    assert min(distances) > 8 and np.median(distances) > 24


def brute_force(close, n, m=None):
    """Every pair (i, j), i < j within n items, or any i of n against any j of m, for which `close` holds."""
    return {(i, j) for i in range(n) for j in range(n if m is None else m) if (m is not None or i < j) and close(i, j)}


@pytest.mark.parametrize("tile", [2048, 7])  # one tile, and many (with a partial last one)
def test_pair_searches_find_what_checking_every_pair_finds(monkeypatch, tile):
    monkeypatch.setattr(duplicates, "_TILE", tile)
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 40, dtype=np.uint64)
    hashes[[5, 17, 33]] = hashes[3] ^ np.uint64(0b101)  # 2 bits from hashes[3]
    others = np.concatenate([hashes[:4] ^ np.uint64(1), rng.integers(0, 2**63, 6, dtype=np.uint64)])
    for a, b in ((hashes, None), (hashes, others)):
        found = set(zip(*(x.tolist() for x in hash_pairs(a, b, max_bits=3)), strict=True))
        expected = brute_force(lambda i, j, a=a, b=b: bin(int(a[i]) ^ int((a if b is None else b)[j])).count("1") <= 3,
                               len(a), None if b is None else len(b))
        assert found == expected and found
    vectors = rng.normal(size=(30, 16)).astype("float32")
    vectors[[4, 9]] = vectors[2] * 3 + 0.01  # the same direction
    queries = np.concatenate([vectors[:3] + 0.01, rng.normal(size=(5, 16))]).astype("float32")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    unit_q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    assert set(zip(*(x.tolist() for x in similar_pairs(vectors, min_cosine=0.99)), strict=True)) == brute_force(
        lambda i, j: unit[i] @ unit[j] >= 0.99, 30) == {(2, 4), (2, 9), (4, 9)}
    assert set(zip(*(x.tolist() for x in similar_pairs(vectors, queries, min_cosine=0.99)), strict=True)) == (
        brute_force(lambda i, j: unit[i] @ unit_q[j] >= 0.99, 30, 8))


def test_groups_are_connected_components():
    pairs = (np.array([0, 5, 2, 7]), np.array([3, 6, 3, 8]))
    assert groups(9, pairs) == [[0, 2, 3], [5, 6], [7, 8]]
    assert groups(3, (np.zeros(0, int), np.zeros(0, int))) == []


@pytest.fixture
def flat_with_copies(reference_data, tmp_path):
    """A flat layout of 30 photos per class, with an exact copy, a re-encoded, a resized and a cropped copy of
    some of them in the same class folder."""
    root = tmp_path / "flat"
    for class_name in ("cats", "dogs"):
        originals = copy(photos(reference_data, class_name, 30), root / class_name)
        shutil.copyfile(originals[0], root / class_name / "exact-copy.jpg")
        reencode(originals[1], root / class_name / "reencoded.jpg")
        resize(originals[2], root / class_name / "resized.jpg")
        crop(originals[3], root / class_name / "cropped.jpg")
    return root


def test_a_flat_layout_keeps_each_group_of_copies_in_one_split(flat_with_copies):
    found = scan(flat_with_copies)
    kinds = {group.paths: group.kind for group in found.duplicates}
    for class_name in ("cats", "dogs"):
        first = sorted(path.name for path in (flat_with_copies / class_name).glob("*.*.jpg"))[:3]
        for original, copied, kind in zip(first, ("exact-copy", "reencoded", "resized"), ("exact", "near", "near"),
                                          strict=True):
            assert kinds[tuple(sorted([f"{class_name}/{original}", f"{class_name}/{copied}.jpg"]))] == kind
    assert len(found.duplicates) in (6, 8)  # a 5 % crop may stay within the hash's reach or not
    sizes = set()
    for seed in range(6):
        _, manifest = scan_and_split(flat_with_copies, seed=seed)
        where = {row.path: row.split for row in manifest.rows}
        for group in found.duplicates:
            assert len({where[path] for path in group.paths}) == 1, (seed, group)
        sizes.add(tuple(sum(c.values()) for c in manifest.counts().values()))
        assert {split: set(group_splits) for split, group_splits in manifest.missing().items()} == {
            "validation": set(), "test": set()}
    assert all(abs(test - 10) <= 2 and abs(validation - 10) <= 2 for _, validation, test in sizes)


def test_the_seed_layout_reports_copies_across_its_folders_and_train_warns(reference_data, tmp_path, capsys):
    root = write_split_layout(tmp_path / "split", n_train=0, n_validation=0)
    for folder in ("train", "validation"):
        for class_name in ("cats", "dogs"):
            copy(photos(reference_data, class_name, 10, folder=folder), root / folder / class_name)
    leaked = photos(reference_data, "cats", 1)[0]
    reencode(leaked, root / "validation" / "cats" / "leaked.jpg")
    assert main(["data", "info", "--data", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (leak,) = report["leaks"]
    assert leak["paths"] == [f"train/cats/{leaked.name}", "validation/cats/leaked.jpg"]
    assert leak["splits"][0] == "train" and leak["splits"][1] in ("validation", "test")
    assert any("1 groups of duplicate images are in more than one split" in w for w in report["warnings"])
    assert main(["train", "--model", "scratch", "--data", str(root), "--epochs", "1", "--image-size", "32",
                 "--out", str(tmp_path / "run")]) == 0
    assert "catdog: warning: 1 groups of duplicate images are in more than one split" in capsys.readouterr().err
