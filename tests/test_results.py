"""Run records: schema, divergence, atomic appends."""

import dataclasses
import errno
import json
import multiprocessing
import os
import re
import subprocess
import sys
import warnings

import pytest

from mlp_jax.core import train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import MachineError
from mlp_jax.store import results
from tests.helpers import REPO

TINY = Config(hidden=(8,), act="tanh", batch_size=10, steps=30, eval_every=10, num_seeds=2)


def test_every_record_field_is_documented_once():
    documented = re.findall(r"^    (\w+) +\S", results.__doc__, re.MULTILINE)
    assert documented == list(results.RECORD_FIELDS)


def test_records_have_exactly_the_record_fields(tiny, tmp_path):
    records = results.run_records(TINY, train.fit(TINY, tiny), "tiny")
    assert [r["seed"] for r in records] == [0, 1]
    for record in records:
        assert set(record) == set(results.RECORD_FIELDS)
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


def record(name: str, seed: int = 0) -> dict:
    """Return the smallest record `read` keeps."""
    return {"name": name, "seed": seed, "config": {}}


def _append_many(args):
    path, worker = args
    for i in range(50):
        results.append([{**record(f"w{worker}", i), "pad": "x" * 20000}] * 2, path)


@pytest.mark.slow
def test_concurrent_appends_never_interleave(tmp_path):
    path = str(tmp_path / "r.jsonl")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_append_many, [(path, w) for w in range(4)])
    records = results.read(path)
    assert len(records) == 400
    # The two records of one append stay adjacent.
    assert all(a == b for a, b in zip(records[::2], records[1::2], strict=True))


def test_read_keeps_a_complete_last_record_without_its_newline(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record("a")) + "\n" + json.dumps(record("b")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert results.read(str(path)) == [record("a"), record("b")]


def test_read_warns_of_a_last_line_cut_off_by_a_crash(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record("a")) + "\n" + '{"name": "c", "se')
    with pytest.warns(UserWarning, match=f"{path}:2: skipped, not a run record"):
        assert results.read(str(path)) == [record("a")]


BAD_LINES = {
    "cut off": b'{"name": "c", "seed": 0, "con',
    "list": b"[1, 2]",
    "number": b"42",
    "no record keys": b'{"a": 1}',
    "config not an object": b'{"name": "c", "seed": 0, "config": 5}',
    "binary": b"\x00\xff\xfe\x80\x1f\x8b garbage",
}


@pytest.mark.parametrize("bad", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_read_skips_each_line_without_a_record_with_one_warning(tmp_path, bad):
    path = tmp_path / "r.jsonl"
    lines = [json.dumps(record("a")).encode(), bad, json.dumps(record("b")).encode(), bad, b""]
    path.write_bytes(b"\n".join(lines))
    with pytest.warns(UserWarning) as caught:
        assert results.read(str(path)) == [record("a"), record("b")]
    assert [str(w.message) for w in caught] == [
        f"{path}:{n}: skipped, not a run record" for n in (2, 4)
    ]


@pytest.mark.slow
def test_table_of_a_file_with_bad_lines_keeps_every_record(tiny, tmp_path):
    records = results.run_records(TINY, train.fit(TINY, tiny), "tiny")
    path = tmp_path / "r.jsonl"
    good = [json.dumps(r).encode() for r in records]
    path.write_bytes(b"\n".join([good[0], *BAD_LINES.values(), good[1], b""]))
    table = subprocess.run(
        [sys.executable, "-m", "experiments.table", f"--results={path}"],
        cwd=REPO,
        text=True,
        capture_output=True,
    )
    assert table.returncode == 0, table.stderr
    assert "| mlp-8-tanh |" in table.stdout and "(2)" in table.stdout
    for n in range(2, 2 + len(BAD_LINES)):
        assert f"{path}:{n}: skipped, not a run record" in table.stderr


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


# Appends are whole or not at all.


def test_append_continues_after_short_writes(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    results.append([record("a"), record("b")], str(path))
    assert results.read(str(path)) == [record("a"), record("b")]


@pytest.mark.parametrize("fault", ["write", "fsync"])
def test_a_failed_append_leaves_the_file_as_it_was(tmp_path, monkeypatch, fault):
    path = tmp_path / "r.jsonl"
    results.append([record("a")], str(path))
    before = path.read_bytes()
    real_write = os.write
    writes = []

    def full_disk(fd, data):  # the first write lands in part, the next finds the disk full
        if writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        writes.append(real_write(fd, bytes(data[: len(data) // 2])))
        return writes[-1]

    def failing_fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    if fault == "write":
        monkeypatch.setattr(os, "write", full_disk)
    else:
        monkeypatch.setattr(os, "fsync", failing_fsync)
    cause = "No space left on device" if fault == "write" else "Input/output error"
    with pytest.raises(MachineError) as error:
        results.append([record("b"), record("c")], str(path))
    assert str(error.value) == (
        f"cannot append 2 records to {path}: {cause}; the file is as it was"
    )
    assert path.read_bytes() == before


def test_append_after_a_cut_off_line_starts_a_new_one(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record("a")) + "\n" + '{"name": "c", "se')
    results.append([record("b")], str(path))
    with pytest.warns(UserWarning, match=f"{path}:2: skipped"):
        assert results.read(str(path)) == [record("a"), record("b")]
