"""IDX parsing (good, corrupt, truncated, missing), folder loading and the splits."""

import gzip
import hashlib
import os

import numpy as np
import pytest

from mlp_jax.core import data, preprocess
from mlp_jax.core.errors import InputError
from tests.helpers import idx_bytes


def write_folder(folder, n_train=12, n_test=6, compress=True, **replace) -> str:
    """Write a small MNIST-layout IDX folder; `replace` maps a file key to its raw bytes."""
    rng = np.random.default_rng(1)
    contents = {
        "train_images": idx_bytes(rng.integers(0, 256, (n_train, 28, 28)), data.IMAGE_MAGIC),
        "train_labels": idx_bytes(np.arange(n_train) % 10, data.LABEL_MAGIC),
        "test_images": idx_bytes(rng.integers(0, 256, (n_test, 28, 28)), data.IMAGE_MAGIC),
        "test_labels": idx_bytes(np.arange(n_test) % 10, data.LABEL_MAGIC),
        **replace,
    }
    os.makedirs(folder, exist_ok=True)
    for key, raw in contents.items():
        path = os.path.join(folder, data.IDX_FILES[key])
        if compress:
            with gzip.open(path + ".gz", "wb") as f:
                f.write(raw)
        else:
            with open(path, "wb") as f:
                f.write(raw)
    return str(folder)


def test_parse_idx_reads_shape_and_values():
    array = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    parsed = data.parse_idx(idx_bytes(array, data.IMAGE_MAGIC), data.IMAGE_MAGIC, "x")
    assert parsed.shape == (2, 28, 28) and parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, array)


@pytest.mark.parametrize(
    "raw, message",
    [
        (idx_bytes(np.zeros(3), data.LABEL_MAGIC), "magic number 2049, expected 2051"),
        (b"\x00\x00", "magic number nothing"),
        (idx_bytes(np.zeros((2, 28, 28)), data.IMAGE_MAGIC)[:-1], "truncated IDX file"),
        (idx_bytes(np.zeros((2, 28, 28)), data.IMAGE_MAGIC)[:10], "truncated IDX file"),
        (idx_bytes(np.zeros((2, 28, 28)), data.IMAGE_MAGIC) + b"\x00", "oversized IDX file"),
    ],
)
def test_parse_idx_rejects_bad_bytes(raw, message):
    with pytest.raises(InputError, match=message):
        data.parse_idx(raw, data.IMAGE_MAGIC, "bad-file")


@pytest.mark.parametrize("compress", [True, False])
def test_folder_gz_or_raw_gives_scaled_splits(tmp_path, compress):
    folder = write_folder(tmp_path, compress=compress)
    dataset = data.to_device(data.read_idx_folder(folder)[0], validation_size=2, name="t")
    assert dataset.train_x.shape == (10, 784) and dataset.val_x.shape == (2, 784)
    assert dataset.test_x.shape == (6, 784)
    assert float(dataset.train_x.min()) >= 0.0 and float(dataset.train_x.max()) <= 1.0
    # The first `validation_size` training images are the validation split.
    np.testing.assert_array_equal(np.asarray(dataset.val_y), [0, 1])
    np.testing.assert_array_equal(np.asarray(dataset.train_y), np.arange(2, 12) % 10)


