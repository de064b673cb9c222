"""catdog.data.images: what counts as a usable image, and decoding the same way everywhere."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from catdog.data.images import IMAGE_SUFFIXES, READABLE_FORMATS, decode, find_images, inspect_image, load_images
from catdog.errors import BadImageError

from conftest import declared_size_png, write_bad_images, write_image


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("GIF", ".gif"), ("BMP", ".bmp"),
                                         ("WEBP", ".webp"), ("TIFF", ".tiff")])
def test_common_formats_pass_with_their_size(tmp_path, fmt, suffix):
    path = write_image(tmp_path / f"image{suffix}", size=(48, 40))
    info = inspect_image(path)
    assert (info.format, info.width, info.height, info.extension_mismatch) == (fmt, 48, 40, False)
    assert fmt in READABLE_FORMATS and suffix in IMAGE_SUFFIXES
    assert decode(path, 16).shape == (16, 16, 3)


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])
def test_content_decides_the_format_and_a_wrong_extension_is_flagged(tmp_path, fmt):
    path = write_image(tmp_path / "photo.jpg", fmt=fmt)
    info = inspect_image(path)
    assert info.format == fmt and info.extension_mismatch


def test_each_kind_of_bad_file_raises_with_its_reason(tmp_path):
    expected = write_bad_images(tmp_path)
    del expected[".hidden.jpg"]  # hidden files are the scan's business; the image itself is fine
    for name, reason in expected.items():
        for check in (inspect_image, lambda path: decode(path, 16)):
            with pytest.raises(BadImageError) as caught:
                check(tmp_path / name)
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
    with pytest.raises(BadImageError, match="too large"):
        decode(declared_size_png(100_000, 100_000), 16)


def test_pillows_own_decompression_bomb_warning_does_not_leak(recwarn):
    with pytest.raises(BadImageError, match="too large: 10000x10000"):
        inspect_image(declared_size_png(10_000, 10_000))  # over Pillow's 89-megapixel warning threshold
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_an_unreadable_path_is_a_bad_image(tmp_path):
    with pytest.raises(BadImageError, match="cannot be read"):
        inspect_image(tmp_path / "missing.jpg")


def test_load_images_decodes_paths_and_bytes_alike(tmp_path):
    path = write_image(tmp_path / "a.png", size=(64, 48), color=(250, 10, 10))
    images = load_images([path, path.read_bytes()], image_size=32)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(images[0], images[1])
    assert np.array_equal(images, np.round(images)) and images.min() >= 0 and images.max() <= 255
    red, _, blue = images[0].mean(axis=(0, 1))
    assert red > 200 > 50 > blue


def test_exif_orientation_is_applied(tmp_path):
    """A phone stores a portrait photo sideways with an orientation tag: decoded, it stands upright."""
    upright = np.zeros((60, 30, 3), np.uint8)  # tall: red top half, blue bottom half
    upright[:30, :, 0] = 255
    upright[30:, :, 2] = 255
    stored = np.rot90(upright, k=1)  # what the sensor wrote: rotated 90 degrees counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "portrait.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)

    pixels = decode(path, 20).astype(int)
    top, bottom = pixels[:8].mean(axis=(0, 1)), pixels[-8:].mean(axis=(0, 1))
    assert top[0] > 200 > 50 > top[2] and bottom[2] > 200 > 50 > bottom[0]


@pytest.mark.parametrize("mode, value, expected", [("L", 200, 200), ("I;16", 51400, 200), ("LA", 90, 90),
                                                   ("P", None, None), ("CMYK", None, None)])
def test_every_mode_becomes_8_bit_rgb(tmp_path, mode, value, expected):
    if mode == "P":
        image = Image.new("RGB", (20, 20), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
        expected_rgb = (10, 200, 30)
    elif mode == "CMYK":
        image = Image.new("CMYK", (20, 20), (0, 0, 0, 0))  # no ink: white
        expected_rgb = (255, 255, 255)
    else:
        image = Image.new(mode, (20, 20), value if mode != "LA" else (value, 128))
        expected_rgb = (expected,) * 3
    path = tmp_path / ("image.tiff" if mode == "CMYK" else "image.png")
    image.save(path)
    pixels = decode(path, 8)
    assert pixels.dtype == np.uint8 and pixels.shape == (8, 8, 3)
    np.testing.assert_allclose(pixels.reshape(-1, 3).mean(axis=0), expected_rgb, atol=1)


def test_downscaling_is_antialiased():
    """A 1-pixel checkerboard squeezed to an eighth of its size is an even grey, not a moire."""
    board = (np.indices((128, 128)).sum(axis=0) % 2 * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(board).save(buffer, format="PNG")
    pixels = decode(buffer.getvalue(), 16).astype(int)
    assert abs(pixels.mean() - 127.5) < 2 and pixels.std() < 3


def test_a_large_jpeg_decoded_at_reduced_scale_looks_like_the_full_decode(reference_data, tmp_path):
    """JPEGs much larger than the model's input are decoded at a reduced scale first: same picture."""
    photo = Image.open(reference_data / "train" / "dogs" / "dog.7.jpg").convert("RGB")
    big = tmp_path / "big.jpg"
    photo.resize((photo.width * 4, photo.height * 4), Image.Resampling.BICUBIC).save(big, quality=95)
    fast = decode(big, 64).astype(float)
    full = np.asarray(Image.open(big).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)).astype(float)
    assert np.abs(fast - full).mean() < 2.0


def test_find_images_takes_image_suffixes_inside_folders_and_named_files_as_they_are(tmp_path):
    write_image(tmp_path / "photos" / "a.webp")
    write_image(tmp_path / "photos" / "deeper" / "b.TIF")
    (tmp_path / "photos" / "README.md").write_text("not a photo")
    (tmp_path / "notes.txt").write_text("named on purpose")
    found = find_images([tmp_path / "photos", tmp_path / "notes.txt"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["photos/a.webp", "photos/deeper/b.TIF",
                                                                  "notes.txt"]
