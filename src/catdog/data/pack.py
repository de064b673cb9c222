"""Packed data sets: a checked, split data set as TFRecord shards, for data that lives elsewhere.

    catdog data pack --data photos/ --out packed/ --shards 8
    catdog train --model transfer --data packed/            # or gs://bucket/packed

A pack is a folder of

    catdog-pack.json                the class names, each split's image count and shards (each
                                    shard's name, size in bytes, record count and sha256), what
                                    was skipped when the data set was checked
    splits.csv                      the manifest of the files packed (paths in the source folder)
    train-00000-of-00008.tfrecord   records of (image: the file's bytes, label, path), in the
    ...                             manifest's order, split into contiguous shards

It is read at any path TensorFlow's file systems read (a local folder, gs://, s3:// with
tensorflow-io, ...). Training streams the shards, decodes each image as a file would be
decoded (catdog.data.images.decode: the same pixels), and under the multi-worker strategy
each worker reads its own shards (tf.data's auto-sharding by file).

A pack is trusted only whole. Opening one checks its description (every field, and that it
agrees with `splits.csv`) and that every shard is there with the size it was packed with,
before anything reads a record; `verify` also reads every shard and compares its sha256
(`catdog data info` does). While training streams the shards, TFRecord's own checksum of
every record and the recorded image count are checked too, and a shard that fails to read
stops the work with a one-line error naming it (`named_read_errors`), never a retry.
A local pack is opened without TensorFlow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catdog import defaults, environment, files
from catdog.data.labels import MULTICLASS
from catdog.data.scan import ImageFile, Scan
from catdog.data.splits import SPLITS, Manifest
from catdog.errors import CatdogError, ParameterError

PACK_FILE = "catdog-pack.json"
MANIFEST_FILE = "splits.csv"
# Version 1 (the first packs) recorded no shard sizes or checksums, and cannot be checked.
FORMAT_VERSION = 2
LAYOUT = "packed"
_SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.tfrecord")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20

logger = logging.getLogger(__name__)


def _is_pack(path: Path) -> bool:
    return (path / PACK_FILE).is_file()


PACK_KIND = files.Kind("a pack written by catdog", _is_pack, folder=True)


def is_remote(location: str | os.PathLike) -> bool:
    return "://" in os.fspath(location)


def join(location: str | os.PathLike, name: str) -> str:
    location = os.fspath(location)
    return f"{location.rstrip('/')}/{name}" if is_remote(location) else os.path.join(location, name)


@dataclass(frozen=True)
class Shard:
    """One TFRecord file of a pack, as it was written: its name, size, record count and sha256."""

    name: str
    bytes: int
    records: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "records": self.records, "sha256": self.sha256}


@dataclass
class Pack:
    """An opened pack at `location` (a local folder or a URL)."""

    location: str
    class_names: list[str]
    splits: dict[str, list[Shard]]
    manifest: Manifest
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def shards(self, split: str) -> list[str]:
        """The paths (or URLs) of `split`'s shards, in order."""
        return [join(self.location, shard.name) for shard in self.splits[split]]

    def count(self, split: str) -> int:
        return sum(shard.records for shard in self.splits[split])

    def as_scan(self) -> Scan:
        """The pack as a scan of its images, for summaries."""
        images = [ImageFile(row.path, row.labels) for row in self.manifest.rows]
        return Scan(self.location, LAYOUT, self.class_names, images, list(self.skipped), list(self.warnings))

    def problems(self, checksums: bool = False) -> list[str]:
        """What is wrong with the shards: missing, another size, and with `checksums`, other
        bytes than those packed (every shard is read); [] for a whole pack."""
        found = []
        for shard in (shard for split in SPLITS for shard in self.splits[split]):
            path = join(self.location, shard.name)
            size = _size(path)
            if size is None:
                found.append(f"shard {shard.name} is missing")
            elif size != shard.bytes:
                found.append(f"shard {shard.name} has {size:,} bytes, not the {shard.bytes:,} it was packed with "
                             "(cut short or replaced)")
            elif checksums and _sha256(path) != shard.sha256:
                found.append(f"shard {shard.name} does not hold the bytes it was packed with (its sha256 differs)")
        return found

    def check(self, checksums: bool = False) -> None:
        """Raise `CatdogError` naming the first damaged shard (see `problems`)."""
        if found := self.problems(checksums):
            more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
            raise CatdogError(f"pack {self.location} is damaged: {found[0]}{more}; pack the data again "
                              "(catdog data pack)")