def test_no_validation_split(tmp_path):
    dataset = data.to_device(data.read_idx_folder(write_folder(tmp_path))[0], 0, "t")
    assert dataset.val_x.shape == (0, 784) and dataset.train_x.shape == (12, 784)


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(InputError, match=r"missing data folder .*--data_dir"):
        data.read_idx_folder(str(tmp_path / "nowhere"))
    folder = write_folder(tmp_path)
    os.remove(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"))
    with pytest.raises(InputError, match="missing data file t10k-labels-idx1-ubyte"):
        data.read_idx_folder(folder)


def test_corrupt_gzip(tmp_path):
    folder = write_folder(tmp_path)
    with open(os.path.join(folder, "train-images-idx3-ubyte.gz"), "wb") as f:
        f.write(b"this is not gzip data")
    with pytest.raises(InputError, match=r"corrupt data file .*train-images"):
        data.read_idx_folder(folder)


@pytest.mark.parametrize(
    "replace, message",
    [
        ({"train_images": idx_bytes(np.zeros((12, 14, 14)), data.IMAGE_MAGIC)}, r"\(14, 14\)"),
        ({"test_labels": idx_bytes(np.zeros(5), data.LABEL_MAGIC)}, "6 images but 5 labels"),
        ({"train_labels": idx_bytes(np.full(12, 10), data.LABEL_MAGIC)}, "labels go up to 10"),
    ],
)
def test_folder_layout_checks(tmp_path, replace, message):
    with pytest.raises(InputError, match=message):
        data.read_idx_folder(write_folder(tmp_path, **replace))


def test_validation_size_must_leave_training_images(tmp_path):
    arrays, _ = data.read_idx_folder(write_folder(tmp_path))
    with pytest.raises(InputError, match="--validation_size 12 leaves no training images"):
        data.to_device(arrays, validation_size=12, name="t")


@pytest.mark.parametrize("name", ["none", "width14"])
def test_every_split_is_preprocessed_when_loaded_and_none_is_the_pixels(tmp_path, name):
    arrays, _ = data.read_idx_folder(write_folder(tmp_path))
    loaded = data.load("mnist", str(tmp_path), 2, name)
    train_x, test_x = (arrays[f"{s}_images"].astype(np.float32) / 255 for s in ("train", "test"))
    splits = {"val_x": train_x[:2], "train_x": train_x[2:], "test_x": test_x}
    for split, pixels in splits.items():
        expected = pixels if name == "none" else preprocess.apply(name, pixels)
        np.testing.assert_array_equal(getattr(loaded, split), expected.reshape(len(pixels), -1))


def test_an_unknown_digest_is_accepted_and_recorded_alike_for_gz_and_raw(tmp_path):
    gz = data.load("mnist", write_folder(tmp_path / "gz"), 2)
    raw = data.load("mnist", write_folder(tmp_path / "raw", compress=False), 2)
    with open(os.path.join(tmp_path, "raw", "t10k-labels-idx1-ubyte"), "rb") as f:
        labels_md5 = hashlib.md5(f.read()).hexdigest()
    assert gz.digest == raw.digest
    assert [name for name, _ in gz.digest] == list(data.IDX_FILES.values())
    assert dict(gz.digest)["t10k-labels-idx1-ubyte"] == labels_md5


@pytest.mark.parametrize("compress", [True, False])
def test_a_dataset_that_the_digest_contradicts_is_refused(tmp_path, monkeypatch, compress):
    folder = write_folder(tmp_path, compress=compress)
    name = "train-labels-idx1-ubyte" + (".gz" if compress else "")
    with open(os.path.join(folder, name), "rb") as f:
        as_stored = hashlib.md5(f.read()).hexdigest()  # of the .gz itself, when compressed
    fashion = {**data.KNOWN_MD5["fashion_mnist"], "train_labels": (as_stored,)}
    monkeypatch.setitem(data.KNOWN_MD5, "fashion_mnist", fashion)
    with pytest.raises(InputError) as refused:
        data.load("mnist", folder, 2)
    assert str(refused.value) == (
        f"--dataset mnist contradicts --data_dir {folder}: its train-labels-idx1-ubyte is "
        f"fashion_mnist's (md5 {dict(data.read_idx_folder(folder)[1])['train_labels'][0]}); "
        "accepted: --dataset=fashion_mnist, or a folder of mnist"
    )
    assert data.load("fashion_mnist", folder, 2).name == "fashion_mnist"


def test_a_recompressed_fashion_mnist_is_refused_as_mnist(tmp_path, monkeypatch):
    """Linux distributions recompress the releases: other .gz bytes, the original files inside.
    Here the training images' uncompressed bytes pass for Fashion-MNIST's (md5 as published)."""
    folder = write_folder(tmp_path)
    with gzip.open(os.path.join(folder, "train-images-idx3-ubyte.gz"), "rb") as f:
        ours = data.md5(f.read())
    fashion, md5 = "f4a8712d7a061bf5bd6d2ca38dc4d50a", data.md5
    monkeypatch.setattr(data, "md5", lambda raw: fashion if md5(raw) == ours else md5(raw))
    with pytest.raises(
        InputError, match=rf"train-images-idx3-ubyte is fashion_mnist's \(md5 {fashion}"
    ):
        data.load("mnist", folder, 2)


@pytest.mark.slow  # imports TensorFlow Datasets: seconds
def test_tfds_offline_says_how_to_use_local_files(monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data, "_reachable", lambda: False)
    with pytest.raises(InputError, match=r"--data_dir .*MLP_JAX_DATA"):
        data.load("mnist", None)


@pytest.mark.slow
def test_real_mnist_splits_and_pixels(mnist_dir, mnist):
    assert mnist.train_x.shape == (55000, 784) and mnist.val_x.shape == (5000, 784)
    assert mnist.test_x.shape == (10000, 784)
    assert float(mnist.train_x.max()) == 1.0 and float(mnist.train_x.min()) == 0.0
    assert sorted(np.unique(np.asarray(mnist.test_y)).tolist()) == list(range(10))
    if mnist_dir:  # the uncompressed files match the original distribution
        with gzip.open(os.path.join(mnist_dir, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
            assert hashlib.md5(f.read()).hexdigest() == "27ae3e4e09519cfbb04c329615203637"
        assert mnist.digest == tuple(
            (data.IDX_FILES[key], known[0]) for key, known in data.KNOWN_MD5["mnist"].items()
        )


@pytest.mark.slow
def test_the_mnist_folder_is_refused_as_fashion_mnist(mnist_dir):
    if not mnist_dir:
        pytest.skip("reads the MNIST IDX folder of $MLP_JAX_DATA")
    with pytest.raises(InputError, match=r"--dataset fashion_mnist contradicts .* mnist's"):
        data.load("fashion_mnist", mnist_dir)
