"""Preprocessing as a setting: width normalisation (Meier et al. 2011), the same for the loaded
splits and for `experiments.predict`'s images, recorded in the run's config."""

import os
import re

import numpy as np
from PIL import Image, ImageDraw
import pytest
from scipy import ndimage

from mlp_jax.core import data, preprocess, train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
from mlp_jax.store import checkpoints, results, runner
from mlp_jax.uses import digits
from tests.helpers import idx_bytes, run_module

WIDTH_NAMES = [f"width{n}" for n in preprocess.WIDTHS]


def stroke(points: list[tuple[int, int]]) -> np.ndarray:
    """Return a white stroke through `points` (on a 112×112 page) as an anti-aliased 28×28 digit."""
    page = Image.new("L", (112, 112), 0)
    ImageDraw.Draw(page).line(points, fill=255, width=9)
    return np.asarray(page.resize((28, 28), Image.Resampling.BOX), np.float32) / 255


def sample_digits(mnist_dir) -> np.ndarray:
    """Return drawn digits (a narrow 1, a 7, a box wider than high) and, with $MLP_JAX_DATA,
    MNIST's first 100 test digits: (N, 28, 28) grey levels."""
    drawn = [
        stroke([(56, 20), (56, 92)]),
        stroke([(30, 20), (80, 20), (45, 95)]),
        stroke([(10, 40), (100, 60), (20, 70)]),
    ]
    if not mnist_dir:
        return np.stack(drawn)
    images, _ = data.read_idx(mnist_dir, data.IDX_FILES["test_images"], data.IMAGE_MAGIC)
    return np.concatenate([np.stack(drawn), images[:100] / np.float32(255)])


def box_size(digit: np.ndarray) -> tuple[int, int]:
    """Return the height and width of the nonzero pixels of a 28×28 digit."""
    rows, cols = np.nonzero(digit)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_the_registry_holds_none_and_meiers_six_widths():
    assert list(preprocess.PREPROCESSORS) == ["none", *WIDTH_NAMES]
    assert WIDTH_NAMES == ["width10", "width12", "width14", "width16", "width18", "width20"]


@pytest.mark.parametrize("name", WIDTH_NAMES)
def test_each_width_gives_every_digit_that_width_height_20_and_the_centre(mnist_dir, name):
    images = sample_digits(mnist_dir)
    out = preprocess.apply(name, images)
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    for digit in out:
        assert box_size(digit) == (preprocess.BOX, int(name.removeprefix("width")))
        np.testing.assert_allclose(ndimage.center_of_mass(digit), preprocess.CENTRE, atol=0.5)


def test_the_box_is_resampled_as_pils_bilinear_resize():
    digit = stroke([(30, 20), (80, 20), (45, 95)])
    rows, cols = np.nonzero(digit)
    crop = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    out = preprocess.apply("width12", digit[None])[0]
    rows, cols = np.nonzero(out)
    expected = Image.fromarray(crop).resize((12, 20), Image.Resampling.BILINEAR)
    np.testing.assert_allclose(out[rows.min() :, cols.min() :][:20, :12], expected, atol=1e-5)


def test_none_is_the_identity_and_a_blank_image_stays_blank():
    images = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    images[1] = 0.0
    np.testing.assert_array_equal(preprocess.apply("none", images), images)
    assert not preprocess.apply("width16", images)[1].any()


def test_apply_keeps_the_layout_it_is_given():
    grid = stroke([(30, 20), (80, 20), (45, 95)])[None]
    out = preprocess.apply("width14", grid)
    for layout in [(1, 784), (1, 28, 28, 1)]:
        np.testing.assert_array_equal(
            preprocess.apply("width14", grid.reshape(layout)), out.reshape(layout)
        )