def open_pack(location: str | os.PathLike, *, verify: bool = False) -> Pack | None:
    """The pack at `location`, checked (see the module's docstring; `verify` also compares every
    shard's checksum), or None if there is none there. A damaged pack is a `CatdogError`."""
    location = os.fspath(location)
    description = join(location, PACK_FILE)
    if is_remote(location):
        if not _exists(description):
            return None
    elif not Path(description).is_file():
        return None  # a folder of images
    problem = f"{location} is a damaged catdog pack"
    try:
        meta = json.loads(_read_text(description))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CatdogError(f"{problem}: {PACK_FILE} is not valid JSON ({str(e).splitlines()[0]})") from e
    splits = _parse_description(meta, location)
    manifest_path = join(location, MANIFEST_FILE)
    try:
        text = _read_text(manifest_path)
    except FileNotFoundError:
        raise CatdogError(f"{problem}: it has no {MANIFEST_FILE}") from None
    except UnicodeDecodeError as e:
        raise CatdogError(f"{problem}: {MANIFEST_FILE} is not text") from e
    try:
        manifest = Manifest.parse(text, location, manifest_path)
    except CatdogError as e:
        raise CatdogError(f"{problem}: {e}") from e
    _check_agreement(meta, splits, manifest, problem)
    packed = Pack(location, list(meta["class_names"]), splits, manifest,
                  [tuple(item) for item in meta.get("skipped", [])], list(meta.get("warnings", [])))
    packed.check(checksums=verify)
    return packed


def _parse_description(meta: Any, location: str) -> dict[str, list[Shard]]:
    """The shards of each split that `catdog-pack.json` lists, every field checked."""
    problem = f"{location} is a damaged catdog pack"
    if not isinstance(meta, dict):
        raise CatdogError(f"{problem}: {PACK_FILE} does not hold an object")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CatdogError(f"{problem}: {PACK_FILE} has no format_version (a whole number), found {version!r}")
    if version > FORMAT_VERSION:
        raise CatdogError(f"{location} was packed by a newer catdog (format {version}); upgrade catdog to read it")
    if version < FORMAT_VERSION:
        raise CatdogError(f"{location} was packed by an older catdog, without the shard checksums that tell a whole "
                          "pack from a damaged one; pack the data again (catdog data pack)")
    names = meta.get("class_names")
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) and n for n in names)
            and len(set(names)) == len(names)):
        raise CatdogError(f"{problem}: class_names must list two or more different class names, found {names!r}")
    splits = meta.get("splits")
    if not (isinstance(splits, dict) and set(splits) == set(SPLITS)):
        raise CatdogError(f"{problem}: splits must describe {', '.join(SPLITS)}, found "
                          f"{sorted(splits) if isinstance(splits, dict) else splits!r}")
    parsed = {split: _parse_split(split, splits[split], problem) for split in SPLITS}
    shard_names = [shard.name for shards in parsed.values() for shard in shards]
    if len(set(shard_names)) != len(shard_names):
        raise CatdogError(f"{problem}: a shard is listed twice")
    skipped, warnings = meta.get("skipped", []), meta.get("warnings", [])
    if not (isinstance(skipped, list) and all(isinstance(item, list) and len(item) == 2
                                              and all(isinstance(s, str) for s in item) for item in skipped)):
        raise CatdogError(f"{problem}: skipped must list [path, reason] pairs")
    if not (isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)):
        raise CatdogError(f"{problem}: warnings must list sentences")
    return parsed


