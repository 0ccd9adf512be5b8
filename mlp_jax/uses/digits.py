"""A user's own digit images in MNIST's layout, preprocessed as MNIST's digits were.

MNIST (LeCun et al.): white digit on black, the ink's bounding box scaled to fit 20×20 keeping
its aspect ratio, anti-aliased, then placed in 28×28 with its centre of mass at the centre.
"""

import warnings

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from mlp_jax.core.errors import InputError
from mlp_jax.core.preprocess import BOX, CENTRE, SIDE

MIN_CONTRAST = 0.1  # less ink/paper contrast than this (of black to white) is a blank image
# Above MNIST's resolution or on paper with noise, the digit's box holds what is darker than
# halfway from the paper to the darkest stroke (`fit_box`).
INK = 0.5
# PIL's modes of 16-bit grey PNGs (older PIL opens them as 32-bit "I"): 0..65535.
SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def grey_levels(image: Image.Image) -> np.ndarray:
    """Return the image's grey levels in [0, 1], transparent parts as white paper."""
    if image.mode in SIXTEEN_BIT:  # convert("L") would clip them at 255: black or white
        return np.clip(np.asarray(image, dtype=np.float32) / np.float32(65535), 0.0, 1.0)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        paper = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    return np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255)


def ink_levels(grey: np.ndarray) -> np.ndarray:
    """Return how much ink each pixel holds, at most 1: the paper (the border's median) is 0,
    the strongest stroke 1, dark ink on light paper or light ink on dark alike; a pixel beyond
    the paper's level, away from the ink (paper's noise), is negative."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    paper = np.median(border)
    # The ink is the extreme farther from the paper: grey paper photographed dim stays paper.
    ink = paper - grey if paper - grey.min() > grey.max() - paper else grey - paper
    contrast = ink.max()
    if contrast < MIN_CONTRAST:
        raise InputError(
            f"blank image: no digit stands out from the background (contrast {contrast:.2f})"
        )
    return np.minimum(ink / contrast, 1.0).astype(np.float32)


def fit_box(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink's bounding box and resize it (Lanczos) so its longer side is 20.

    The box holds the pixels over INK; at MNIST's resolution (28×28 at most) on clean paper (no
    pixel beyond the paper's level), every inked pixel, the anti-aliased fringe included as in
    MNIST's boxes, so that an MNIST digit keeps its layout. (In larger images, faint pixels are
    the paper's noise or a resize's ringing as often as fringe.)
    """
    fringe = max(ink.shape) <= SIDE and ink.min() >= 0
    rows, cols = np.nonzero(ink > (0.0 if fringe else INK))
    crop = np.maximum(ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], 0.0)
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized), 0.0, 1.0)


def centre(box: np.ndarray) -> np.ndarray:
    """Place `box` in 28×28, moved by whole pixels so that its centre of mass is nearest MNIST's."""
    field = np.zeros((SIDE, SIDE), np.float32)
    field[: box.shape[0], : box.shape[1]] = box
    offset = np.round(np.subtract(CENTRE, ndimage.center_of_mass(field)))
    return ndimage.shift(field, offset, order=0)


def preprocess(image: Image.Image) -> np.ndarray:
    """Return the digit in `image` as MNIST lays it out: 784 float32 in [0, 1], white on black."""
    digit = centre(fit_box(ink_levels(grey_levels(image))))
    return (digit / digit.max()).reshape(-1)


def load_image(path: str) -> np.ndarray:
    """Read an image file (PNG, JPEG, ...) and preprocess it; InputError names the path."""
    try:
        with warnings.catch_warnings():  # an image over the pixel limit only warns, up to twice it
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return preprocess(ImageOps.exif_transpose(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = Image.MAX_IMAGE_PIXELS
        raise InputError(
            f"{path}: more pixels than PIL's limit of {limit} (a decompression bomb?); "
            f"accepted: images of up to {limit} pixels"
        ) from None
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError:  # PIL.UnidentifiedImageError included; truncated files fail on reading
        raise InputError(f"{path}: not a readable image") from None
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def top_classes(probs: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """Return the `k` likeliest classes and their probabilities, likeliest first."""
    order = np.argsort(probs)[::-1][:k]
    return [(int(c), float(probs[c])) for c in order]


def render(digit: np.ndarray, size: int = 200) -> Image.Image:
    """Return a flat MNIST digit as a `size`×`size` picture, black ink on white paper."""
    pixels = np.round(255 * (1 - digit.reshape(SIDE, SIDE))).astype(np.uint8)
    return Image.fromarray(pixels).resize((size, size), Image.Resampling.LANCZOS)
