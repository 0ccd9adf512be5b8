"""Wall-clock seconds until test accuracy first reaches a target, compile time shown apart.

Training stops at the first evaluation (on the whole test set, every --eval_every steps) where
every seed has reached --target. The time counted is the training loop's wall clock, evaluations
included; compilation happens before it and is reported on its own. The fastest recipe found on
this project's 2-core CPU (see results/time_to_99/):

    python -m experiments.time_to_accuracy --target=0.99 RECIPE_FLAGS
"""

import json

from absl import flags

from experiments import cli
from mlp_jax.core import data, train
from mlp_jax.store import runner

flags.DEFINE_float("target", 0.99, "Test accuracy to reach.")
flags.DEFINE_string("out", "runs/time_to_accuracy.jsonl", "JSON-lines file for the records.")
cli.define_config_flags()
cli.define_workdir_flag()
FLAGS = flags.FLAGS


def seconds(evaluation: train.Evaluation) -> float:
    """Return the training loop's wall clock at `evaluation`, evaluations included."""
    return evaluation.train_seconds + evaluation.eval_seconds


def mark_target(records: list[dict], reached: dict[int, train.Evaluation]) -> None:
    """Add to each replica's record when it first reached --target (None: never)."""
    for r, record in enumerate(records):
        hit = reached.get(r)
        record.update(
            target=FLAGS.target,
            reached_at_step=hit.step if hit else None,
            seconds_to_target=seconds(hit) if hit else None,
            train_seconds_to_target=hit.train_seconds if hit else None,
        )


def print_reached(fit: train.FitResult, reached: dict[int, train.Evaluation]) -> None:
    """Print, per seed, when it reached --target and in how many seconds, or that it did not."""
    for r, seed in enumerate(fit.seeds):
        hit = reached.get(r)
        print(
            f"seed={seed} "
            + (
                f"reached {FLAGS.target} at step {hit.step}: {seconds(hit):.1f}s "
                f"(training alone {hit.train_seconds:.1f}s), compile {fit.compile_seconds:.1f}s"
                if hit
                else f"never reached {FLAGS.target} in {fit.steps} steps"
            )
        )


def main(argv: list[str]) -> None:
    del argv
    cfg = cli.config_from_flags()
    print("config:", cfg.describe())
    dataset = data.load(cfg.dataset, cfg.data_dir, cfg.validation_size, cfg.preprocess)
    reached: dict[int, train.Evaluation] = {}

    def watch(evaluation: train.Evaluation) -> bool:
        for r, accuracy in enumerate(evaluation.test_accuracy):
            if accuracy >= FLAGS.target:
                reached.setdefault(r, evaluation)
        print(
            f"step {evaluation.step:6d}  {seconds(evaluation):6.1f}s  test_accuracy "
            + " ".join(f"{a:.4f}" for a in evaluation.test_accuracy),
            flush=True,
        )
        return len(reached) == cfg.num_seeds

    fit, records, new = runner.train_and_record(
        cfg,
        dataset,
        FLAGS.out,
        FLAGS.workdir,
        on_eval=watch,
        annotate=lambda fit, records: mark_target(records, reached),
        command=cli.command(),
    )
    print_reached(fit, reached)
    if not new:
        print(f"{FLAGS.workdir} holds this finished run already: nothing trained or recorded")
    summary = {
        "target": records[0]["target"],  # a finished run started again: the one it recorded
        "seconds_to_target": [r["seconds_to_target"] for r in records],
        "compile_seconds": fit.compile_seconds,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    cli.run(main)
