"""Preprocessing of the 28×28 digits, by name: applied to the training, validation and test
images when they are loaded and to a user's images by `experiments.predict`, so that nets which
see the digits differently (Meier et al. 2011) can vote in one committee.

Each entry maps grey levels in [0, 1], shape (N, 28, 28), to the same shape and range.
"""

from collections.abc import Callable

import numpy as np

Preprocessor = Callable[[np.ndarray], np.ndarray]

PREPROCESSORS: dict[str, Preprocessor] = {
    "none": lambda images: images,
}


def apply(name: str, images: np.ndarray) -> np.ndarray:
    """Return `images` (N, 28, 28) in [0, 1] preprocessed as `name` says."""
    return PREPROCESSORS[name](images)
