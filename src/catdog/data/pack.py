"""Packed data sets: a checked, split data set as TFRecord shards, for data that lives elsewhere.

    catdog data pack --data photos/ --out packed/ --shards 8
    catdog train --model transfer --data packed/            # or gs://bucket/packed

A pack is a folder of

    catdog-pack.json                the class names, each split's shards and image count, what
                                    was skipped when the data set was checked
    splits.csv                      the manifest of the files packed (paths in the source folder)
    train-00000-of-00008.tfrecord   records of (image: the file's bytes, label, path), in the
    ...                             manifest's order, split into contiguous shards

It is read at any path TensorFlow's file systems read (a local folder, gs://, s3:// with
tensorflow-io, ...). Training streams the shards, decodes each image as a file would be
decoded (catdog.data.images.decode: the same pixels), and under the multi-worker strategy
each worker reads its own shards (tf.data's auto-sharding by file).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catdog import defaults, files
from catdog.data.labels import MULTICLASS
from catdog.data.scan import ImageFile, Scan
from catdog.data.splits import SPLITS, Manifest
from catdog.errors import CatdogError, ParameterError

PACK_FILE = "catdog-pack.json"
MANIFEST_FILE = "splits.csv"
FORMAT_VERSION = 1
LAYOUT = "packed"

logger = logging.getLogger(__name__)


def _is_pack(path: Path) -> bool:
    return (path / PACK_FILE).is_file()


PACK_KIND = files.Kind("a pack written by catdog", _is_pack, folder=True)


def is_remote(location: str | os.PathLike) -> bool:
    return "://" in os.fspath(location)


def join(location: str | os.PathLike, name: str) -> str:
    location = os.fspath(location)
    return f"{location.rstrip('/')}/{name}" if is_remote(location) else os.path.join(location, name)


@dataclass
class Pack:
    """An opened pack at `location` (a local folder or a URL)."""

    location: str
    class_names: list[str]
    splits: dict[str, dict[str, Any]]  # name -> {"count", "shards"}
    manifest: Manifest
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def shards(self, split: str) -> list[str]:
        return [join(self.location, name) for name in self.splits[split]["shards"]]

    def count(self, split: str) -> int:
        return int(self.splits[split]["count"])

    def as_scan(self) -> Scan:
        """The pack as a scan of its images, for summaries."""
        images = [ImageFile(row.path, row.labels) for row in self.manifest.rows]
        return Scan(self.location, LAYOUT, self.class_names, images, list(self.skipped), list(self.warnings))


def open_pack(location: str | os.PathLike) -> Pack | None:
    """The pack at `location`, or None if there is none there."""
    location = os.fspath(location)
    description = join(location, PACK_FILE)
    if not is_remote(location) and not Path(description).is_file():
        return None  # a folder of images: no need for TensorFlow to say so
    import tensorflow as tf

    if not tf.io.gfile.exists(description):
        return None
    try:
        with tf.io.gfile.GFile(description) as f:
            meta = json.loads(f.read())
        with tf.io.gfile.GFile(join(location, MANIFEST_FILE)) as f:
            manifest = Manifest.parse(f.read(), location, join(location, MANIFEST_FILE))
    except (json.JSONDecodeError, tf.errors.OpError) as e:
        raise CatdogError(f"{location} is a damaged catdog pack ({str(e).splitlines()[0]})") from e
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CatdogError(f"{location} was packed by a newer catdog; upgrade catdog to read it")
    return Pack(location, meta["class_names"], meta["splits"], manifest,
                [tuple(item) for item in meta.get("skipped", [])], meta.get("warnings", []))


def pack(data: str | os.PathLike | None, out: str | os.PathLike, *, seed: int = defaults.SEED, shards: int = 4) -> Path:
    """Check and split the data folder `data` as `catdog.data.load` would, and write it as a pack
    to the local folder `out` (new, or an earlier pack), `shards` files per split at most."""
    import tensorflow as tf

    from catdog.data import log_problems, scan_and_split

    if shards < 1:
        raise ParameterError("shards", f"{{name}} must be at least 1, got {shards}")
    out = Path(out)
    files.check_replaceable(out, PACK_KIND)  # before the scan, not after it
    found, manifest = scan_and_split(data, seed=seed)
    if manifest.task != MULTICLASS:
        raise CatdogError("a multi-label data set cannot be packed yet; train from its folder and labels file")
    log_problems(found)
    splits = {}
    with files.atomic_path(out, PACK_KIND) as tmp:
        tmp.mkdir()
        for split in SPLITS:
            paths, labels = manifest.files(split)
            relative = [row.path for row in manifest.rows if row.split == split]  # the same order
            n = max(1, min(shards, len(paths)))
            per_shard = math.ceil(len(paths) / n) if paths else 0
            names = [f"{split}-{i:05d}-of-{n:05d}.tfrecord" for i in range(n)]
            for i, name in enumerate(names):
                with files.disk_full_is_an_error(tmp / name), tf.io.TFRecordWriter(str(tmp / name)) as writer:
                    for j in range(i * per_shard, min((i + 1) * per_shard, len(paths))):
                        writer.write(_record(paths[j], int(labels[j]), relative[j]))
            splits[split] = {"count": len(paths), "shards": names}
        manifest.write(tmp / MANIFEST_FILE)
        meta = {"format_version": FORMAT_VERSION, "class_names": manifest.class_names, "seed": seed,
                "source": str(Path(found.root).resolve()), "layout": found.layout, "splits": splits,
                "skipped": [list(item) for item in found.skipped], "warnings": found.warnings}
        files.write_json(tmp / PACK_FILE, meta)
    shard_counts = ", ".join(f"{name}: {len(split['shards'])} shards" for name, split in splits.items())
    logger.info(f"packed {sum(split['count'] for split in splits.values())} images into {out} ({shard_counts})")
    return out


def _record(path: str, label: int, relative: str) -> bytes:
    import tensorflow as tf

    def feature(value):
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    example = tf.train.Example(features=tf.train.Features(feature={
        "image": feature(Path(path).read_bytes()), "label": feature(label), "path": feature(relative.encode()),
    }))
    return example.SerializeToString()
