"""Measuring saved replicas as training measured them: the same programs, layout and splits."""

import jax
import numpy as np

from mlp_jax.core import parallel, train
from mlp_jax.core.config import Config
from mlp_jax.core.data import Dataset
from mlp_jax.core.errors import InputError


def measure(
    cfg: Config, replicas: train.Replica, data: Dataset
) -> tuple[np.ndarray, np.ndarray, jax.Array]:
    """Return every replica's right answers on validation and on test, and its test-class
    probabilities, computed by `train.fit`'s programs on its layout of replicas and data."""
    where = parallel.placement(cfg, parallel.select_devices(cfg.devices))
    replicas, data = jax.device_put(replicas, where.replicas), jax.device_put(data, where.whole)
    val, test = train.evaluator(cfg, where)(replicas, data)
    return np.asarray(val), np.asarray(test), train.probabilities(cfg, replicas, data.test_x)


def committee(
    cfg: Config,
    replicas: train.Replica,
    diverged_at_step: list[int | None],
    x: np.ndarray,
    source: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the class probabilities of the flat images `x` averaged over the replicas that
    finished, and which those are (a mask); InputError naming `source` when none did."""
    probs = train.probabilities(cfg, replicas, x)
    members = train.finished(diverged_at_step, probs)
    if not members.any():
        raise InputError(
            f"{source}: every replica diverged ({len(members)} of {len(members)}); there is no "
            "finished model to use"
        )
    return np.asarray(train.committee(probs, members)), members
