"""The run configuration: one frozen dataclass, validated once when it is made.

Each field carries its help, accepted values and bounds (`settings.setting`); the flags of the
entry points, their `--help`, the validation and the README's flag table all follow from it.
A choice among components takes its names from the component's registry, a dict from each name to
what builds it: `activations.BUILDERS`, `models.INITIALIZERS`, `optim.LOSSES`, `optim.OPTIMIZERS`,
`optim.SCHEDULES`, `augment.KINDS`; a new component is one entry there.

Each field also carries its `effect` (`settings.EFFECTS`): whether it changes what a run computes
("protocol", the default) or only which replicas run ("replica"), what is measured ("reporting"),
where and how it executes ("placement") or what it is called ("label"). `fields_with` turns that
into the settings a resumed run may change, those records are matched without, and those a study
cannot vary.
"""

import dataclasses

from mlp_jax.core import activations, chain_rule, models, preprocess
from mlp_jax.core.augment import KINDS as AUGMENTATIONS
from mlp_jax.core.augment import Strengths
from mlp_jax.core.errors import InputError
from mlp_jax.core.optim import LOSSES, OPTIMIZERS, SCHEDULES
from mlp_jax.core.settings import EFFECTS, FRACTION, NON_NEGATIVE, POSITIVE, accepted, setting

DATASETS = ("mnist", "fashion_mnist", "kmnist")
GRADS = ("autodiff", "manual")
MATMUL_DTYPES = ("float32", "bfloat16")
PARALLEL = ("batch", "seeds")
# jax.random.key takes int32 seeds exactly (larger ones wrap onto smaller ones, or overflow).
MAX_SEED = 2**31 - 1
HIDDEN_FORMAT = "comma-separated positive integers such as 625,441; empty for no hidden layer"


def parse_hidden(text: str) -> tuple[int, ...]:
    """Parse hidden sizes such as "625,441" into (625, 441); "" means no hidden layer."""
    pieces = [p.strip() for p in text.split(",")] if text.strip() else []
    if not all(p.isdigit() and int(p) > 0 for p in pieces):
        raise InputError(f"malformed --hidden {text!r}; accepted: {HIDDEN_FORMAT}")
    return tuple(int(p) for p in pieces)


