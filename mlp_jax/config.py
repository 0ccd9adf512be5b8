"""The run configuration: one frozen dataclass, validated once when it is made."""

import dataclasses

from mlp_jax import activations, backprop, models
from mlp_jax.augment import KINDS as AUGMENTATIONS, Strengths
from mlp_jax.errors import InputError

DATASETS = ("mnist", "fashion_mnist", "kmnist")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "onecycle")
LOSSES = ("cross_entropy", "mse")
GRADS = ("autodiff", "manual")
MATMUL_DTYPES = ("float32", "bfloat16")
PARALLEL = ("batch", "seeds")


def parse_hidden(text: str) -> tuple[int, ...]:
    """Parse hidden sizes such as "625,441" into (625, 441); "" means no hidden layer."""
    pieces = [p.strip() for p in text.split(",")] if text.strip() else []
    if not all(p.isdigit() and int(p) > 0 for p in pieces):
        raise InputError(f"malformed --hidden {text!r}; accepted: comma-separated positive "
                         "integers such as 625,441, or an empty value for no hidden layer")
    return tuple(int(p) for p in pieces)


def _choice(flag: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise InputError(f"unknown --{flag} {value!r}; accepted: {', '.join(accepted)}")


def _positive(flag: str, value: float) -> None:
    if not value > 0:
        raise InputError(f"--{flag} must be positive, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of one training run; defaults are the TF1 tutorial's protocol."""

    name: str = ""
    dataset: str = "mnist"
    data_dir: str | None = None
    validation_size: int = 5000
    hidden: tuple[int, ...] = (625, 441)
    act: str = "relu6"
    leaky_slope: float = 0.01
    dropout: float = 0.0
    dropout_at_eval: bool = False
    input_dropout: float = 0.0
    batch_norm: bool = False
    weight_init: str = "normal"
    bias_init: str = "normal"
    init_scale: float = 0.01
    init_constant: float = 0.1
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    grad: str = "autodiff"
    optimizer: str = "sgd"
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_fraction: float = 0.05
    max_norm: float = 0.0
    ema: float = 0.0
    augment: str = ""
    noise_std: float = Strengths.noise_std
    salt_pepper: float = Strengths.salt_pepper
    rotate: float = Strengths.rotate
    scale: float = Strengths.scale
    shear: float = Strengths.shear
    translate: float = Strengths.translate
    elastic_alpha: float = Strengths.elastic_alpha
    elastic_sigma: float = Strengths.elastic_sigma
    batch_size: int = 100
    steps: int = 10_000
    epochs: int = 0
    eval_every: int = 1000
    seed: int = 0
    num_seeds: int = 1
    matmul_dtype: str = "float32"
    devices: int = 0
    parallel: str = "batch"

    def __post_init__(self):
        _choice("dataset", self.dataset, DATASETS)
        activations.check(self.act)
        models.initializer(self.weight_init, accepted=models.WEIGHT_INITS)
        models.initializer(self.bias_init, accepted=models.BIAS_INITS)
        _choice("loss", self.loss, LOSSES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("grad", self.grad, GRADS)
        _choice("matmul_dtype", self.matmul_dtype, MATMUL_DTYPES)
        _choice("parallel", self.parallel, PARALLEL)
        if self.grad == "manual":
            backprop.check(self.act)
            if (self.dropout or self.input_dropout or self.batch_norm
                    or self.matmul_dtype != "float32"):
                raise InputError("--grad=manual covers plain float32 MLPs: drop --dropout, "
                                 "--input_dropout, --batch_norm and --matmul_dtype")
        if not 0 <= self.dropout < 1:
            raise InputError(f"--dropout {self.dropout!r} is outside [0, 1); it is the "
                             "probability of dropping a unit (TF1 keep_prob 0.33 is 0.67)")
        for flag in ("warmup_fraction", "input_dropout", "label_smoothing", "ema", "salt_pepper"):
            if not 0 <= getattr(self, flag) < 1:
                raise InputError(f"--{flag} {getattr(self, flag)!r} is outside [0, 1)")
        unknown = [k for k in self.augmentations() if k not in AUGMENTATIONS]
        if unknown:
            raise InputError(f"unknown --augment {unknown[0]!r}; accepted: a comma-separated "
                             f"list of {', '.join(AUGMENTATIONS)}")
        if any(h <= 0 for h in self.hidden):
            raise InputError(f"hidden sizes must be positive, got {self.hidden!r}")
        for flag in ("lr", "batch_size", "eval_every", "num_seeds", "init_scale"):
            _positive(flag, getattr(self, flag))
        if self.devices < 0:
            raise InputError(f"--devices must be >= 0 (0: every visible device), "
                             f"got {self.devices}")
        if self.epochs < 0:
            raise InputError(f"--epochs must be positive (or 0 to use --steps), got {self.epochs}")
        if self.epochs == 0:
            _positive("steps", self.steps)
        for flag in ("validation_size", "weight_decay", "momentum", "max_norm", "noise_std",
                     "rotate", "scale", "shear", "translate", "elastic_alpha", "elastic_sigma"):
            if getattr(self, flag) < 0:
                raise InputError(f"--{flag} must be >= 0, got {getattr(self, flag)!r}")

    def augmentations(self) -> tuple[str, ...]:
        """Return the names in --augment."""
        return tuple(k.strip() for k in self.augment.split(",") if k.strip())

    def strengths(self) -> Strengths:
        """Return the augmentation strengths."""
        return Strengths(**{f.name: getattr(self, f.name)
                                    for f in dataclasses.fields(Strengths)})

    def total_steps(self, num_train: int) -> int:
        """Return the number of training steps: --epochs over `num_train` images, else --steps."""
        return self.epochs * (num_train // self.batch_size) if self.epochs else self.steps
