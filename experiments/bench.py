"""Benchmark: mlp_jax's training loop against a minimal hand-written JAX loop, same network.

The minimal loop is the speed reference: the whole run under one jit, nested lax.scan (epochs,
then batches of a fresh permutation), data on the device, plain SGD on a list of (W, b). Both run
the tutorial protocol (SGD lr 0.5, batch 100, N(0, 0.01^2) init) for the same number of steps,
interleaved `--repeats` times; the median steps/s of each and their ratio are reported.

    python -m experiments.bench --data_dir=../shared/datasets/mnist   # about 1 minute on 2 CPUs
"""

import dataclasses
import datetime
import json
import statistics
import sys
import time

from absl import flags
import jax
import jax.numpy as jnp

from experiments import cli
from mlp_jax import activations, data, results, train
from mlp_jax.config import Config, parse_hidden

flags.DEFINE_string("hidden", "625,441", "Hidden layer sizes.")
flags.DEFINE_string("act", "relu6", "Hidden activation.")
flags.DEFINE_integer("batch_size", 100, "Images per step.")
flags.DEFINE_integer("epochs", 6, "Epochs per timed run (550 steps each at batch 100).")
flags.DEFINE_integer("eval_every", 1000, "mlp_jax's evaluation interval, as in the main job.")
flags.DEFINE_integer("repeats", 3, "Timed runs of each loop, interleaved.")
flags.DEFINE_string("data_dir", None, "Folder of MNIST IDX files; default $MLP_JAX_DATA, else TFDS.")
flags.DEFINE_string("json", None, "Also write the measurements to this JSON file.")
FLAGS = flags.FLAGS


def minimal_loop(hidden: tuple[int, ...], act: str, batch_size: int, epochs: int):
    """Return (init, run): a hand-written MLP trained by one jitted nested scan."""
    sizes = (784, *hidden, 10)
    f = activations.make(act)

    def init(key):
        keys = jax.random.split(key, 2 * (len(sizes) - 1))
        return [(0.01 * jax.random.normal(kw, (m, n)), 0.01 * jax.random.normal(kb, (n,)))
                for kw, kb, m, n in zip(keys[::2], keys[1::2], sizes[:-1], sizes[1:])]

    def predict(params, x):
        for w, b in params[:-1]:
            x = f(x @ w + b)
        w, b = params[-1]
        return x @ w + b

    def loss(params, x, y):
        log_p = jax.nn.log_softmax(predict(params, x))
        return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))

    def run(params, key, x, y):
        steps_per_epoch = len(x) // batch_size

        def epoch(params, k):
            order = jax.random.permutation(k, len(x))[:steps_per_epoch * batch_size]

            def step(params, idx):
                grads = jax.grad(loss)(params, x[idx], y[idx])
                return jax.tree.map(lambda p, g: p - 0.5 * g, params, grads), None
            return jax.lax.scan(step, params, order.reshape(steps_per_epoch, batch_size))[0], None
        return jax.lax.scan(epoch, params, jax.random.split(key, epochs))[0]

    return init, jax.jit(run, donate_argnums=0)


def time_minimal(init, run, dataset: data.Dataset) -> float:
    """Return the seconds one compiled minimal run takes."""
    params = jax.block_until_ready(init(jax.random.key(0)))
    tic = time.perf_counter()
    jax.block_until_ready(run(params, jax.random.key(1), dataset.train_x, dataset.train_y))
    return time.perf_counter() - tic


def main(argv: list[str]) -> None:
    del argv
    cfg = Config(hidden=parse_hidden(FLAGS.hidden), act=FLAGS.act, batch_size=FLAGS.batch_size,
                 epochs=FLAGS.epochs, eval_every=FLAGS.eval_every,
                 data_dir=cli.data_dir(FLAGS.data_dir))
    dataset = data.load(cfg.dataset, cfg.data_dir, cfg.validation_size)
    steps = cfg.total_steps(dataset.train_x.shape[0])
    init, run = minimal_loop(cfg.hidden, cfg.act, cfg.batch_size, cfg.epochs)
    time_minimal(init, run, dataset)  # compiles
    train.fit(dataclasses.replace(cfg, epochs=1), dataset)  # warms the machine up
    minimal, library, library_wall = [], [], []
    for _ in range(FLAGS.repeats):
        minimal.append(steps / time_minimal(init, run, dataset))
        fit = train.fit(cfg, dataset)
        library.append(fit.steps_per_sec)
        library_wall.append(steps / (fit.train_seconds + fit.eval_seconds))
    report = {"command": "python -m experiments.bench " + " ".join(sys.argv[1:]),
              "date": datetime.date.today().isoformat(),
              "config": f"{FLAGS.hidden} {FLAGS.act} batch {FLAGS.batch_size}", "steps": steps,
              **results.environment(),
              "minimal_steps_per_sec": statistics.median(minimal),
              "mlp_jax_steps_per_sec": statistics.median(library),
              "mlp_jax_steps_per_sec_with_eval": statistics.median(library_wall),
              "all_minimal": minimal, "all_mlp_jax": library}
    report["ratio"] = report["mlp_jax_steps_per_sec"] / report["minimal_steps_per_sec"]
    print(json.dumps(report, indent=1))
    if FLAGS.json:
        with open(FLAGS.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    cli.run(main)
