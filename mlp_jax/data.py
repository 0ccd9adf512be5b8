"""MNIST-layout data: IDX files from a folder, or TFDS; split, scaled to [0, 1], on the device."""

import gzip
import os
import socket
import zlib

import flax.struct
import jax
import numpy as np

from mlp_jax.errors import InputError

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_SHAPE, NUM_CLASSES = (28, 28), 10
OFFLINE_HINT = (
    "offline? point --data_dir (or the MLP_JAX_DATA environment variable) at a folder "
    f"holding the four MNIST IDX files ({', '.join(IDX_FILES.values())}, .gz or raw)"
)


@flax.struct.dataclass
class Dataset:
    """Flat float32 images in [0, 1] and int32 labels for the three splits, on the device."""

    train_x: jax.Array
    train_y: jax.Array
    val_x: jax.Array
    val_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array
    name: str = flax.struct.field(pytree_node=False, default="mnist")


def parse_idx(raw: bytes, magic: int, source: str) -> np.ndarray:
    """Parse the bytes of an unsigned-byte IDX file whose magic number must be `magic`."""
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else "nothing"
        raise InputError(f"corrupt IDX file {source}: magic number {found}, expected {magic}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"truncated IDX file {source}: {len(raw)} bytes, header needs {header}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise InputError(
            f"{'truncated' if len(raw) < expected else 'oversized'} IDX file "
            f"{source}: {len(raw)} bytes, shape {shape} needs {expected}"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def read_idx(folder: str, stem: str, magic: int) -> np.ndarray:
    """Read `stem` or `stem.gz` from `folder` as an IDX array."""
    for path in (os.path.join(folder, stem + ".gz"), os.path.join(folder, stem)):
        if os.path.isfile(path):
            try:
                with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
                    return parse_idx(f.read(), magic, path)
            except (OSError, EOFError, zlib.error) as e:
                raise InputError(f"corrupt data file {path}: {e}") from None
    raise InputError(
        f"missing data file {stem}(.gz) in {folder}; a data folder needs "
        f"{', '.join(IDX_FILES.values())} (.gz or raw)"
    )


def _check_pair(images: np.ndarray, labels: np.ndarray, split: str) -> None:
    if images.shape[1:] != IMAGE_SHAPE:
        raise InputError(f"{split} images are {images.shape[1:]}, expected {IMAGE_SHAPE}")
    if len(images) != len(labels):
        raise InputError(f"{split} has {len(images)} images but {len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise InputError(f"{split} labels go up to {labels.max()}, expected 0..{NUM_CLASSES - 1}")


def read_idx_folder(folder: str) -> dict[str, np.ndarray]:
    """Read the four MNIST-layout IDX files of `folder` as uint8 arrays."""
    if not os.path.isdir(folder):
        raise InputError(f"missing data folder {folder!r}; {OFFLINE_HINT}")
    arrays = {
        key: read_idx(folder, stem, IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC)
        for key, stem in IDX_FILES.items()
    }
    for split in ("train", "test"):
        _check_pair(arrays[f"{split}_images"], arrays[f"{split}_labels"], split)
    return arrays


def _reachable(host: str = "storage.googleapis.com") -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def _tfds(name: str, hint: str):
    """Return the tfds module, having checked it can load `name` (prepared, or a network).

    TensorFlow is kept off every GPU first, so that it never takes memory JAX needs.
    """
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    import tensorflow_datasets as tfds

    if not tfds.builder(name).is_prepared() and not _reachable():
        raise InputError(f"TFDS has no prepared {name!r} and cannot download it; {hint}")
    return tfds


def read_tfds(name: str) -> dict[str, np.ndarray]:
    """Load dataset `name` through TFDS."""
    tfds = _tfds(name, OFFLINE_HINT)
    try:
        splits = tfds.as_numpy(tfds.load(name, batch_size=-1, as_supervised=True))
    except Exception as e:
        raise InputError(
            f"TFDS could not load {name!r} ({type(e).__name__}); {OFFLINE_HINT}"
        ) from None
    arrays = {}
    for split in ("train", "test"):
        images, labels = splits[split]
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images[..., 0], labels
        _check_pair(arrays[f"{split}_images"], labels, split)
    return arrays


def to_device(arrays: dict[str, np.ndarray], validation_size: int, name: str) -> Dataset:
    """Split off the first `validation_size` training images and move everything to the device."""
    num_train = len(arrays["train_images"])
    if validation_size >= num_train:
        raise InputError(
            f"--validation_size {validation_size} leaves no training images "
            f"(the training set has {num_train}); accepted: 0..{num_train - 1}"
        )

    def images(x: np.ndarray) -> jax.Array:
        flat = x.reshape(len(x), int(np.prod(x.shape[1:])))  # -1 fails on an empty split
        return jax.device_put(flat.astype(np.float32) / np.float32(255))

    def labels(y: np.ndarray) -> jax.Array:
        return jax.device_put(y.astype(np.int32))

    train_x, train_y = arrays["train_images"], arrays["train_labels"]
    return Dataset(
        train_x=images(train_x[validation_size:]),
        train_y=labels(train_y[validation_size:]),
        val_x=images(train_x[:validation_size]),
        val_y=labels(train_y[:validation_size]),
        test_x=images(arrays["test_images"]),
        test_y=labels(arrays["test_labels"]),
        name=name,
    )


def load(
    dataset: str = "mnist", data_dir: str | None = None, validation_size: int = 5000
) -> Dataset:
    """Load `dataset` from the IDX folder `data_dir`, or through TFDS when it is None."""
    arrays = read_idx_folder(data_dir) if data_dir else read_tfds(dataset)
    return to_device(arrays, validation_size, dataset)


IRIS_CLASSES = ("Iris-setosa", "Iris-versicolor", "Iris-virginica")


def load_iris(data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Return Iris's 150 rows of 4 features and class indices, from `data_dir`/iris.data or TFDS."""
    if not data_dir:
        tfds = _tfds("iris", "point --data_dir at a folder holding iris.data")
        features, labels = tfds.as_numpy(
            tfds.load("iris", split="train", batch_size=-1, as_supervised=True)
        )
        order = np.argsort(labels, kind="stable")  # the UCI file's order: 50 of each class
        return features[order].astype(np.float32), labels[order].astype(np.int32)
    path = os.path.join(data_dir, "iris.data")
    if not os.path.isfile(path):
        raise InputError(f"missing data file {path}; --data_dir must hold iris.data (UCI format)")
    with open(path, encoding="utf-8") as f:
        rows = [line.strip().split(",") for line in f if line.strip()]
    try:
        features = np.array([[float(v) for v in row[:4]] for row in rows], np.float32)
        labels = np.array([IRIS_CLASSES.index(row[4]) for row in rows], np.int32)
    except (ValueError, IndexError):
        raise InputError(
            f"corrupt data file {path}: expected 4 numbers and one of "
            f"{', '.join(IRIS_CLASSES)} per line"
        ) from None
    return features, labels
