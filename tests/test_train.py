"""Training: losses, optimisers, epoch order, divergence, and real MNIST end to end."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlp_jax.core import config, train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
from mlp_jax.store import results
from tests.helpers import assert_trees_close, first_replica, needs_cpu

TINY = Config(hidden=(16,), act="relu", batch_size=10, steps=40, eval_every=20)


def test_mse_is_half_squared_error_of_softmax():
    logits = jnp.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    labels = jnp.array([1, 2])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = 0.5 * ((p - np.eye(3)[[1, 2]]) ** 2).sum(1).mean()
    np.testing.assert_allclose(train.loss_value(logits, labels, "mse"), expected, rtol=1e-6)
    ce = -np.log(p[[0, 1], [1, 2]]).mean()
    np.testing.assert_allclose(train.loss_value(logits, labels, "cross_entropy"), ce, rtol=1e-6)


# Each optimiser once, the schedules in turn, so that every optimiser and every schedule trains
# through `fit` (the product adds nothing: optax composes them; the schedules' values are
# checked below).
PAIRS = list(zip(config.OPTIMIZERS, itertools.cycle(config.SCHEDULES), strict=False))


def test_pairs_cover_every_optimizer_and_schedule():
    assert {o for o, _ in PAIRS} == set(config.OPTIMIZERS)
    assert {s for _, s in PAIRS} == set(config.SCHEDULES)


@pytest.mark.parametrize("optimizer, schedule", PAIRS)
def test_every_optimizer_and_schedule_lowers_the_loss(tiny, optimizer, schedule):
    lr = 0.5 if optimizer in ("sgd", "momentum", "nesterov") else 0.01
    cfg = dataclasses.replace(
        TINY, optimizer=optimizer, schedule=schedule, lr=lr, weight_decay=1e-4, init_scale=0.1
    )
    result = train.fit(cfg, tiny)
    first, last = result.history[0]["train_loss"][0], result.history[-1]["train_loss"][0]
    assert last < first < np.log(10) + 1


def test_schedules_reach_their_peak_and_decay():
    warm = train.make_schedule(Config(schedule="warmup_cosine", warmup_fraction=0.1, lr=0.5), 100)
    assert float(warm(0)) == 0.0 and float(warm(10)) == pytest.approx(0.5)
    assert float(warm(100)) == pytest.approx(0.0, abs=1e-6)
    assert train.make_schedule(Config(lr=0.5), 100) == 0.5
    cosine = train.make_schedule(Config(schedule="cosine", lr=0.5), 100)
    assert float(cosine(0)) == pytest.approx(0.5) and float(cosine(50)) == pytest.approx(0.25)
    assert float(cosine(100)) == pytest.approx(0.0, abs=1e-6)
    cycle = train.make_schedule(Config(schedule="onecycle", warmup_fraction=0.2, lr=0.5), 100)
    assert float(cycle(20)) == pytest.approx(0.5) and float(cycle(0)) < 0.5 / 10
    assert float(cycle(100)) < 1e-4
    cyclic = train.make_schedule(Config(schedule="cyclic_cosine", cycles=4, lr=0.5), 100)
    assert [float(cyclic(s)) for s in (0, 25, 50, 75)] == pytest.approx([0.5] * 4)
    assert float(cyclic(12.5)) == pytest.approx(0.25) and float(cyclic(62.5)) == pytest.approx(0.25)
    assert float(cyclic(24.9)) < 1e-3 and float(cyclic(100)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InputError, match=r"^--cycles 101 is more than the run's 100 steps"):
        train.make_schedule(Config(schedule="cyclic_cosine", cycles=101), 100)


def test_each_epoch_is_a_fresh_permutation_without_replacement():
    key = jax.random.key(0)
    first, second = (np.asarray(train.epoch_order(key, e, 40)) for e in (0, 1))
    assert sorted(first) == sorted(second) == list(range(40))
    assert not np.array_equal(first, second)


def test_a_chunk_starts_from_the_order_it_carries(tiny):
    cfg = dataclasses.replace(TINY)
    model, tx = train.make_model(cfg), train.make_optimizer(cfg, 100)
    rep = train.init_replica(jnp.array(0), tiny, model=model, tx=tx)
    rep = rep.replace(order=train.epoch_order(rep.order_key, 1, 40))
    # 40 images, batch 10: steps 5..7 lie in epoch 1, which the carried order already holds,
    # and steps 8..9 in epoch 2.
    orders, first_epoch = train.chunk_orders(rep, jnp.array(5), 5, 40, 4)
    assert int(first_epoch) == 1 and len(orders) == 3
    np.testing.assert_array_equal(orders[0], rep.order)
    np.testing.assert_array_equal(orders[1], train.epoch_order(rep.order_key, 2, 40))


def test_chunks_across_epochs_train_as_one_chunk(tiny):
    """Chunk boundaries (where evaluation happens) do not change which batches are seen."""
    whole = train.fit(dataclasses.replace(TINY, steps=13, eval_every=13), tiny)
    for eval_every in (3, 5):
        chunked = train.fit(dataclasses.replace(TINY, steps=13, eval_every=eval_every), tiny)
        assert_trees_close(whole.params, chunked.params, rtol=0, atol=0)


def test_divergence_stops_and_records_the_step(tiny):
    result = train.fit(dataclasses.replace(TINY, lr=1e20, num_seeds=2, steps=200), tiny)
    assert all(d is not None and d < 20 for d in result.diverged_at_step)
    assert result.steps == 20  # stopped after the first evaluation interval
    assert result.ensemble_test_accuracy is None and result.ensemble_members == 0


def test_the_ensemble_averages_only_finished_replicas():
    labels = jnp.array([0, 1, 2, 2])
    good = jnp.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.4, 0.5, 0.1]])
    other = jnp.array([[0.5, 0.4, 0.1], [0.3, 0.6, 0.1], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8]])
    probs = jnp.stack([jnp.full((4, 3), jnp.nan), good, other, good.at[3, 0].set(jnp.inf)])
    # Replica 0 diverged, replica 3 did not but its probabilities are not all finite.
    members = train.finished([7, None, None, None], probs)
    np.testing.assert_array_equal(members, [False, True, True, False])
    np.testing.assert_allclose(train.committee(probs, members), (good + other) / 2)
    weighted = train.committee(
        probs, members, np.array([5.0, 1.0, 3.0, 9.0])
    )  # members' renormalised
    np.testing.assert_allclose(weighted, (good + 3 * other) / 4, rtol=1e-6)
    assert train.ensemble_accuracy(probs, labels, members) == 1.0
    assert train.ensemble_accuracy(probs, labels, np.ones(4, bool)) == 0.25  # NaN: all class 0
    assert train.ensemble_accuracy(probs, labels, np.zeros(4, bool)) is None
    assert train.ensemble_label(2, 4) == "ensemble of 2 of 4 finished replicas"


def test_a_diverged_replica_beside_finished_ones_stays_out_of_fit_and_record(tiny, monkeypatch):
    fresh = train.init_replicas

    def first_one_diverges(cfg, seeds, data):  # replica 0's weights are NaN from step 0
        replicas = fresh(cfg, seeds, data)
        return replicas.replace(
            params=jax.tree.map(lambda p: p.at[0].set(jnp.nan), replicas.params)
        )

    monkeypatch.setattr(train, "init_replicas", first_one_diverges)
    cfg = dataclasses.replace(TINY, num_seeds=3)
    first = train.fit(cfg, tiny)
    assert first.diverged_at_step == [0, None, None]
    finished = train.probabilities(cfg, first.replicas, tiny.test_x)[1:]
    answers = jnp.argmax(finished.mean(axis=0), axis=-1)
    # Labelled with the finished replicas' answers, the test split tells their ensemble (1.0)
    # from a NaN average's (argmax 0 everywhere); the test labels do not change training.
    assert (answers != 0).any()
    result = train.fit(cfg, tiny.replace(test_y=answers.astype(tiny.test_y.dtype)))
    assert result.ensemble_test_accuracy == 1.0
    assert result.ensemble_members == 2
    digest = (("train-images-idx3-ubyte", "0" * 32),)
    records = results.run_records(cfg, result, "tiny", digest)
    assert {r["ensemble_members"] for r in records} == {2}
    assert {r["ensemble_test_accuracy"] for r in records} == {result.ensemble_test_accuracy}
    assert all(r["data_digest"] == {"train-images-idx3-ubyte": "0" * 32} for r in records)


def test_remainder_chunk_and_history(tiny):
    result = train.fit(dataclasses.replace(TINY, steps=45), tiny)
    assert [h["step"] for h in result.history] == [20, 40, 45]
    assert result.steps == 45 and result.diverged_at_step == [None]


def test_bfloat16_matmuls_keep_float32_weights_and_logits(tiny):
    cfg = dataclasses.replace(TINY, matmul_dtype="bfloat16")
    model = train.make_model(cfg)
    params = model.init(jax.random.key(0), tiny.test_x)
    jaxpr = str(jax.make_jaxpr(model.apply)(params, tiny.test_x))
    assert "bf16[20,16] = dot_general" in jaxpr and "bf16[20,10] = dot_general" in jaxpr
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    assert model.apply(params, tiny.test_x).dtype == jnp.float32


# Real MNIST, end to end.
SMALL = Config(hidden=(128,), act="relu", steps=300, eval_every=100)


@pytest.fixture(scope="module")
def small_run(mnist):
    return train.fit(SMALL, mnist)


@pytest.mark.slow
def test_few_hundred_steps_reach_90_percent(small_run):
    assert small_run.test_accuracy[0] >= 0.90
    assert small_run.val_accuracy[0] >= 0.90
    assert small_run.steps == 300 and len(small_run.history) == 3


@pytest.mark.slow
def test_bfloat16_matmuls_reach_90_percent(mnist):
    assert (
        train.fit(dataclasses.replace(SMALL, matmul_dtype="bfloat16"), mnist).test_accuracy[0]
        >= 0.90
    )


@pytest.mark.slow
@needs_cpu
def test_same_seed_gives_identical_results(mnist, small_run):
    again = train.fit(SMALL, mnist)
    assert again.test_accuracy[0] == small_run.test_accuracy[0]
    assert_trees_close(again.params, small_run.params, rtol=0, atol=0)


@pytest.mark.slow
def test_num_seeds_trains_distinct_replicas_matching_the_single_run(mnist, small_run):
    three = train.fit(dataclasses.replace(SMALL, num_seeds=3), mnist)
    assert three.seeds == [0, 1, 2] and three.test_accuracy.shape == (3,)
    assert len(set(three.test_accuracy.tolist())) == 3
    assert not np.allclose(
        three.params["params"]["Dense_0"]["kernel"][0],
        three.params["params"]["Dense_0"]["kernel"][1],
    )
    # Replica 0 is the single-seed run, up to float rounding of the batched matmuls.
    assert_trees_close(
        first_replica(three.params), first_replica(small_run.params), rtol=1e-3, atol=1e-5
    )
    assert abs(three.test_accuracy[0] - small_run.test_accuracy[0]) <= 0.002


def test_each_evaluation_is_typed_and_kept_in_the_history(tiny):
    seen = []
    cfg = dataclasses.replace(TINY, steps=45, num_seeds=2)
    result = train.fit(cfg, tiny, on_eval=seen.append)
    assert all(isinstance(e, train.Evaluation) for e in seen)
    assert [e.curve_point() for e in seen] == result.history
    assert seen[-1].train_loss.shape == (2,) and seen[-1].diverged_at_step == (None, None)
    assert seen[-1].train_seconds == result.train_seconds
