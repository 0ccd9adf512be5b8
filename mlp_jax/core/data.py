"""MNIST-layout data: IDX files from a folder, or TFDS; split, scaled to [0, 1], on the device."""

import gzip
import hashlib
import os
import socket
import zlib

import flax.struct
import jax
import numpy as np

from mlp_jax.core import preprocess
from mlp_jax.core.errors import InputError

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_SHAPE, NUM_CLASSES = (28, 28), 10
# The md5s each file of the known releases is known by: of the uncompressed file, then of the .gz
# as distributed (a recompressed .gz, as Linux distributions ship, is known by the first). The .gz
# ones are torchvision's (datasets/mnist.py); MNIST's uncompressed ones are those of
# ../shared/datasets/README.md, Fashion-MNIST's those torchvision-style loaders check after
# extracting (`raw_data`). KMNIST's uncompressed md5s are not published: its .gz alone.
KNOWN_MD5 = {
    "mnist": {
        "train_images": ("6bbc9ace898e44ae57da46a324031adb", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train_labels": ("a25bea736e30d166cdddb491f175f624", "d53e105ee54ea40749a09fcbcd1e9432"),
        "test_images": ("2646ac647ad5339dbf082846283269ea", "9fb629c4189551a2d022fa330f9573f3"),
        "test_labels": ("27ae3e4e09519cfbb04c329615203637", "ec29112dd5afa0611ce80d1b7f02629c"),
    },
    "fashion_mnist": {
        "train_images": ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train_labels": ("9018921c3c673c538a1fc5bad174d6f9", "25c81989df183df01b3e8a0aad5dffbe"),
        "test_images": ("8181f5470baa50b63fa0f6fddb340f0a", "bef4ecab320f06d8554ea6380940ec79"),
        "test_labels": ("15d484375f8d13e6eb1aabb0c3f46965", "bb300cfdad3c16e7a12a480ee83cd310"),
    },
    "kmnist": {
        "train_images": ("bdb82020997e1d708af4cf47b453dcf7",),
        "train_labels": ("e144d726b3acfaa3e44228e80efcd344",),
        "test_images": ("5c965bf0a639b31b8f53240b1b52f4d7",),
        "test_labels": ("7320c461ea6c1c855c0b718fb2a4b134",),
    },
}
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
    # Each IDX file's name and the md5 of its uncompressed bytes; empty when read through TFDS.
    digest: tuple[tuple[str, str], ...] = flax.struct.field(pytree_node=False, default=())


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


def md5(raw: bytes) -> str:
    """Return the hex md5 of `raw` (a checksum to identify files by, not a security measure)."""
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()


def read_idx(folder: str, stem: str, magic: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Read `stem` or `stem.gz` from `folder` as an IDX array; also return the md5s the file is
    known by: of its uncompressed bytes, then, for a .gz, of the file itself."""
    for path in (os.path.join(folder, stem + ".gz"), os.path.join(folder, stem)):
        if os.path.isfile(path):
            compressed = path.endswith(".gz")
            try:
                with open(path, "rb") as f:
                    stored = f.read()
                raw = gzip.decompress(stored) if compressed else stored
            except (OSError, EOFError, zlib.error) as e:
                raise InputError(f"corrupt data file {path}: {e}") from None
            md5s = (md5(raw), md5(stored)) if compressed else (md5(raw),)
            return parse_idx(raw, magic, path), md5s
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


def read_idx_folder(folder: str) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, ...]]]:
    """Read the four MNIST-layout IDX files of `folder` as uint8 arrays; also return the md5s
    each file is known by (`read_idx`'s)."""
    if not os.path.isdir(folder):
        raise InputError(f"missing data folder {folder!r}; {OFFLINE_HINT}")
    arrays, md5s = {}, {}
    for key, stem in IDX_FILES.items():
        magic = IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC
        arrays[key], md5s[key] = read_idx(folder, stem, magic)
    for split in ("train", "test"):
        _check_pair(arrays[f"{split}_images"], arrays[f"{split}_labels"], split)
    return arrays, md5s


def check_release(dataset: str, folder: str, md5s: dict[str, tuple[str, ...]]) -> None:
    """Raise InputError when a file of `folder` is a known release's other than `dataset`'s;
    files of unknown md5 are accepted."""
    for key, known_by in md5s.items():
        for release, files in KNOWN_MD5.items():
            if release != dataset and set(known_by) & set(files[key]):
                raise InputError(
                    f"--dataset {dataset} contradicts --data_dir {folder}: its "
                    f"{IDX_FILES[key]} is {release}'s (md5 {known_by[0]}); accepted: "
                    f"--dataset={release}, or a folder of {dataset}"
                )


def known_md5(file: str, checksum: str) -> str:
    """Return the md5 `checksum` of IDX `file` followed by the known release whose it is, if any:
    `6bbc... (mnist's)`."""
    key = next(k for k, stem in IDX_FILES.items() if stem == file)
    releases = [r for r, files in KNOWN_MD5.items() if checksum in files[key]]
    return checksum + "".join(f" ({release}'s)" for release in releases)


def digest(md5s: dict[str, tuple[str, ...]]) -> tuple[tuple[str, str], ...]:
    """Return each IDX file's name and the md5 of its uncompressed bytes (.gz and raw agree)."""
    return tuple((IDX_FILES[key], known_by[0]) for key, known_by in md5s.items())


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


def to_device(
    arrays: dict[str, np.ndarray],
    validation_size: int,
    name: str,
    digest: tuple[tuple[str, str], ...] = (),
    preprocessing: str = "none",
) -> Dataset:
    """Split off the first `validation_size` training images, preprocess every image as
    `preprocessing` names, and move everything to the device."""
    num_train = len(arrays["train_images"])
    if validation_size >= num_train:
        raise InputError(
            f"--validation_size {validation_size} leaves no training images "
            f"(the training set has {num_train}); accepted: 0..{num_train - 1}"
        )

    def images(x: np.ndarray) -> jax.Array:
        grey = preprocess.apply(preprocessing, x.astype(np.float32) / np.float32(255))
        return jax.device_put(grey.reshape(len(x), int(np.prod(x.shape[1:]))))  # not -1: empty

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
        digest=digest,
    )


def load(
    dataset: str = "mnist",
    data_dir: str | None = None,
    validation_size: int = 5000,
    preprocessing: str = "none",
) -> Dataset:
    """Load `dataset` from the IDX folder `data_dir`, or through TFDS when it is None, every
    image preprocessed as `preprocessing` names (`preprocess.PREPROCESSORS`).

    A folder whose files are another known release than `dataset` is refused (InputError).
    """
    if not data_dir:
        return to_device(read_tfds(dataset), validation_size, dataset, (), preprocessing)
    arrays, md5s = read_idx_folder(data_dir)
    check_release(dataset, data_dir, md5s)
    return to_device(arrays, validation_size, dataset, digest(md5s), preprocessing)


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
