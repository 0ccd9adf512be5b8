"""A user's own digit images: MNIST's preprocessing, and `experiments.predict` end to end."""

import re
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageOps
import pytest
from scipy import ndimage

from mlp_jax.core import data, train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
from mlp_jax.store import checkpoints
from mlp_jax.uses import digits
from tests.helpers import run_module, run_ok


def seven(width: int = 28) -> Image.Image:
    """Return a black '7', strokes `width` pixels wide, drawn off-centre on a large white page."""
    image = Image.new("L", (300, 420), 255)
    ImageDraw.Draw(image).line([(60, 80), (230, 80), (120, 380)], fill=0, width=width)
    return image


def bounding_box(pixels: np.ndarray) -> tuple[int, int]:
    """Return the height and width of the nonzero pixels of a 2-d array."""
    rows, cols = np.nonzero(pixels)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


@pytest.mark.parametrize("stroke", [28, 3])
def test_a_drawn_digit_is_laid_out_as_mnist(stroke):
    page = seven(stroke)
    digit = digits.preprocess(page)
    assert digit.shape == (784,) and digit.dtype == np.float32
    assert digit.min() == 0.0 and digit.max() == 1.0  # a thin stroke too
    field = digit.reshape(28, 28)
    assert not np.concatenate([field[0], field[-1], field[:, 0], field[:, -1]]).any()
    assert digit.mean() < 0.3  # white digit on black
    ink_height, ink_width = bounding_box(np.asarray(page) < 128)
    height, width = bounding_box(field)
    assert height == 20  # the longer side fills the box, the aspect ratio stays
    assert abs(width - 20 * ink_width / ink_height) <= 1
    np.testing.assert_allclose(ndimage.center_of_mass(field), digits.CENTRE, atol=0.5)


def test_polarity_transparency_and_size_do_not_matter():
    digit = digits.preprocess(seven())
    np.testing.assert_allclose(digits.preprocess(ImageOps.invert(seven())), digit, atol=1e-6)
    transparent = Image.new("LA", (300, 420), (0, 0))
    transparent.paste(Image.new("LA", (300, 420), (0, 255)), mask=ImageOps.invert(seven()))
    np.testing.assert_allclose(digits.preprocess(transparent), digit, atol=1e-6)
    small = digits.preprocess(seven().resize((75, 105), Image.Resampling.LANCZOS))
    assert np.corrcoef(small, digit)[0, 1] > 0.9


def test_rendering_and_preprocessing_again_keeps_the_digit():
    digit = digits.preprocess(seven())
    picture = digits.render(digit)
    assert picture.size == (200, 200) and picture.getpixel((0, 0)) == 255
    assert np.corrcoef(digits.preprocess(picture), digit)[0, 1] > 0.95


@pytest.mark.parametrize("grey", [0, 255, 128])
def test_a_blank_image_is_an_input_error(grey):
    with pytest.raises(InputError, match="blank image"):
        digits.preprocess(Image.new("L", (50, 80), grey))


def test_png_and_jpeg_load(tmp_path):
    digit = digits.preprocess(seven())
    seven().save(tmp_path / "seven.png")
    seven().convert("RGB").save(tmp_path / "seven.jpg", quality=85)
    np.testing.assert_array_equal(digits.load_image(str(tmp_path / "seven.png")), digit)
    assert np.corrcoef(digits.load_image(str(tmp_path / "seven.jpg")), digit)[0, 1] > 0.95


def test_missing_unreadable_and_blank_files_are_input_errors_naming_them(tmp_path):
    missing, text, blank = tmp_path / "missing.png", tmp_path / "notes.png", tmp_path / "b.png"
    text.write_text("not an image")
    Image.new("L", (40, 40), 255).save(blank)
    for path, reason in [(missing, "no such file"), (text, "not a readable"), (blank, "blank")]:
        with pytest.raises(InputError, match=re.escape(f"{path}: {reason}")):
            digits.load_image(str(path))


def test_a_16_bit_png_is_scaled_not_binarised(mnist_dir, tmp_path):
    if not mnist_dir:
        pytest.skip("takes a test digit from the MNIST IDX folder of $MLP_JAX_DATA")
    images, _ = data.read_idx(mnist_dir, data.IDX_FILES["test_images"], data.IMAGE_MAGIC)
    picture = np.asarray(digits.render(images[3] / np.float32(255)))  # a "0", anti-aliased
    Image.fromarray(picture).save(tmp_path / "8bit.png")
    Image.fromarray(picture.astype(np.uint16) * 257).save(tmp_path / "16bit.png")
    with Image.open(tmp_path / "16bit.png") as reread:
        assert reread.mode in digits.SIXTEEN_BIT
    eight, sixteen = (digits.load_image(str(tmp_path / f"{b}bit.png")) for b in (8, 16))
    np.testing.assert_allclose(sixteen, eight, atol=1e-3)