@dataclasses.dataclass(frozen=True)
class Config(Strengths):
    """Every setting of one training run; defaults are the TF1 tutorial's protocol.

    The augmentation strengths are inherited from `augment.Strengths`, so that each is a flag.
    """

    name: str = setting(
        "", "Run name in the record (default: built from the architecture).", effect="label"
    )
    dataset: str = setting(
        "mnist", "Dataset, through TFDS unless --data_dir is given.", choices=DATASETS
    )
    data_dir: str | None = setting(
        None,
        "Folder of the four MNIST-layout IDX files (.gz or raw); default $MLP_JAX_DATA, else TFDS.",
        accepts="a folder",
        effect="label",
    )
    validation_size: int = setting(
        5000, "The first N training images form the validation split.", within=NON_NEGATIVE
    )
    hidden: tuple[int, ...] = setting(
        (625, 441), "Hidden layer sizes; empty for softmax regression.", accepts=HIDDEN_FORMAT
    )
    act: str = setting(
        "relu6",
        "Hidden activation (leaky_relu and prelu: --leaky_slope).",
        choices=activations.BUILDERS,
    )
    leaky_slope: float = setting(0.01, "Negative slope of leaky_relu, and prelu's initial slope.")
    dropout: float = setting(
        0.0,
        "Probability of DROPPING a hidden unit in training (TF1 keep_prob 0.33 is 0.67).",
        within=FRACTION,
    )
    dropout_at_eval: bool = setting(
        False, "Keep dropout on when measuring accuracy, as the TF1 scripts did."
    )
    input_dropout: float = setting(
        0.0, "Probability of dropping an input pixel in training.", within=FRACTION
    )
    batch_norm: bool = setting(
        False, "Batch normalisation between each hidden layer and its activation."
    )
    weight_init: str = setting(
        "normal",
        "Weight initialiser (normal: std --init_scale; constant: "
        "--init_constant; lecun_normal: N(0,1)·sqrt(1/fan_in)).",
        choices=models.INITIALIZERS,
    )
    bias_init: str = setting("normal", "Bias initialiser.", choices=models.BIAS_INITS)
    init_scale: float = setting(
        0.01, "Standard deviation of the normal initialiser.", within=POSITIVE
    )
    init_constant: float = setting(0.1, "Value of the constant initialiser.")
    loss: str = setting(
        "cross_entropy", "Loss; mse is half the squared error of the softmax.", choices=LOSSES
    )
    label_smoothing: float = setting(
        0.0, "Mix this much of the uniform distribution into the one-hot targets.", within=FRACTION
    )
    grad: str = setting(
        "autodiff",
        "Gradients from jax.grad, or from the hand-written chain rule "
        "of mlp_jax/core/chain_rule.py (plain float32 MLPs).",
        choices=GRADS,
    )
    optimizer: str = setting("sgd", "Optax optimiser.", choices=OPTIMIZERS)
    lr: float = setting(0.5, "Learning rate (peak value under a schedule).", within=POSITIVE)
    momentum: float = setting(
        0.9, "Momentum of the momentum and nesterov optimisers.", within=NON_NEGATIVE
    )
    weight_decay: float = setting(
        0.0, "Decoupled for adamw, else added to the gradient (L2).", within=NON_NEGATIVE
    )
    schedule: str = setting("constant", "Learning-rate schedule over the run.", choices=SCHEDULES)
    warmup_fraction: float = setting(
        0.05, "Fraction of the steps spent warming up (warmup_cosine, onecycle).", within=FRACTION
    )
    cycles: int = setting(
        1,
        "cyclic_cosine: the run is N cosine decays from --lr, each ending in a snapshot to keep "
        "(--keep_every).",
        within=POSITIVE,
    )
    max_norm: float = setting(
        0.0,
        "Clip each unit's incoming weight vector to this L2 norm after every step (0: off).",
        within=NON_NEGATIVE,
    )
    ema: float = setting(
        0.0,
        "Evaluate an exponential moving average of the weights with this decay (0: off).",
        within=FRACTION,
    )
    preprocess: str = setting(
        "none",
        "Preprocessing of every digit (training, validation, test, predict's images) before the "
        "net sees it: widthN resamples each digit's bounding box to N pixels wide and 20 high and "
        "re-centres it (Meier et al. 2011).",
        choices=preprocess.PREPROCESSORS,
    )
    augment: str = setting(
        "",
        "On-device augmentations of the training batches (strengths: the flags below).",
        accepts=f"a comma-separated list of {', '.join(AUGMENTATIONS)}",
    )
    batch_size: int = setting(100, "Images per step.", within=POSITIVE)
    steps: int = setting(10_000, "Training steps (ignored when --epochs is set).", within=POSITIVE)
    epochs: int = setting(0, "Training epochs; 0 uses --steps.", within=NON_NEGATIVE)
    eval_every: int = setting(
        1000,
        "Evaluate on the whole validation and test splits every N steps (one compiled chunk).",
        within=POSITIVE,
        effect="reporting",
    )
    checkpoint_every: int = setting(
        0,
        "With --workdir: also save a checkpoint every N steps (0: at each evaluation only).",
        within=NON_NEGATIVE,
        effect="placement",
    )
    keep_checkpoints: int = setting(
        3,
        "With --workdir: keep this many latest checkpoints, and the best.",
        within=POSITIVE,
        effect="placement",
    )
    keep_every: int = setting(
        0,
        "With --workdir: also save and keep the checkpoint of every N-th step (0: off).",
        within=NON_NEGATIVE,
        effect="placement",
    )
    seed: int = setting(
        0,
        "Seed of the first replica; replica i uses seed + i.",
        within=NON_NEGATIVE,
        accepts=f"0..{MAX_SEED}, seed + num_seeds - 1 too",
        effect="replica",
    )
    num_seeds: int = setting(
        1, "Independent replicas trained at once with vmap.", within=POSITIVE, effect="replica"
    )
    matmul_dtype: str = setting(
        "float32",
        "Dtype of the matrix products (float32 weights and "
        "loss); bfloat16 is faster on GPUs and TPUs.",
        choices=MATMUL_DTYPES,
    )
    devices: int = setting(
        0,
        "How many of the visible devices to train on; 0: all of them.",
        within=NON_NEGATIVE,
        effect="placement",
    )
    parallel: str = setting(
        "batch",
        "With several devices: split each step's batch across them "
        "(batch) or spread the --num_seeds replicas over them (seeds).",
        choices=PARALLEL,
        effect="placement",
    )

    def __post_init__(self):
        super().__post_init__()  # every field against its own metadata
        if any(h <= 0 for h in self.hidden):
            raise InputError(f"--hidden {self.hidden!r} has a size <= 0; accepted: {HIDDEN_FORMAT}")
        last_seed = self.seed + self.num_seeds - 1
        if last_seed > MAX_SEED:
            raise InputError(
                f"--seed {self.seed} with --num_seeds {self.num_seeds} reaches seed {last_seed}; "
                f"accepted: seeds 0..{MAX_SEED}"
            )
        unknown = [k for k in self.augmentations() if k not in AUGMENTATIONS]
        if unknown:
            raise InputError(
                f"unknown --augment {unknown[0]!r}; accepted: a comma-separated "
                f"list of {', '.join(AUGMENTATIONS)}"
            )
        if self.grad == "manual":
            chain_rule.check(self.act)
            if (
                self.dropout
                or self.input_dropout
                or self.batch_norm
                or self.matmul_dtype != "float32"
            ):
                raise InputError(
                    "--grad=manual covers plain float32 MLPs: drop --dropout, "
                    "--input_dropout, --batch_norm and --matmul_dtype"
                )

    def augmentations(self) -> tuple[str, ...]:
        """Return the names in --augment."""
        return tuple(k.strip() for k in self.augment.split(",") if k.strip())

    def strengths(self) -> Strengths:
        """Return the augmentation strengths alone."""
        return Strengths(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Strengths)})

    def describe(self) -> str:
        """Return every setting as `name=value`, in the reading order of `flag_fields`."""
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in flag_fields())

    def total_steps(self, num_train: int) -> int:
        """Return the number of training steps: --epochs over `num_train` images, else --steps."""
        return self.epochs * (num_train // self.batch_size) if self.epochs else self.steps


def flag_fields() -> list[dataclasses.Field]:
    """Return Config's fields in reading order: its own first, then the inherited strengths."""
    own = [f for f in dataclasses.fields(Config) if f.name not in Strengths.__dataclass_fields__]
    return own + list(dataclasses.fields(Strengths))


def fields_with(*effects: str) -> tuple[str, ...]:
    """Return the names of the settings whose effect (`settings.EFFECTS`) is one of `effects`."""
    unknown = [effect for effect in effects if effect not in EFFECTS]
    if unknown:
        raise ValueError(f"unknown effect {unknown[0]!r}; accepted: {', '.join(EFFECTS)}")
    return tuple(f.name for f in flag_fields() if f.metadata["effect"] in effects)


def flag_default(field: dataclasses.Field) -> str:
    """Return a field's default as it is written on the command line."""
    if field.name == "hidden":
        return ",".join(map(str, field.default))
    if isinstance(field.default, bool):
        return str(field.default).lower()
    return "" if field.default is None else str(field.default)


def flag_table() -> str:
    """Return the markdown table of every flag of a training run (README's copy is tested)."""
    rows = ["| flag | default | accepted | meaning |", "|---|---|---|---|"]
    for field in flag_fields():
        default = f"`{flag_default(field)}`" if flag_default(field) else "—"
        rows.append(
            f"| `--{field.name}` | {default} | {accepted(field)} | {field.metadata['help']} |"
        )
    return "\n".join(rows) + "\n"


def to_dict(cfg: Config) -> dict:
    """Return every setting as JSON holds it (the hidden sizes as a list)."""
    return {**dataclasses.asdict(cfg), "hidden": list(cfg.hidden)}


def from_dict(values: dict) -> Config:
    """Return the validated Config of settings read back from JSON, `to_dict`'s inverse."""
    return Config(**{**values, "hidden": tuple(values["hidden"])})
