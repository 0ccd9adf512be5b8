"""Back-propagation by hand, checked against jax.grad, and traced step by step on a tiny net.

Demonstrates that the chain rule written out in mlp_jax/core/chain_rule.py (delta_L = softmax - y,
delta_l = (delta_{l+1} W_{l+1}^T) * f'(z_l), dW_l = a_{l-1}^T delta_l / N) computes exactly the
gradients autodiff does:

1. a 784-128-64-10 sigmoid MLP (lecun_normal weights) trained 500 steps on MNIST: per layer,
   the largest difference between the hand-written and the autodiff gradient on 1,000 test images;
2. a 2-2-2 network (the classic lecture numbers: inputs 0.05, 0.10; weights 0.15 ... 0.55;
   biases 0.35, 0.60), softmax and cross-entropy, target class 1: every z, a, delta and
   gradient, and the weights after one step of lr 0.5.

    python -m experiments.course.backprop --data_dir=../shared/datasets/mnist   # about 10 s

writes the printout to runs/teaching/backprop.md.
"""

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import cli
from mlp_jax.core import chain_rule, data, models, train
from mlp_jax.core.config import Config
from mlp_jax.store import results

cli.define_config_flags(only=("data_dir",))
flags.DEFINE_string("out", "runs/teaching/backprop.md", "Where to write the printout.")
FLAGS = flags.FLAGS

TINY = {
    "params": {
        "Dense_0": {
            "kernel": jnp.array([[0.15, 0.25], [0.20, 0.30]]),
            "bias": jnp.array([0.35, 0.35]),
        },
        "Dense_1": {
            "kernel": jnp.array([[0.40, 0.50], [0.45, 0.55]]),
            "bias": jnp.array([0.60, 0.60]),
        },
    }
}


def show(name: str, value: jax.Array) -> str:
    """Format a named array on one line."""
    text = np.array2string(np.asarray(value), precision=6, separator=", ", max_line_width=200)
    return f"- {name} = {' '.join(text.split())}"


def mnist_check(data_dir: str | None) -> list[str]:
    """Train a small sigmoid MLP and compare both gradients layer by layer."""
    cfg = Config(
        hidden=(128, 64),
        act="sigmoid",
        weight_init="lecun_normal",
        bias_init="zeros",
        steps=500,
        eval_every=500,
        data_dir=data_dir,
    )
    dataset = data.load(cfg.dataset, cfg.data_dir, cfg.validation_size, cfg.preprocess)
    fit = train.fit(cfg, dataset)
    params = jax.tree.map(lambda p: p[0], fit.params)
    x, y = dataset.test_x[:1000], dataset.test_y[:1000]
    model = train.make_model(cfg)

    @jax.jit  # one program: op by op, each of the hundreds of operations would compile alone
    def both(p, x, y):
        auto = jax.grad(lambda q: train.loss_value(model.apply(q, x), y, cfg.loss))(p)
        return auto, chain_rule.gradients(p, x, y, cfg.act, cfg.loss)

    auto, manual = both(params, x, y)
    lines = [
        f"## 784-128-64-10 sigmoid MLP after 500 steps (test accuracy "
        f"{fit.test_accuracy[0]:.4f}), gradients on 1,000 test images",
        "",
        "| layer | parameter | max abs(manual - autodiff) | max abs(autodiff) |",
        "|---|---|---|---|",
    ]
    for layer in manual["params"]:
        for name in ("kernel", "bias"):
            m, a = manual["params"][layer][name], auto["params"][layer][name]
            lines.append(
                f"| {layer} | {name} | {float(jnp.abs(m - a).max()):.3e} | "
                f"{float(jnp.abs(a).max()):.3e} |"
            )
    return lines


def tiny_trace() -> list[str]:
    """Trace every quantity of one step of the 2-2-2 network."""
    x, label = jnp.array([[0.05, 0.10]]), jnp.array([1])
    model = models.MLP(hidden=(2,), act="sigmoid", num_classes=2)

    @jax.jit  # one program, as in mnist_check
    def trace(params):
        zs, acts = chain_rule.forward(params, x, "sigmoid")
        targets = jax.nn.one_hot(label, 2)
        d = chain_rule.deltas(params, zs, acts, targets, "sigmoid", "cross_entropy")
        grads = chain_rule.gradients(params, x, label, "sigmoid")
        auto = jax.grad(lambda p: train.loss_value(model.apply(p, x), label, "cross_entropy"))
        return zs, acts, d, grads, auto(params)

    zs, acts, d, grads, auto = trace(TINY)
    stepped = jax.tree.map(lambda p, g: p - 0.5 * g, TINY, grads)
    lines = [
        "## 2-2-2 network, sigmoid hidden layer, softmax output, target class 1",
        "",
        show("x = a0", x),
        show("z1 = a0 W1 + b1", zs[0]),
        show("a1 = sigmoid(z1)", acts[1]),
        show("z2 = a1 W2 + b2 (logits)", zs[1]),
        show("softmax(z2)", jax.nn.softmax(zs[1])),
        f"- loss = -log softmax(z2)[1] = "
        f"{float(train.loss_value(zs[1], label, 'cross_entropy')):.6f}",
        show("delta2 = softmax(z2) - y", d[1]),
        show("delta1 = (delta2 W2^T) * a1 (1 - a1)", d[0]),
    ]
    for layer in (1, 0):
        g = grads["params"][f"Dense_{layer}"]
        lines += [
            show(f"dW{layer + 1} = a{layer}^T delta{layer + 1}", g["kernel"]),
            show(f"db{layer + 1} = delta{layer + 1}", g["bias"]),
        ]
    difference = max(
        float(jnp.abs(a - m).max())
        for a, m in zip(jax.tree.leaves(auto), jax.tree.leaves(grads), strict=True)
    )
    lines += [
        f"- largest difference from jax.grad: {difference:.1e}",
        show("W1 after one step of lr 0.5", stepped["params"]["Dense_0"]["kernel"]),
        show("W2 after one step of lr 0.5", stepped["params"]["Dense_1"]["kernel"]),
    ]
    return lines


def main(argv: list[str]) -> None:
    del argv
    lines = [
        "# Back-propagation by hand against autodiff",
        "",
        *cli.provenance(),
        "",
        *mnist_check(cli.data_dir(FLAGS.data_dir)),
        "",
        *tiny_trace(),
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    results.write_text(FLAGS.out, text)


if __name__ == "__main__":
    cli.run(main)
