"""The progress line of experiments.mlp: means over replicas, elapsed time and ETA."""

import numpy as np

from experiments import mlp
from mlp_jax.core import train


def entry(step: int, train_seconds: float, eval_seconds: float) -> train.Evaluation:
    return train.Evaluation(
        step=step,
        train_loss=np.array([0.2, 0.4]),
        val_accuracy=np.array([0.9, 0.92]),
        test_accuracy=np.array([0.89, 0.91]),
        steps_per_sec=800.4,
        learning_rate=0.5,
        diverged_at_step=(None, None),
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
    )


def test_progress_line_shows_means_elapsed_and_eta():
    line = mlp.describe(entry(250, 60.0, 10.0), total_steps=1000)
    assert line == (
        "step    250  train_loss 0.3000  val_accuracy 0.9100  test_accuracy 0.9000  "
        "steps/s 800  elapsed 0:01:10  eta 0:03:30"
    )


def test_eta_counts_hours_and_reaches_zero_at_the_last_step():
    assert mlp.describe(entry(1, 4.0, 1.0), total_steps=1000).endswith("eta 1:23:15")
    assert mlp.describe(entry(1000, 5000.0, 3.0), total_steps=1000).endswith(
        "elapsed 1:23:23  eta 0:00:00"
    )