def _parse_split(split: str, described: Any, problem: str) -> list[Shard]:
    where = f"{problem}: splits.{split}"
    if not isinstance(described, dict):
        raise CatdogError(f"{where} is not an object")
    count, shards = described.get("count"), described.get("shards")
    if not _whole(count):
        raise CatdogError(f"{where}.count must be a whole number, found {count!r}")
    if not (isinstance(shards, list) and shards):
        raise CatdogError(f"{where}.shards must list the split's shards, found {shards!r}")
    parsed = []
    for i, shard in enumerate(shards):
        if not (isinstance(shard, dict) and set(shard) == {"name", "bytes", "records", "sha256"}):
            raise CatdogError(f"{where}.shards[{i}] must give name, bytes, records and sha256")
        name, size, records, digest = shard["name"], shard["bytes"], shard["records"], shard["sha256"]
        if not (isinstance(name, str) and _SHARD_NAME.fullmatch(name)):
            raise CatdogError(f"{where}.shards[{i}].name must be a file name ending .tfrecord, found {name!r}")
        if not (_whole(size) and _whole(records) and isinstance(digest, str) and _SHA256.fullmatch(digest)):
            raise CatdogError(f"{where}.shards[{i}] ({name}): bytes and records must be whole numbers and sha256 "
                              "64 hexadecimal digits")
        parsed.append(Shard(name, size, records, digest))
    if sum(shard.records for shard in parsed) != count:
        raise CatdogError(f"{where}: its shards hold {sum(s.records for s in parsed)} records, but count says {count}")
    return parsed


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_agreement(meta: dict, splits: dict[str, list[Shard]], manifest: Manifest, problem: str) -> None:
    """The description and `splits.csv` must tell of the same classes and images."""
    if manifest.class_names != meta["class_names"]:
        raise CatdogError(f"{problem}: {MANIFEST_FILE} has classes {manifest.class_names}, {PACK_FILE} "
                          f"{meta['class_names']}")
    for split in SPLITS:
        listed = sum(1 for row in manifest.rows if row.split == split)
        packed = sum(shard.records for shard in splits[split])
        if listed != packed:
            raise CatdogError(f"{problem}: {MANIFEST_FILE} lists {listed} {split} images, the shards hold {packed}")


@contextlib.contextmanager
def named_read_errors(location: str | os.PathLike) -> Iterator[None]:
    """Within the block, a failure of TensorFlow to read the pack at `location` (a shard gone,
    cut short or changed since it was opened) becomes a one-line `CatdogError` naming the
    shard; other errors, and every error for data that is not a pack, pass as they are."""
    try:
        yield
    except Exception as e:
        tf = sys.modules.get("tensorflow")
        if tf is None or not isinstance(e, tf.errors.OpError) or not open_pack_or_none(location):
            raise
        opened = open_pack(location)  # raises, naming the shard, if one is gone or cut short
        opened.check(checksums=True)  # ... or has other bytes
        if isinstance(e, tf.errors.NotFoundError | tf.errors.DataLossError | tf.errors.FailedPreconditionError):
            raise CatdogError(f"reading pack {location} failed ({_first_line(e)})") from e
        raise


def open_pack_or_none(location: str | os.PathLike) -> bool:
    """Whether `location` holds a pack (its description), without checking it."""
    location = os.fspath(location)
    with contextlib.suppress(CatdogError):
        return _exists(join(location, PACK_FILE)) if is_remote(location) else _is_pack(Path(location))
    return False


# Reading a pack: plain files locally, TensorFlow's file systems at a URL ------------------------

def _tf():
    environment.import_tensorflow_quietly()
    import tensorflow as tf

    return tf


