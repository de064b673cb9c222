"""catdog.data.images: what counts as a usable image, and decoding the same way everywhere."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from catdog.data.images import SUPPORTED_FORMATS, inspect_image, load_images
from catdog.errors import BadImageError

from conftest import declared_size_png, write_bad_images, write_image


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("GIF", ".gif"), ("BMP", ".bmp")])
def test_supported_formats_pass_with_their_size(tmp_path, fmt, suffix):
    path = write_image(tmp_path / f"image{suffix}", size=(48, 40))
    info = inspect_image(path)
    assert (info.format, info.width, info.height, info.extension_mismatch) == (fmt, 48, 40, False)
    assert fmt in SUPPORTED_FORMATS


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])
def test_content_decides_the_format_and_a_wrong_extension_is_flagged(tmp_path, fmt):
    path = write_image(tmp_path / "photo.jpg", fmt=fmt)
    info = inspect_image(path)
    assert info.format == fmt and info.extension_mismatch


def test_each_kind_of_bad_file_raises_with_its_reason(tmp_path):
    expected = write_bad_images(tmp_path)
    del expected[".hidden.jpg"]  # hidden files are the scan's business; the image itself is fine
    for name, reason in expected.items():
        with pytest.raises(BadImageError) as caught:
            inspect_image(tmp_path / name)
        assert caught.value.reason.startswith(reason), name
        assert caught.value.path == str(tmp_path / name)


def test_bytes_are_checked_like_files():
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), "red").save(buffer, format="PNG")
    assert inspect_image(buffer.getvalue()).format == "PNG"
    with pytest.raises(BadImageError, match="empty file"):
        inspect_image(b"")
    with pytest.raises(BadImageError, match="not an image"):
        inspect_image(b"<html>hello</html>")


def test_pixel_limit_is_read_from_the_header_before_decoding():
    # 100000 x 100000 RGB would need 30 GB to decode; the check must not try.
    with pytest.raises(BadImageError, match="too large"):
        inspect_image(declared_size_png(100_000, 100_000))
    with pytest.raises(BadImageError, match="too large: 40x30 pixels exceeds the 1000-pixel limit"):
        inspect_image(declared_size_png(40, 30), max_pixels=1000)


def test_pillows_own_decompression_bomb_warning_does_not_leak(recwarn):
    with pytest.raises(BadImageError, match="too large: 10000x10000"):
        inspect_image(declared_size_png(10_000, 10_000))  # over Pillow's 89-megapixel warning threshold
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_an_unreadable_path_is_a_bad_image(tmp_path):
    with pytest.raises(BadImageError, match="cannot be read"):
        inspect_image(tmp_path / "missing.jpg")


def test_load_images_resizes_paths_and_bytes_alike(tmp_path):
    path = write_image(tmp_path / "a.png", size=(64, 48), color=(250, 10, 10))
    images = load_images([path, path.read_bytes()], image_size=32)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(images[0], images[1])
    assert images.min() >= 0 and images.max() <= 255
    assert np.array_equal(images, np.round(images))  # whole values: lossless as uint8
    red, _, blue = images[0].mean(axis=(0, 1))
    assert red > 200 > 50 > blue


def test_load_images_matches_keras_resizing_to_rounding(seed_data):
    import keras

    dataset = keras.utils.image_dataset_from_directory(
        seed_data / "validation", shuffle=False, batch_size=4, image_size=(160, 160), verbose=False
    )
    keras_images, _ = next(iter(dataset))
    assert np.abs(load_images(dataset.file_paths[:4], 160) - keras_images.numpy()).max() <= 0.5


def test_load_images_refuses_what_tensorflow_cannot_decode():
    with pytest.raises(BadImageError, match="cannot be decoded"):
        load_images([b"definitely not an image"], 32)
