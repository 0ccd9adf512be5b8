"""What every entry point shares: Config flags, the data folder, and one-line input errors."""

from collections.abc import Callable
import dataclasses
import logging
import os
import sys

from absl import app
from absl import flags

from mlp_jax.config import Config, parse_hidden
from mlp_jax.errors import InputError

DATA_ENV = "MLP_JAX_DATA"
HELP = {
    "name": "Run name in the record (default: built from the architecture).",
    "dataset": "mnist, fashion_mnist or kmnist (through TFDS unless --data_dir is given).",
    "data_dir": f"Folder of the four MNIST-layout IDX files (.gz or raw); default ${DATA_ENV}, "
                "else TFDS.",
    "validation_size": "The first N training images form the validation split.",
    "hidden": "Hidden layer sizes, comma-separated; empty for softmax regression.",
    "act": "Hidden activation: relu, relu6, sigmoid, tanh, leaky_relu, prelu, elu, softplus, "
           "swish, gelu, identity.",
    "leaky_slope": "Negative slope of leaky_relu, and prelu's initial slope.",
    "dropout": "Probability of dropping a hidden unit in training (TF1 keep_prob 0.33 = 0.67).",
    "weight_init": "normal, zeros, constant, lecun_normal, glorot_uniform, he_normal.",
    "bias_init": "normal, zeros, constant.",
    "init_scale": "Standard deviation of the normal initialiser.",
    "init_constant": "Value of the constant initialiser.",
    "loss": "cross_entropy, or mse (squared error of the softmax output).",
    "optimizer": "sgd, momentum, nesterov, adam, adamw, rmsprop.",
    "lr": "Learning rate (peak value under a schedule).",
    "momentum": "Momentum of the momentum and nesterov optimisers.",
    "weight_decay": "Decoupled for adamw, else added to the gradient (L2).",
    "schedule": "constant, cosine, warmup_cosine.",
    "warmup_fraction": "Fraction of the steps spent warming up under warmup_cosine.",
    "batch_size": "Images per step.",
    "steps": "Training steps (ignored when --epochs is set).",
    "epochs": "Training epochs; 0 uses --steps.",
    "eval_every": "Evaluate on the whole validation and test splits every N steps.",
    "seed": "Seed of the first replica; replica i uses seed + i.",
    "num_seeds": "Independent replicas trained at once with vmap.",
}


def define_config_flags() -> None:
    """Define one absl flag for every Config field, with the field's default."""
    for field in dataclasses.fields(Config):
        default = field.default
        if field.name == "hidden":
            flags.DEFINE_string("hidden", ",".join(map(str, default)), HELP["hidden"])
        elif isinstance(default, bool):
            flags.DEFINE_boolean(field.name, default, HELP[field.name])
        elif isinstance(default, int):
            flags.DEFINE_integer(field.name, default, HELP[field.name])
        elif isinstance(default, float):
            flags.DEFINE_float(field.name, default, HELP[field.name])
        else:
            flags.DEFINE_string(field.name, default, HELP[field.name])


def data_dir(flag_value: str | None) -> str | None:
    """Return the IDX folder: the flag's value, else $MLP_JAX_DATA, else None (TFDS)."""
    return flag_value or os.environ.get(DATA_ENV) or None


def config_from_flags(**overrides) -> Config:
    """Build the validated Config from the parsed flags; --data_dir falls back to $MLP_JAX_DATA."""
    values = {f.name: flags.FLAGS[f.name].value for f in dataclasses.fields(Config)}
    values["hidden"] = parse_hidden(values["hidden"])
    values["data_dir"] = data_dir(values["data_dir"])
    return Config(**{**values, **overrides})


def fail(message: str) -> None:
    """Print one error line to stderr and exit with code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e))


def run(main: Callable[[list[str]], None]) -> None:
    """Run `main` under absl; bad flags and InputError end in one line and exit code 2."""
    logging.getLogger("jax").setLevel(logging.WARNING)  # not "no TPU found" on every CPU run

    def guarded(argv):
        try:
            main(argv)
        except InputError as e:
            fail(str(e))
    app.run(guarded, flags_parser=_parse_flags)