def test_an_mnist_digit_saved_as_a_png_is_laid_out_as_it_was(mnist_dir, tmp_path):
    if not mnist_dir:
        pytest.skip("takes test digits from the MNIST IDX folder of $MLP_JAX_DATA")
    images, _ = data.read_idx(mnist_dir, data.IDX_FILES["test_images"], data.IMAGE_MAGIC)
    white = images[images.reshape(len(images), -1).max(axis=1) == 255][:300]  # full contrast
    for i, digit in enumerate(white):
        Image.fromarray(digit).save(tmp_path / f"{i}.png")
        reread = digits.load_image(str(tmp_path / f"{i}.png"))
        np.testing.assert_array_equal(reread, digit.reshape(-1) / np.float32(255))


def png_header(width: int, height: int) -> bytes:
    """Return a grey PNG of the given size whose pixel data is a few bytes (never decoded)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(10)))
        + chunk(b"IEND", b"")
    )


# PIL warns over its limit of pixels and refuses over twice it.
@pytest.mark.parametrize("size", [(10_000, 10_000), (20_000, 10_000)])
def test_an_image_over_the_pixel_limit_is_an_input_error(tmp_path, size):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(*size))
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(
        InputError, match=re.escape(f"{path}: more pixels than PIL's limit of {limit}")
    ):
        digits.load_image(str(path))


def test_top_classes_are_the_likeliest_first():
    probs = np.array([0.1, 0.05, 0.6, 0.0, 0.25])
    assert digits.top_classes(probs) == [(2, 0.6), (4, 0.25), (0, 0.1)]


@pytest.mark.slow
def test_the_centre_is_mnists_mean_centre_of_mass(mnist):
    fields = np.asarray(mnist.test_x).reshape(-1, 28, 28)
    centres = np.array([ndimage.center_of_mass(f) for f in fields])
    np.testing.assert_allclose(centres.mean(axis=0), digits.CENTRE, atol=0.05)


@pytest.fixture(scope="module")
def small_model(mnist) -> tuple[Config, train.FitResult]:
    """A one-hidden-layer ReLU MLP trained briefly on MNIST (about 95% test accuracy)."""
    cfg = Config(hidden=(128,), act="relu", steps=500, eval_every=500)
    return cfg, train.fit(cfg, mnist)


@pytest.mark.slow
def test_rendered_mnist_digits_are_classified_as_well_as_the_originals(
    mnist, small_model, tmp_path
):
    cfg, fit = small_model
    x, y = np.asarray(mnist.test_x[:1000]), np.asarray(mnist.test_y[:1000])
    paths = [str(tmp_path / f"{i}.png") for i in range(len(x))]
    for digit, path in zip(x, paths, strict=True):
        digits.render(digit).save(path)
    reread = np.stack([digits.load_image(p) for p in paths])

    def accuracy(images):
        return train.ensemble_accuracy(
            train.probabilities(cfg, fit.replicas, images), y, np.ones(1, bool)
        )

    assert accuracy(x) > 0.9
    assert abs(accuracy(reread) - accuracy(x)) <= 0.01


@pytest.mark.slow
def test_predict_classifies_images_and_names_the_ones_it_cannot_read(mnist, tmp_path):
    workdir = tmp_path / "w"
    run_ok(
        "experiments.mlp",
        "--hidden=32",
        "--steps=200",
        "--eval_every=100",
        "--num_seeds=2",
        f"--workdir={workdir}",
        f"--out={tmp_path / 'r.jsonl'}",
    )
    images = [str(tmp_path / f"{i}.png") for i in range(2)]
    for digit, path in zip(np.asarray(mnist.test_x[:2]), images, strict=True):
        digits.render(digit).save(path)
    missing, huge = str(tmp_path / "missing.png"), tmp_path / "huge.png"
    huge.write_bytes(png_header(20_000, 10_000))
    proc = run_module(
        "experiments.predict", f"--workdir={workdir}", images[0], missing, str(huge), images[1]
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert [line.split(": ")[1] for line in errors] == [missing, str(huge)]
    lines = proc.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == images
    saved = checkpoints.load(str(workdir))
    x = np.stack([digits.load_image(p) for p in images])
    ensemble = train.committee(train.probabilities(saved.cfg, saved.replicas, x), np.ones(2, bool))
    for line, expected in zip(lines, ensemble, strict=True):
        top = re.findall(r"(\d) \((\d\.\d{3})\)", line.split(": ")[1])
        probs = [float(p) for _, p in top]
        assert len(top) == 3 and len({c for c, _ in top}) == 3
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0015
        assert [(int(c), p) for c, p in top] == [
            (c, f"{p:.3f}") for c, p in digits.top_classes(expected)
        ]
