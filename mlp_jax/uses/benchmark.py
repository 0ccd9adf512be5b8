"""Speed on every platform: FLOPs against a measured matmul peak, mlp_jax against a minimal loop,
what each performance choice buys, and throughput against batch size, replicas and width."""

from collections.abc import Callable, Sequence
import dataclasses
import functools
import itertools
import os
import re
import shlex
import statistics
import subprocess
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from mlp_jax.core import activations, train
from mlp_jax.core.config import Config
from mlp_jax.core.data import Dataset
from mlp_jax.core.errors import InputError
from mlp_jax.store import results, runner

NUM_INPUTS, NUM_CLASSES = 784, 10
SWEEP_BATCH_SIZES = (100, 256, 512, 1024, 2048, 4096, 8192)
SWEEP_NUM_SEEDS = (1, 2, 4, 8, 16)
SWEEP_WIDTHS = (64, 128, 256, 512, 1024, 2048, 4096)
MATMUL_SIZES = {"cpu": (1024, 2048, 4096), "accelerator": (4096, 8192, 16384)}
# A batch size "saturates" throughput once it reaches this fraction of the sweep's best.
SATURATION = 0.9


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What one benchmark measures, on which platforms."""

    tutorial: Config  # the protocol compared with the minimal loop
    recipe: Config | None  # a heavier recipe timed as well (best_cpu)
    platforms: tuple[str, ...]
    repeats: int = 6  # interleaved timed runs of mlp_jax and the minimal loop
    sweep: bool = False
    seconds_per_point: float = 1.5  # timed seconds per sweep point
    batch_sizes: tuple[int, ...] = SWEEP_BATCH_SIZES
    num_seeds: tuple[int, ...] = SWEEP_NUM_SEEDS
    widths: tuple[int, ...] = SWEEP_WIDTHS
    matmul_sizes: tuple[int, ...] = ()  # sizes of the peak's products (none: MATMUL_SIZES)


def layer_sizes(hidden: Sequence[int]) -> list[tuple[int, int]]:
    """Return the (inputs, outputs) of every Dense layer of an MNIST MLP."""
    sizes = (NUM_INPUTS, *hidden, NUM_CLASSES)
    return list(itertools.pairwise(sizes))


def train_step_flops(hidden: Sequence[int], batch_size: int) -> int:
    """Return the FLOPs (2 per multiply-add) of one SGD step's matrix products.

    Forward x @ W and the weight gradients x.T @ delta cost 2·B·m·n per layer each; the
    gradients with respect to the inputs, delta @ W.T, are needed by every layer but the first.
    """
    products = [m * n for m, n in layer_sizes(hidden)]
    return 2 * batch_size * (2 * sum(products) + sum(products[1:]))


def matmul_rate(device: jax.Device, n: int, dtype: str = "float32", repeats: int = 5) -> float:
    """Return the best FLOP/s of `repeats` n×n matrix products on `device`."""
    a, b = (
        jax.device_put(jax.random.normal(jax.random.key(k), (n, n), dtype), device) for k in (0, 1)
    )
    product = jax.jit(jnp.matmul)
    product(a, b).block_until_ready()
    return (
        2 * n**3 / min(_seconds(lambda: product(a, b).block_until_ready()) for _ in range(repeats))
    )


def matmul_peak(device: jax.Device, dtype: str = "float32", sizes: Sequence[int] = ()) -> dict:
    """Return the best FLOP/s of square matrix products on `device` (of `sizes`, else its
    platform's MATMUL_SIZES) and the size reaching it."""
    sizes = sizes or MATMUL_SIZES["cpu" if device.platform == "cpu" else "accelerator"]
    rates = {n: matmul_rate(device, n, dtype) for n in sizes}
    best = max(rates, key=rates.get)
    return {"flops_per_sec": rates[best], "size": best}


def _seconds(work: Callable[[], object]) -> float:
    """Return the wall-clock seconds `work()` takes."""
    tic = time.perf_counter()
    work()
    return time.perf_counter() - tic


# --- The minimal hand-written loop, and the same loop without each performance choice ---


def minimal_logits(params: list, x: jax.Array, act: str) -> jax.Array:
    """Return the logits of a hand-written MLP, a list of (W, b)."""
    for w, b in params[:-1]:
        x = activations.make(act)(x @ w + b[None, :])
    w, b = params[-1]
    return x @ w + b[None, :]


def minimal_model(cfg: Config) -> tuple[Callable, Callable]:
    """Return (init, sgd_step) of a hand-written MLP trained by plain SGD."""

    def init(key):
        keys = jax.random.split(key, 2 * len(layer_sizes(cfg.hidden)))
        return [
            (
                cfg.init_scale * jax.random.normal(kw, (m, n)),
                cfg.init_scale * jax.random.normal(kb, (n,)),
            )
            for kw, kb, (m, n) in zip(keys[::2], keys[1::2], layer_sizes(cfg.hidden), strict=True)
        ]

    def loss(params, x, y):
        log_p = jax.nn.log_softmax(minimal_logits(params, x, cfg.act))
        return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))

    def sgd_step(params, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        return jax.tree.map(lambda p, g: p - cfg.lr * g, params, grads), value

    return init, sgd_step


def scan_steps(sgd_step: Callable, params, x: jax.Array, y: jax.Array, batches: jax.Array):
    """Run one step per row of `batches` (image indices) in one compiled loop."""

    def step(params, idx):
        return sgd_step(params, x[idx], y[idx])

    return jax.lax.scan(step, params, batches)


def epoch_batches(key: jax.Array, num_train: int, batch_size: int) -> jax.Array:
    """Return one epoch's (steps, batch) image indices: a fresh permutation."""
    per_epoch = num_train // batch_size
    order = jax.random.permutation(key, num_train)[: per_epoch * batch_size]
    return order.reshape(per_epoch, batch_size)


def accuracy_count(params: list, x: jax.Array, y: jax.Array, act: str) -> jax.Array:
    """Return how many of `x` the hand-written MLP classifies right."""
    return jnp.sum(jnp.argmax(minimal_logits(params, x, act), axis=-1) == y)


class Loops:
    """The minimal loop and its variants for `epochs` epochs, compiled for one device."""

    def __init__(self, cfg: Config, data: Dataset, device: jax.Device, epochs: int):
        init, sgd_step = minimal_model(cfg)
        self.cfg, self.data = cfg, jax.device_put(data, device)
        self.x, self.y = self.data.train_x, self.data.train_y
        self.params = jax.device_put(init(jax.random.key(0)), device)
        keys = jax.random.split(jax.random.key(1), epochs)
        self.epoch_keys = jax.device_put(keys, device)
        self.batches = jnp.concatenate(
            [epoch_batches(k, self.x.shape[0], cfg.batch_size) for k in self.epoch_keys]
        )
        self.steps = len(self.batches)
        self.rows = list(self.batches)  # sliced here, not while timing
        self.host_batches = np.asarray(self.batches)
        self.host_x, self.host_y = np.asarray(self.x), np.asarray(self.y)
        scan = functools.partial(scan_steps, sgd_step)
        evaluate = functools.partial(accuracy_count, act=cfg.act)

        def minimal(params, epoch_keys, x, y):
            def epoch(params, key):
                return scan(params, x, y, epoch_batches(key, x.shape[0], cfg.batch_size))[0], None

            return jax.lax.scan(epoch, params, epoch_keys)[0]

        def run_and_evaluate(params, x, y, batches, test_x, test_y):
            params, losses = scan(params, x, y, batches)
            return params, losses, evaluate(params, test_x, test_y)

        def one_step(params, x, y, idx):
            return sgd_step(params, x[idx], y[idx])

        self.minimal_run = jax.jit(minimal, donate_argnums=0)
        self.run = jax.jit(scan, donate_argnums=0)
        self.evaluate = jax.jit(evaluate)
        self.run_and_evaluate = jax.jit(run_and_evaluate, donate_argnums=0)
        self.step = jax.jit(one_step, donate_argnums=0)
        self.step_kept = jax.jit(one_step)
        self.host_step = jax.jit(sgd_step, donate_argnums=0)

    def fresh(self):
        """Return a copy of the initial parameters (donated runs consume their input)."""
        return jax.tree.map(jnp.copy, self.params)

    def minimal(self) -> None:
        """The reference: every epoch shuffled and trained on the device, in one compiled call."""
        jax.block_until_ready(self.minimal_run(self.fresh(), self.epoch_keys, self.x, self.y))

    def one_call(self) -> None:
        """Every step in one compiled call, as the minimal loop, on the prepared shuffles."""
        jax.block_until_ready(self.run(self.fresh(), self.x, self.y, self.batches))

    def python_loop(self, donate: bool = True, sync: bool = False) -> None:
        """One jitted step per Python iteration; `sync` reads each loss back, as logging does."""
        params, step = self.fresh(), self.step if donate else self.step_kept
        for idx in self.rows:
            params, loss = step(params, self.x, self.y, idx)
            if sync:
                float(loss)
        jax.block_until_ready(params)

    def host_data(self) -> None:
        """One jitted step per iteration on a batch gathered on the host and copied over."""
        params = self.fresh()
        for idx in self.host_batches:
            params, _ = self.host_step(params, self.host_x[idx], self.host_y[idx])
        jax.block_until_ready(params)

    def chunks(self, fused: bool) -> None:
        """Evaluate on the test set every `eval_every` steps: in the training call, or after it."""
        params, every, data = self.fresh(), self.cfg.eval_every, self.data
        for start in range(0, self.steps, every):
            block = self.batches[start : start + every]
            if fused:
                params, _, correct = self.run_and_evaluate(
                    params, self.x, self.y, block, data.test_x, data.test_y
                )
            else:
                params, _ = self.run(params, self.x, self.y, block)
                correct = self.evaluate(params, data.test_x, data.test_y)
            int(correct)

    def donated_bytes(self) -> int:
        """Return the bytes a donated step updates in place: one copy of the parameters."""
        compiled = self.step.lower(self.params, self.x, self.y, self.rows[0]).compile()
        return compiled.memory_analysis().alias_size_in_bytes


def ablations(loops: Loops) -> list[dict]:
    """Time the minimal loop with each performance choice taken away, one at a time.

    Every row reads the same shuffles, made beforehand: on the CPU a shuffle costs as much as
    200 steps of a narrow network.
    """
    every = loops.cfg.eval_every
    variants = [
        ("none: every step in one compiled call", loops.one_call),
        ("many steps per compiled call: one call per step", loops.python_loop),
        (
            "no host sync: one call per step, each loss read back",
            lambda: loops.python_loop(sync=True),
        ),
        (
            "donation: one call per step, buffers not donated",
            lambda: loops.python_loop(donate=False),
        ),
        ("data on the device: one call per step, batch copied from the host", loops.host_data),
        (
            f"evaluation in the training call: a separate call every {every} steps",
            lambda: loops.chunks(fused=False),
        ),
        (
            f"(for comparison) evaluation fused into the call, every {every} steps",
            lambda: loops.chunks(fused=True),
        ),
    ]
    for _, work in variants:
        work()  # compiles
    best = [float("inf")] * len(variants)
    for _ in range(3):  # round robin, so that a slow spell of the machine hits every variant
        best = [min(b, _seconds(work)) for b, (_, work) in zip(best, variants, strict=True)]
    rows = [
        {"taken_away": without, "steps_per_sec": loops.steps / seconds}
        for (without, _), seconds in zip(variants, best, strict=True)
    ]
    for row in rows:
        row["relative_to_minimal"] = row["steps_per_sec"] / rows[0]["steps_per_sec"]
    rows.append(
        {"taken_away": "donated buffers (memory)", "bytes_saved_per_step": loops.donated_bytes()}
    )
    return rows


# --- mlp_jax itself ---


def steady_rate(cfg: Config, data: Dataset, device: jax.Device, steps: int) -> dict:
    """Train `cfg` for three chunks of `steps`; return compile seconds and the best steps/s of
    the last two (the first warms up; on a shared machine, noise only slows a chunk down)."""
    rates = []
    run = dataclasses.replace(cfg, steps=3 * steps, epochs=0, eval_every=steps, devices=1)
    fit = train.fit(run, data, lambda e: rates.append(e.steps_per_sec), [device])
    return {"compile_seconds": fit.compile_seconds, "steps_per_sec": max(rates[1:])}


def throughput(cfg: Config, steps_per_sec: float, peak: float) -> dict:
    """Return examples/s, achieved matmul FLOP/s and its fraction of `peak`, all replicas."""
    flops = train_step_flops(cfg.hidden, cfg.batch_size) * cfg.num_seeds * steps_per_sec
    return {
        "steps_per_sec": steps_per_sec,
        "examples_per_sec": steps_per_sec * cfg.batch_size * cfg.num_seeds,
        "flops_per_sec": flops,
        "fraction_of_peak": flops / peak,
    }


def compare_with_minimal(
    cfg: Config, data: Dataset, device: jax.Device, repeats: int, peak_size: int
) -> dict:
    """Time mlp_jax's fit and the minimal loop on `device`, interleaved `repeats` times, each
    time beside the matmul peak (an n×n product, n = `peak_size`), so that drift cancels."""
    loops, cfg = Loops(cfg, data, device, cfg.epochs), dataclasses.replace(cfg, devices=1)
    loops.minimal()  # compiles
    train.fit(cfg, data, visible=[device])  # warms up
    minimal, library, compile_seconds, peaks = [], [], [], []

    def time_library():
        fit = train.fit(cfg, data, visible=[device])
        library.append(fit.steps_per_sec)
        compile_seconds.append(fit.compile_seconds)

    def time_minimal():
        minimal.append(loops.steps / _seconds(loops.minimal))

    for i in range(repeats):  # alternating which goes first cancels a steady drift
        peaks.append(matmul_rate(device, peak_size, repeats=3))
        for work in (time_minimal, time_library)[:: 1 if i % 2 == 0 else -1]:
            work()

    def summary(rates: list[float]) -> dict:
        row = throughput(cfg, statistics.median(rates), statistics.median(peaks))
        row["fraction_of_peak"] = statistics.median(
            throughput(cfg, r, p)["fraction_of_peak"] for r, p in zip(rates, peaks, strict=True)
        )
        return row

    return {
        "steps": loops.steps,
        "flops_per_step": train_step_flops(cfg.hidden, cfg.batch_size),
        "compile_seconds": statistics.median(compile_seconds),
        "peak_beside_runs": statistics.median(peaks),
        "minimal": summary(minimal),
        "mlp_jax": summary(library),
        "ratio_to_minimal": statistics.median(
            lib / ref for lib, ref in zip(library, minimal, strict=True)
        ),
        "all_minimal": minimal,
        "all_mlp_jax": library,
        "all_peaks": peaks,
    }


def sweep_steps(cfg: Config, peak: float, seconds: float) -> int:
    """Return how many steps fill about `seconds`, guessing 30% of the peak (10 to 5,000)."""
    flops = train_step_flops(cfg.hidden, cfg.batch_size) * cfg.num_seeds
    return int(np.clip(seconds * 0.3 * peak / flops, 10, 5000))


def timed_throughput(
    cfg: Config, data: Dataset, device: jax.Device, peak: float, seconds: float
) -> dict:
    """Train `cfg` for about `seconds` per chunk; return compile seconds and its throughput."""
    rate = steady_rate(cfg, data, device, sweep_steps(cfg, peak, seconds))
    return {
        "compile_seconds": rate["compile_seconds"],
        **throughput(cfg, rate["steps_per_sec"], peak),
    }


def sweep(bench: BenchConfig, data: Dataset, device: jax.Device, peak: float) -> dict:
    """Measure throughput against batch size, replicas trained together, and hidden width."""

    def point(**changes) -> dict:
        run = dataclasses.replace(bench.tutorial, **changes)
        return {**changes, **timed_throughput(run, data, device, peak, bench.seconds_per_point)}

    by_batch = [point(batch_size=b) for b in bench.batch_sizes]
    best = max(p["examples_per_sec"] for p in by_batch)
    return {
        "batch_size": by_batch,
        "num_seeds": [point(num_seeds=n) for n in bench.num_seeds],
        "width": [point(hidden=(w, w)) for w in bench.widths],
        "saturating_batch_size": next(
            p["batch_size"] for p in by_batch if p["examples_per_sec"] >= SATURATION * best
        ),
    }


def measure_platform(bench: BenchConfig, data: Dataset, platform: str) -> dict:
    """Measure everything on the first device of `platform`."""
    device = jax.devices(platform)[0]
    data = jax.device_put(data, device)
    peak = {"float32": matmul_peak(device, sizes=bench.matmul_sizes)}
    if platform != "cpu":
        peak["bfloat16"] = matmul_peak(device, "bfloat16", bench.matmul_sizes)

    def timed(cfg: Config, dtype: str = "float32") -> dict:
        top = peak.get(dtype, peak["float32"])["flops_per_sec"]
        return timed_throughput(cfg, data, device, top, 4 * bench.seconds_per_point)

    f32_peak = peak["float32"]["flops_per_sec"]
    tutorial = compare_with_minimal(
        bench.tutorial, data, device, bench.repeats, peak["float32"]["size"]
    )
    tutorial["mlp_jax_bfloat16"] = timed(
        dataclasses.replace(bench.tutorial, matmul_dtype="bfloat16"), "bfloat16"
    )
    report = {
        "device": device.device_kind,
        "device_count": len(jax.devices(platform)),
        "matmul_peak": peak,
        "tutorial": tutorial,
        "ablations": {
            name: ablations(
                Loops(dataclasses.replace(bench.tutorial, hidden=hidden), data, device, 2)
            )
            for name, hidden in (("tutorial", bench.tutorial.hidden), ("narrow", (64,)))
        },
    }
    if bench.recipe:
        report["recipe"] = {"name": bench.recipe.name, **timed(bench.recipe)}
    if bench.sweep:
        report["sweep"] = sweep(bench, data, device, f32_peak)
    return report


def run(bench: BenchConfig, data: Dataset) -> dict:
    """Measure every platform of `bench`, and each accelerator's speed-up over the CPU."""
    platforms = {p: measure_platform(bench, data, p) for p in bench.platforms}
    speedup = {}
    if "cpu" in platforms:
        cpu = platforms["cpu"]
        for name, report in platforms.items():
            if name != "cpu":
                speedup[name] = {
                    "tutorial": (
                        report["tutorial"]["mlp_jax"]["steps_per_sec"]
                        / cpu["tutorial"]["mlp_jax"]["steps_per_sec"]
                    )
                }
                if "recipe" in report:
                    speedup[name]["recipe"] = (
                        report["recipe"]["steps_per_sec"] / cpu["recipe"]["steps_per_sec"]
                    )
    return {"platforms": platforms, "speedup_over_cpu": speedup}


def checkpoint_cost(cfg: Config, data: Dataset, repeats: int) -> dict:
    """Time whole `fit` runs of `cfg` without and with a work folder (checkpoints and TensorBoard
    events at each evaluation), alternating which goes first; steps/s exclude compilation."""
    rates: dict[str, list[float]] = {"without": [], "with": []}
    for r in range(repeats):
        for kind in ("without", "with") if r % 2 == 0 else ("with", "without"):
            with (
                tempfile.TemporaryDirectory() as folder,
                runner.work_folder(
                    folder if kind == "with" else None, cfg, "bench", data
                ) as workdir,
            ):
                tic = time.perf_counter()
                fit = runner.fit_in(cfg, data, workdir)
                seconds = time.perf_counter() - tic - fit.compile_seconds
            rates[kind].append(fit.steps / seconds)
    median = {kind: statistics.median(values) for kind, values in rates.items()}
    return {
        "steps_per_sec": median,
        "all_steps_per_sec": rates,
        "cost": 1 - median["with"] / median["without"],
    }


# --- The report as Markdown ---


def _rate_row(label: str, m: dict) -> str:
    return (
        f"| {label} | {m['steps_per_sec']:,.0f} | {m['examples_per_sec']:,.0f} | "
        f"{m['flops_per_sec'] / 1e9:,.1f} | {m['fraction_of_peak']:.0%} |"
    )


RATE_HEADER = [
    "| run | steps/s | examples/s | GFLOP/s (matmuls) | of peak |",
    "|---|---:|---:|---:|---:|",
]


def _sweep_table(points: list[dict], key: str) -> list[str]:
    rows = [f"| {key} | steps/s | examples/s | GFLOP/s | of peak |", "|---:|---:|---:|---:|---:|"]
    for p in points:
        value = "×".join(map(str, p[key])) if key == "hidden" else p[key]
        rows.append(_rate_row(str(value), p))
    return rows


def _tutorial_lines(r: dict) -> list[str]:
    """Return a platform's heading, matmul peak and tutorial-protocol rates."""
    t, peak = r["tutorial"], r["matmul_peak"]
    return [
        f"## {r['platform']}: {r['device']} ({r['device_count']} visible)",
        "",
        "Matrix-multiply peak: "
        + ", ".join(
            f"{dtype} {p['flops_per_sec'] / 1e9:,.0f} GFLOP/s ({p['size']}²)"
            for dtype, p in peak.items()
        ),
        "",
        f"Tutorial protocol, {t['steps']} steps, "
        f"{t['flops_per_step'] / 1e6:,.0f} MFLOP of matrix products per step; the first "
        f"two rows' fraction of peak is the median over runs of each run against a "
        f"{peak['float32']['size']}² product timed beside it (median "
        f"{t['peak_beside_runs'] / 1e9:,.0f} GFLOP/s):",
        "",
        *RATE_HEADER,
        _rate_row("minimal hand-written loop", t["minimal"]),
        _rate_row("mlp_jax", t["mlp_jax"]),
        _rate_row("mlp_jax, bfloat16 matmuls", t["mlp_jax_bfloat16"]),
        "",
        f"mlp_jax / minimal loop: **{t['ratio_to_minimal']:.1%}** (median of "
        f"{len(t['all_mlp_jax'])} interleaved pairs); "
        f"compile {t['compile_seconds']:.1f} s",
        "",
    ]


def _recipe_lines(recipe: dict) -> list[str]:
    """Return the rates of the heavier recipe."""
    return [
        f"Recipe {recipe['name']} (augmentation's resampling is not counted "
        f"in the FLOPs); compile {recipe['compile_seconds']:.1f} s:",
        "",
        *RATE_HEADER,
        _rate_row(recipe["name"], recipe),
        "",
    ]


def _ablation_lines(ablations: dict) -> list[str]:
    """Return the table of what each performance choice buys, tutorial and narrow network."""
    lines = [
        "What each choice buys: the minimal loop with one choice taken away (every "
        "row on the same shuffles, made beforehand), for the tutorial network and for "
        "a narrow 784-64-10 one whose steps are as short as a GPU's.",
        "",
        "| taken away | tutorial steps/s | relative | 784-64-10 steps/s | relative |",
        "|---|---:|---:|---:|---:|",
    ]
    for a, b in zip(ablations["tutorial"], ablations["narrow"], strict=True):
        if "steps_per_sec" in a:
            lines.append(
                f"| {a['taken_away']} | {a['steps_per_sec']:,.0f} | "
                f"{a['relative_to_minimal']:.0%} | {b['steps_per_sec']:,.0f} | "
                f"{b['relative_to_minimal']:.0%} |"
            )
        else:
            lines.append(
                f"| {a['taken_away']} | {a['bytes_saved_per_step'] / 1e6:.1f} MB "
                f"more per step | | {b['bytes_saved_per_step'] / 1e6:.2f} MB | |"
            )
    return [*lines, ""]


def _sweep_lines(s: dict) -> list[str]:
    """Return the sweep's three tables and where throughput saturates."""
    return [
        "Sweep, tutorial network unless changed:",
        "",
        *_sweep_table(s["batch_size"], "batch_size"),
        "",
        *_sweep_table(s["num_seeds"], "num_seeds"),
        "",
        *_sweep_table(s["width"], "hidden"),
        "",
        f"Throughput saturates (≥ {SATURATION:.0%} of the best) from batch size "
        f"**{s['saturating_batch_size']}**.",
        "",
    ]


def _platform_lines(platform: str, r: dict) -> list[str]:
    """Return one platform's section of the report."""
    lines = _tutorial_lines({**r, "platform": platform})
    if "recipe" in r:
        lines += _recipe_lines(r["recipe"])
    lines += _ablation_lines(r["ablations"])
    if "sweep" in r:
        lines += _sweep_lines(r["sweep"])
    return lines


def markdown(report: dict) -> str:
    """Return the benchmark report as Markdown tables, one section per platform."""
    lines = [
        "# Benchmark",
        "",
        f"`{report['command']}`",
        "",
        f"{report['date']} · {report['cpus']} CPU cores · jax {report['versions']['jax']}",
        "",
    ]
    for platform, r in report["platforms"].items():
        lines += _platform_lines(platform, r)
    for platform, s in report["speedup_over_cpu"].items():
        lines.append(
            f"Speed-up of {platform} over the CPU: "
            + ", ".join(f"{k} ×{v:.1f}" for k, v in s.items())
        )
    return "\n".join(lines) + "\n"


# --- Per-run overhead: a process's start to its first training step, and a study's wall time ---

# `python -c PROBE ARGS` runs `python -m experiments.mlp ARGS` in the checkout it starts in, and
# prints the wall-clock time at which its first training chunk starts, then ends the process: the
# same instrument for this code and for an earlier checkout's.
FIRST_STEP_PROBE = """
import os, runpy, sys, time
from mlp_jax.core import train
def first_chunk(*args, **kwargs):
    print("probe_at", time.time(), flush=True)
    os._exit(0)
train.run_chunk = first_chunk
sys.argv[0] = "experiments.mlp"
runpy.run_module("experiments.mlp", run_name="__main__", alter_sys=True)
"""
IMPORT_PROBE = 'import time, jax, flax, optax; print("probe_at", time.time(), flush=True)'


@dataclasses.dataclass(frozen=True)
class StartupConfig:
    """What the per-run overhead benchmark times: the run's flags, in this checkout and in an
    earlier one (`baseline`, none: not timed; run by `baseline_python`, else by `python`),
    `repeats` interleaved rounds, and a study of the `study_axes` cells of `study_steps` steps in
    each checkout (no axes: none)."""

    run_args: tuple[str, ...]  # flags of experiments.mlp, --out among them
    checkout: str
    baseline: str | None
    python: str
    baseline_python: str | None = None
    repeats: int = 5
    study_axes: tuple[str, ...] = ()  # --axis values of the study
    study_steps: int = 5000


def seconds_to_probe(command: list[str], cwd: str) -> float:
    """Return the seconds from starting `command` in `cwd` to the time its probe prints."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    start = time.time()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    probed = [line for line in proc.stdout.splitlines() if line.startswith("probe_at ")]
    if not probed:
        tail = proc.stderr[-2000:]
        raise RuntimeError(f"{shlex.join(command)} in {cwd} printed no probe time: {tail}")
    return float(probed[-1].split()[1]) - start


def python_of(bench: StartupConfig, cwd: str) -> str:
    """Return the Python that runs checkout `cwd`: for the baseline, its own if given."""
    if cwd == bench.baseline and bench.baseline_python:
        return bench.baseline_python
    return bench.python


def startup_rounds(bench: StartupConfig, caches: str) -> dict[str, list[float]]:
    """Time each kind of start `bench.repeats` times, one of each per round, their order reversed
    every other round so that a drift of the machine's speed hits every kind alike."""
    run = [bench.python, "-c", FIRST_STEP_PROBE, *bench.run_args]
    warm = ["--compilation_cache=" + os.path.join(caches, "warm")]
    kinds = {
        "import jax, flax, optax": ([bench.python, "-c", IMPORT_PROBE], bench.checkout),
        "this checkout, no cache": (run, bench.checkout),
        "this checkout, cold cache": (None, bench.checkout),  # a fresh cache folder each time
        "this checkout, warm cache": ([*run, *warm], bench.checkout),
    }
    if bench.baseline:
        python = python_of(bench, bench.baseline)
        kinds["baseline checkout"] = ([python, *run[1:]], bench.baseline)
        if python != bench.python:
            kinds["import jax, flax, optax, the baseline's Python"] = (
                [python, "-c", IMPORT_PROBE],
                bench.baseline,
            )
    seconds_to_probe([*run, *warm], bench.checkout)  # fills the warm cache
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for r in range(bench.repeats):
        for kind, (command, cwd) in list(kinds.items())[:: 1 if r % 2 == 0 else -1]:
            cold = ["--compilation_cache=" + os.path.join(caches, f"cold{r}")]
            times[kind].append(seconds_to_probe(command or [*run, *cold], cwd))
    return times


def study_overhead(
    bench: StartupConfig, cwd: str, out: str, cache: bool, launch_args: Sequence[str] = ()
) -> dict:
    """Launch the study in checkout `cwd` into `out` (with the launcher's `launch_args`); return
    its wall seconds (the whole launch, table included), how many runs it ran at once, the sum of
    its runs' train, compile and evaluation seconds, and the wall time over the training time."""
    args = [a for a in bench.run_args if not a.startswith("--out=")]
    command = [
        python_of(bench, cwd), "-m", "experiments.launch", "study", "startup_bench",
        *(f"--axis={axis}" for axis in bench.study_axes), *launch_args,
        "--seeds=1", f"--out={out}", "--", *args, f"--steps={bench.study_steps}",
    ]  # fmt: skip
    tic = time.perf_counter()
    launched = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - tic
    records = results.read(os.path.join(out, "results.jsonl"))
    summed = {
        key: sum(r[key] for r in records)
        for key in ("train_seconds", "compile_seconds", "eval_seconds")
    }
    at_once = re.search(r"(\d+) at a time", launched.stdout)
    return {
        "runs": len(records),
        "at_once": int(at_once.group(1)) if at_once else None,
        "wall_seconds": wall,
        **{f"sum_{key}": value for key, value in summed.items()},
        "wall_over_train": wall / summed["train_seconds"],
        "compilation_cache": cache,
    }


def engine_rounds(bench: StartupConfig, engines: dict[str, Sequence[str]], at_once: int) -> dict:
    """Launch the study in this checkout with each engine's launcher flags (`engines`, the first
    the reference), `at_once` runs at a time in each, one launch of each per round, `bench.repeats`
    rounds, the order reversed every other round; return every launch and the median over rounds
    of each engine's wall time over the reference's in the same round."""
    launches: dict[str, list[dict]] = {name: [] for name in engines}
    for r in range(bench.repeats):
        for name, args in list(engines.items())[:: 1 if r % 2 == 0 else -1]:
            with tempfile.TemporaryDirectory() as out:
                launched = study_overhead(bench, bench.checkout, out, True, args)
            if launched["at_once"] != at_once:
                raise InputError(
                    f"{shlex.join(args)} ran {launched['at_once']} runs at a time, not "
                    f"{at_once}: a Ray cluster runs one a CPU (ray start --num-cpus={at_once})"
                )
            launches[name].append(launched)
    reference = [s["wall_seconds"] for s in next(iter(launches.values()))]
    return {
        name: {
            "launches": studies,
            "median_wall_seconds": statistics.median(s["wall_seconds"] for s in studies),
            "median_wall_over_reference": statistics.median(
                s["wall_seconds"] / ref for s, ref in zip(studies, reference, strict=True)
            ),
        }
        for name, studies in launches.items()
    }


def startup(bench: StartupConfig) -> dict:
    """Measure the per-run overhead of this checkout (and the baseline's, when given): seconds
    from a process's start to its first training step, and a study's wall time against the sum
    of its runs' training times."""
    with tempfile.TemporaryDirectory() as caches:
        times = startup_rounds(bench, caches)
    report = {
        "starts": {
            kind: {"median_seconds": statistics.median(values), "all_seconds": values}
            for kind, values in times.items()
        },
        "studies": {},
    }
    checkouts = {"this checkout": bench.checkout}
    if bench.baseline:
        checkouts["baseline checkout"] = bench.baseline
    if bench.study_axes:
        for label, cwd in reversed(checkouts.items()):
            with tempfile.TemporaryDirectory() as out:
                report["studies"][label] = study_overhead(bench, cwd, out, cwd == bench.checkout)
    return report


def report_heading(title: str, report: dict) -> list[str]:
    """Return the first lines of a timing report: its title, command, date, machine and load."""
    return [
        f"# {title}",
        "",
        f"`{report['command']}`",
        "",
        f"{report['date']} · {report['cpus']} CPU cores · jax {report['versions']['jax']} · "
        f"load before: {report['load_before']} · after: {report['load_after']}",
        "",
    ]


def startup_markdown(report: dict) -> str:
    """Return the per-run overhead report as Markdown: its provenance, the seconds to the first
    training step of each kind of start, and each study's wall time against its training."""
    lines = [
        *report_heading("Per-run overhead", report),
        "Seconds from process start to the first training step (`import jax, flax, optax`: to "
        "its end), and the median over rounds of each round's ratio to the import's and to the "
        "baseline's (the machine's speed drifts; a round's starts are seconds apart):",
        "",
        "| from process start to | median s | / import | / baseline | every round, s |",
        "|---|---:|---:|---:|---|",
    ]
    starts = report["starts"]
    floor = starts["import jax, flax, optax"]["all_seconds"]
    baseline = starts.get("baseline checkout", {}).get("all_seconds")
    for kind, m in starts.items():
        every = ", ".join(f"{s:.2f}" for s in m["all_seconds"])
        ratios = [
            f"{statistics.median(a / b for a, b in zip(m['all_seconds'], to, strict=True)):.2f}"
            if to
            else "—"
            for to in (floor, baseline)
        ]
        lines.append(f"| {kind} | {m['median_seconds']:.2f} | {' | '.join(ratios)} | {every} |")
    if report["studies"]:
        lines += [
            "",
            "| study | runs | wall s | Σ train s | Σ compile s | Σ eval s | wall / Σ train |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label, s in report["studies"].items():
            lines.append(
                f"| {label} | {s['runs']} | {s['wall_seconds']:.1f} | "
                f"{s['sum_train_seconds']:.1f} | {s['sum_compile_seconds']:.1f} | "
                f"{s['sum_eval_seconds']:.1f} | **{s['wall_over_train']:.2f}** |"
            )
    return "\n".join(lines) + "\n"


def engines_markdown(report: dict) -> str:
    """Return the engines' report as Markdown: its provenance and each engine's launches of the
    study, their wall times against the reference engine's (the first) round by round."""
    lines = [
        *report_heading("One study, launched by each engine", report),
        "Wall seconds of each launch (the whole `launch.sh`, table export included), one launch "
        "of each engine per round, the order reversed every other round; the last column is the "
        "median over rounds of the wall time over the first engine's in the same round.",
        "",
        "| engine | launcher flags | runs | at once | wall s, every round | Σ train s, every round "
        "| median wall s | median wall / first's |",
        "|---|---|---:|---:|---|---|---:|---:|",
    ]
    for name, m in report["engines"].items():
        launches = m["launches"]
        walls = ", ".join(f"{s['wall_seconds']:.1f}" for s in launches)
        trains = ", ".join(f"{s['sum_train_seconds']:.1f}" for s in launches)
        lines.append(
            f"| {name} | `{shlex.join(report['launch_flags'][name])}` | {launches[0]['runs']} | "
            f"{launches[0]['at_once']} | {walls} | {trains} | {m['median_wall_seconds']:.1f} | "
            f"**{m['median_wall_over_reference']:.3f}** |"
        )
    return "\n".join(lines) + "\n"
