"""On-device augmentation: pure functions of a PRNG key and a batch of flat 28x28 images in [0, 1].

Geometric distortions (random affine, elastic as in Simard et al. 2003) move where each output
pixel samples the input; noise (Gaussian, salt-and-pepper) then perturbs pixel values.

KINDS maps each augmentation's name to its entry: the `Strengths` fields it reads (each a flag of
the run, through `config.Config`) and its function. A new augmentation is one entry there and its
strength fields in `Strengths`.
"""

from collections.abc import Callable
import dataclasses
import math

import jax
import jax.numpy as jnp

from mlp_jax.core.settings import FRACTION, NON_NEGATIVE, setting, validate

SIDE = 28
Augment = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Strengths:
    """How strong each augmentation is; KINDS says which augmentation reads which field."""

    noise_std: float = setting(
        0.2, "Standard deviation of the Gaussian pixel noise.", within=NON_NEGATIVE
    )
    salt_pepper: float = setting(
        0.05, "Fraction of pixels salt-and-pepper noise sets to 0 or 1.", within=FRACTION
    )
    rotate: float = setting(
        10.0, "Affine: maximum rotation, degrees (uniform in +-rotate).", within=NON_NEGATIVE
    )
    scale: float = setting(0.1, "Affine: maximum relative zoom in or out.", within=NON_NEGATIVE)
    shear: float = setting(10.0, "Affine: maximum shear, degrees.", within=NON_NEGATIVE)
    translate: float = setting(
        2.0, "Affine: maximum shift along each axis, pixels.", within=NON_NEGATIVE
    )
    elastic_alpha: float = setting(
        34.0, "Elastic: displacement scale alpha (Simard 2003), pixels.", within=NON_NEGATIVE
    )
    elastic_sigma: float = setting(
        4.0,
        "Elastic: width sigma of the Gaussian smoothing the displacement field, pixels.",
        within=NON_NEGATIVE,
    )

    def __post_init__(self):
        validate(self)


def gaussian_noise(key: jax.Array, x: jax.Array, std: float) -> jax.Array:
    """Add N(0, std^2) to every pixel and clip to [0, 1]."""
    return jnp.clip(x + std * jax.random.normal(key, x.shape), 0.0, 1.0)


def salt_and_pepper(key: jax.Array, x: jax.Array, amount: float) -> jax.Array:
    """Set a fraction `amount` of pixels to 0 or 1, half each."""
    u = jax.random.uniform(key, x.shape)
    return jnp.where(u < amount / 2, 0.0, jnp.where(u > 1 - amount / 2, 1.0, x))


def _pixel_grid() -> jax.Array:
    """Return (2, SIDE, SIDE) row and column coordinates relative to the image centre."""
    centre = (SIDE - 1) / 2
    rows, cols = jnp.meshgrid(jnp.arange(SIDE) - centre, jnp.arange(SIDE) - centre, indexing="ij")
    return jnp.stack([rows, cols])


def affine_offsets(key: jax.Array, batch: int, s: Strengths) -> jax.Array:
    """Return (batch, 2, SIDE, SIDE) sampling offsets of random rotation/scale/shear/shift."""
    k_rot, k_scale, k_shear, k_shift = jax.random.split(key, 4)
    rot = jnp.deg2rad(s.rotate) * jax.random.uniform(k_rot, (batch,), minval=-1, maxval=1)
    shear = jnp.deg2rad(s.shear) * jax.random.uniform(k_shear, (batch,), minval=-1, maxval=1)
    zoom = 1 + s.scale * jax.random.uniform(k_scale, (batch,), minval=-1, maxval=1)
    shift = s.translate * jax.random.uniform(k_shift, (batch, 2, 1, 1), minval=-1, maxval=1)
    cos, sin, tan = jnp.cos(rot), jnp.sin(rot), jnp.tan(shear)
    # Inverse map: where each output pixel reads from = (rotation @ shear / zoom) @ p + shift.
    matrix = jnp.stack([jnp.stack([cos, cos * tan - sin]), jnp.stack([sin, sin * tan + cos])])
    matrix = jnp.moveaxis(matrix, -1, 0) / zoom[:, None, None]  # (batch, 2, 2)
    grid = _pixel_grid()
    return jnp.einsum("bij,jhw->bihw", matrix, grid) - grid[None] + shift


