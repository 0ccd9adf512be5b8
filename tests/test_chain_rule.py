"""The hand-written chain rule against jax.grad, finite differences, and in training."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlp_jax.core import activations, chain_rule, models, train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
from tests.helpers import assert_trees_close

DEEP = (9, 5, 4)


def setup(act, hidden, dtype=jnp.float32):
    model = models.MLP(
        hidden=hidden,
        act=act,
        leaky_slope=0.1,
        kernel_init=models.initializer("lecun_normal"),
        bias_init=models.initializer("normal", 0.5),
    )
    x = 4 * jax.random.normal(jax.random.key(1), (16, 12), dtype)  # z past relu6's cap
    y = jax.random.randint(jax.random.key(2), (16,), 0, 10)
    params = jax.tree.map(lambda p: p.astype(dtype), model.init(jax.random.key(0), x))
    return model, params, x, y


def relative_error(manual, auto) -> float:
    return max(
        float(jnp.linalg.norm(m - a) / jnp.linalg.norm(a))
        for m, a in zip(jax.tree.leaves(manual), jax.tree.leaves(auto), strict=True)
    )


def both_gradients(model, params, x, y, act, loss, smoothing):
    """Return the hand-written gradients and jax.grad's, both from one compiled program (op-by-op
    dispatch would compile each operation on its own)."""

    def both(p):
        manual = chain_rule.gradients(p, x, y, act, loss, slope=0.1, smoothing=smoothing)
        auto = jax.grad(lambda q: train.loss_value(model.apply(q, x), y, loss, smoothing))(p)
        return manual, auto

    return jax.jit(both)(params)


def assert_manual_equals_autodiff(act, hidden, loss, smoothing, dtype, tolerance):
    model, params, x, y = setup(act, hidden, dtype)
    manual, auto = both_gradients(model, params, x, y, act, loss, smoothing)
    assert jax.tree.structure(manual) == jax.tree.structure(params)
    assert manual["params"]["Dense_0"]["kernel"].dtype == dtype
    error = relative_error(manual, auto)
    assert error <= tolerance, (act, hidden, loss, smoothing, error)


# The loss's delta enters the backward pass once, at the output, and each activation's derivative
# multiplies it on the way back, so every activation (one loss) and every loss (one activation)
# cover the chain rule without their product; depth and float32 are the loss test's. In float64
# the two agree to rounding (1e-10), which float32's 1e-5 could not tell from a small slip.
@pytest.mark.parametrize("act", sorted(chain_rule.DERIVATIVES))
def test_every_activation_s_gradients_equal_jax_grad(act):
    with jax.enable_x64(True):
        assert_manual_equals_autodiff(act, DEEP, "cross_entropy", 0.1, jnp.float64, 1e-10)


@pytest.mark.parametrize("dtype, tolerance", [(jnp.float32, 1e-5), (jnp.float64, 1e-10)])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_every_loss_s_gradients_equal_jax_grad(loss, dtype, tolerance):
    with jax.enable_x64(dtype == jnp.float64):
        for hidden in ((), DEEP):  # no hidden layer: the delta meets the only layer
            for smoothing in (0.0, 0.1):
                assert_manual_equals_autodiff("relu6", hidden, loss, smoothing, dtype, tolerance)


def test_finite_differences_agree():
    with jax.enable_x64(True):
        model, params, x, y = setup("tanh", (6, 5), jnp.float64)
        manual = chain_rule.gradients(params, x, y, "tanh", "cross_entropy")

        @jax.jit
        def loss(p):
            return train.loss_value(model.apply(p, x), y, "cross_entropy")

        eps = 1e-6
        for layer, name, index in [
            ("Dense_0", "kernel", (3, 2)),
            ("Dense_1", "bias", (4,)),
            ("Dense_2", "kernel", (0, 9)),
            ("Dense_2", "bias", (1,)),
        ]:

            def moved(sign, layer=layer, name=name, index=index):
                changed = params["params"][layer][name].at[index].add(sign * eps)
                return jax.tree_util.tree_map_with_path(
                    lambda path, p: changed if (path[-2].key, path[-1].key) == (layer, name) else p,
                    params,
                )

            numeric = float(loss(moved(1)) - loss(moved(-1))) / (2 * eps)
            assert manual["params"][layer][name][index] == pytest.approx(numeric, rel=1e-6)


def test_manual_training_ends_where_autodiff_does(tiny):
    cfg = Config(
        hidden=(32, 16), act="sigmoid", batch_size=10, steps=200, eval_every=100, init_scale=0.1
    )
    auto = train.fit(cfg, tiny)
    manual = train.fit(dataclasses.replace(cfg, grad="manual"), tiny)
    assert_trees_close(manual.params, auto.params, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        manual.history[-1]["train_loss"], auto.history[-1]["train_loss"], rtol=1e-4
    )


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"act": "prelu"}, "no hand-written derivative for 'prelu'"),
        ({"dropout": 0.5}, "--grad=manual covers plain float32 MLPs"),
        ({"batch_norm": True}, "--grad=manual covers plain float32 MLPs"),
    ],
)
def test_manual_gradients_refuse_what_they_do_not_cover(settings, message):
    with pytest.raises(InputError, match=message):
        Config(grad="manual", **settings)


@pytest.mark.parametrize("act", sorted(chain_rule.DERIVATIVES))
def test_derivatives_agree_with_jax_grad_at_the_kinks(act):
    """Where a derivative jumps (z = 0, relu6's z = 6), the hand-written one takes the side
    jax.grad takes, so the two agree on every input, not only almost everywhere."""
    f = activations.make(act, 0.1)
    z = jnp.array([-1e-3, 0.0, 1e-3, 6.0, 6.001])
    manual = chain_rule.DERIVATIVES[act](z, f(z), 0.1)
    np.testing.assert_allclose(manual, jax.vmap(jax.grad(f))(z), rtol=1e-3, atol=1e-6)
