"""Batch prediction on Ray Data: many images, on this machine or an existing Ray cluster.

    catdog predict RUN photos/ more.txt s3://bucket/photos/ --engine ray [--address ADDR] --out preds.parquet

The images are listed from local folders and files, text files of paths (one per line), and
folders or files at any URL pyarrow's file systems read (s3://, gs://, hdfs://, file://).
Ray reads them as bytes; a pool of actors, each holding the run's ONNX export once (written
by `catdog export RUN --format onnx`, or first with `export_missing`), decodes them exactly as `catdog predict`
does (catdog.data.images.decode) and runs onnxruntime, on a GPU when the actor has one.
The driver gathers the rows in the order of the listing, with the fields of `catdog predict
--json`, and writes them as JSON lines or as one Parquet file.

Ray is an optional extra (`pip install 'catdog[ray]'`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from catdog import defaults
from catdog.data import images
from catdog.data.images import MAX_IMAGE_PIXELS
from catdog.errors import BadImageError, CatdogError, ParameterError
from catdog.runs import Run, as_run

LIST_SUFFIXES = (".txt", ".lst")
# Seconds connecting to an existing cluster may take (`--timeout`).
CONNECT_TIMEOUT_S = 30.0

logger = logging.getLogger(__name__)


def list_sources(sources: Iterable[str | os.PathLike]) -> list[str]:
    """Every image named by `sources` (see the module docstring), in order."""
    found: list[str] = []
    for source in map(os.fspath, sources):
        if "://" in source:
            found += _list_url(source)
        elif source.lower().endswith(LIST_SUFFIXES) and Path(source).is_file():
            lines = Path(source).read_text(encoding="utf-8").splitlines()
            found += list_sources(line.strip() for line in lines if line.strip() and not line.startswith("#"))
        else:
            found += [os.fspath(path) for path in images.find_images([source])]
    return found


def _list_url(url: str) -> list[str]:
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(url)
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.Directory:
            entries = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
            chosen = sorted(e.path for e in entries if e.type == fs.FileType.File
                            and Path(e.path).suffix.lower() in images.IMAGE_SUFFIXES)
        elif info.type == fs.FileType.File:
            chosen = [path]
        else:
            raise CatdogError(f"{url} does not exist")
    except (OSError, ValueError) as e:  # pyarrow's way of saying a URL cannot be read
        raise CatdogError(f"{url} cannot be listed ({str(e).splitlines()[0]})") from e
    scheme = url.split("://", 1)[0]
    return [f"{scheme}://{p}" if "://" not in p else p for p in chosen]


class _Model:
    """One actor's predictor: the run's ONNX export, loaded once; decodes and predicts a batch
    into the rows `catdog predict --json` prints (as JSON text, which any Ray block holds)."""

    def __init__(self, run_path: str, max_pixels: int, options: dict[str, Any]):
        from catdog.deploy.predict import Predictor

        self.predictor = Predictor(run_path, max_pixels, runtime="onnx", **options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        size, pixels, errors = self.predictor.image_size, [], []
        for contents in batch["bytes"]:
            try:
                pixels.append(images.decode(bytes(contents), size, self.predictor.max_pixels))
                errors.append("")
            except BadImageError as e:
                pixels.append(np.zeros((size, size, 3), np.uint8))
                errors.append(e.reason)
        scores = self.predictor.score_arrays(np.stack(pixels).astype("float32"))
        rows = self.predictor.results([str(path) for path in batch["path"]], scores)
        return {"path": batch["path"], "prediction": np.array([json.dumps(row) for row in rows], dtype=object),
                "error": np.array(errors, dtype=object)}


def predict(run: Run | str | os.PathLike, sources: Iterable[str | os.PathLike], *, address: str | None = None,
            batch_size: int = defaults.BATCH_SIZE, max_pixels: int = MAX_IMAGE_PIXELS,
            on_skip: Callable[[str, str], None] | None = None, export_missing: bool = False,
            timeout: float = CONNECT_TIMEOUT_S, **labelling) -> Iterator[dict[str, Any]]:
    """Yield one prediction per readable image, as `Predictor.predict_paths` does (`labelling`:
    its `tta`, `reject_unknown` and `min_confidence`), computed on Ray by the run's ONNX export;
    without a current one, `export_missing` writes it first (`catdog.deploy.export`), else
    `CatdogError` says how to. Connecting to the cluster at `address` takes at most `timeout`
    seconds, else (or if there is none there) `CatdogError` says so."""
    from catdog.deploy.predict import check_labels

    ray, data = _ray()
    run = as_run(run)
    check_labels(run, labelling.get("reject_unknown", False), labelling.get("min_confidence"))  # not in every actor
    _onnx_export(run, export_missing)
    paths = list_sources(sources)
    if not paths:
        return
    shown = {_absolute(path): path for path in paths}
    started_here = not ray.is_initialized()
    if started_here:
        _connect(ray, address, timeout)
    logging.getLogger("ray").setLevel(logging.WARNING)  # Ray Data's progress lines are for its own users
    try:
        context = data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        # Leave CPUs for reading: actors holding every CPU would starve the read tasks.
        actors = gpus or max(1, int(resources.get("CPU", 1)) // 2)
        rows = data.read_binary_files(list(shown), include_paths=True).map_batches(
            _Model, fn_constructor_kwargs={"run_path": str(run.path.resolve()), "max_pixels": max_pixels,
                                           "options": labelling},
            batch_size=batch_size, batch_format="numpy", compute=data.ActorPoolStrategy(size=actors),
            **({"num_gpus": 1} if gpus else {"num_cpus": 1}))
        for batch in rows.iter_batches(batch_size=batch_size, batch_format="numpy"):
            for path, prediction, error in zip(batch["path"], batch["prediction"], batch["error"], strict=True):
                path = shown.get(str(path), str(path))
                if error:
                    if on_skip is not None:
                        on_skip(path, str(error))
                    continue
                yield {**json.loads(prediction), "path": path}
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray, address: str | None, timeout: float) -> None:
    """Start a local Ray (`address` None), or connect to the cluster at `address` within `timeout` s."""
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address is None:
        ray.init(num_cpus=os.cpu_count(), **options)
        return
    if address != "auto":
        _reachable(address, timeout)  # a refused or unrouted address fails here, at once or after `timeout`
    outcome: dict[str, BaseException | None] = {}

    def connect() -> None:
        try:
            ray.init(address=address, **options)
            outcome["error"] = None
        except BaseException as e:  # reported in the calling thread
            outcome["error"] = e

    # Ray retries an address that answers but is not a Ray cluster for minutes; wait `timeout` at most.
    threading.Thread(target=connect, daemon=True, name="catdog-ray-connect").start()
    deadline = time.monotonic() + timeout
    while "error" not in outcome and time.monotonic() < deadline:
        time.sleep(0.05)
    if "error" not in outcome:
        raise CatdogError(f"the Ray cluster at {address} did not answer within {timeout:g} s (--timeout); is it a "
                          "Ray cluster's address (ray://HEAD:10001, or HEAD:6379 on its network)?")
    if (error := outcome["error"]) is not None:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CatdogError(f"cannot connect to the Ray cluster at {address} ({message})") from error


def _reachable(address: str, timeout: float) -> None:
    """Refuse an address (`ray://host:port` or `host:port`) that accepts no connection within `timeout` s."""
    where = address.split("://", 1)[-1]
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise ParameterError("address", f"{{name}} {address!r} is not a Ray address: give auto, HOST:PORT or "
                                        "ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        reason = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise CatdogError(f"cannot connect to the Ray cluster at {address} ({reason}"
                          f"{f' within {timeout:g} s' if isinstance(e, TimeoutError) else ''})") from e


def _absolute(path: str) -> str:
    """The path as Ray reports it back: URLs without their scheme, local paths absolute."""
    return path.split("://", 1)[1] if "://" in path else os.path.abspath(path)


def _onnx_export(run: Run, export_missing: bool) -> None:
    """Make sure the run has a current ONNX export, the model every actor runs."""
    if run.current_export("onnx") or run.current_export("onnx", quantized=True):
        return
    if not export_missing:
        raise CatdogError(f"the ray engine runs the run's ONNX export, and {run.path} has none newer than its model: "
                          f"write it with `catdog export {run.path} --format onnx` (or add --export)")
    from catdog.deploy.export import export

    logger.info(f"{run.path} has no up-to-date ONNX export; writing one")
    export(run, "onnx")


def _ray():
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise CatdogError("the ray engine needs Ray: install it with pip install 'catdog[ray]'") from e
    return ray, ray.data
