"""One sigmoid neuron on Iris, from the course: the worked example, then setosa vs versicolor.

Demonstrates gradient descent on a single neuron, y' = sigmoid(x . w + b), with the squared
error L = 1/(2N) sum (y' - y)^2, every weight and the bias starting at 0.1:

1. the worked example: one step (lr 0.5) on the first three Iris rows labelled 0, 1, 0, printing
   each y', L, dL/dw0 and the updated w0;
2. the experiment: rows 0-99 (setosa = 0, versicolor = 1), training on rows 0-39 and 50-89,
   testing on rows 40-49 and 90-99, lr 0.1, one full-batch step per epoch, 15 and 999 epochs.

    python -m experiments.course.iris_neuron --data_dir=../shared/datasets/iris   # a few seconds

writes the printout to runs/teaching/iris_neuron.md.
"""

from absl import flags
import jax.numpy as jnp
import numpy as np

from experiments import cli
from mlp_jax.core import chain_rule, data
from mlp_jax.store import results

flags.DEFINE_string("data_dir", None, "Folder holding iris.data; default: TFDS iris.")
flags.DEFINE_string("out", "runs/teaching/iris_neuron.md", "Where to write the printout.")
FLAGS = flags.FLAGS


def fmt(values, digits: int = 3) -> str:
    """Format numbers as a short list."""
    return "[" + ", ".join(f"{float(v):.{digits}f}" for v in np.ravel(values)) + "]"


def train(x: np.ndarray, y: np.ndarray, lr: float, epochs: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Return the weights and bias after `epochs` full-batch steps from 0.1 everywhere."""
    w, b = jnp.full(4, 0.1), jnp.array(0.1)
    for _ in range(epochs):
        step = chain_rule.neuron_step(w, b, jnp.asarray(x), jnp.asarray(y, jnp.float32), lr)
        w, b = step["w"], step["b"]
    return w, b


def main(argv: list[str]) -> None:
    del argv
    features, labels = data.load_iris(FLAGS.data_dir)
    lines = [
        "# A single sigmoid neuron on Iris",
        "",
        *cli.provenance(),
        "",
        "## Worked example: rows 0-2 with labels 0, 1, 0; w = 0.1, b = 0.1, lr = 0.5",
        "",
    ]
    x, y = jnp.asarray(features[:3]), jnp.array([0.0, 1.0, 0.0])
    step = chain_rule.neuron_step(jnp.full(4, 0.1), jnp.array(0.1), x, y, 0.5)
    for i in range(3):
        lines.append(
            f"- row {i}: x = {fmt(features[i], 1)}, y = {int(y[i])}, "
            f"y' = {float(step['output'][i]):.6f}"
        )
    lines += [
        f"- L = 1/(2*3) * sum (y' - y)^2 = {float(step['loss']):.6f}",
        f"- dL/dw0 = 1/3 * sum (y' - y) y' (1 - y') x0 = {float(step['grad_w'][0]):.6f}",
        f"- updated w0 = 0.1 - 0.5 * dL/dw0 = {float(step['w'][0]):.6f}",
        "",
    ]

    train_rows = np.r_[0:40, 50:90]
    test_rows = np.r_[40:50, 90:100]
    for epochs in (15, 999):
        w, b = train(features[train_rows], labels[train_rows], 0.1, epochs)
        out = np.asarray(jnp.asarray(features[test_rows]) @ w + b)
        predicted = (1 / (1 + np.exp(-out)) > 0.5).astype(int)
        accuracy = float(np.mean(predicted == labels[test_rows]))
        lines += [
            f"## Setosa (0) vs versicolor (1), lr 0.1, {epochs} epochs",
            "",
            f"- w = {fmt(w, 4)}, b = {float(b):.4f}",
            f"- test rows 40-49, 90-99: y' = {fmt(1 / (1 + np.exp(-out)))}",
            f"- predicted {predicted.tolist()}",
            f"- true      {labels[test_rows].tolist()}",
            f"- test accuracy {accuracy:.2f}",
            "",
        ]
    text = "\n".join(lines)
    print(text)
    results.write_text(FLAGS.out, text)


if __name__ == "__main__":
    cli.run(main)
