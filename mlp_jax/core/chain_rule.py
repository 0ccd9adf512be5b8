"""Back-propagation written out by hand, on the parameter tree of `models.MLP`.

Forward, each layer keeps its pre-activation z_l = a_{l-1} W_l + b_l and activation a_l = f(z_l)
(a_0 = x; the last layer's z_L are the logits). Backward, in matrix form over a batch of N:

    delta_L = softmax(z_L) - y                                       (cross-entropy)
    delta_L = s * (g - sum(s * g)),  s = softmax(z_L), g = s - y     (squared error of the softmax)
    delta_l = (delta_{l+1} W_{l+1}^T) * f'(z_l)
    dW_l = a_{l-1}^T delta_l / N,    db_l = mean of delta_l over the batch

where y are the (possibly smoothed) one-hot targets. `gradients` returns a tree shaped like the
parameters, so it can stand in for `jax.grad` in training (`--grad=manual`).
"""

from collections.abc import Callable
import math

import jax
import jax.numpy as jnp

from mlp_jax.core import activations
from mlp_jax.core.errors import InputError

Derivative = Callable[[jax.Array, jax.Array, float], jax.Array]  # f'(z) from z, f(z), slope


def _gelu_derivative(z: jax.Array, a: jax.Array, slope: float) -> jax.Array:
    """Derivative of the tanh approximation 0.5 z (1 + tanh(c (z + 0.044715 z^3)))."""
    del a, slope
    c = math.sqrt(2 / math.pi)
    t = jnp.tanh(c * (z + 0.044715 * z**3))
    return 0.5 * (1 + t) + 0.5 * z * (1 - t**2) * c * (1 + 3 * 0.044715 * z**2)


DERIVATIVES: dict[str, Derivative] = {
    "sigmoid": lambda z, a, s: a * (1 - a),
    "tanh": lambda z, a, s: 1 - a**2,
    "relu": lambda z, a, s: (z > 0).astype(z.dtype),
    "relu6": lambda z, a, s: ((z > 0) & (z < 6)).astype(z.dtype),
    # At the kink z = 0, jax.nn.leaky_relu takes the positive side's slope (x >= 0).
    "leaky_relu": lambda z, a, s: jnp.where(z >= 0, 1.0, s).astype(z.dtype),
    "elu": lambda z, a, s: jnp.where(z > 0, 1.0, a + 1),
    "softplus": lambda z, a, s: jax.nn.sigmoid(z),
    "swish": lambda z, a, s: jax.nn.sigmoid(z) * (1 + z * (1 - jax.nn.sigmoid(z))),
    "gelu": _gelu_derivative,
    "identity": lambda z, a, s: jnp.ones_like(z),
}


def check(act: str) -> None:
    """Raise InputError unless `act` has a hand-written derivative."""
    if act not in DERIVATIVES:
        raise InputError(
            f"--grad=manual has no hand-written derivative for {act!r}; accepted: "
            f"{', '.join(DERIVATIVES)}"
        )


def layers(params: dict) -> list[dict]:
    """Return the Dense layers of an MLP parameter tree, input first."""
    dense = params["params"]
    return [dense[f"Dense_{i}"] for i in range(len(dense))]


def forward(
    params: dict, x: jax.Array, act: str, slope: float = 0.01
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Return every layer's pre-activations z and activations a (a[0] is the input)."""
    f = activations.make(act, slope)
    zs, acts = [], [x]
    for i, layer in enumerate(layers(params)):
        zs.append(acts[-1] @ layer["kernel"] + layer["bias"][None, :])
        if i < len(layers(params)) - 1:
            acts.append(f(zs[-1]))
    return zs, acts


def output_delta(logits: jax.Array, targets: jax.Array, loss: str) -> jax.Array:
    """Return dLoss/dz_L per example (times N): softmax minus targets, or through the softmax."""
    s = jax.nn.softmax(logits)
    if loss == "mse":
        g = s - targets
        return s * (g - jnp.sum(s * g, axis=-1, keepdims=True))
    return s - targets


def deltas(
    params: dict,
    zs: list[jax.Array],
    acts: list[jax.Array],
    targets: jax.Array,
    act: str,
    loss: str,
    slope: float = 0.01,
) -> list[jax.Array]:
    """Return delta_l for every layer, input layer first, by the chain rule from the output."""
    dense = layers(params)
    out = [output_delta(zs[-1], targets, loss)]
    for layer in range(len(dense) - 2, -1, -1):
        back = out[0] @ dense[layer + 1]["kernel"].T
        out.insert(0, back * DERIVATIVES[act](zs[layer], acts[layer + 1], slope))
    return out


def backward(
    params: dict,
    zs: list[jax.Array],
    acts: list[jax.Array],
    labels: jax.Array,
    act: str,
    loss: str = "cross_entropy",
    slope: float = 0.01,
    smoothing: float = 0.0,
) -> dict:
    """Return d(batch-mean loss)/d(params) from a forward pass's z and a, shaped like `params`."""
    targets = jax.nn.one_hot(labels, zs[-1].shape[-1], dtype=zs[-1].dtype)
    targets = targets * (1 - smoothing) + smoothing / targets.shape[-1]
    n = acts[0].shape[0]
    grads = {
        f"Dense_{i}": {"kernel": acts[i].T @ delta / n, "bias": jnp.mean(delta, axis=0)}
        for i, delta in enumerate(deltas(params, zs, acts, targets, act, loss, slope))
    }
    return {"params": grads}


def gradients(
    params: dict,
    x: jax.Array,
    labels: jax.Array,
    act: str = "relu",
    loss: str = "cross_entropy",
    slope: float = 0.01,
    smoothing: float = 0.0,
) -> dict:
    """Return d(batch-mean loss)/d(params), shaped like `params`, without autodiff."""
    check(act)
    zs, acts = forward(params, x, act, slope)
    return backward(params, zs, acts, labels, act, loss, slope, smoothing)


def neuron_step(w: jax.Array, b: jax.Array, x: jax.Array, y: jax.Array, lr: float) -> dict:
    """One gradient step of a sigmoid neuron on L = 1/(2N) sum (y' - y)^2, every term kept."""
    out = jax.nn.sigmoid(x @ w + b)
    delta = (out - y) * out * (1 - out)  # dL/dz per example, times N
    grad_w, grad_b = x.T @ delta / len(y), jnp.mean(delta)
    return {
        "output": out,
        "loss": 0.5 * jnp.mean((out - y) ** 2),
        "grad_w": grad_w,
        "grad_b": grad_b,
        "w": w - lr * grad_w,
        "b": b - lr * grad_b,
    }
