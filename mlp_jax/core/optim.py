"""What training minimises and how: the losses, optimisers and learning-rate schedules by name.

Each is one entry of a mapping from its name to what builds it. `config.Config` accepts exactly
these names (the mappings are its fields' `choices`), so the flags, their `--help` and README's
flag table follow; `train` builds from them. A new optimiser is one entry in OPTIMIZERS.
"""

from collections.abc import Callable
import dataclasses
from typing import Protocol

import jax
import jax.numpy as jnp
import optax

from mlp_jax.core.errors import InputError


class Hyperparameters(Protocol):
    """The settings the builders read (`config.Config` has them)."""

    @property
    def lr(self) -> float: ...

    @property
    def momentum(self) -> float: ...

    @property
    def weight_decay(self) -> float: ...

    @property
    def warmup_fraction(self) -> float: ...

    @property
    def cycles(self) -> int: ...


Loss = Callable[[jax.Array, jax.Array, float], jax.Array]  # logits, labels, smoothing -> mean
Schedule = Callable[[Hyperparameters, int], optax.ScalarOrSchedule]  # total steps -> rate(s)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """An Optax optimiser built from the learning rate (or schedule) and the settings."""

    build: Callable[[optax.ScalarOrSchedule, Hyperparameters], optax.GradientTransformation]
    # Whether it applies --weight_decay itself (decoupled); else train adds it to the gradient.
    decays_weights: bool = False


def smoothed_targets(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
    """Return the one-hot targets of `labels` with `smoothing` of the uniform mixed in."""
    return optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
    """Return the batch-mean softmax cross-entropy against the (smoothed) labels."""
    if not smoothing:  # bit-identical to the published tables' runs
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    targets = smoothed_targets(labels, logits.shape[-1], smoothing)
    return optax.softmax_cross_entropy(logits, targets).mean()


def squared_error(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
    """Return the batch mean of half the squared error of the softmax."""
    targets = smoothed_targets(labels, logits.shape[-1], smoothing)
    return 0.5 * jnp.mean(jnp.sum((jax.nn.softmax(logits) - targets) ** 2, axis=-1))


def warmup_cosine(s: Hyperparameters, total_steps: int) -> optax.Schedule:
    """Return a linear warm-up over --warmup_fraction of the steps, then a cosine decay."""
    warmup = max(1, int(s.warmup_fraction * total_steps))
    return optax.warmup_cosine_decay_schedule(0.0, s.lr, warmup, total_steps)


def cyclic_cosine(s: Hyperparameters, total_steps: int) -> optax.Schedule:
    """Return --cycles cosine decays from --lr to 0, each restarting where the last ends: a
    snapshot ensemble's schedule (Huang et al. 2017), its snapshots the cycles' last steps."""
    if s.cycles > total_steps:
        raise InputError(
            f"--cycles {s.cycles} is more than the run's {total_steps} steps; accepted: "
            f"1..{total_steps}"
        )
    ends = [total_steps * (i + 1) // s.cycles for i in range(s.cycles)]
    lengths = [end - start for start, end in zip([0, *ends[:-1]], ends, strict=True)]
    decays = [optax.cosine_decay_schedule(s.lr, length) for length in lengths]
    return optax.join_schedules(decays, ends[:-1])


LOSSES: dict[str, Loss] = {"cross_entropy": cross_entropy, "mse": squared_error}
OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer(lambda lr, s: optax.sgd(lr)),
    "momentum": Optimizer(lambda lr, s: optax.sgd(lr, momentum=s.momentum)),
    "nesterov": Optimizer(lambda lr, s: optax.sgd(lr, momentum=s.momentum, nesterov=True)),
    "adam": Optimizer(lambda lr, s: optax.adam(lr)),
    "adamw": Optimizer(
        lambda lr, s: optax.adamw(lr, weight_decay=s.weight_decay), decays_weights=True
    ),
    "rmsprop": Optimizer(lambda lr, s: optax.rmsprop(lr)),
}
SCHEDULES: dict[str, Schedule] = {
    "constant": lambda s, total_steps: s.lr,
    "cosine": lambda s, total_steps: optax.cosine_decay_schedule(s.lr, total_steps),
    "warmup_cosine": warmup_cosine,
    "onecycle": lambda s, total_steps: optax.cosine_onecycle_schedule(
        total_steps, s.lr, max(s.warmup_fraction, 1e-3)
    ),
    "cyclic_cosine": cyclic_cosine,
}
