"""Augmentations and the recipe options: each does what it says, and all are off by default."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlp_jax.core import augment, train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
from mlp_jax.uses import robustness

KEY = jax.random.key(0)


def digit_batch(n=4):
    """Flat 28x28 images of a filled square in the middle."""
    image = np.zeros((28, 28), np.float32)
    image[10:18, 12:16] = 1.0
    return jnp.asarray(np.repeat(image.reshape(1, 784), n, axis=0))


def test_noise_and_salt_pepper_statistics():
    x = jnp.full((200, 784), 0.5)
    noisy = augment.gaussian_noise(KEY, x, 0.1)
    assert abs(float((noisy - x).std()) - 0.1) < 0.005 and float(noisy.min()) >= 0
    salted = np.asarray(augment.salt_and_pepper(KEY, x, 0.2))
    assert abs((salted == 0).mean() - 0.1) < 0.01 and abs((salted == 1).mean() - 0.1) < 0.01
    assert abs((salted == 0.5).mean() - 0.8) < 0.01


def test_zero_strength_affine_is_the_identity_and_shift_moves_pixels():
    x = digit_batch()
    still = augment.Strengths(rotate=0, scale=0, shear=0, translate=0)
    np.testing.assert_allclose(augment.make(("affine",), still)(KEY, x), x, atol=1e-6)
    offsets = jnp.zeros((4, 2, 28, 28)).at[:, 1].set(-3.0)  # read 3 columns to the left
    moved = np.asarray(augment.resample(x, offsets)).reshape(4, 28, 28)
    np.testing.assert_allclose(moved[:, 10:18, 15:19], 1.0)
    np.testing.assert_allclose(moved[:, :, 12:15], 0.0)


def test_affine_keeps_ink_and_draws_differ():
    x = digit_batch(8)
    out = np.asarray(augment.make(("affine",), augment.Strengths())(KEY, x))
    assert not np.allclose(out[0], out[1])
    ink = out.sum(axis=1) / float(x[0].sum())
    assert np.all((ink > 0.75) & (ink < 1.3))  # zoom within ±10% changes area by <±21%


def test_elastic_field_is_smooth_and_scaled_by_alpha():
    strengths = augment.Strengths(elastic_alpha=10.0, elastic_sigma=4.0)
    field = np.asarray(augment.elastic_offsets(KEY, 16, strengths))
    neighbours = np.abs(np.diff(field, axis=-1)).mean()
    assert neighbours < 0.2 * np.abs(field).mean()  # smooth: neighbours move together
    doubled = augment.elastic_offsets(KEY, 16, dataclasses.replace(strengths, elastic_alpha=20.0))
    np.testing.assert_allclose(np.asarray(doubled), 2 * field, rtol=1e-5)


def test_augment_names_are_checked():
    with pytest.raises(InputError, match="unknown --augment 'blur'; accepted"):
        Config(augment="noise,blur")
    assert Config(augment=" affine , elastic").augmentations() == ("affine", "elastic")
    assert augment.make((), augment.Strengths()) is None


@pytest.mark.parametrize("flag", ["input_dropout", "label_smoothing", "ema"])
def test_fractions_outside_unit_interval_are_rejected(flag):
    with pytest.raises(InputError, match=rf"--{flag} 1.5 is out of range; accepted: \[0, 1\)"):
        Config(**{flag: 1.5})


def test_defaults_leave_the_tutorial_protocol_untouched():
    cfg = Config()
    assert (
        cfg.augment,
        cfg.input_dropout,
        cfg.batch_norm,
        cfg.label_smoothing,
        cfg.max_norm,
        cfg.ema,
        cfg.schedule,
    ) == ("", 0.0, False, 0.0, 0.0, 0.0, "constant")


def test_label_smoothing_matches_its_formula():
    logits, labels = jnp.array([[2.0, 0.0, -1.0]]), jnp.array([0])
    targets = np.array([[0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3]])
    log_p = np.asarray(jax.nn.log_softmax(logits))
    np.testing.assert_allclose(
        train.loss_value(logits, labels, "cross_entropy", 0.1), -(targets * log_p).sum(), rtol=1e-6
    )


def test_max_norm_clips_each_units_incoming_weights():
    params = {"Dense_0": {"kernel": jnp.array([[3.0, 0.1], [4.0, 0.1]]), "bias": jnp.ones(2)}}
    clipped = train.clip_max_norm(params, 2.0)
    np.testing.assert_allclose(clipped["Dense_0"]["kernel"], [[1.2, 0.1], [1.6, 0.1]], rtol=1e-6)
    np.testing.assert_allclose(clipped["Dense_0"]["bias"], 1.0)


def test_ema_follows_the_weights_with_its_decay():
    ema = {"w": jnp.zeros(3)}
    moved = train.update_ema(ema, {"w": jnp.ones(3)}, 0.99, jnp.array(10_000))
    np.testing.assert_allclose(moved["w"], 0.01, rtol=1e-5)
    early = train.update_ema(ema, {"w": jnp.ones(3)}, 0.99, jnp.array(0))
    np.testing.assert_allclose(early["w"], 0.9, rtol=1e-5)  # (1 + 0) / (10 + 0) = 0.1 decay


TINY = Config(
    hidden=(32,), act="relu", batch_size=10, steps=40, eval_every=20, init_scale=0.1, num_seeds=2
)


def test_every_recipe_option_trains_beside_the_others(tiny):
    """Every option of the best recipes at once (one compiled program, not one each)."""
    cfg = dataclasses.replace(
        TINY,
        augment="noise,salt_pepper,affine,elastic",
        batch_norm=True,
        input_dropout=0.2,
        max_norm=1.0,
        ema=0.9,
        label_smoothing=0.1,
        schedule="onecycle",
        warmup_fraction=0.3,
    )
    result = train.fit(cfg, tiny)
    assert result.diverged_at_step == [None, None]
    first, last = result.history[0]["train_loss"], result.history[-1]["train_loss"]
    assert np.all(np.isfinite(last)) and np.mean(last) < np.mean(first) + 0.5
    assert not np.allclose(result.params["batch_stats"]["BatchNorm_0"]["mean"], 0)
    assert result.replicas.ema is not None


def test_evaluation_uses_the_moving_average(tiny):
    cfg = dataclasses.replace(TINY, ema=0.99, num_seeds=1, steps=20)
    result = train.fit(cfg, tiny)
    rep = jax.tree.map(lambda x: x[0], result.replicas)
    assert train.eval_params(rep)["params"] is rep.ema
    assert not np.allclose(rep.ema["Dense_0"]["kernel"], rep.params["params"]["Dense_0"]["kernel"])


def test_corrupted_accuracies_cover_every_corruption(tiny):
    result = train.fit(TINY, tiny)
    accuracies = robustness.corrupted_accuracies(TINY, result.replicas, tiny)
    assert list(accuracies) == list(robustness.corruptions())
    assert "noise 0.5" in accuracies and "shift 3px" in accuracies
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in accuracies.values())
    clean = jnp.mean(
        train.predict(
            train.make_model(TINY), jax.tree.map(lambda x: x[0], result.params), tiny.test_x
        )
        == tiny.test_y
    )
    assert accuracies["noise 0"][0] == pytest.approx(float(clean))


def test_affine_components_follow_their_definitions():
    grid = np.asarray(augment._pixel_grid())
    none = dict(rotate=0.0, scale=0.0, shear=0.0, translate=0.0)
    rotated = np.asarray(
        augment.affine_offsets(KEY, 8, augment.Strengths(**{**none, "rotate": 30}))
    )
    radius = np.linalg.norm(grid, axis=0)
    np.testing.assert_allclose(
        np.linalg.norm(grid + rotated, axis=1), np.broadcast_to(radius, (8, 28, 28)), atol=1e-4
    )  # a rotation keeps distances to the centre
    assert np.abs(rotated).max() > 1
    sheared = np.asarray(augment.affine_offsets(KEY, 8, augment.Strengths(**{**none, "shear": 10})))
    np.testing.assert_allclose(sheared[:, 1], 0, atol=1e-5)  # columns stay, rows slide
    slope = sheared[:, 0, 0, -1] / grid[1, 0, -1]
    np.testing.assert_allclose(sheared[:, 0], slope[:, None, None] * grid[1], atol=1e-4)
    assert np.all(np.abs(slope) <= np.tan(np.deg2rad(10)) + 1e-6) and np.ptp(slope) > 0
    zoomed = np.asarray(augment.affine_offsets(KEY, 8, augment.Strengths(**{**none, "scale": 0.1})))
    factor = (grid + zoomed)[:, 0, 0, 0] / grid[0, 0, 0]
    np.testing.assert_allclose(grid + zoomed, factor[:, None, None, None] * grid, atol=1e-4)
    assert np.all((factor >= 1 / 1.1 - 1e-6) & (factor <= 1 / 0.9 + 1e-6))
    both = augment.Strengths(**{**none, "rotate": 30, "shear": 20})
    mapped = (grid + np.asarray(augment.affine_offsets(KEY, 8, both))).reshape(8, 2, -1)
    points = grid.reshape(2, -1)
    matrices = mapped @ points.T @ np.linalg.inv(points @ points.T)
    np.testing.assert_allclose(np.linalg.det(matrices), 1.0, atol=1e-4)  # rotation @ shear


def test_test_time_views_shift_in_zeros_and_a_zero_shift_changes_nothing(tiny):
    x = tiny.test_x
    images = np.asarray(x).reshape(-1, 28, 28)
    np.testing.assert_array_equal(augment.shift(x, 0, 0), x)
    down, left = np.zeros_like(images), np.zeros_like(images)
    down[:, 1:], left[:, :, :-1] = images[:, :-1], images[:, :, 1:]
    np.testing.assert_array_equal(np.asarray(augment.shift(x, 1, 0)).reshape(-1, 28, 28), down)
    np.testing.assert_array_equal(np.asarray(augment.shift(x, 0, -1)).reshape(-1, 28, 28), left)
    assert augment.TEST_VIEWS == {
        "none": ((0, 0),),
        "shifts": ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)),
    }
    cfg = Config(hidden=(8,), act="relu", init_scale=0.3, num_seeds=2)
    replicas = train.init_replicas(cfg, jnp.arange(2), tiny)
    plain = np.asarray(train.probabilities(cfg, replicas, x))
    np.testing.assert_array_equal(train.probabilities(cfg, replicas, x, ((0, 0), (0, 0))), plain)
    views = augment.TEST_VIEWS["shifts"]
    each = train.probabilities(
        cfg, replicas, jnp.concatenate([augment.shift(x, *v) for v in views])
    )
    shifted = train.probabilities(cfg, replicas, x, views)
    by_hand = np.asarray(each).reshape(2, len(views), *shifted.shape[1:]).mean(axis=1)
    np.testing.assert_allclose(shifted, by_hand, rtol=1e-5, atol=1e-7)
    assert not np.allclose(shifted, plain)