def test_a_width_setting_trains_by_name_and_is_recorded(tmp_path):
    arrays = {
        "train_images": np.stack([stroke([(56, 20), (56 + i, 92)]) for i in range(-12, 13)]),
        "test_images": np.stack([stroke([(30, 20), (80, 20), (45 + i, 95)]) for i in range(8)]),
    }
    arrays = {k: np.round(v * 255).astype(np.uint8) for k, v in arrays.items()}
    arrays["train_labels"], arrays["test_labels"] = np.zeros(25, np.uint8), np.ones(8, np.uint8)
    dataset = data.to_device(arrays, 5, "drawn", preprocessing="width12")
    cfg = Config(hidden=(8,), batch_size=5, validation_size=5, steps=4, preprocess="width12")
    recorded = runner.train_and_record(cfg, dataset, str(tmp_path / "r.jsonl"), str(tmp_path / "w"))
    assert np.isfinite(recorded.fit.test_accuracy).all()
    assert recorded.records[0]["config"]["preprocess"] == "width12"
    assert checkpoints.load(str(tmp_path / "w")).cfg.preprocess == "width12"
    config = recorded.records[0]["config"]
    assert results.protocol(config) != results.protocol({**config, "preprocess": "none"})
    with pytest.raises(InputError, match=r"width13.*width10"):
        Config(preprocess="width13")


def full_contrast_test_digits(mnist_dir: str, count: int) -> np.ndarray:
    """Return MNIST's first `count` test digits whose strongest stroke is white (255), uint8."""
    images, _ = data.read_idx(mnist_dir, data.IDX_FILES["test_images"], data.IMAGE_MAGIC)
    return images[images.reshape(len(images), -1).max(axis=1) == 255][:count]


def idx_folder(folder, images: np.ndarray) -> str:
    """Write an MNIST-layout IDX folder whose training and test images are `images`, labels 0."""
    os.makedirs(folder)
    labels = np.zeros(len(images))
    for key, contents in [("images", images), ("labels", labels)]:
        magic = data.IMAGE_MAGIC if key == "images" else data.LABEL_MAGIC
        for split in ("train", "test"):
            with open(os.path.join(folder, data.IDX_FILES[f"{split}_{key}"]), "wb") as f:
                f.write(idx_bytes(contents, magic))
    return str(folder)


# MNIST's digits were laid out at 28×28, anti-aliased: their own PNG is a user's image that
# predict's MNIST-style layout (digits.load_image) gives back exactly, when the strongest stroke
# is white (others are brought to full contrast, as every user image is).
@pytest.mark.parametrize("name", ["none", "width10", "width20"])
def test_a_test_digit_as_a_png_is_preprocessed_by_predict_as_when_loaded(mnist_dir, tmp_path, name):
    if not mnist_dir:
        pytest.skip("takes test digits from the MNIST IDX folder of $MLP_JAX_DATA")
    images = full_contrast_test_digits(mnist_dir, 20)
    loaded = data.load("mnist", idx_folder(tmp_path / "idx", images), 0, name)
    paths = [str(tmp_path / f"{i}.png") for i in range(len(images))]
    for digit, path in zip(images, paths, strict=True):
        Image.fromarray(digit).save(path)
    predicted = preprocess.apply(name, np.stack([digits.load_image(p) for p in paths]))
    np.testing.assert_allclose(predicted, np.asarray(loaded.test_x), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_predict_preprocesses_images_as_the_model_was_trained(mnist_dir, tmp_path):
    if not mnist_dir:
        pytest.skip("takes test digits from the MNIST IDX folder of $MLP_JAX_DATA")
    images = full_contrast_test_digits(mnist_dir, 200)
    folder = idx_folder(tmp_path / "idx", images)
    cfg = Config(hidden=(32,), steps=20, eval_every=20, lr=0.1, preprocess="width10")
    dataset = data.load("mnist", folder, 10, cfg.preprocess)
    workdir = str(tmp_path / "w")
    runner.train_and_record(cfg, dataset, str(tmp_path / "r.jsonl"), workdir)
    paths = [str(tmp_path / f"{i}.png") for i in range(10)]
    for digit, path in zip(images, paths, strict=False):
        Image.fromarray(digit).save(path)
    proc = run_module("experiments.predict", f"--workdir={workdir}", *paths)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = [re.findall(r"\d \((\d\.\d{3})\)", line) for line in proc.stdout.splitlines()]
    replicas = checkpoints.load(workdir).replicas

    def top(x: np.ndarray) -> list[list[str]]:
        probs = train.committee(train.probabilities(cfg, replicas, x), np.ones(1, bool))
        return [[f"{q:.3f}" for _, q in digits.top_classes(p)] for p in probs]

    assert printed == top(np.asarray(dataset.test_x[:10]))  # the test split: the same digits
    unprocessed = top(images[:10].reshape(10, -1) / np.float32(255))  # what "none" would print
    assert sum(p != q for p, q in zip(printed, unprocessed, strict=True)) >= 5
