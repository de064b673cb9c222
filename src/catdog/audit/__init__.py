"""`catdog audit`: what is wrong with a data set, found before a model learns it.

    >>> result = catdog.audit.audit("photos/", against=["holdout/"])
    >>> [group.paths for group in result.leaks]
    >>> result.label_issues[:10]

- **Duplicates**: files holding the same photo, `exact` (the same bytes) or `near` (perceptual
  hashes within `NEAR_DUPLICATE_HASH_BITS` bits, or backbone features with a cosine
  similarity of at least `NEAR_DUPLICATE_COSINE`; see `catdog.data.duplicates`), within
  the data set, marked where they span the splits catdog makes of it with `seed`, and the
  files of each `against` folder (a test set from elsewhere, say) that duplicate files of
  the data set.
- **Label issues** and **outliers**: see `catdog.audit.issues`.

- `features.py`: the backbone's features of every image.
- `issues.py`: suspected label errors and outliers.
- `result.py`: what was found, and its JSON form.

Its page (`audit.html`) and its section of `catdog run`'s report are catdog.report's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from catdog import defaults
from catdog.audit.features import backbone_features, describe
from catdog.audit.issues import OUTLIER_DISTANCE_RATIO, LabelCheck, find_label_issues, find_tag_issues, outlier_scores
from catdog.audit.result import AGAINST, AuditResult, Group, Outlier, Suspect
from catdog.data import DataArgument, as_source, resolve_data_dir, scan_and_split
from catdog.data import describe as describe_data
from catdog.data.duplicates import EXACT, NEAR, NEAR_DUPLICATE_HASH_BITS, file_digest, groups, hash_pairs, similar_pairs
from catdog.data.images import find_images, inspect_image
from catdog.data.labels import MULTILABEL
from catdog.data.pack import LAYOUT as PACKED
from catdog.data.scan import Scan
from catdog.data.splits import Manifest
from catdog.errors import BadImageError, CatdogError, ParameterError
from catdog.terminal import duration

__all__ = ["AuditResult", "audit"]

# Two images are the same photo when the backbone's embeddings have at least this cosine
# similarity; chosen by measurement on copies of the reference photos (benchmarks/audit.md).
NEAR_DUPLICATE_COSINE = 0.9

logger = logging.getLogger(__name__)


def audit(data: DataArgument = None, *, against: Sequence[str | os.PathLike] = (), seed: int = defaults.SEED,
          backbone: str | None = None, weights: str | os.PathLike | None = None,
          batch_size: int = defaults.BATCH_SIZE, scanned: tuple[Scan, Manifest] | None = None) -> AuditResult:
    """Audit the data set `data` (a folder or a `catdog.data.Source`), and compare the images of
    each `against` folder with it. `scanned`: the data set already scanned and split with
    `seed` (`catdog.data.scan_and_split`), to save scanning it again."""
    started = time.perf_counter()
    source = as_source(data)
    found, manifest = scanned or scan_and_split(source, seed=seed)
    if found.layout == PACKED:
        raise CatdogError(f"{found.root} is a pack; the audit reads image files: audit the folder it was packed from")
    shown = Path(source.root) if source.root is not None else resolve_data_dir(source)
    others = [_scan_against(Path(folder)) for folder in against]

    data_files = [found.root / image.path for image in found.images]
    other_files = [path for other in others for path in other["files"]]
    features = backbone_features(data_files + other_files, backbone=backbone, weights=weights, batch_size=batch_size)
    n = len(data_files)
    names = [str(shown / image.path) for image in found.images] + [str(path) for path in other_files]
    split_of = {row.path: row.split for row in manifest.rows}
    splits = [split_of[image.path] for image in found.images] + [AGAINST] * len(other_files)
    hashes = [image.phash for image in found.images] + [h for other in others for h in other["hashes"]]
    duplicates = _duplicates(data_files + other_files, names, splits, hashes, features, n)

    if manifest.task == MULTILABEL:
        check, label_issues = _tag_issues(features[:n], found, manifest, names, seed)
    else:
        labels = np.array([manifest.class_names.index(image.class_name) for image in found.images])
        check = find_label_issues(features[:n], labels, len(manifest.class_names), seed)
        label_issues = [Suspect(names[issue.index], manifest.class_names[labels[issue.index]],
                                manifest.class_names[issue.suggested], round(issue.score, 4), issue.confident)
                        for issue in check.issues]
    scores = outlier_scores(features[:n])
    outliers = [Outlier(names[i], round(float(scores[i]), 3)) for i in np.argsort(-scores, kind="stable")
                if scores[i] >= OUTLIER_DISTANCE_RATIO]

    summary = describe_data(found, manifest, seed=seed)
    if not check.judged and check.accuracy is not None:
        summary["warnings"].append(check.why_not_judged())
        logger.warning(summary["warnings"][-1])
    for other in others:
        if not other["files"]:
            summary["warnings"].append(f"{other['folder']} has no usable image ({len(other['skipped'])} files "
                                       "skipped): nothing of it was compared with the data set")
            logger.warning(summary["warnings"][-1])
    result = AuditResult(
        data=str(shown), layout=found.layout, seed=seed, classes=manifest.class_names, images=n,
        against=[{"folder": str(other["folder"]), "images": len(other["files"]), "skipped": other["skipped"]}
                 for other in others],
        duplicates=duplicates, label_issues=label_issues, outliers=outliers,
        methods={
            "exact_duplicates": "the same bytes (sha256)",
            "near_duplicate_hash_bits": NEAR_DUPLICATE_HASH_BITS,
            "near_duplicate_cosine": NEAR_DUPLICATE_COSINE,
            "features": describe(backbone),
            "label_issues": check.method(),
            "label_check_accuracy_needed": None if check.needed is None else round(check.needed, 4),
            "outlier_distance_ratio": OUTLIER_DISTANCE_RATIO,
            "out_of_fold_accuracy": None if check.accuracy is None else round(check.accuracy, 4),
        },
        skipped=summary["skipped"], warnings=summary["warnings"],
    )
    result.seconds = round(time.perf_counter() - started, 1)
    leaks = f"{len(result.leaks)} across splits" if result.leaks else "none across splits"
    logger.info(f"audit: {n:,} images{f' and {len(other_files):,} to compare' if other_files else ''} in "
                f"{duration(result.seconds)}: {len(duplicates)} group{'s' * (len(duplicates) != 1)} of duplicate "
                f"photos ({leaks}), {len(label_issues)} suspected label errors, {len(outliers)} outliers")
    return result


def _tag_issues(features: np.ndarray, found: Scan, manifest: Manifest, names: list[str], seed: int
                ) -> tuple[LabelCheck, list[Suspect]]:
    """The suspected tag errors of a multi-label data set (see `catdog.audit.issues.find_tag_issues`)."""
    tags = manifest.encode([image.labels for image in found.images])
    check = find_tag_issues(features, tags, seed)
    tag_names = manifest.class_names

    def joined(indices) -> str:
        return " ".join(tag_names[i] for i in indices)

    suspects = [Suspect(names[issue.index], " ".join(found.images[issue.index].labels), joined(issue.suggested),
                        round(issue.score, 4), issue.confident, [tag_names[i] for i in issue.missing],
                        [tag_names[i] for i in issue.wrong]) for issue in check.issues]
    return check, suspects


def _scan_against(folder: Path) -> dict:
    """The usable images of a folder to compare with the data set (any layout), with their
    perceptual hashes; files that cannot be used are skipped with their reason."""
    if not folder.is_dir():
        raise ParameterError("against", f"{{name}}: {folder} is not a folder")
    paths = find_images([folder])

    def check(path: Path) -> int | str:
        try:
            return inspect_image(path, fingerprint=True).phash
        except BadImageError as e:
            return e.reason

    with ThreadPoolExecutor() as pool:
        results = list(pool.map(check, paths))
    usable = [(path, result) for path, result in zip(paths, results, strict=True) if not isinstance(result, str)]
    return {
        "folder": folder,
        "files": [path for path, _ in usable],
        "hashes": [phash for _, phash in usable],
        "skipped": [{"path": str(path), "reason": result}
                    for path, result in zip(paths, results, strict=True) if isinstance(result, str)],
    }


def _duplicates(files: list[Path], names: list[str], splits: list[str], hashes: list[int], features: np.ndarray,
                n: int) -> list[Group]:
    """Groups of files holding the same photo, among the first `n` (the data set) and between
    them and the rest (the `against` folders); leaks first."""
    data_hashes, other_hashes = hashes[:n], hashes[n:]
    found = [hash_pairs(data_hashes, max_bits=NEAR_DUPLICATE_HASH_BITS),
             similar_pairs(features[:n], min_cosine=NEAR_DUPLICATE_COSINE)]
    if len(files) > n:
        for i, j in (hash_pairs(other_hashes, data_hashes, max_bits=NEAR_DUPLICATE_HASH_BITS),
                     similar_pairs(features[n:], features[:n], min_cosine=NEAR_DUPLICATE_COSINE)):
            found.append((i + n, j))
    pairs = tuple(np.concatenate([pair[k] for pair in found]) for k in (0, 1))
    result = []
    for members in groups(len(files), pairs):
        exact = len({file_digest(files[i]) for i in members}) == 1
        result.append(Group(EXACT if exact else NEAR, [names[i] for i in members], [splits[i] for i in members]))
    return sorted(result, key=lambda group: not group.leak)
