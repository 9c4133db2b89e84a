"""Reading Food-11 in its three layouts, and clear errors for unusable folders."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from environment import shared_data
from servetune.cli import app
from servetune.config import FOOD11_CLASSES
from servetune.model.data import (
    DataError,
    load_images,
    normalise_class_name,
    read_split,
    read_training,
    subset,
)


@pytest.mark.parametrize("layout", ["flat", "class_id", "class_name"])
def test_each_layout_is_detected_and_labelled(make_food11, layout):
    root = make_food11(layout, per_class=2)
    split = read_split(root, "training")
    assert split.layout == layout
    assert split.counts() == [2] * 11
    for sample in split.samples:
        # the synthetic images encode their class in their colour: the label must match the file's class
        if layout == "flat":
            assert sample.path.name.startswith(f"{sample.label}_")
        elif layout == "class_id":
            assert sample.path.parent.name == f"class_{sample.label:02d}"
        else:
            assert normalise_class_name(sample.path.parent.name) == normalise_class_name(FOOD11_CLASSES[sample.label])


def test_class_name_folders_match_loosely(make_food11):
    root = make_food11("class_name", per_class=1, splits=("training",))
    (root / "training" / "Noodles-Pasta").rename(root / "training" / "noodles_pasta")
    (root / "training" / "Dairy product").rename(root / "training" / "dairy-Product")
    split = read_split(root, "training")
    assert split.counts() == [1] * 11


def test_missing_split_names_the_path(make_food11):
    root = make_food11("flat", per_class=1, splits=("training",))
    with pytest.raises(DataError, match=r"validation.*missing split folder 'validation' \(found: training"):
        read_split(root, "validation")
    with pytest.raises(DataError, match="no such data folder"):
        read_split(root / "nowhere", "training")


def test_unknown_class_id_is_an_error(make_food11):
    root = make_food11("flat", per_class=1, splits=("training",))
    (root / "training" / "0_0.jpg").rename(root / "training" / "11_0.jpg")
    with pytest.raises(DataError, match=r"11_0\.jpg: unknown class id 11 \(expected 0\.\.10\)"):
        read_split(root, "training")
    folders = make_food11("class_id", per_class=1, splits=("training",), name="ids")
    (folders / "training" / "class_10").rename(folders / "training" / "class_12")
    with pytest.raises(DataError, match=r"class_12: unknown class id 12"):
        read_split(folders, "training")


def test_badly_named_files_and_folders_are_errors(make_food11):
    root = make_food11("flat", per_class=1, splits=("training",))
    (root / "training" / "0_0.jpg").rename(root / "training" / "bread.jpg")
    with pytest.raises(DataError, match=r"bread\.jpg: file name is not '<class id>_<n>'"):
        read_split(root, "training")
    named = make_food11("class_name", per_class=1, splits=("training",), name="named")
    (named / "training" / "Pizza").mkdir()
    with pytest.raises(DataError, match=r"Pizza: folder name is not a class name"):
        read_split(named, "training")


def test_empty_class_is_an_error(make_food11):
    root = make_food11("flat", per_class=1, splits=("training",))
    (root / "training" / "3_0.jpg").unlink()
    with pytest.raises(DataError, match=r"training: no images for class 'Egg'"):
        read_split(root, "training")
    # an evaluation set may cover only some classes ...
    assert len(read_split(root, "training", require_all_classes=False).samples) == 10
    # ... but an empty class folder is always an error
    folders = make_food11("class_id", per_class=1, splits=("training",), name="ids")
    (folders / "training" / "class_05" / "0.jpg").unlink()
    with pytest.raises(DataError, match=r"class_05: empty class folder"):
        read_split(folders, "training", require_all_classes=False)


def test_corrupt_images_are_skipped_counted_and_listed(make_food11):
    root = make_food11("flat", per_class=2, splits=("training",))
    (root / "training" / "4_0.jpg").write_bytes(b"this is not a jpeg")
    good = (root / "training" / "5_0.jpg").read_bytes()
    (root / "training" / "5_0.jpg").write_bytes(good[: len(good) // 3])
    (root / "training" / "notes.txt").write_text("ignored: not an image file")
    split = read_split(root, "training")
    loaded = load_images(split.samples)
    assert len(loaded.images) == 20 and len(loaded.labels) == 20
    assert sorted(path.name for path, _ in loaded.corrupt) == ["4_0.jpg", "5_0.jpg"]
    assert all(reason for _, reason in loaded.corrupt)


def test_subset_takes_the_first_images_of_each_class(make_food11):
    split = read_split(make_food11("class_id", per_class=3, splits=("training",)), "training")
    chosen = subset(split.samples, 2)
    assert len(chosen) == 22 and all(chosen.count(s) == 1 for s in chosen)
    assert subset(split.samples, None) == split.samples


def test_extra_training_folders_follow_the_training_split_and_may_lack_classes(make_food11):
    data = make_food11("flat", per_class=2, splits=("training",))
    extra = make_food11("class_name", per_class=3, splits=("training",), name="more") / "training"
    for photo in (extra / "Dairy product").iterdir():  # like the proxy's training-extra: no Dairy product
        photo.unlink()
    (extra / "Dairy product").rmdir()
    union = read_training(data, [extra])
    assert union.counts() == [5, 2, *[5] * 9]
    assert union.samples[:22] == read_split(data, "training").samples  # the split's own photos first
    first = subset(union.samples, 2)
    assert all(sample.path.parent == data / "training" for sample in first)
    assert read_training(data).samples == read_split(data, "training").samples


def test_bad_extra_training_folders_are_errors_naming_the_folder(make_food11, tmp_path):
    data = make_food11("flat", per_class=1, splits=("training",))
    with pytest.raises(DataError, match=r"nowhere: no such image folder"):
        read_training(data, [tmp_path / "nowhere"])
    partial = make_food11("class_id", per_class=1, splits=("training",), name="partial")
    (data / "training" / "1_0.jpg").unlink()  # Dairy product now only in... no folder at all
    for photo in (partial / "training" / "class_01").iterdir():
        photo.unlink()
    (partial / "training" / "class_01").rmdir()
    with pytest.raises(DataError, match=r"training: no images for class 'Dairy product'"):
        read_training(data, [partial / "training"])
    result = CliRunner().invoke(app, ["model", "train", "--data", str(make_food11("flat", per_class=1, name="ok")),
                                      "--extra", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "nowhere: no such image folder" in result.output and "Traceback" not in result.output


def test_load_images_bounds_the_image_size(make_food11):
    split = read_split(make_food11("flat", per_class=1, splits=("training",), side=96), "training")
    loaded = load_images(split.samples[:2], max_side=40)
    assert all(min(image.size) <= 48 for image in loaded.images)  # JPEG draft may stop a little above


def test_cli_reports_a_bad_data_folder_without_traceback(tmp_path):
    from onnx_models import tiny_artifact

    model = tiny_artifact(tmp_path / "tiny.onnx")
    result = CliRunner().invoke(app, ["model", "eval", str(model), "--data", str(tmp_path / "missing")])
    assert result.exit_code != 0
    assert "no such data folder" in result.output and "Traceback" not in result.output


def test_proxy_data_reads_in_the_original_layout():
    root = shared_data("food11-proxy")
    split = read_split(root, "validation")
    assert split.layout == "flat" and split.counts() == [100] * 11
    training = read_training(root, [root / "training-extra"])
    counts = training.counts()  # about 3,000 a class (Dessert 2,999), Dairy product only its 748
    assert counts[1] == 748 and all(2990 <= n <= 3000 for i, n in enumerate(counts) if i != 1)
    fullres = read_split(shared_data("food101-fullres"), "evaluation", require_all_classes=False)
    assert {FOOD11_CLASSES[i] for i, n in enumerate(fullres.counts()) if n} == {
        "Dessert", "Meat", "Rice", "Vegetable/Fruit"}
