"""Registries: a component is one entry, found by name; settings carry their effect on a run."""

import dataclasses

import jax
import numpy as np
import optax
import pytest

from mlp_jax.campaign import grids
from mlp_jax.core import activations, augment, config, models, optim, settings, train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
from mlp_jax.store import checkpoints, results

TINY = Config(hidden=(16,), act="relu", batch_size=10, steps=40, eval_every=20)


def field(name: str) -> dataclasses.Field:
    """Return Config's field `name`."""
    return next(f for f in config.flag_fields() if f.name == name)


def test_choices_are_the_registries():
    registries = {
        "act": activations.BUILDERS,
        "weight_init": models.INITIALIZERS,
        "loss": optim.LOSSES,
        "optimizer": optim.OPTIMIZERS,
        "schedule": optim.SCHEDULES,
    }
    for name, registry in registries.items():
        assert field(name).metadata["choices"] is registry, name
    assert field("bias_init").metadata["choices"] == ("normal", "zeros", "constant")


def test_a_new_optimizer_is_one_entry_and_trains_by_name(tiny, monkeypatch):
    with pytest.raises(InputError, match="unknown --optimizer 'lion'"):
        Config(optimizer="lion")
    monkeypatch.setitem(optim.OPTIMIZERS, "lion", optim.Optimizer(lambda lr, s: optax.lion(lr)))
    cfg = dataclasses.replace(TINY, optimizer="lion", lr=1e-3, init_scale=0.1)
    assert "lion" in settings.help_text(field("optimizer")) and "lion" in config.flag_table()
    result = train.fit(cfg, tiny)
    first, last = result.history[0]["train_loss"][0], result.history[-1]["train_loss"][0]
    assert last < first < np.log(10) + 1


def invert(key: jax.Array, x: jax.Array, s: augment.Strengths) -> jax.Array:
    """Turn white to black: an augmentation reading no strength, for the test below."""
    return 1.0 - x


def test_a_new_augmentation_is_one_entry_and_trains_by_name(tiny, monkeypatch):
    x = jax.random.uniform(jax.random.key(1), (4, 784))
    noisy = augment.make(("noise",), augment.Strengths())(jax.random.key(2), x)
    with pytest.raises(InputError, match="unknown --augment 'invert'"):
        Config(augment="invert")
    monkeypatch.setitem(augment.KINDS, "invert", augment.Kind((), perturb=invert))
    both = augment.make(("noise", "invert"), augment.Strengths())(jax.random.key(2), x)
    np.testing.assert_array_equal(both, 1.0 - noisy)  # noise draws the key it drew before
    result = train.fit(dataclasses.replace(TINY, augment="invert,noise"), tiny)
    assert np.isfinite(result.history[-1]["train_loss"][0])


def test_each_augmentation_reads_strengths_that_exist_and_every_strength_is_read():
    read = [name for kind in augment.KINDS.values() for name in kind.strengths]
    assert sorted(read) == sorted(f.name for f in dataclasses.fields(augment.Strengths))
    for name, kind in augment.KINDS.items():
        assert (kind.distort is None) != (kind.perturb is None), name


def test_distortions_apply_before_perturbations():
    assert augment.application_order() == ["affine", "elastic", "noise", "salt_pepper"]


def test_effects_give_the_settings_each_consumer_leaves_out():
    # The three lists these replace, as they were kept by hand.
    assert set(checkpoints.RESUMABLE) == {
        "name",
        "data_dir",
        "devices",
        "parallel",
        "checkpoint_every",
        "keep_checkpoints",
        "keep_every",
    }
    assert set(results.NOT_PROTOCOL) == {
        "name",
        "seed",
        "num_seeds",
        "data_dir",
        "eval_every",
        "devices",
        "parallel",
        "checkpoint_every",
        "keep_checkpoints",
        "keep_every",
    }
    assert set(grids.NOT_AXES) == {"name", "seed", "num_seeds", "data_dir"}


def test_every_setting_has_a_known_effect():
    assert {f.metadata["effect"] for f in config.flag_fields()} == set(settings.EFFECTS)
    with pytest.raises(ValueError, match="unknown effect 'rounding'"):
        config.fields_with("rounding")
    with pytest.raises(ValueError, match="unknown effect 'rounding'"):
        settings.setting(0, "A setting.", effect="rounding")
