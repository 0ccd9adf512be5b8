"""What every entry point shares: Config flags, the data folder, and one-line input errors."""

from collections.abc import Callable
import dataclasses
import logging
import os
import sys

from absl import app
from absl import flags

from mlp_jax import grids, parallel
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
    "dropout_at_eval": "Keep dropout on when measuring accuracy, as the TF1 scripts did.",
    "input_dropout": "Probability of dropping an input pixel in training.",
    "batch_norm": "Batch normalisation between each hidden layer and its activation.",
    "grad": "autodiff (jax.grad), or manual: the hand-written chain rule of mlp_jax/backprop.py.",
    "label_smoothing": "Mix this much of the uniform distribution into the one-hot targets.",
    "max_norm": "Clip each unit's incoming weight vector to this L2 norm after every step (0: off).",
    "ema": "Evaluate an exponential moving average of the weights with this decay (0: off).",
    "augment": "Comma-separated on-device augmentations: noise, salt_pepper, affine, elastic.",
    "noise_std": "Standard deviation of the Gaussian pixel noise.",
    "salt_pepper": "Fraction of pixels salt-and-pepper noise sets to 0 or 1.",
    "rotate": "Affine: maximum rotation, degrees.",
    "scale": "Affine: maximum relative zoom in or out.",
    "shear": "Affine: maximum shear, degrees.",
    "translate": "Affine: maximum shift along each axis, pixels.",
    "elastic_alpha": "Elastic: displacement scale alpha (Simard 2003), pixels.",
    "elastic_sigma": "Elastic: width sigma of the Gaussian smoothing the field, pixels.",
    "weight_init": "normal, zeros, constant, lecun_normal, glorot_uniform, he_normal.",
    "bias_init": "normal, zeros, constant.",
    "init_scale": "Standard deviation of the normal initialiser.",
    "init_constant": "Value of the constant initialiser.",
    "loss": "cross_entropy, or mse (squared error of the softmax output).",
    "optimizer": "sgd, momentum, nesterov, adam, adamw, rmsprop.",
    "lr": "Learning rate (peak value under a schedule).",
    "momentum": "Momentum of the momentum and nesterov optimisers.",
    "weight_decay": "Decoupled for adamw, else added to the gradient (L2).",
    "schedule": "constant, cosine, warmup_cosine, onecycle.",
    "warmup_fraction": "Fraction of the steps spent warming up (warmup_cosine, onecycle).",
    "batch_size": "Images per step.",
    "steps": "Training steps (ignored when --epochs is set).",
    "epochs": "Training epochs; 0 uses --steps.",
    "eval_every": "Evaluate on the whole validation and test splits every N steps.",
    "seed": "Seed of the first replica; replica i uses seed + i.",
    "num_seeds": "Independent replicas trained at once with vmap.",
    "matmul_dtype": "float32, or bfloat16 matrix products (float32 weights and loss); meant for "
                    "GPUs and TPUs, where it is faster.",
    "devices": "How many of the visible devices to train on; 0: all of them.",
    "parallel": "With several devices: batch (each step's batch split across them, gradients "
                "reduced by XLA) or seeds (the --num_seeds replicas spread over them).",
}


def define_config_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define one absl flag for every Config field, with the field's default."""
    for field in dataclasses.fields(Config):
        default, define = field.default, flags.DEFINE_string
        if field.name == "hidden":
            default = ",".join(map(str, default))
        elif isinstance(default, bool):
            define = flags.DEFINE_boolean
        elif isinstance(default, int):
            define = flags.DEFINE_integer
        elif isinstance(default, float):
            define = flags.DEFINE_float
        define(field.name, default, HELP[field.name], flag_values=flag_values)


def data_dir(flag_value: str | None) -> str | None:
    """Return the IDX folder: the flag's value, else $MLP_JAX_DATA, else None (TFDS)."""
    return flag_value or os.environ.get(DATA_ENV) or None


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> Config:
    """Build the validated Config from parsed flags; --data_dir falls back to $MLP_JAX_DATA."""
    values = {f.name: flag_values[f.name].value for f in dataclasses.fields(Config)}
    values["hidden"] = parse_hidden(values["hidden"])
    values["data_dir"] = data_dir(values["data_dir"])
    return Config(**values)


def row_config(row: grids.Row, extra: list[str]) -> Config:
    """Return the validated config that `experiments.mlp` builds from a grid row and extra flags."""
    mlp_flags = flags.FlagValues()
    define_config_flags(mlp_flags)
    try:
        mlp_flags(["mlp", *row.args(), *extra])
    except flags.Error as e:
        raise InputError(f"row {row.name}: {e}") from None
    return config_from_flags(mlp_flags)


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
    """Run `main` under absl (joining a multi-host run if one is set up); bad flags and
    InputError end in one line and exit code 2."""
    logging.getLogger("jax").setLevel(logging.WARNING)  # not "no TPU found" on every CPU run

    def guarded(argv):
        try:
            parallel.initialize_distributed()
            main(argv)
        except InputError as e:
            fail(str(e))
    app.run(guarded, flags_parser=_parse_flags)
