"""The benchmark's arithmetic and its report; its speed claims live in results/bench, not here."""

import dataclasses

import jax
import jax.numpy as jnp
import matplotlib.image
import pytest

from mlp_jax.campaign import plots
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError
from mlp_jax.uses import benchmark


@pytest.mark.parametrize("hidden, batch_size", [((625, 441), 100), ((), 100), ((64,), 32)])
def test_flop_count_matches_xla_cost_analysis(hidden, batch_size):
    """XLA counts the same matrix products, plus a little elementwise work (< 3%)."""
    cfg = Config(hidden=hidden, batch_size=batch_size)
    init, sgd_step = benchmark.minimal_model(cfg)
    compiled = (
        jax.jit(sgd_step)
        .lower(
            init(jax.random.key(0)), jnp.zeros((batch_size, 784)), jnp.zeros(batch_size, jnp.int32)
        )
        .compile()
    )
    ratio = compiled.cost_analysis()["flops"] / benchmark.train_step_flops(hidden, batch_size)
    assert 1.0 <= ratio < 1.03


def test_tutorial_step_is_364_mflop():
    # 2·100·(2·770,035 + 280,035): forward and weight gradients everywhere, input gradients
    # for the two upper layers.
    assert benchmark.train_step_flops((625, 441), 100) == 364_021_000


@pytest.mark.slow  # a whole benchmark run in miniature: dozens of compiled programs
def test_report_covers_every_measurement(tiny, tmp_path):
    tutorial = Config(hidden=(16,), batch_size=10, epochs=2, eval_every=4)
    bench = benchmark.BenchConfig(
        tutorial=tutorial,
        recipe=dataclasses.replace(tutorial, name="recipe", augment="affine"),
        platforms=("cpu",),
        repeats=2,
        sweep=True,
        seconds_per_point=0.01,
        batch_sizes=(5, 10),
        num_seeds=(1, 2),
        widths=(16,),
        matmul_sizes=(64, 128),
    )
    report = {
        "command": "bench",
        "date": "today",
        "cpus": 2,
        "versions": {"jax": jax.__version__},
        **benchmark.run(bench, tiny),
    }
    cpu = report["platforms"]["cpu"]
    assert cpu["matmul_peak"]["float32"]["flops_per_sec"] > 0
    tutorial_report = cpu["tutorial"]
    assert tutorial_report["steps"] == 8 and len(tutorial_report["all_peaks"]) == 2
    mlp = tutorial_report["mlp_jax"]
    flops = benchmark.train_step_flops((16,), 10) * mlp["steps_per_sec"]
    assert mlp["flops_per_sec"] == pytest.approx(flops)
    peaks = tutorial_report["all_peaks"]  # each run's fraction is against the peak beside it
    assert min(peaks) * 0.999 <= flops / mlp["fraction_of_peak"] <= max(peaks) * 1.001
    assert mlp["examples_per_sec"] == pytest.approx(10 * mlp["steps_per_sec"])
    ablations = cpu["ablations"]["tutorial"]
    assert len(ablations) == 8 and ablations[0]["relative_to_minimal"] == 1
    assert ablations[-1]["bytes_saved_per_step"] == 4 * (784 * 16 + 16 + 16 * 10 + 10)
    assert cpu["ablations"]["narrow"][-1]["bytes_saved_per_step"] == 4 * (784 * 64 + 64 + 650)
    sweep = cpu["sweep"]
    assert [p["batch_size"] for p in sweep["batch_size"]] == [5, 10]
    assert sweep["num_seeds"][1]["examples_per_sec"] == pytest.approx(
        2 * 10 * sweep["num_seeds"][1]["steps_per_sec"]
    )
    assert sweep["saturating_batch_size"] in (5, 10)
    text = benchmark.markdown(report)
    assert "| mlp_jax |" in text and "saturates" in text and "| 16×16 |" in text
    path = plots.throughput_sweep({"cpu": sweep}, str(tmp_path / "sweep.png"))
    image = matplotlib.image.imread(path)  # three panels, 15 x 4 inches at 110 dpi
    assert path == str(tmp_path / "sweep.png") and image.shape[2] in (3, 4)
    assert image.shape[0] > 300 and image.shape[1] > 3 * image.shape[0] and image.std() > 0


@pytest.mark.slow  # six whole training runs
def test_checkpoint_cost_times_runs_with_and_without_a_work_folder(tiny):
    cfg = Config(hidden=(8,), batch_size=10, steps=20, eval_every=10)
    report = benchmark.checkpoint_cost(cfg, tiny, repeats=2)
    assert all(len(v) == 2 and min(v) > 0 for v in report["all_steps_per_sec"].values())
    median = report["steps_per_sec"]
    assert report["cost"] == pytest.approx(1 - median["with"] / median["without"])


def test_engine_rounds_interleave_and_compare_each_round_with_the_first_engine(monkeypatch):
    order, walls = [], {"local": [10.0, 20.0, 30.0, 1.0], "ray": [10.5, 21.0, 45.0]}

    def launch(bench, cwd, out, cache, args):
        order.append(args[0])
        return {
            "wall_seconds": walls[args[0]].pop(0),
            "at_once": 2,
            "runs": 20,
            "sum_train_seconds": 9,
        }

    monkeypatch.setattr(benchmark, "study_overhead", launch)
    bench = benchmark.StartupConfig(run_args=(), checkout=".", baseline=None, python="", repeats=3)
    measured = benchmark.engine_rounds(bench, {"local": ["local"], "ray": ["ray"]}, at_once=2)
    assert order == ["local", "ray", "ray", "local", "local", "ray"]  # reversed every other round
    assert measured["ray"]["median_wall_over_reference"] == pytest.approx(1.05)
    assert measured["local"]["median_wall_over_reference"] == 1.0
    assert measured["ray"]["median_wall_seconds"] == 21.0
    report = {"command": "bench", "date": "today", "cpus": 2, "versions": {"jax": "0"}}
    report |= {"load_before": "1", "load_after": "1", "engines": measured}
    report["launch_flags"] = {"local": ["local"], "ray": ["ray"]}
    text = benchmark.engines_markdown(report)
    assert "| ray | `ray` | 20 | 2 | 10.5, 21.0, 45.0 | 9.0, 9.0, 9.0 | 21.0 | **1.050** |" in text
    with pytest.raises(InputError, match=r"ran 2 runs at a time, not 3: .* --num-cpus=3"):
        benchmark.engine_rounds(bench, {"local": ["local"]}, at_once=3)
