"""Show what each augmentation does: a few test digits under every kind, at the chosen strengths.

    python -m experiments.course.augment_demo --out=results/augment/augment_demo.png

Rows: the original, then noise, salt_pepper, affine, elastic and affine+elastic+noise; each
column is another random draw, so the figure shows the spread of each distortion.
"""

from absl import flags
import jax
import numpy as np

from experiments import cli
from mlp_jax.campaign import plots
from mlp_jax.core import augment, data

flags.DEFINE_string("out", "runs/teaching/augment_demo.png", "Where to write the figure.")
flags.DEFINE_integer("columns", 8, "Random draws per row.")
flags.DEFINE_integer("digit", 0, "Index of the test image to distort.")
cli.define_config_flags()
FLAGS = flags.FLAGS
ROWS = (
    ("original", ()),
    *((kind, (kind,)) for kind in augment.KINDS),
    ("affine+elastic+noise", ("affine", "elastic", "noise")),
)


def main(argv: list[str]) -> None:
    del argv
    cfg = cli.config_from_flags()
    dataset = data.load(cfg.dataset, cfg.data_dir, cfg.validation_size, cfg.preprocess)
    batch = np.repeat(np.asarray(dataset.test_x[FLAGS.digit])[None], FLAGS.columns, axis=0)
    key = jax.random.key(cfg.seed)
    rows = []
    for label, kinds in ROWS:
        fn = augment.make(kinds, cfg.strengths())
        rows.append((label, np.asarray(fn(key, batch)) if fn else batch))
    print("wrote", plots.image_rows(rows, FLAGS.out, f"strengths: {cfg.strengths()}"))


if __name__ == "__main__":
    cli.run(main)