def gaussian_matrix(sigma: float) -> jax.Array:
    """Return the SIDE x SIDE matrix that smooths a line with a Gaussian (zero beyond edges)."""
    d = jnp.arange(SIDE)[:, None] - jnp.arange(SIDE)[None, :]
    return jnp.exp(-(d**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)


def elastic_offsets(key: jax.Array, batch: int, s: Strengths) -> jax.Array:
    """Return (batch, 2, SIDE, SIDE) offsets: uniform noise smoothed by a Gaussian, times alpha."""
    field = jax.random.uniform(key, (batch, 2, SIDE, SIDE), minval=-1, maxval=1)
    g = gaussian_matrix(s.elastic_sigma)
    return s.elastic_alpha * jnp.einsum("ij,bcjk,lk->bcil", g, field, g)


def resample(x: jax.Array, offsets: jax.Array) -> jax.Array:
    """Bilinearly sample each image at its pixel positions plus `offsets` (zero outside)."""
    images = x.reshape(-1, SIDE, SIDE)
    coords = _pixel_grid()[None] + offsets + (SIDE - 1) / 2

    def one(image, where):
        return jax.scipy.ndimage.map_coordinates(
            image, [where[0], where[1]], order=1, mode="constant", cval=0.0
        )

    return jax.vmap(one)(images, coords).reshape(x.shape)


def shift(x: jax.Array, rows: int, cols: int) -> jax.Array:
    """Move each flat image `rows` pixels down and `cols` right (negative: up, left), zeros
    moving in; a zero shift returns the images as they are."""

    def inside(by: int) -> jax.Array:
        source = jnp.arange(SIDE) - by  # the line each output line is read from
        return (source >= 0) & (source < SIDE)

    images = jnp.roll(x.reshape(-1, SIDE, SIDE), (rows, cols), axis=(1, 2))
    keep = inside(rows)[:, None] & inside(cols)[None, :]
    return jnp.where(keep, images, 0.0).reshape(x.shape)


Views = tuple[tuple[int, int], ...]  # (rows down, columns right) of each view of an image
# Test-time augmentation: the views of each image whose softmax a model's prediction averages.
TEST_VIEWS: dict[str, Views] = {
    "none": ((0, 0),),
    "shifts": ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)),
}


Distort = Callable[[jax.Array, int, Strengths], jax.Array]  # key, batch -> sampling offsets
Perturb = Callable[[jax.Array, jax.Array, Strengths], jax.Array]  # key, images -> images


@dataclasses.dataclass(frozen=True)
class Kind:
    """One augmentation: the `Strengths` fields it reads, and either where it moves each pixel
    (`distort`: (batch, 2, SIDE, SIDE) offsets) or how it changes pixel values (`perturb`)."""

    strengths: tuple[str, ...]
    distort: Distort | None = None
    perturb: Perturb | None = None


KINDS: dict[str, Kind] = {
    "noise": Kind(("noise_std",), perturb=lambda key, x, s: gaussian_noise(key, x, s.noise_std)),
    "salt_pepper": Kind(
        ("salt_pepper",), perturb=lambda key, x, s: salt_and_pepper(key, x, s.salt_pepper)
    ),
    "affine": Kind(("rotate", "scale", "shear", "translate"), distort=affine_offsets),
    "elastic": Kind(("elastic_alpha", "elastic_sigma"), distort=elastic_offsets),
}


def application_order() -> list[str]:
    """Return every kind in the order `make` applies them: the distortions (summed into one
    resampling), then the perturbations, each in KINDS order."""
    return sorted(KINDS, key=lambda kind: KINDS[kind].distort is None)


def make(kinds: tuple[str, ...], s: Strengths) -> Augment | None:
    """Return the augmentation applying `kinds` (geometric ones first), or None for none."""
    if not kinds:
        return None
    order = application_order()
    distortions = [k for k in order if k in kinds and KINDS[k].distort]
    perturbations = [k for k in order if k in kinds and KINDS[k].perturb]

    def augment(key: jax.Array, x: jax.Array) -> jax.Array:
        # The i-th kind of `order` draws the i-th key whichever kinds are on; a split into more
        # keys begins with the same ones, so a kind that comes last in `order` moves no other.
        keys = dict(zip(order, jax.random.split(key, len(order)), strict=True))
        if distortions:
            offsets = jnp.zeros((x.shape[0], 2, SIDE, SIDE))
            for kind in distortions:
                offsets += KINDS[kind].distort(keys[kind], x.shape[0], s)
            x = resample(x, offsets)
        for kind in perturbations:
            x = KINDS[kind].perturb(keys[kind], x, s)
        return x

    return augment