def _first_line(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__


def _remote_error(url: str, error: Exception) -> CatdogError:
    """What TensorFlow's failure to reach `url` means, in one line."""
    tf = _tf()
    scheme = url.split("://", 1)[0]
    if isinstance(error, tf.errors.UnimplementedError):
        readable = ", ".join(f"{s}://" for s in sorted(tf.io.gfile.get_registered_schemes()) if s not in ("", "file"))
        return CatdogError(f"catdog cannot read {scheme}:// URLs here: --data takes a folder, or a pack at a path "
                           f"or at a URL of a file system TensorFlow has ({readable}; s3:// and others with "
                           "tensorflow-io)")
    return CatdogError(f"cannot read {url} ({_first_line(error)})")


def _exists(url: str) -> bool:
    tf = _tf()
    try:
        return tf.io.gfile.exists(url)
    except tf.errors.OpError as e:
        raise _remote_error(url, e) from e


def _read_text(path: str) -> str:
    if not is_remote(path):
        return Path(path).read_text(encoding="utf-8")
    tf = _tf()
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read().decode("utf-8")
    except tf.errors.NotFoundError:
        raise FileNotFoundError(path) from None
    except tf.errors.OpError as e:
        raise _remote_error(path, e) from e


def _size(path: str) -> int | None:
    """The size of the file at `path` in bytes; None if there is none."""
    if not is_remote(path):
        try:
            return os.stat(path).st_size if os.path.isfile(path) else None
        except OSError:
            return None
    tf = _tf()
    try:
        return tf.io.gfile.stat(path).length
    except tf.errors.NotFoundError:
        return None
    except tf.errors.OpError as e:
        raise _remote_error(path, e) from e


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    if not is_remote(path):
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()
    tf = _tf()
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except tf.errors.OpError as e:
        raise _remote_error(path, e) from e
    return digest.hexdigest()


# Writing a pack ----------------------------------------------------------------------------------

def pack(data, out: str | os.PathLike, *, seed: int = defaults.SEED, shards: int = 4) -> Path:
    """Check and split the data set `data` (a folder, or a `catdog.data.Source` with its labels
    and smallest class) as `catdog.data.load` would, and write it as a pack to the local folder
    `out` (new, or an earlier pack), `shards` files per split at most."""
    from catdog.data import as_source, log_problems, scan_and_split

    if shards < 1:
        raise ParameterError("shards", f"{{name}} must be at least 1, got {shards}")
    out = Path(out)
    files.check_replaceable(out, PACK_KIND)  # before the scan, not after it
    source = as_source(data)
    if source.root is not None and open_pack_or_none(source.root):
        raise CatdogError(f"{source.root} is a pack already; to pack it again (with other shards, say), pack the "
                          "folder it was packed from")
    found, manifest = scan_and_split(source, seed=seed)
    if manifest.task != MULTICLASS:
        raise CatdogError("a multi-label data set cannot be packed yet; train from its folder and labels file")
    log_problems(found)
    tf = _tf()
    splits = {}
    with files.atomic_path(out, PACK_KIND) as tmp:
        tmp.mkdir()
        for split in SPLITS:
            paths, labels = manifest.files(split)
            relative = [row.path for row in manifest.rows if row.split == split]  # the same order
            n = max(1, min(shards, len(paths)))
            per_shard = math.ceil(len(paths) / n) if paths else 0
            written = []
            for i in range(n):
                name = f"{split}-{i:05d}-of-{n:05d}.tfrecord"
                chosen = range(i * per_shard, min((i + 1) * per_shard, len(paths)))
                with files.disk_full_is_an_error(tmp / name), tf.io.TFRecordWriter(str(tmp / name)) as writer:
                    for j in chosen:
                        writer.write(_record(paths[j], int(labels[j]), relative[j]))
                written.append(Shard(name, (tmp / name).stat().st_size, len(chosen), _sha256(str(tmp / name))))
            splits[split] = {"count": len(paths), "shards": [shard.to_dict() for shard in written]}
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

    try:
        contents = Path(path).read_bytes()
    except OSError as e:
        raise CatdogError(f"{path} cannot be read any more ({e.strerror or e}); it changed since it was checked, "
                          "moments ago") from e
    example = tf.train.Example(features=tf.train.Features(feature={
        "image": feature(contents), "label": feature(label), "path": feature(relative.encode()),
    }))
    return example.SerializeToString()
