"""Classify your own digit images with a model trained by `experiments.mlp --workdir=DIR`.

    python -m experiments.predict --workdir=DIR [--workdir=DIR2[@STEP] ...] [--checkpoint=best]
        [--weights=validation] [--tta=shifts] IMAGE...

Each IMAGE (PNG, 8- or 16-bit, or JPEG, any size up to PIL's pixel limit, dark ink on light
paper or the reverse) is preprocessed as MNIST's digits were: grey levels, white digit on black,
cropped to the digit, scaled to fit 20×20 keeping its aspect ratio, centred by its centre of mass
in 28×28, then as each work folder's run preprocessed its digits. One line per image gives the
three likeliest classes with their probabilities, averaged over the replicas of every work folder
(a committee of runs of any architecture and preprocessing, trained on one dataset) over those
that finished: a diverged replica is left out, and none finished is an error. --weights and
--tta (the mean softmax over each image and its 1-pixel shifts), and --checkpoint and
--workdir=DIR@STEP (a snapshot kept by --keep_every), are experiments.evaluate's: the weights
come from each run's validation split (--data_dir):

    digit.png: 7 (0.981)  1 (0.012)  9 (0.004)

A missing, unreadable, blank or oversized image gets an `error: IMAGE: reason` line on stderr;
the others are still classified, and the exit code is then 2.
"""

import sys

from absl import flags
import numpy as np

from experiments import cli
from mlp_jax.core import data
from mlp_jax.core.errors import InputError
from mlp_jax.uses import digits, evaluation

cli.define_workdir_flag(required=True, multiple=True)
cli.define_committee_flags()
cli.define_config_flags(only=("data_dir",))  # --weights=validation's; unset: $MLP_JAX_DATA
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    paths = argv[1:]
    if not paths:
        raise InputError("no IMAGE given: python -m experiments.predict --workdir=DIR IMAGE...")
    load = evaluation.loader(cli.data_dir(FLAGS.data_dir))
    named = evaluation.sources(FLAGS.workdir, FLAGS.checkpoint)
    saved, weights = evaluation.voters(named, FLAGS.weights, load, FLAGS.tta)
    names, images = [], []
    for path in paths:
        try:
            images.append(digits.load_image(path))
            names.append(path)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
    if images:
        digit_images = np.stack(images).reshape(len(images), *data.IMAGE_SHAPE)
        folders = [source.path for source in named]
        probs, entered = evaluation.committee(folders, saved, digit_images, weights, FLAGS.tta)
        if not entered.all() or len(saved) > 1 or weights is not None or FLAGS.tta != "none":
            label = evaluation.label(int(entered.sum()), len(entered), folders)
            if weights is not None:
                label += f", weights ({FLAGS.weights}) " + " ".join(f"{w:.3f}" for w in weights)
            if FLAGS.tta != "none":
                label += f", tta {FLAGS.tta}"
            print(label, file=sys.stderr)
        for name, p in zip(names, probs, strict=True):
            top = digits.top_classes(p)
            print(f"{name}: " + "  ".join(f"{c} ({q:.3f})" for c, q in top))
    if len(images) < len(paths):
        sys.exit(2)


if __name__ == "__main__":
    cli.run(main, positional=True)
