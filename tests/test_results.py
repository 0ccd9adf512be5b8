"""Run records: schema, divergence, atomic appends."""

import dataclasses
import json
import multiprocessing

import pytest

from mlp_jax import results, train
from mlp_jax.config import Config

DESIGN_FIELDS = {  # ../shared/DESIGN.md, "The run record"
    "name",
    "config",
    "seed",
    "dataset",
    "test_accuracy",
    "val_accuracy",
    "train_loss",
    "steps",
    "diverged",
    "diverged_at_step",
    "n_params",
    "compile_seconds",
    "train_seconds",
    "steps_per_sec",
    "platform",
    "device",
    "versions",
    "history",
}
TINY = Config(hidden=(8,), act="tanh", batch_size=10, steps=30, eval_every=10, num_seeds=2)


def test_records_have_every_design_field(tiny, tmp_path):
    records = results.run_records(TINY, train.fit(TINY, tiny), "tiny")
    assert [r["seed"] for r in records] == [0, 1]
    for record in records:
        assert set(record) >= DESIGN_FIELDS and set(record) == set(results.RECORD_FIELDS)
        assert list(record["config"]["hidden"]) == [8] and record["config"]["act"] == "tanh"
        assert record["diverged"] is False and record["diverged_at_step"] is None
        assert record["device_count"] == 1
        assert record["n_params"] == 784 * 8 + 8 + 8 * 10 + 10
        assert set(record["versions"]) == {"jax", "flax", "optax"}
        assert [h["step"] for h in record["history"]] == [10, 20, 30]
        assert set(record["history"][0]) == {"step", "train_loss", "val_accuracy", "test_accuracy"}
        assert 0 <= record["test_accuracy"] <= 1 and record["steps_per_sec"] > 0
    path = tmp_path / "runs" / "r.jsonl"
    results.append(records, str(path))
    assert results.read(str(path)) == json.loads(json.dumps(records))


def test_diverged_records_carry_no_accuracy(tiny):
    cfg = dataclasses.replace(TINY, act="relu", lr=1e20)
    for record in results.run_records(cfg, train.fit(cfg, tiny), "tiny"):
        assert record["diverged"] is True and record["diverged_at_step"] < 10
        assert record["test_accuracy"] is None and record["val_accuracy"] is None
        json.dumps(record, allow_nan=False)


def _append_many(args):
    path, worker = args
    for i in range(50):
        results.append([{"worker": worker, "i": i, "pad": "x" * 20000}] * 2, path)


def test_concurrent_appends_never_interleave(tmp_path):
    path = str(tmp_path / "r.jsonl")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_append_many, [(path, w) for w in range(4)])
    records = results.read(path)
    assert len(records) == 400
    # The two records of one append stay adjacent.
    assert all(a == b for a, b in zip(records[::2], records[1::2], strict=True))


def test_read_skips_a_line_cut_off_by_a_crash(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"')
    assert results.read(str(path)) == [{"a": 1}, {"a": 2}]


def test_summarize():
    assert results.summarize([0.98]) == (0.98, 0.0, 1)
    mean, std, n = results.summarize([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3) and std == pytest.approx(1.0)


def test_older_records_match_under_the_defaults_of_newer_settings():
    """A record written before --matmul_dtype existed is the float32 run it was."""
    config = json.loads(json.dumps(dataclasses.asdict(Config(hidden=(64,)))))
    older = {k: v for k, v in config.items() if k != "matmul_dtype"}
    records = [{"name": "row", "seed": 0, "config": older}]
    assert results.done_seeds(records, "row", config) == {0}
    assert results.done_seeds(records, "row", {**config, "matmul_dtype": "bfloat16"}) == set()
    assert results.done_seeds(records, "row", {**config, "devices": 4}) == {0}
