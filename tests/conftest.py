"""Shared fixtures: the reference photographs from ../shared, and small generated images; and
`train`/`resume`, a preset trained into a finished run folder in one call; a headless browser."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# catdog's own cache (scans, downloads) goes to a folder of the test session, not the user's home.
os.environ["CATDOG_HOME"] = tempfile.mkdtemp(prefix="catdog-home-")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE_DATA = SHARED / "data" / "cats_and_dogs_filtered"
SHARED_WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_no_top.h5"


def _require(path: Path) -> Path:
    """The shared file or folder; in CI its absence fails the test, elsewhere it skips it."""
    if path.exists():
        return path
    message = f"{path} is missing (tests read the shared data set and weights from ../shared)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """The real photographs of the reference data set (read-only)."""
    return _require(REFERENCE_DATA)


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    """ImageNet weights for MobileNetV2 without its top."""
    return _require(SHARED_WEIGHTS)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Debian's; scripts/ensure-chromium installs it), driven by Playwright; in CI
    its absence fails the test, elsewhere it skips it."""

    executable = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if executable is None:
        message = "Debian's chromium is not installed (scripts/ensure-chromium installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def train(preset: str, data, *, out=None, strategy: str = "auto", callbacks=(), **overrides) -> Path:
    """Train `preset` with the settings `overrides` on `data` into a finished run folder (training,
    then the steps after it: `catdog.workflow.train_run`), and return its path."""
    from catdog.runs import TrainSettings
    from catdog.workflow import train_run

    settings = TrainSettings.resolve(preset, **overrides)
    return train_run(settings, data, out=out, strategy=strategy, callbacks=callbacks).path


def resume(run, data=None, *, strategy: str = "auto", callbacks=()) -> Path:
    """Complete the run folder `run` (`catdog.workflow.resume_run`), and return its path."""
    from catdog.workflow import resume_run

    return resume_run(run, data, strategy=strategy, callbacks=callbacks).path


def write_image(path: Path, size=(48, 40), color=(200, 30, 30), fmt: str | None = None, seed: int = 0) -> Path:
    """Write a small noisy image of one dominant colour (format from the suffix unless `fmt`)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype("uint8")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


@pytest.fixture
def make_image():
    return write_image


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A flat folder of two visually distinct classes, 12 images each, small enough to train on in seconds."""
    root = tmp_path / "tiny"
    for label, color in (("cats", (210, 60, 40)), ("dogs", (40, 80, 210))):
        for i in range(12):
            write_image(root / label / f"{label}.{i}.jpg", color=color, seed=i)
    return root


