"""Activations against their formulas, initialiser statistics, and the MLP's structure."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlp_jax.core import activations, models
from mlp_jax.core.errors import InputError

X = np.linspace(-8.0, 8.0, 161, dtype=np.float32)
SIGMOID = 1 / (1 + np.exp(-X))
FORMULAS = {
    "relu": np.maximum(X, 0),
    "relu6": np.clip(X, 0, 6),
    "sigmoid": SIGMOID,
    "tanh": np.tanh(X),
    "leaky_relu": np.where(X > 0, X, 0.01 * X),
    "prelu": np.where(X > 0, X, 0.01 * X),  # at its initial slope
    "elu": np.where(X > 0, X, np.exp(X) - 1),
    "softplus": np.log1p(np.exp(X)),
    "swish": X * SIGMOID,
    "gelu": 0.5 * X * (1 + np.tanh(math.sqrt(2 / math.pi) * (X + 0.044715 * X**3))),
    "identity": X,
}


def test_every_activation_has_a_formula():
    assert set(FORMULAS) == set(activations.NAMES)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_matches_formula(name):
    class Wrap(models.nn.Module):
        @models.nn.compact
        def __call__(self, x):
            return activations.make(name)(x)

    module = Wrap()
    variables = module.init(jax.random.key(0), jnp.asarray(X))
    np.testing.assert_allclose(
        module.apply(variables, jnp.asarray(X)), FORMULAS[name], rtol=1e-5, atol=1e-6
    )


def test_leaky_slope_and_prelu_slope_is_learned():
    np.testing.assert_allclose(activations.make("leaky_relu", 0.2)(jnp.array([-1.0])), [-0.2])
    model = models.MLP(hidden=(3, 3), act="prelu")
    params = model.init(jax.random.key(0), jnp.zeros((1, 784)))["params"]
    assert [k for k in params if "PReLU" in k] == ["PReLU_0", "PReLU_1"]
    grads = jax.grad(lambda p: model.apply({"params": p}, jnp.ones((2, 784)) - 2).sum())(params)
    assert jax.tree.leaves(grads["PReLU_0"])[0].shape == ()


def test_unknown_activation():
    with pytest.raises(InputError, match="unknown activation 'relu7'; accepted: relu, relu6"):
        activations.check("relu7")


SHAPE = (400, 300)


@pytest.mark.parametrize(
    "name, mean, std",
    [
        ("normal", 0.0, 0.01),
        ("lecun_normal", 0.0, math.sqrt(1 / 400)),
        ("glorot_uniform", 0.0, math.sqrt(2 / 700)),  # uniform on +-sqrt(6 / 700)
        ("he_normal", 0.0, math.sqrt(2 / 400)),
    ],
)
def test_initialiser_statistics(name, mean, std):
    w = np.asarray(models.initializer(name)(jax.random.key(0), SHAPE))
    assert abs(w.mean() - mean) < 0.05 * std
    assert abs(w.std() - std) < 0.03 * std


def test_glorot_uniform_bound_and_constant_and_zeros():
    w = np.asarray(models.initializer("glorot_uniform")(jax.random.key(0), SHAPE))
    assert np.abs(w).max() <= math.sqrt(6 / 700)
    assert np.all(
        np.asarray(models.initializer("constant", value=0.1)(None, (5,))) == np.float32(0.1)
    )
    assert not np.any(models.initializer("zeros")(None, SHAPE))


def test_bias_initialisers_are_restricted():
    with pytest.raises(
        InputError, match="unknown initialiser 'he_normal'; accepted: normal, zeros, constant"
    ):
        models.initializer("he_normal", accepted=models.BIAS_INITS)


def test_mlp_layers_are_x_at_w_plus_b():
    model = models.MLP(hidden=(625, 441), act="relu6")
    params = model.init(jax.random.key(0), jnp.zeros((1, 784)))["params"]
    shapes = {name: (p["kernel"].shape, p["bias"].shape) for name, p in params.items()}
    assert shapes == {
        "Dense_0": ((784, 625), (625,)),
        "Dense_1": ((625, 441), (441,)),
        "Dense_2": ((441, 10), (10,)),
    }
    assert models.count_params({"params": params}) == 784 * 625 + 625 + 625 * 441 + 441 + 4410 + 10
    x = jax.random.uniform(jax.random.key(1), (5, 784))

    def dense(h, name):
        return h @ params[name]["kernel"] + params[name]["bias"][None, :]

    expected = dense(jax.nn.relu6(dense(jax.nn.relu6(dense(x, "Dense_0")), "Dense_1")), "Dense_2")
    np.testing.assert_allclose(model.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-6)


def test_no_hidden_layer_is_softmax_regression():
    params = models.MLP(hidden=()).init(jax.random.key(0), jnp.zeros((1, 784)))["params"]
    assert list(params) == ["Dense_0"] and params["Dense_0"]["kernel"].shape == (784, 10)


def test_dropout_drops_in_training_only():
    model = models.MLP(
        hidden=(2000,),
        act="identity",
        dropout=0.67,
        kernel_init=models.initializer("constant", value=1.0),
        bias_init=models.initializer("zeros"),
    )
    variables = model.init(jax.random.key(0), jnp.zeros((1, 784)))
    x = jnp.ones((1, 784))
    # Every hidden unit is 784 and every logit sums all 2000 of them: nothing is dropped.
    np.testing.assert_array_equal(model.apply(variables, x), np.full((1, 10), 784.0 * 2000))

    def trained(seed):
        return model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(seed)})

    assert not np.array_equal(trained(1), trained(2))
    # Each logit is (kept units) * 784 / 0.33, so it counts the units kept.
    kept = np.asarray(trained(1)) * 0.33 / 784
    np.testing.assert_allclose(1 - kept / 2000, 0.67, atol=0.04)
