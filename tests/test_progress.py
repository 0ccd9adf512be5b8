"""The progress line of experiments.mlp (means over the finished replicas, how many diverged,
elapsed time and ETA) and the work folder's event log of the same evaluations."""

import dataclasses
import glob
import os
import struct

import numpy as np
import pytest
from tensorboardX.proto import event_pb2, plugin_hparams_pb2

from experiments import mlp
from mlp_jax.core import config, train
from mlp_jax.core.config import Config
from mlp_jax.store import checkpoints


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


def test_a_diverged_replica_is_counted_not_averaged():
    """One replica of three diverged: its NaN loss and chance accuracy stay out of the means."""
    evaluation = dataclasses.replace(
        entry(250, 60.0, 10.0),
        train_loss=np.array([0.2, np.nan, 0.4]),
        val_accuracy=np.array([0.9, 0.0958, 0.92]),
        test_accuracy=np.array([0.89, 0.098, 0.91]),
        diverged_at_step=(None, 120, None),
    )
    assert mlp.describe(evaluation, total_steps=1000) == (
        "step    250  train_loss 0.3000  val_accuracy 0.9100  test_accuracy 0.9000  "
        "diverged 1/3  steps/s 800  elapsed 0:01:10  eta 0:03:30"
    )
    every = dataclasses.replace(evaluation, diverged_at_step=(7, 120, 9))
    assert mlp.describe(every, total_steps=1000).startswith("step    250  diverged 3/3  steps/s")


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Return the scalars of the TensorBoard event files in `folder`: tag -> [(step, value)]."""
    found: dict[str, list[tuple[int, float]]] = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        with open(path, "rb") as f:
            raw = f.read()
        at = 0
        while at < len(raw):  # TFRecord: length (8 bytes), its CRC (4), the event, its CRC (4)
            (length,) = struct.unpack("<Q", raw[at : at + 8])
            event = event_pb2.Event.FromString(raw[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_the_event_log_leaves_out_a_diverged_replicas_non_finite_scalars(tmp_path, caplog):
    cfg = Config(num_seeds=2)
    events = checkpoints.EventLog(str(tmp_path), cfg)
    events.log(
        dataclasses.replace(
            entry(250, 60.0, 10.0),
            train_loss=np.array([0.2, np.nan]),
            val_accuracy=np.array([0.9, 0.1]),
            diverged_at_step=(None, 120),
        )
    )
    events.close()
    assert "NaN or Inf" not in caplog.text
    healthy, diverged = (scalars(tmp_path / "tensorboard" / f"seed_{s}") for s in (0, 1))
    assert healthy["train_loss"] == [(250, pytest.approx(0.2))]
    assert "train_loss" not in diverged and diverged["val_accuracy"] == [(250, pytest.approx(0.1))]


def hparams(folder) -> dict[str, plugin_hparams_pb2.HParamsPluginData]:
    """Return the HParams summaries of the TensorBoard event files in `folder`, by tag."""
    found = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        with open(path, "rb") as f:
            raw = f.read()
        at = 0
        while at < len(raw):
            (length,) = struct.unpack("<Q", raw[at : at + 8])
            event = event_pb2.Event.FromString(raw[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                if value.tag.startswith("_hparams_/"):
                    content = value.metadata.plugin_data.content
                    found[value.tag] = plugin_hparams_pb2.HParamsPluginData.FromString(content)
    return found


def test_a_runs_settings_and_final_metrics_are_tensorboard_hparams(tmp_path):
    cfg = Config(num_seeds=2, lr=0.3, hidden=(32, 16))
    events = checkpoints.EventLog(str(tmp_path), cfg)
    settings = config.to_dict(cfg)
    finals = {"val_accuracy": 0.9, "test_accuracy": 0.8, "train_loss": 0.1}
    events.hparams(
        [{"seed": 0, "steps": 100, "config": settings, **finals},
         {"seed": 1, "steps": 100, "config": settings, **finals, "test_accuracy": None}]
    )  # fmt: skip
    events.close()
    for seed, metrics in ((0, ["val_accuracy", "test_accuracy", "train_loss"]), (1, None)):
        found = hparams(tmp_path / "tensorboard" / f"seed_{seed}")
        start = found["_hparams_/session_start_info"].session_start_info.hparams
        assert start["lr"].number_value == 0.3 and start["hidden"].string_value == "[32, 16]"
        assert start["act"].string_value == "relu6"
        tags = [m.name.tag for m in found["_hparams_/experiment"].experiment.metric_infos]
        assert tags == (metrics or ["val_accuracy", "train_loss"])
