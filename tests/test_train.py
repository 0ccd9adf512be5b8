"""Training: losses, optimisers, epoch order, divergence, and real MNIST end to end."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlp_jax import config, train
from mlp_jax.config import Config
from tests.conftest import assert_trees_close, first_replica

TINY = Config(hidden=(16,), act="relu", batch_size=10, steps=40, eval_every=20)


def test_mse_is_half_squared_error_of_softmax():
    logits = jnp.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    labels = jnp.array([1, 2])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = 0.5 * ((p - np.eye(3)[[1, 2]]) ** 2).sum(1).mean()
    np.testing.assert_allclose(train.loss_value(logits, labels, "mse"), expected, rtol=1e-6)
    ce = -np.log(p[[0, 1], [1, 2]]).mean()
    np.testing.assert_allclose(train.loss_value(logits, labels, "cross_entropy"), ce, rtol=1e-6)


@pytest.mark.parametrize("optimizer", config.OPTIMIZERS)
@pytest.mark.parametrize("schedule", config.SCHEDULES)
def test_every_optimizer_and_schedule_lowers_the_loss(tiny, optimizer, schedule):
    lr = 0.5 if optimizer in ("sgd", "momentum", "nesterov") else 0.01
    cfg = dataclasses.replace(TINY, optimizer=optimizer, schedule=schedule, lr=lr,
                              weight_decay=1e-4, init_scale=0.1)
    result = train.fit(cfg, tiny)
    first, last = result.history[0]["train_loss"][0], result.history[-1]["train_loss"][0]
    assert last < first < np.log(10) + 1


def test_schedules_reach_their_peak_and_decay():
    warm = train.make_schedule(Config(schedule="warmup_cosine", warmup_fraction=0.1, lr=0.5), 100)
    assert float(warm(0)) == 0.0 and float(warm(10)) == pytest.approx(0.5)
    assert float(warm(100)) == pytest.approx(0.0, abs=1e-6)
    assert train.make_schedule(Config(lr=0.5), 100) == 0.5


def test_each_epoch_is_a_fresh_permutation_without_replacement(tiny):
    cfg = dataclasses.replace(TINY)
    model, tx = train.make_model(cfg), train.make_optimizer(cfg, 100)
    rep = train.init_replica(jnp.array(0), tiny, model=model, tx=tx)
    step = jax.jit(functools.partial(train.replica_step, data=tiny, model=model, tx=tx,
                                     cfg=cfg, augmenter=None))
    orders = []
    for s in range(8):  # 40 training images, batch 10: two epochs of four steps
        rep, _ = step(rep, jnp.array(s))
        orders.append(np.asarray(rep.order))
    assert sorted(orders[0]) == list(range(40))
    assert all(np.array_equal(orders[0], o) for o in orders[1:4])
    assert sorted(orders[4]) == list(range(40)) and not np.array_equal(orders[0], orders[4])


def test_divergence_stops_and_records_the_step(tiny):
    result = train.fit(dataclasses.replace(TINY, lr=1e20, num_seeds=2, steps=200), tiny)
    assert all(d is not None and d < 20 for d in result.diverged_at_step)
    assert result.steps == 20  # stopped after the first evaluation interval


def test_remainder_chunk_and_history(tiny):
    result = train.fit(dataclasses.replace(TINY, steps=45), tiny)
    assert [h["step"] for h in result.history] == [20, 40, 45]
    assert result.steps == 45 and result.diverged_at_step == [None]


# Real MNIST, end to end.
SMALL = Config(hidden=(128,), act="relu", steps=300, eval_every=100)


@pytest.fixture(scope="module")
def small_run(mnist):
    return train.fit(SMALL, mnist)


def test_few_hundred_steps_reach_90_percent(small_run):
    assert small_run.test_accuracy[0] >= 0.90
    assert small_run.val_accuracy[0] >= 0.90
    assert small_run.steps == 300 and len(small_run.history) == 3


def test_same_seed_gives_identical_results(mnist, small_run):
    again = train.fit(SMALL, mnist)
    assert again.test_accuracy[0] == small_run.test_accuracy[0]
    assert_trees_close(again.params, small_run.params, rtol=0, atol=0)


def test_num_seeds_trains_distinct_replicas_matching_the_single_run(mnist, small_run):
    three = train.fit(dataclasses.replace(SMALL, num_seeds=3), mnist)
    assert three.seeds == [0, 1, 2] and three.test_accuracy.shape == (3,)
    assert len(set(three.test_accuracy.tolist())) == 3
    assert not np.allclose(three.params["params"]["Dense_0"]["kernel"][0],
                           three.params["params"]["Dense_0"]["kernel"][1])
    # Replica 0 is the single-seed run, up to float rounding of the batched matmuls.
    assert_trees_close(first_replica(three.params), first_replica(small_run.params),
                       rtol=1e-3, atol=1e-5)
    assert abs(three.test_accuracy[0] - small_run.test_accuracy[0]) <= 0.002