def write_tiny_run(path: Path, image_size: int = 64, class_names=("cats", "dogs"), seed: int = 0,
                   data: Path | None = None) -> Path:
    """A run folder holding a tiny untrained model (0..255 pixels in, softmax out), as `catdog train` writes one."""
    import json

    import keras

    from catdog.runs import RunConfig, TrainSettings

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(class_names), activation="softmax", dtype="float32")(x)
    path.mkdir(parents=True, exist_ok=True)
    keras.Model(inputs, outputs).save(path / "model.keras")
    settings = TrainSettings.from_dict({"preset": "tiny", "image_size": image_size, "batch_size": 8, "seed": seed})
    RunConfig(settings, tuple(class_names), str(data or "")).write(path / "config.json")
    (path / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "loss": 0.69, "n": 2}))
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder with a tiny model at 64 px for two classes (cats, dogs); shared, do not modify."""
    return write_tiny_run(tmp_path_factory.mktemp("runs") / "tiny")


def start_in_thread(server, sock):
    """Run the uvicorn `server` on `sock` in a daemon thread; return the thread once the server has started."""
    import threading
    import time

    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.02)
    return thread


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Serve an ASGI `app` with uvicorn on a free port of 127.0.0.1 in a background thread; yield its URL."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = start_in_thread(server, sock)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def declared_size_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height` pixels (a cheap decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def write_bad_images(folder: Path) -> dict[str, str]:
    """Write one file of each kind a scan must skip into `folder`; return {name: start of the reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    jpeg = write_image(folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = write_image(folder / "garbled.png").read_bytes()
    start = png.index(b"IDAT") + 8
    garbled = bytes(b ^ 0xFF for b in png[start : start + 40])
    (folder / "garbled.png").write_bytes(png[:start] + garbled + png[start + 40 :])
    (folder / "notes.jpg").write_text("not a photo, just text\n")
    write_image(folder / ".hidden.jpg")
    (folder / "huge.png").write_bytes(declared_size_png(12_000, 12_000))
    (folder / "drawing.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n")
    return {
        "empty.jpg": "empty file",
        "truncated.jpg": "truncated or corrupt JPEG",
        "garbled.png": "truncated or corrupt PNG",
        "notes.jpg": "not an image",
        ".hidden.jpg": "hidden file",
        "huge.png": "too large: 12000x12000 pixels",
        "drawing.eps": "unsupported format EPS",
    }


def write_split_layout(root: Path, n_train: int = 4, n_validation: int = 5, n_test: int = 0,
                      classes=("cats", "dogs")) -> Path:
    """A small data set in the split layout: train/, validation/ and (if n_test) test/, with class folders."""
    for folder, n in (("train", n_train), ("validation", n_validation), ("test", n_test)):
        for class_name in classes:
            for i in range(n):
                write_image(root / folder / class_name / f"{class_name}.{i}.jpg", size=(16, 12), seed=i)
    return root


@pytest.fixture(scope="session")
def shared_scan(reference_data):
    """`catdog.data.scan.scan` of the shared photographs, made once per session (treat as read-only)."""
    from catdog.data.scan import scan

    return scan(reference_data)


def one_line_error(capsys, code: int, *fragments: str) -> str:
    """The command failed with exit 2 and a one-line error, with `fragments`, as the last thing it said."""
    err = capsys.readouterr().err
    assert code == 2, err
    *progress, last = err.strip().splitlines()
    assert last.startswith("catdog: error: ") and "Traceback" not in err, err
    assert not any("catdog: error" in line for line in progress), err  # said once
    for fragment in fragments:
        assert fragment in last
    return last


def link_photos(folder: Path, reference_data: Path, split: str, numbers: range) -> Path:
    """A flat folder of class folders (cats, dogs) linking to real photographs of the reference data set."""
    for name in ("cats", "dogs"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for n in numbers:
            photo = f"{name[:-1]}.{n}.jpg"
            (folder / name / photo).symlink_to(reference_data / split / name / photo)
    return folder


@pytest.fixture(scope="session")
def trusted_run(tmp_path_factory, reference_data, shared_weights) -> Path:
    """`transfer` (224 px), trained for 5 epochs on 150 real photographs per class (105 train, 22 validation,
    23 test), with its temperature and out-of-distribution detector; shared, do not modify."""
    root = tmp_path_factory.mktemp("trusted")
    data = link_photos(root / "data", reference_data, "train", range(150))
    return train("transfer", data, epochs=5, batch_size=16, weights=shared_weights, out=root / "run")


# Grad-CAM where the answer is known: the class of an image is the colour of a square patch at a known place,
# rows and columns [top, bottom) x [left, right) of a SIZE x SIZE image of grey noise.
PATCH_IMAGE_SIZE = 64
PATCH = (16, 32, 32, 48)
PATCH_COLOURS = {"blue": (30, 60, 230), "red": (230, 40, 30)}
PLAIN = "plain"


def patch_image(rng, colour) -> np.ndarray:
    """Grey noise everywhere (no colour), and a square of `colour` (with a little noise) at `PATCH` (None: none)."""
    size = PATCH_IMAGE_SIZE
    pixels = np.repeat(rng.integers(40, 216, (size, size, 1)), 3, axis=2).astype("float32")
    if colour is not None:
        top, bottom, left, right = PATCH
        pixels[top:bottom, left:right] = np.clip(np.array(colour) + rng.normal(0, 10, (bottom - top, right - left, 3)),
                                                  0, 255)
    return pixels.astype("uint8")


def write_patch_data(root: Path, per_class: int = 40, plain: bool = True) -> Path:
    """A data set of `per_class` patch images per colour, and with `plain`, as many without a patch.

    The plain class makes each colour's patch the evidence for its class: with two colours alone,
    a model may learn one colour's patch and give the other class by its absence, and the other
    class's heatmap then shows no patch (measured: 1 seed of 11, with 0 of 16 peaks in the patch)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, colour in [*PATCH_COLOURS.items(), *([(PLAIN, None)] if plain else [])]:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(patch_image(rng, colour)).save(root / name / f"{i}.png")
    return root


def train_patch_run(root: Path, seed: int, plain: bool = True) -> Path:
    """`cnn` trained with `seed` on the patch data (see `write_patch_data`)."""
    data = write_patch_data(root / "data", plain=plain)
    return train("cnn", data, epochs=20, image_size=PATCH_IMAGE_SIZE, batch_size=16, seed=seed, out=root / "run")


def check_patch_heatmaps(run: Path) -> None:
    """Grad-CAM of the patch model shows the patch: the property, with the margins measured over 11 seeds
    (benchmarks/decisions.md): 16 of 16 images classified right and their heatmaps' peaks in the patch,
    whose mean heat was at least 1.95 times the rest's."""
    from catdog.explain.gradcam import GradCAM
    from catdog.runs import Run

    opened = Run.open(run)
    rng = np.random.default_rng(123)
    names = list(PATCH_COLOURS)
    pixels = np.stack([patch_image(rng, PATCH_COLOURS[names[i % 2]]) for i in range(16)]).astype("float32")

    result = GradCAM(opened.keras_model())(pixels)

    assert [opened.class_names[c] for c in result.classes] == [names[i % 2] for i in range(16)], "the model learnt"
    top, bottom, left, right = PATCH
    inside = np.zeros((PATCH_IMAGE_SIZE, PATCH_IMAGE_SIZE), bool)
    inside[top:bottom, left:right] = True
    peaks_inside = [heatmap[inside].max() == heatmap.max() for heatmap in result.heatmaps]
    assert sum(peaks_inside) >= 14, "the peak falls in the patch"
    for heatmap in result.heatmaps:
        assert heatmap.max() == pytest.approx(1.0)
        assert heatmap[inside].max() > 0.8
        assert heatmap[inside].mean() > 1.5 * heatmap[~inside].mean()


@pytest.fixture(scope="session")
def other_photo() -> Path:
    """A photograph of neither a cat nor a dog: Grace Hopper, as matplotlib ships her."""
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(folder served, base URL) of a plain HTTP file server on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=served))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """A flat data set of two colours, 12 images each: 8 train, 2 validation and 2 test per class."""
    root = tmp_path_factory.mktemp("colours")
    for label, color in (("red", (210, 60, 40)), ("blue", (40, 80, 210))):
        for i in range(12):
            write_image(root / label / f"{i}.jpg", color=color, seed=i)
    return root


# The suspected label errors `write_review_set` plants in its audit: (file, suggested class, score, confident).
REVIEW_SUSPECTS = (
    ("cats/d-flip0.jpg", "dogs", 0.95, True),
    ("dogs/c-flip0.jpg", "cats", 0.9, True),
    ("cats/c5.jpg", "dogs", 0.52, True),
    ("cats/d-flip1.jpg", "dogs", 0.6, False),
    ("dogs/d3.jpg", "cats", 0.55, False),
    ("dogs/d4.jpg", "cats", 0.51, False),
    ("cats/c6.jpg", "dogs", 0.5, False),
)


def write_review_set(root: Path) -> tuple[Path, Path]:
    """A flat data set of red "cats" and blue "dogs" (12 each) with three flipped files (`d-flip*` are blue, in
    cats/), an exact copy (cats/c0-copy.jpg) and a text file named .jpg; and, written as `catdog audit --out`
    does, an audit of it that finds `REVIEW_SUSPECTS`, the copy (across train and test: a leak) and an outlier
    (dogs/d7.jpg). Returns (data folder, audit folder): ten items to review."""

    from catdog.audit.result import AuditResult, Group, Outlier, Suspect

    data = root / "data"
    for label, prefix, color in (("cats", "c", (210, 60, 40)), ("dogs", "d", (40, 80, 210))):
        for i in range(12):
            write_image(data / label / f"{prefix}{i}.jpg", color=color, seed=i)
    for path, color, seed in (("cats/d-flip0.jpg", (40, 80, 210), 20), ("cats/d-flip1.jpg", (40, 80, 210), 21),
                              ("dogs/c-flip0.jpg", (210, 60, 40), 22)):
        write_image(data / path, color=color, seed=seed)
    shutil.copyfile(data / "cats" / "c0.jpg", data / "cats" / "c0-copy.jpg")
    (data / "cats" / "notes.jpg").write_text("not a photo, just text\n")
    named = functools.partial(os.path.join, str(data))
    result = AuditResult(
        data=str(data), layout="flat", seed=42, classes=["cats", "dogs"], images=28, against=[],
        duplicates=[Group("exact", [named("cats/c0.jpg"), named("cats/c0-copy.jpg")], ["train", "test"])],
        label_issues=[Suspect(named(path), "dogs" if suggested == "cats" else "cats", suggested, score, confident)
                      for path, suggested, score, confident in REVIEW_SUSPECTS],
        outliers=[Outlier(named("dogs/d7.jpg"), 1.7)], methods={},
    )
    result.write_json(root / "audit" / "audit.json")
    return data, root / "audit"


def file_states(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: its sha256 and modification time (ns), to show nothing changed them."""
    import hashlib

    return {str(path.relative_to(folder)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}
