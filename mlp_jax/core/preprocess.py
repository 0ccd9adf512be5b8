"""Preprocessing of the 28×28 digits, by name: applied to the training, validation and test
images when they are loaded and to a user's images by `experiments.predict`, so that nets which
see the digits differently (Meier et al. 2011) can vote in one committee.

Each entry maps grey levels in [0, 1], shape (N, 28, 28), to the same shape and range:
- "none": the digits as they are.
- "widthN" (N = 10, 12, ..., 20): width normalisation as in Meier et al. 2011, "Better digit
  recognition with a committee of simple neural nets": the bounding box of each digit's ink
  (every nonzero pixel) is resampled to exactly N pixels wide and 20 high (MNIST's height;
  narrower boxes are stretched, wider ones squeezed, the aspect ratio is not kept), then moved
  by whole pixels so that its centre of mass is nearest MNIST's, the box staying inside the
  field (no ink is cut). Resampling is bilinear, widened when shrinking (as PIL's antialiased
  resize). A blank image stays blank.
"""

from collections.abc import Callable
import functools

import numpy as np

Preprocessor = Callable[[np.ndarray], np.ndarray]

SIDE = 28  # MNIST's field
BOX = 20  # MNIST's box: the longer side of each digit's bounding box, the height of most
# The mean centre of mass (row, column) of MNIST's test digits, 0-based: 13.99 and 14.01.
CENTRE = (14.0, 14.0)
WIDTHS = range(10, BOX + 1, 2)  # Meier et al.'s six widths
CHUNK = 8192  # images resampled at once: bounds the memory of the resampling matrices


def extents(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the first and last index of True along axis 1 of each row of `ink` (N, SIDE)."""
    return ink.argmax(axis=1), ink.shape[1] - 1 - ink[:, ::-1].argmax(axis=1)


def resampling(first: np.ndarray, last: np.ndarray, size: int) -> np.ndarray:
    """Return (N, SIDE, SIDE) matrices, each mapping SIDE input pixels to SIDE output pixels: the
    span first..last (inclusive) resampled onto output pixels 0..size-1, zeros after.

    A triangle kernel, as wide as an input pixel or an output one, whichever is wider: bilinear
    interpolation when enlarging, averaging when shrinking.
    """
    first, last = first.astype(np.float32)[:, None], last.astype(np.float32)[:, None]
    pixels = np.arange(SIDE, dtype=np.float32)
    scale = (last - first + 1) / np.float32(size)  # input pixels per output pixel
    centres = first + (pixels + 0.5) * scale - 0.5
    width = np.maximum(scale, 1.0)[:, :, None]
    weights = np.maximum(0.0, 1.0 - np.abs(pixels - centres[:, :, None]) / width)
    weights *= (pixels >= first[:, :, None]) & (pixels <= last[:, :, None])
    weights[:, size:] = 0.0
    total = weights.sum(axis=2, keepdims=True)
    return weights / np.where(total > 0, total, 1.0)


def centring_shifts(digits: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the whole-pixel shifts (rows, columns) that bring the centre of mass of `digits`
    (N, SIDE, SIDE), each in a BOX×`width` box at the top left, nearest CENTRE, within the field."""
    mass = digits.sum(axis=(1, 2))
    centre = [(digits.sum(axis=axis) @ np.arange(SIDE, dtype=np.float32)) / mass for axis in (2, 1)]
    return tuple(
        np.clip(np.round(at - c), 0, SIDE - size).astype(int)
        for at, c, size in zip(CENTRE, centre, (BOX, width), strict=True)
    )


def roll(digits: np.ndarray, shifts: np.ndarray, axis: int) -> np.ndarray:
    """Roll each of `digits` (N, SIDE, SIDE) by its own shift along `axis` (1 or 2)."""
    index = (np.arange(SIDE) - shifts[:, None]) % SIDE
    return np.take_along_axis(digits, np.expand_dims(index, 3 - axis), axis=axis)


def normalise_width(images: np.ndarray, width: int) -> np.ndarray:
    """Return `images` (N, SIDE, SIDE) with each digit's bounding box resampled to `width`×BOX
    and centred by its centre of mass (module docstring); blank images unchanged."""
    out = np.array(images, dtype=np.float32)
    for start in range(0, len(images), CHUNK):
        chunk = out[start : start + CHUNK]
        ink = chunk > 0
        inked = ink.any(axis=(1, 2))
        rows = resampling(*extents(ink.any(axis=2)[inked]), BOX)
        cols = resampling(*extents(ink.any(axis=1)[inked]), width)
        digits = rows @ chunk[inked] @ cols.transpose(0, 2, 1)
        down, right = centring_shifts(digits, width)
        chunk[inked] = np.minimum(roll(roll(digits, down, 1), right, 2), 1.0)  # float rounding
    return out


PREPROCESSORS: dict[str, Preprocessor] = {
    "none": lambda images: images,
    **{f"width{n}": functools.partial(normalise_width, width=n) for n in WIDTHS},
}


def apply(name: str, images: np.ndarray) -> np.ndarray:
    """Return `images` preprocessed as `name` says: grey levels in [0, 1], 28×28 digits of any
    layout (N, 28, 28), (N, 784) or (N, 28, 28, 1), returned in the same layout."""
    grid = images.reshape(len(images), SIDE, SIDE)
    return PREPROCESSORS[name](grid).reshape(images.shape)
