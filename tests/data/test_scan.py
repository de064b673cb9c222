"""catdog.data.scan: layouts, per-file checks and the errors a data folder can deserve."""

from __future__ import annotations

import pytest

from catdog.data.scan import FLAT_LAYOUT, SPLIT_LAYOUT, scan
from catdog.errors import CatdogError

from conftest import write_bad_images, write_image, write_split_layout


def test_flat_layout_finds_sorted_classes_and_every_image(tiny_dataset):
    found = scan(tiny_dataset)
    assert found.layout == FLAT_LAYOUT
    assert found.class_names == ["cats", "dogs"]
    assert len(found.images) == 24 and not found.skipped and not found.warnings
    assert {image.folder for image in found.images} == {None}
    assert all(image.path.startswith(f"{image.class_name}/") for image in found.images)


def test_seed_layout_keeps_each_images_split_folder(tmp_path):
    found = scan(write_split_layout(tmp_path, n_test=2))
    assert found.layout == SPLIT_LAYOUT
    counts = {folder: sum(image.folder == folder for image in found.images)
              for folder in ("train", "validation", "test")}
    assert counts == {"train": 8, "validation": 10, "test": 4}


def test_bad_files_are_skipped_with_their_reasons(tiny_dataset):
    expected = write_bad_images(tiny_dataset / "cats")
    found = scan(tiny_dataset)
    reasons = dict(found.skipped)
    assert set(reasons) == {f"cats/{name}" for name in expected}
    for name, reason in expected.items():
        assert reasons[f"cats/{name}"].startswith(reason)
    assert len(found.images) == 24


def test_a_png_or_bmp_named_jpg_is_kept_with_a_warning(tiny_dataset):
    write_image(tiny_dataset / "dogs" / "really_a_png.jpg", fmt="PNG")
    write_image(tiny_dataset / "dogs" / "really_a_bmp.jpg", fmt="BMP")
    found = scan(tiny_dataset)
    assert {"dogs/really_a_png.jpg", "dogs/really_a_bmp.jpg"} <= {image.path for image in found.images}
    assert len(found.warnings) == 2
    assert any("really_a_png.jpg" in w and "PNG" in w for w in found.warnings)
    assert any("really_a_bmp.jpg" in w and "BMP" in w for w in found.warnings)


def test_images_in_subfolders_count_and_hidden_folders_and_loose_files_are_skipped(tiny_dataset):
    write_image(tiny_dataset / "cats" / "indoor" / "cat.100.jpg")
    write_image(tiny_dataset / "cats" / ".thumbnails" / "cat.0.jpg")
    write_image(tiny_dataset / "loose.jpg")
    found = scan(tiny_dataset)
    assert "cats/indoor/cat.100.jpg" in {image.path for image in found.images}
    assert dict(found.skipped) == {"cats/.thumbnails": "hidden folder", "loose.jpg": "not inside a class folder"}


def test_missing_folder(tmp_path):
    with pytest.raises(CatdogError, match=f"data folder {tmp_path / 'nope'} does not exist"):
        scan(tmp_path / "nope")


def test_no_class_folders(tmp_path):
    write_image(tmp_path / "a.jpg")
    with pytest.raises(CatdogError, match="has no class folders"):
        scan(tmp_path)


def test_a_single_class(tmp_path):
    write_image(tmp_path / "cats" / "a.jpg")
    with pytest.raises(CatdogError, match=r"only one class folder \(cats\)"):
        scan(tmp_path)


def test_a_class_with_only_bad_files_is_empty(tiny_dataset, tmp_path):
    write_bad_images(tiny_dataset / "birds")
    with pytest.raises(CatdogError, match=r"class folder .*birds has no usable images \(7 files skipped\)"):
        scan(tiny_dataset)


def test_seed_layout_split_folders_must_hold_the_same_classes(tmp_path):
    write_split_layout(tmp_path)
    write_image(tmp_path / "validation" / "birds" / "b.jpg")
    with pytest.raises(CatdogError, match="validation has class folders .* but .*train has"):
        scan(tmp_path)


def test_seed_layout_needs_a_validation_folder(tmp_path):
    write_image(tmp_path / "train" / "cats" / "a.jpg")
    write_image(tmp_path / "train" / "dogs" / "a.jpg")
    with pytest.raises(CatdogError, match="no validation/ folder"):
        scan(tmp_path)


def test_symlinked_files_are_followed(reference_data, tmp_path):
    for class_name in ("cats", "dogs"):
        (tmp_path / class_name).mkdir()
        for source in sorted((reference_data / "train" / class_name).iterdir())[:3]:
            (tmp_path / class_name / source.name).symlink_to(source)
    found = scan(tmp_path)
    assert len(found.images) == 6 and not found.skipped


def test_shared_data_scans_clean(shared_scan):
    found = (shared_scan.layout, shared_scan.class_names, len(shared_scan.images))
    assert found == (SPLIT_LAYOUT, ["cats", "dogs"], 2999)
    assert not shared_scan.skipped and not shared_scan.warnings
