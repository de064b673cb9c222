#!/usr/bin/env python3
"""Duplicates, leaks and label errors: how well and how fast catdog finds them.

Every measurement runs on copies made here from the reference photos (links where a file is
unchanged), in `benchmarks/work/audit/`, and writes `audit.md` and `audit.json` beside this file:

- `reference`: `catdog audit --data REFERENCE` timed, features included (target: 2 minutes on 2 cores).
- `scan`: the scan of the reference data with and without fingerprints (target: at most 20 % more).
- `copies`: photos re-encoded at another JPEG quality, resized by 90 % and cropped by 5 %,
  placed beside their originals in a flat layout and in a second folder with unrelated photos;
  precision and recall of the perceptual hash, of the backbone's features and of both, at the
  chosen thresholds and around them; and whether the copies the scan finds stay in one split.
- `against`: the reference data in a flat layout and a few hundred of its photos re-encoded into a
  second folder: `catdog audit --against` must find 99 % of them and no false pair.
- `labels`: the reference data with 5 % of its training labels flipped: 90 % of the flipped files
  must be among the first 2 x flipped of `label_issues` (three draws of the flips).
- `search`: the near-duplicate search on 100,000 synthetic feature vectors (and as many hashes).

    python benchmarks/audit_bench.py [--only reference,scan,copies,against,labels,search]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from catdog import environment
from catdog.audit import NEAR_DUPLICATE_COSINE
from catdog.data.duplicates import NEAR_DUPLICATE_HASH_BITS
from catdog.files import write_json, write_text

from bench import catdog_command, child_env, shown
from benchkit import DEFAULT_DATA, DEFAULT_WEIGHTS, run_measured

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / "work" / "audit"
PARTS = ("reference", "scan", "copies", "against", "labels", "search")
# The reference data holds one pair of duplicates of its own (the same photo, saved twice).
REFERENCE_DUPLICATES = {frozenset({"dog.180.jpg", "dog.74.jpg"})}


def info(message: str) -> None:
    print(f"[audit_bench] {message}", file=sys.stderr, flush=True)


# Copies ---------------------------------------------------------------------------------------


def _save(image: Image.Image, target: Path, quality: int) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(target, "JPEG", quality=quality)
    return target


def reencode(source: Path, target: Path, rng: random.Random) -> Path:
    with Image.open(source) as image:
        return _save(image, target, rng.choice((50, 60, 70, 80, 95)))


def resize(source: Path, target: Path, rng: random.Random) -> Path:
    with Image.open(source) as image:
        return _save(image.resize((round(image.width * 0.9), round(image.height * 0.9)), Image.Resampling.BICUBIC),
                     target, 90)


def crop(source: Path, target: Path, rng: random.Random) -> Path:
    """5 % of the width and the height cut off, split at random between the two sides."""
    with Image.open(source) as image:
        dx, dy = round(image.width * 0.05), round(image.height * 0.05)
        left, top = rng.randint(0, dx), rng.randint(0, dy)
        return _save(image.crop((left, top, image.width - (dx - left), image.height - (dy - top))), target, 90)


EDITS = {"re-encoded": reencode, "resized 90 %": resize, "cropped 5 %": crop}


def reference_photos(data: Path, folder: str) -> list[Path]:
    return sorted(p for c in ("cats", "dogs") for p in (data / folder / c).iterdir())


def link(sources: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources:
        (folder / source.name).symlink_to(source.resolve())


def flat_copy(data: Path, target: Path, folders=("train", "validation")) -> Path:
    """The reference photos of `folders` in a flat layout (class folders), linked."""
    shutil.rmtree(target, ignore_errors=True)
    for class_name in ("cats", "dogs"):
        link([p for f in folders for p in sorted((data / f / class_name).iterdir())], target / class_name)
    return target


# Measurements --------------------------------------------------------------------------------


def audit_command(args, out: Path, *extra: str) -> dict:
    """`catdog audit ... --json`, timed; its JSON."""
    command = catdog_command("audit", *extra, "--json")
    measured = run_measured(command, log=out.with_suffix(".log"), stdout=out, env=child_env(args.weights))
    if measured.returncode not in (0, 1):
        raise SystemExit(f"{shown(command)} failed (exit {measured.returncode}); see {out.with_suffix('.log')}")
    return {"command": shown(command), "seconds": round(measured.seconds, 1),
            "peak_rss_bytes": measured.peak_rss_bytes, "result": json.loads(out.read_text())}


def measure_reference(args) -> dict:
    run = audit_command(args, WORK / "reference.json", "--data", str(args.data))
    result = run.pop("result")
    return run | {"images": result["images"], "duplicates": len(result["duplicates"]),
                  "leaks": sum(g["leak"] for g in result["duplicates"]), "label_issues": len(result["label_issues"]),
                  "confident_label_issues": sum(i["confident"] for i in result["label_issues"]),
                  "outliers": [o["path"] for o in result["outliers"]]}


def measure_scan(args, repeats: int = 5) -> dict:
    """First scans (every file read: the scan cache starts empty each time, see
    catdog.data.scan_cache), with and without fingerprints."""
    import tempfile
    from unittest import mock

    from catdog.data.scan import scan

    def first_scan(fingerprints: bool) -> float:
        with tempfile.TemporaryDirectory() as home, mock.patch.dict(os.environ, {environment.ENV_HOME: home}):
            started = time.perf_counter()
            scan(args.data, find_duplicates=fingerprints)
            return time.perf_counter() - started

    first_scan(False)  # the page cache, warm for both
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for fingerprints in (False, True):
            times[fingerprints].append(first_scan(fingerprints))
    without, with_ = statistics.median(times[False]), statistics.median(times[True])
    return {"repeats": repeats, "without": without, "with": with_, "overhead": with_ / without - 1,
            "all_without": times[False], "all_with": times[True]}


def measure_copies(args) -> dict:
    """Copies of 100 training photos per edit beside their originals (a flat layout of the training photos),
    and of 100 others per edit in a second folder with the 1,000 validation photos."""
    from catdog.audit.features import backbone_features
    from catdog.data import scan_and_split
    from catdog.data.duplicates import hash_pairs, similar_pairs
    from catdog.data.images import find_images, inspect_image
    from catdog.data.splits import crossing

    rng = random.Random(12)
    data, against = flat_copy(args.data, WORK / "copies" / "data", folders=("train",)), WORK / "copies" / "against"
    shutil.rmtree(against, ignore_errors=True)
    link(reference_photos(args.data, "validation"), against)
    originals = rng.sample(reference_photos(args.data, "train"), 600)
    planted = {}  # copy name -> (original name, edit, where)
    for n, (edit_name, edit) in enumerate(EDITS.items()):
        for k, source in enumerate(originals[200 * n:200 * n + 100]):
            name = f"copy-{n}-{k}.jpg"
            edit(source, data / source.parent.name / name, rng)
            planted[name] = (source.name, edit_name, "data")
        for k, source in enumerate(originals[200 * n + 100:200 * (n + 1)]):
            name = f"other-{n}-{k}.jpg"
            edit(source, against / name, rng)
            planted[name] = (source.name, edit_name, "against")

    found, manifest = scan_and_split(data)
    other_files = find_images([against])
    names = [Path(i.path).name for i in found.images] + [p.name for p in other_files]
    n = len(found.images)
    hashes = [i.phash for i in found.images] + [inspect_image(p, fingerprint=True).phash for p in other_files]
    started = time.perf_counter()
    features = backbone_features([found.root / i.path for i in found.images] + other_files, weights=args.weights)
    feature_seconds = time.perf_counter() - started

    def pairs_of(method: str, bits: int, cosine: float) -> set[frozenset]:
        found_pairs = []
        if method in ("hash", "both"):
            found_pairs += [hash_pairs(hashes[:n], max_bits=bits), _shift(hash_pairs(hashes[n:], hashes[:n],
                                                                                      max_bits=bits), n)]
        if method in ("features", "both"):
            found_pairs += [similar_pairs(features[:n], min_cosine=cosine),
                            _shift(similar_pairs(features[n:], features[:n], min_cosine=cosine), n)]
        return {frozenset({names[i], names[j]}) for p in found_pairs for i, j in zip(*p, strict=True)}

    truth = {frozenset({copy, original}) for copy, (original, _, _) in planted.items()}

    def score(pairs: set[frozenset]) -> dict:
        hits = pairs & truth
        false = pairs - truth - REFERENCE_DUPLICATES
        by_edit = {f"{edit} ({where})": sum(frozenset({c, o}) in hits for c, (o, e, w) in planted.items()
                                            if e == edit and w == where) / 100
                   for edit in EDITS for where in ("data", "against")}
        return {"recall": len(hits) / len(truth), "precision": len(hits) / max(1, len(hits) + len(false)),
                "false_pairs": len(false), "by_edit": by_edit}

    bits, cosine = NEAR_DUPLICATE_HASH_BITS, NEAR_DUPLICATE_COSINE
    chosen = {method: score(pairs_of(method, bits, cosine)) for method in ("hash", "features", "both")}
    sweep = {"hash": {b: score(pairs_of("hash", b, cosine)) for b in (4, 6, 8, 10, 12)},
             "features": {c: score(pairs_of("features", bits, c)) for c in (0.85, 0.88, 0.9, 0.92, 0.95)}}
    scan_pairs = {frozenset(Path(p).name for p in g.paths) for g in found.duplicates}
    in_data = [frozenset({c, o}) for c, (o, _, w) in planted.items() if w == "data"]
    return {"images": n, "against_images": len(other_files), "planted": len(truth),
            "feature_seconds": feature_seconds, "chosen": chosen, "sweep": sweep,
            "scan_groups": len(found.duplicates), "scan_found_in_data": sum(p in scan_pairs for p in in_data),
            "planted_in_data": len(in_data), "scan_groups_across_splits": len(crossing(manifest, found.duplicates))}


def _shift(pairs, n: int):
    i, j = pairs
    return i + n, j


def measure_against(args, count: int = 300) -> dict:
    rng = random.Random(7)
    data = flat_copy(args.data, WORK / "against" / "data")
    copies = WORK / "against" / "reencoded"
    shutil.rmtree(copies, ignore_errors=True)
    sources = rng.sample(reference_photos(args.data, "train") + reference_photos(args.data, "validation"), count)
    for n, source in enumerate(sources):
        reencode(source, copies / f"{n:04d}.jpg", rng)
    source_of = {f"{n:04d}.jpg": source.name for n, source in enumerate(sources)}
    run = audit_command(args, WORK / "against.json", "--data", str(data), "--against", str(copies))
    result = run.pop("result")
    found, false = set(), []
    for group in result["duplicates"]:
        names = [Path(p).name for p in group["paths"]]
        originals = {name for name, split in zip(names, group["splits"], strict=True) if split != "against"}
        for name, split in zip(names, group["splits"], strict=True):
            if split != "against":
                continue
            expected = {source_of[name]} | {o for pair in REFERENCE_DUPLICATES if source_of[name] in pair for o in pair}
            if source_of[name] in originals:
                found.add(name)
            if originals - expected:
                false.append({"copy": name, "grouped_with": sorted(originals - expected)})
    return run | {"copies": count, "found": len(found), "recall": len(found) / count, "false_pairs": false}


def measure_labels(args, seeds=(1, 2, 3), share: float = 0.05) -> dict:
    draws = []
    for seed in seeds:
        rng = random.Random(seed)
        root = WORK / "labels" / f"seed{seed}"
        shutil.rmtree(root, ignore_errors=True)
        train = reference_photos(args.data, "train")
        flipped = set(rng.sample([p.name for p in train], round(share * len(train))))
        for folder in ("train", "validation"):
            for photo in reference_photos(args.data, folder):
                label = photo.parent.name
                if photo.name in flipped:
                    label = {"cats": "dogs", "dogs": "cats"}[label]
                link([photo], root / folder / label)
        run = audit_command(args, WORK / f"labels-seed{seed}.json", "--data", str(root))
        issues = run.pop("result")["label_issues"]
        names = [Path(i["path"]).name for i in issues]
        confident = [Path(i["path"]).name for i in issues if i["confident"]]
        top = set(names[:2 * len(flipped)])
        draws.append(run | {
            "seed": seed, "flipped": len(flipped), "listed": len(names),
            "recall_top_2x": len(flipped & top) / len(flipped),
            "recall": len(flipped & set(names)) / len(flipped),
            "precision": len(flipped & set(names)) / max(1, len(names)),
            "confident": len(confident), "confident_recall": len(flipped & set(confident)) / len(flipped),
            "confident_precision": len(flipped & set(confident)) / max(1, len(confident)),
            "suggested_right": sum(Path(i["path"]).name in flipped and i["suggested"] == Path(i["path"]).parent.name
                                   for i in issues),
        })
    return {"share": share, "draws": draws}


def measure_search(n: int = 100_000, planted: int = 1000, dim: int = 1280) -> dict:
    from catdog.data.duplicates import hash_pairs, similar_pairs

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = rng.choice(n, (planted, 2), replace=False)
    noise = rng.standard_normal((planted, dim), dtype=np.float32) * 0.01  # cosine about 0.94 after rescaling
    vectors[pairs[:, 1]] = vectors[pairs[:, 0]] + noise
    truth = {frozenset(p) for p in pairs.tolist()}
    started = time.perf_counter()
    i, j = similar_pairs(vectors, min_cosine=NEAR_DUPLICATE_COSINE)
    vector_seconds = time.perf_counter() - started
    found = {frozenset(p) for p in zip(i.tolist(), j.tolist(), strict=True)}
    hashes = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n, dtype=np.uint64)
    flips = np.uint64(0b1001001)  # 3 bits
    hashes[pairs[:, 1]] = hashes[pairs[:, 0]] ^ flips
    started = time.perf_counter()
    hi, hj = hash_pairs(hashes, max_bits=NEAR_DUPLICATE_HASH_BITS)
    hash_seconds = time.perf_counter() - started
    found_hashes = {frozenset(p) for p in zip(hi.tolist(), hj.tolist(), strict=True)}
    return {"n": n, "dim": dim, "planted": planted, "vector_seconds": vector_seconds,
            "vector_recall": len(found & truth) / planted, "vector_false_pairs": len(found - truth),
            "hash_seconds": hash_seconds, "hash_recall": len(found_hashes & truth) / planted,
            "hash_false_pairs": len(found_hashes - truth)}


# The report ---------------------------------------------------------------------------------


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def render(results: dict) -> str:
    from catdog.report import Heading, Paragraph, Table, to_markdown

    blocks = [Heading("Duplicates, leaks and label errors: what catdog finds, and how fast", 1),
              Paragraph("Measured by `python benchmarks/audit_bench.py` on the 2-core machine, shared with other "
                        "work (the load average at the start of each part is given). Every copy and flipped label "
                        "below was made by the script from the reference photos.")]
    if "reference" in results:
        r = results["reference"]
        blocks += [Heading("Audit of the reference data"),
                   Paragraph(f"`{r['command']}`: **{r['seconds']:.0f} s** for {r['images']} images, features "
                             f"included (target: 120 s), peak memory {r['peak_rss_bytes'] / 1e6:,.0f} MB; load "
                             f"{r['load_at_start']}. It finds {r['duplicates']} duplicate group (the reference's own "
                             f"`dog.180.jpg` and `dog.74.jpg`), {r['leaks']} leaks, {r['label_issues']} suspected "
                             f"label errors ({r['confident_label_issues']} flagged by confident learning itself) "
                             f"and {len(r['outliers'])} outliers.")]
    if "scan" in results:
        r = results["scan"]
        blocks += [Heading("Scanning with fingerprints"),
                   Paragraph("`catdog.data.scan.scan` of the reference data (2,999 photos, page cache warm, scan "
                             f"cache empty: every file read), {r['repeats']} times each, alternating: median "
                             f"{r['without']:.2f} s without fingerprints (today's scan), {r['with']:.2f} s with them, "
                             f"**{r['overhead']:+.1%}** "
                             f"(target: at most +20 %); load {r['load_at_start']}.")]
    if "copies" in results:
        r = results["copies"]
        rows = [[method, pct(c["recall"]), pct(c["precision"]), str(c["false_pairs"]),
                 *(pct(v) for v in c["by_edit"].values())] for method, c in r["chosen"].items()]
        edits = list(next(iter(r["chosen"].values()))["by_edit"])
        sweep = [[f"hash <= {b} bits", pct(c["recall"]), pct(c["precision"]), str(c["false_pairs"])]
                 for b, c in r["sweep"]["hash"].items()]
        sweep += [[f"cosine >= {c_}", pct(c["recall"]), pct(c["precision"]), str(c["false_pairs"])]
                  for c_, c in r["sweep"]["features"].items()]
        blocks += [Heading("Copies: precision and recall"),
                   Paragraph(f"{r['planted']} copies of training photos: re-encoded at a JPEG quality of 50 to 95, "
                             "resized by 90 %, cropped by 5 % (split at random between the sides), 100 of each beside "
                             f"their originals in a flat layout of the {r['images'] - r['planted'] // 2} training "
                             f"photos, and 100 of each in a second folder with the 1,000 validation photos "
                             f"({r['against_images']} images). A found pair is right when it is a copy and its "
                             "original (the reference's own duplicate pair is not counted either way). Chosen "
                             f"thresholds: hash within {NEAR_DUPLICATE_HASH_BITS} bits, cosine at least "
                             f"{NEAR_DUPLICATE_COSINE}; load {r['load_at_start']}."),
                   Table(["method", "recall", "precision", "false pairs", *edits], rows),
                   Paragraph("Around the thresholds:"),
                   Table(["threshold", "recall", "precision", "false pairs"], sweep),
                   Paragraph(f"The scan alone (hashes) found {r['scan_found_in_data']} of the "
                             f"{r['planted_in_data']} copies beside their originals and kept each of its groups in "
                             f"one split ({r['scan_groups_across_splits']} groups across splits); the features, "
                             f"{r['feature_seconds']:.0f} s for the {r['images'] + r['against_images']} images, find "
                             "the crops it misses (`catdog audit`).")]
    if "against" in results:
        r = results["against"]
        blocks += [Heading("A second folder of re-encoded photos (`--against`)"),
                   Paragraph(f"The reference photos in a flat layout, and {r['copies']} of them re-encoded at a JPEG "
                             f"quality of 50 to 95 into a second folder: `{r['command']}` found **{r['found']} of "
                             f"{r['copies']} ({pct(r['recall'])})** with **{len(r['false_pairs'])} false pairs**, in "
                             f"{r['seconds']:.0f} s; load {r['load_at_start']}.")]
    if "labels" in results:
        r = results["labels"]
        rows = [[str(d["seed"]), str(d["flipped"]), pct(d["recall_top_2x"]), f"{d['listed']}", pct(d["recall"]),
                 pct(d["precision"]), f"{d['confident']}", pct(d["confident_recall"]), pct(d["confident_precision"]),
                 f"{d['seconds']:.0f} s"] for d in r["draws"]]
        blocks += [Heading("Flipped labels"),
                   Paragraph(f"The reference data with {pct(r['share'])} of its training labels flipped (a photo moved "
                             "to the other class folder), three draws; `catdog audit --data DIR`. Target: 90 % of the "
                             "flipped files among the first 2 x flipped of `label_issues`."),
                   Table(["draw", "flipped", "in the first 2x", "listed", "recall", "precision",
                          "confident learning", "its recall", "its precision", "time"], rows),
                   Paragraph("`listed` counts every suspect: those confident learning flags and those whose "
                             "out-of-fold prediction is the other class; the precision counts the reference's own "
                             "mislabelled or ambiguous photos as wrong.")]
    if "search" in results:
        r = results["search"]
        blocks += [Heading("Near-duplicate search at 100,000 images"),
                   Paragraph(f"{r['n']:,} synthetic unit vectors of {r['dim']} numbers (the backbone's size) with "
                             f"{r['planted']} planted near pairs (cosine about 0.94): "
                             f"`catdog.data.duplicates.similar_pairs` (tiles of the pair matrix, numpy) took "
                             f"**{r['vector_seconds']:.0f} s**, recall {pct(r['vector_recall'])}, "
                             f"{r['vector_false_pairs']} false pairs. As many 64-bit hashes with planted pairs 3 bits "
                             f"apart: `hash_pairs` took **{r['hash_seconds']:.0f} s**, recall {pct(r['hash_recall'])},"
                             f" {r['hash_false_pairs']} false pairs; load {r['load_at_start']}.")]
    return to_markdown(blocks, BENCH_DIR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the reference data set (default: %(default)s)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="MobileNetV2 weights (no top)")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts (default: all)")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / "audit.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    # An audit.json written before the tutorial's data was called the reference names its part "seed".
    results = {"reference" if part == "seed" else part: value for part, value in results.items()}
    for part in args.only.split(","):
        info(f"{part} ...")
        started = time.strftime("%Y-%m-%d %H:%M")
        load = os.getloadavg()[0]
        measure = {"reference": measure_reference, "scan": measure_scan, "copies": measure_copies,
                   "against": measure_against, "labels": measure_labels, "search": lambda _: measure_search()}[part]
        results[part] = measure(args) | {"started": started, "load_at_start": round(load, 1)}
        write_json(path, results)
    write_text(BENCH_DIR / "audit.md", render(results))
    print(BENCH_DIR / "audit.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
