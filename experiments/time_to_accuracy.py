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
from mlp_jax import data, results, train

flags.DEFINE_float("target", 0.99, "Test accuracy to reach.")
flags.DEFINE_string("out", "runs/time_to_accuracy.jsonl", "JSON-lines file for the records.")
cli.define_config_flags()
cli.define_workdir_flag()
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    cfg = cli.config_from_flags()
    results.check_appendable(FLAGS.out)
    print("config:", cfg.describe())
    workdir = cli.open_workdir(FLAGS.workdir, cfg)
    dataset = data.load(cfg.dataset, cfg.data_dir, cfg.validation_size)
    reached: dict[int, dict] = {}

    def watch(entry: dict) -> bool:
        seconds = entry["train_seconds"] + entry["eval_seconds"]
        for r, accuracy in enumerate(entry["test_accuracy"]):
            if accuracy >= FLAGS.target and r not in reached:
                reached[r] = {
                    "step": entry["step"],
                    "seconds": seconds,
                    "train_seconds": entry["train_seconds"],
                }
        print(
            f"step {entry['step']:6d}  {seconds:6.1f}s  test_accuracy "
            + " ".join(f"{a:.4f}" for a in entry["test_accuracy"]),
            flush=True,
        )
        if workdir:
            workdir.log(entry)
        return len(reached) == cfg.num_seeds

    fit = train.fit(cfg, dataset, on_eval=watch, store=workdir)
    records = results.run_records(cfg, fit, cfg.dataset, dataset.digest)
    for r, record in enumerate(records):
        hit = reached.get(r)
        record.update(
            target=FLAGS.target,
            reached_at_step=hit and hit["step"],
            seconds_to_target=hit and hit["seconds"],
            train_seconds_to_target=hit and hit["train_seconds"],
        )
        print(
            f"seed={record['seed']} "
            + (
                f"reached {FLAGS.target} at step {hit['step']}: {hit['seconds']:.1f}s "
                f"(training alone {hit['train_seconds']:.1f}s), compile {fit.compile_seconds:.1f}s"
                if hit
                else f"never reached {FLAGS.target} in {fit.steps} steps"
            )
        )
    if not cli.record(records, FLAGS.out, workdir):
        print(f"{FLAGS.workdir} holds this finished run already: nothing trained or recorded")
    if workdir:
        workdir.close()
    print(
        json.dumps(
            {
                "target": FLAGS.target,
                "seconds_to_target": [r["seconds_to_target"] for r in records],
                "compile_seconds": fit.compile_seconds,
            }
        )
    )


if __name__ == "__main__":
    cli.run(main)
