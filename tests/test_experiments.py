"""The issue-4 entry points end to end, briefly: time to accuracy, robustness, augmentation demo."""

import json
import os

import pytest

from tests.helpers import run_ok

pytestmark = pytest.mark.slow


def test_time_to_accuracy_stops_at_the_target(tmp_path):
    out = tmp_path / "t.jsonl"
    proc = run_ok(
        "experiments.time_to_accuracy",
        "--target=0.9",
        "--hidden=64",
        "--steps=3000",
        "--eval_every=100",
        f"--out={out}",
    )
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["reached_at_step"] is not None and record["steps"] == record["reached_at_step"]
    assert record["steps"] < 3000  # stopped early
    reached = [h for h in record["history"] if h["test_accuracy"] >= 0.9]
    assert reached[0]["step"] == record["reached_at_step"]
    assert all(h["test_accuracy"] < 0.9 for h in record["history"][:-1])
    assert 0 < record["train_seconds_to_target"] <= record["seconds_to_target"]
    assert "reached 0.9 at step" in proc.stdout


def checkpoint_files(workdir) -> dict[str, float]:
    """Return every file under the work folders' checkpoints with its modification time."""
    return {
        os.path.join(top, name): os.path.getmtime(os.path.join(top, name))
        for top, _, names in os.walk(workdir)
        if f"{os.sep}checkpoints" in top
        for name in names
    }


def test_noise_table_compares_clean_and_noise_trained_and_reuses_its_models(tmp_path):
    args = (
        "--hidden=32",
        "--steps=100",
        "--eval_every=100",
        "--variants=clean=,noisy=noise",
        f"--workdir={tmp_path / 'w'}",
        f"--out_dir={tmp_path / 'out'}",
    )
    first = run_ok("experiments.noise", *args)
    assert "nothing trained" not in first.stdout
    text = (tmp_path / "out" / "table.md").read_text()
    assert text.startswith("Command: `python -m experiments.noise")
    table = text[text.index("| model") :].splitlines()
    assert table[0].startswith("| model | trained with | noise 0 | noise 0.1 |")
    assert [line.split("|")[1].strip() for line in table[2:]] == ["clean", "noisy"]
    assert os.path.getsize(tmp_path / "out" / "robustness.png") > 0
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["config"]["augment"] for r in records] == ["", "noise"]
    assert set(records[0]["corrupted_test_accuracy"]) >= {
        "noise 0.5",
        "salt&pepper 0.1",
        "shift 2px",
    }
    saved = checkpoint_files(tmp_path / "w")
    assert {os.path.relpath(p, tmp_path / "w").split(os.sep)[0] for p in saved} == {
        "clean",
        "noisy",
    }

    # Again with the same work folder: each variant's saved model is reused, nothing trained.
    second = run_ok("experiments.noise", *args)
    assert second.stdout.count("holds this finished variant already: nothing trained") == 2
    assert checkpoint_files(tmp_path / "w") == saved
    again = (tmp_path / "out" / "table.md").read_text()
    assert again[again.index("| model") :] == text[text.index("| model") :]
    assert (tmp_path / "out" / "results.jsonl").read_text().splitlines() == lines


def test_augment_demo_writes_its_figure(tmp_path):
    out = tmp_path / "demo.png"
    run_ok("experiments.course.augment_demo", f"--out={out}")
    assert out.read_bytes()[:4] == b"\x89PNG"
