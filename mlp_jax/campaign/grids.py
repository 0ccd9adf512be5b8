"""Named grids and studies: the rows `launch.sh` runs, each the flags of `experiments.mlp` it sets.

A grid is a list of rows, with what was published for each (sources in
../shared/reference/seed_results.md). A study is the product of axes, each axis one flag and its
values; its rows are its cells, named from their values, and its table pivots the first two axes.
`launch.sh NAME` runs either with several seeds and exports the table; `launch.sh study NAME
--axis FLAG=V1,V2 ...` runs a study typed on the command line.
"""

from collections.abc import Sequence
import dataclasses
import itertools
import re

from mlp_jax.campaign.space import Space, check_flag, parse_param, split_values
from mlp_jax.core import activations, config
from mlp_jax.core.errors import InputError

TF1 = "TF1 tutorial scripts (Table 1)"
COURSE = "course material (Table 2)"


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of a table: a run name, its flags, and the published accuracy if any."""

    name: str
    flags: dict[str, str]
    published: float | None = None
    source: str = ""
    note: str = ""  # one line on why our number may differ, backed by a run of the same grid

    def args(self) -> list[str]:
        """Return the row's flags as command-line arguments."""
        return [f"--{key}={value}" for key, value in self.flags.items()]


# Flags a study cannot vary: they name, seed or place the run, or are set by launch.sh.
NOT_AXES = config.fields_with("label", "replica")
AXIS_FORMAT = "FLAG=V1,V2,... (a flag of experiments.mlp; '/' inside a value stands for ',')"


@dataclasses.dataclass(frozen=True)
class Axis:
    """One factor of a study: a flag of `experiments.mlp` and the values it takes."""

    flag: str
    values: tuple[str, ...]

    def label(self, value: str) -> str:
        """Return `value` as it reads in a row name and a table: 256,256 -> 256x256."""
        return re.sub(r"[^\w.+-]", "-", value.replace(",", "x")) or "none"


@dataclasses.dataclass(frozen=True)
class Study:
    """The product of `axes`, each cell a row run with `flags` plus its own axis values."""

    axes: tuple[Axis, ...]
    flags: dict[str, str] = dataclasses.field(default_factory=dict)

    def cells(self) -> tuple[tuple[str, ...], ...]:
        """Return every combination of axis values, the first axis varying slowest."""
        return tuple(itertools.product(*(axis.values for axis in self.axes)))

    def row_name(self, cell: tuple[str, ...]) -> str:
        """Return the name of a cell's row, e.g. act-relu__hidden-256x256."""
        return "__".join(f"{a.flag}-{a.label(v)}" for a, v in zip(self.axes, cell, strict=True))

    def rows(self) -> tuple[Row, ...]:
        """Return one row per cell."""
        return tuple(
            Row(
                self.row_name(cell),
                {**self.flags, **dict(zip(self.flags_of_axes(), cell, strict=True))},
            )
            for cell in self.cells()
        )

    def flags_of_axes(self) -> tuple[str, ...]:
        """Return the flag of each axis, in order."""
        return tuple(axis.flag for axis in self.axes)


def parse_axis(text: str) -> Axis:
    """Parse `FLAG=V1,V2` into an Axis; '/' inside a value stands for ',' (hidden=256/256)."""
    flag, sep, values = text.partition("=")
    flag = flag.strip().removeprefix("--")
    if not sep or not flag:
        raise InputError(f"malformed --axis {text!r}; accepted: {AXIS_FORMAT}")
    check_flag("--axis", text, flag, NOT_AXES, "a study can vary")
    return Axis(flag, split_values("--axis", text, values, AXIS_FORMAT))


def parse_study(texts: Sequence[str]) -> Study:
    """Return the study of the `--axis` texts, each flag on one axis only."""
    axes = tuple(parse_axis(text) for text in texts)
    flags = [axis.flag for axis in axes]
    repeated = next((flag for flag in flags if flags.count(flag) > 1), None)
    if repeated:
        raise InputError(f"--axis {repeated} is given twice; accepted: each flag on one axis")
    return Study(axes)


def check_extra(study: Study, extra: Sequence[str]) -> None:
    """Refuse flags after `--` that set an axis of `study` (they would override every cell)."""
    given = {arg.removeprefix("--").partition("=")[0] for arg in extra}
    given |= {flag.removeprefix("no") for flag in given}  # absl's --noFLAG for a boolean
    clash = [flag for flag in study.flags_of_axes() if flag in given]
    if clash:
        raise InputError(
            f"--{clash[0]} is an axis of the study and also given after --; accepted: each flag "
            "either as an axis or for every run"
        )


def _tf1(name: str, hidden: str, act: str, published: float, **flags: str) -> Row:
    return Row(name, {"hidden": hidden, "act": act, **flags}, published, TF1)


# Reaching past 99% with a plain MLP: deformed training digits, a one-cycle
# learning rate, label smoothing and a moving average of the weights for evaluation.
RECIPE = {
    "act": "relu",
    "weight_init": "he_normal",
    "bias_init": "zeros",
    "optimizer": "nesterov",
    "momentum": "0.9",
    "schedule": "onecycle",
    "warmup_fraction": "0.2",
    "label_smoothing": "0.1",
    "ema": "0.999",
    "augment": "affine,elastic",
    "rotate": "10",
    "scale": "0.1",
    "shear": "5",
    "translate": "2",
    "elastic_alpha": "20",
    "elastic_sigma": "4",
}
BEST_CPU = {
    "hidden": "1024,1024",
    **RECIPE,
    "lr": "0.05",
    "dropout": "0.2",
    "batch_size": "128",
    "epochs": "90",
    "eval_every": "4290",
}
# The long recipe: best_cpu trained for 300 epochs (21-26 minutes a seed here); on the validation
# split it ties best_cpu's 90 (results/selection/README.md).
LONG_CPU = {**BEST_CPU, "epochs": "300", "eval_every": "8580"}
# Snapshots of a 300-epoch run with three cosine cycles: 128,700 steps, a kept checkpoint at each
# cycle's end (Huang et al. 2017).
SNAPSHOTS_CPU = {**LONG_CPU, "schedule": "cyclic_cosine", "cycles": "3", "keep_every": "42900"}
BEST_GPU = {
    "hidden": "2500,2000,1500,1000,500",
    **RECIPE,
    "lr": "0.05",
    "dropout": "0.2",
    "batch_size": "256",
    "epochs": "1000",
    "eval_every": "21480",
}

DROPOUT_ROW = {"hidden": "516,258", "act": "relu6", "lr": "0.03", "dropout": "0.67"}

GRIDS: dict[str, tuple[Row, ...]] = {
    # Table 1, each row under its original protocol (the defaults of experiments.mlp are the
    # tutorial's: SGD lr 0.5, batch 100, 10,000 steps, weights and biases N(0, 0.01^2)).
    "seed_table": (
        Row(
            "t1_01_softmax",
            {"hidden": "", "steps": "1000", "weight_init": "zeros", "bias_init": "zeros"},
            0.917,
            "TF1 'MNIST for ML Beginners'",
        ),
        _tf1("t1_02_900_relu", "900", "relu", 0.9831),
        _tf1("t1_03_441_relu6", "441", "relu6", 0.9817),
        _tf1("t1_04_625_441_relu6", "625,441", "relu6", 0.985),
        _tf1("t1_05_612_466_211_relu6", "612,466,211", "relu6", 0.9847),
        _tf1("t1_06_629_474_319_164_relu6", "629,474,319,164", "relu6", 0.9824),
        _tf1("t1_07_629_474_319_164_relu6_5k", "629,474,319,164", "relu6", 0.9772, steps="5000"),
        Row(
            "t1_08_516_258_sigmoid",
            {"hidden": "516,258", "act": "sigmoid"},
            0.9653,
            TF1,
            "two sigmoid layers still gain 0.07-0.74 pp in the last 1,000 steps (see each run's "
            "history) while our seeds end within 0.0005 of each other: the interval is narrower "
            "than that climb, and four of the five seeds passed 0.9653 only after step 9,000",
        ),
        Row(
            "t1_09_580_386_192_sigmoid",
            {"hidden": "580,386,192", "act": "sigmoid"},
            0.9432,
            TF1,
            "three sigmoid layers are still climbing ~1.5 pp per 2,000 steps at the end (see each "
            "run's history), so the final figure of one run depends on exactly where it stops",
        ),
        Row(
            "t1_10_dropout_as_published",
            {**DROPOUT_ROW, "dropout_at_eval": "true"},
            0.9472,
            TF1,
            "TF1 keep_prob 0.33 (drop 0.67), and the script kept dropout on while testing",
        ),
        Row(
            "t1_10_dropout_corrected",
            DROPOUT_ROW,
            0.9472,
            TF1,
            "same training as the row above, tested without dropout as it should be",
        ),
    ),
    # The MLP rows of Table 2 that this model expresses. Left out: the NumPy 784-100-10 net
    # whose sigmoid outputs are normalised to sum to 1 (not a softmax), and the CNNs.
    "course_extras": (
        Row(
            "keras_mlp_512_relu",
            {
                "hidden": "512",
                "act": "relu",
                "lr": "0.01",
                "batch_size": "128",
                "epochs": "5",
                "validation_size": "0",
                "weight_init": "glorot_uniform",
                "bias_init": "zeros",
            },
            0.9151,
            f"{COURSE}: Keras Dense defaults, all 60,000 training images",
        ),
        Row(
            "numpy_mlp_100_sigmoid",
            {
                "hidden": "100",
                "act": "sigmoid",
                "lr": "1.0",
                "batch_size": "256",
                "epochs": "10",
                "validation_size": "0",
                "weight_init": "lecun_normal",
                "bias_init": "zeros",
            },
            0.984,
            f"{COURSE}: hand-written backprop, reported 0.983-0.985",
            "not reproducible from the stated protocol: 10 epochs of a 100-unit sigmoid layer "
            "give ~0.964 here, and lr 4 or 16 (validation split) do worse, not better",
        ),
    ),
    # best_cpu: the best plain MLP (no convolutions) this project trains on a 2-core CPU within
    # 10 minutes per seed; every setting chosen on the validation split
    # (results/selection/README.md).
    #   ./launch.sh best_cpu --seeds 5 --out results/best_cpu
    # Its accuracy and time, 5 seeds trained together: results/best_cpu/table.md.
    "best_cpu": (Row("best_cpu_2x1024_affine_elastic", BEST_CPU, None, "", ""),),
    # committee_cpu: the long recipe, then seven committee members that see the digits or the net
    # differently (Meier et al. 2011: digits width-normalised to 10-20 pixels), each best_cpu's
    # recipe (the long recipe's seed 0 first: it was judged on validation before the rest ran):
    #   ./launch.sh committee_cpu --row 1 --seeds 1 --out results/committee_cpu
    #   ./launch.sh committee_cpu --seeds 1 --out results/committee_cpu
    #   ./launch.sh committee_cpu --row 1 --seeds 3 --out results/committee_cpu
    # The committee of their work folders: results/committee_cpu/README.md.
    "committee_cpu": (
        Row("long_2x1024_affine_elastic", LONG_CPU),
        *(
            Row(f"width{n}_2x1024", {**BEST_CPU, "preprocess": f"width{n}"})
            for n in (10, 12, 14, 16, 18, 20)
        ),
        Row("3x800_affine_elastic", {**BEST_CPU, "hidden": "800,800,800"}),
    ),
    # committee_v2: members as long as the long recipe or longer (issue 25), fixed before any was
    # trained: the recipe for 600 epochs (seed 0 first, judged on validation, then seeds 1 and 2),
    # two other architectures, and the three snapshots of a cyclic run:
    #   ./launch.sh committee_v2 --row 1 --seeds 1 --out results/committee_v2
    #   ./launch.sh committee_v2 --row 1 --seeds 3 --out results/committee_v2
    #   ./launch.sh committee_v2 --seeds 1 --out results/committee_v2  # rows 2-4: row 1 is done
    # Their committees (rules: results/selection/committee_v2.md): results/committee_v2/README.md.
    "committee_v2": (
        Row("long600_2x1024", {**LONG_CPU, "epochs": "600"}),
        Row("long_2x1536", {**LONG_CPU, "hidden": "1536,1536"}),
        Row("long_3x800", {**LONG_CPU, "hidden": "800,800,800"}),
        Row("snapshots_2x1024", SNAPSHOTS_CPU),
    ),
    # best_gpu: aimed at >= 99.6% (Ciresan et al. 2010 reached 99.65% with a 784-2500-2000-1500-
    # 1000-500-10 net and about 800 epochs of deformed digits). Not yet run on a GPU: 1,000 epochs
    # are 215,000 steps of batch 256 and about 4e15 FLOP of matrix products, so 4-8 minutes on one
    # H100 if a step takes 1-2 ms (an estimate, not a measurement); its accuracy is unmeasured.
    #   ./launch.sh best_gpu --seeds 3 --out results/best_gpu
    "best_gpu": (
        Row(
            "best_gpu_5_layer_affine_elastic",
            BEST_GPU,
            0.9965,
            "Ciresan et al. 2010 (784-2500-2000-1500-1000-500-10, 0.35% error)",
        ),
    ),
}


# Studies: the classic lessons of fully connected networks, each sized to about 30 minutes on a
# 2-core CPU with 3 seeds per cell (results/studies/NAME/README.md has the command and findings):
#   ./launch.sh NAME --seeds 3 --out results/studies/NAME
# Unless a study sets them, every cell keeps the tutorial protocol: SGD lr 0.5, batch 100, 10,000
# steps, every weight and bias from N(0, 0.01^2). Layers are 128 wide to fit the time.
DEPTHS = ("128", "128,128", "128,128,128", "128,128,128,128")
STUDIES: dict[str, Study] = {
    # Where N(0, 0.01^2) weights and saturating activations stop a deeper net learning.
    "activation_depth": Study((Axis("act", activations.NAMES), Axis("hidden", DEPTHS))),
    # Symmetry (zeros) and vanishing signals (small normal) against fan-scaled initialisers, at
    # depth 4; biases keep the tutorial's N(0, 0.01^2).
    "init_activation": Study(
        (
            Axis("act", ("relu", "sigmoid", "tanh")),
            Axis("weight_init", ("normal", "zeros", "lecun_normal", "glorot_uniform", "he_normal")),
        ),
        {"hidden": DEPTHS[-1]},
    ),
    # What dropout costs or gains at each width: drop rates per width of two layers.
    "dropout_width": Study(
        (
            Axis("hidden", ("32,32", "128,128", "512,512")),
            Axis("dropout", ("0", "0.1", "0.2", "0.3", "0.4", "0.5")),
        )
    ),
    # The learning-rate window of each optimiser on the tutorial's two-layer net; 5,000 steps.
    "optimizer_lr": Study(
        (
            Axis("optimizer", ("sgd", "momentum", "adam")),
            Axis("lr", ("0.001", "0.003", "0.01", "0.03", "0.1", "0.3", "1")),
        ),
        {"hidden": "625,441", "act": "relu6", "steps": "5000"},
    ),
}

# Searches: named spaces of `launch.sh search NAME` (mlp_jax/campaign/space.py says how a
# parameter is written; --param adds or overrides one).
SPACES: dict[str, Space] = {
    # The studies' lessons searched at once, under their protocol (1,000,000 training examples a
    # trial: --examples=1000000): results/search/README.md.
    "mlp": Space(
        tuple(
            parse_param(text)
            for text in (
                "hidden=layers:1:3:64:1024",
                "act=cat:relu,relu6,elu,gelu,swish,tanh",
                "optimizer=cat:sgd,momentum,nesterov",
                "lr=float:0.003:1:log",
                "momentum=float:0.5:0.99@optimizer=momentum|nesterov",
                "batch_size=int:32:512:log",
                "dropout=float:0:0.5",
                "weight_init=cat:normal,he_normal,glorot_uniform",
                "init_scale=float:0.001:0.1:log@weight_init=normal",
                "schedule=cat:constant,cosine,warmup_cosine,onecycle",
            )
        )
    ),
}

NAME_FORMAT = "letters, digits, '_', '.' and '-'"


def study(name: str, axis_texts: Sequence[str] = (), extra: Sequence[str] = ()) -> Study | None:
    """Return the study called `name`, typed as `axis_texts` or named in STUDIES; None for a grid.

    `extra` are the flags given to every run, which must not set an axis.
    """
    if axis_texts:
        if name in GRIDS or name in STUDIES:
            raise InputError(f"study name {name!r} is a named grid or study; choose another name")
        if not re.fullmatch(r"[\w.-]+", name):
            raise InputError(f"study name {name!r} is not a folder name; accepted: {NAME_FORMAT}")
        found = parse_study(axis_texts)
    else:
        found = STUDIES.get(name)
    if found:
        check_extra(found, extra)
    return found


def rows_of(
    name: str, axis_texts: Sequence[str] = (), extra: Sequence[str] = ()
) -> tuple[Row, ...]:
    """Return the rows of grid `name`, or the cells of study `name` (typed or named)."""
    found = study(name, axis_texts, extra)
    return found.rows() if found else get(name)


def get(name: str) -> tuple[Row, ...]:
    """Return the rows of the named grid or study `name`."""
    if name in STUDIES:
        return STUDIES[name].rows()
    if name not in GRIDS:
        raise InputError(
            f"unknown grid {name!r}; accepted: {', '.join([*GRIDS, *STUDIES])}, or "
            "'study NAME --axis FLAG=V1,V2 ...'"
        )
    return GRIDS[name]


def find_row(name: str) -> Row | None:
    """Return the row called `name` in any grid, or None."""
    return next((row for grid in GRIDS.values() for row in grid if row.name == name), None)


def select(rows: tuple[Row, ...], which: str) -> tuple[Row, ...]:
    """Return the row numbered `which` (1-based) or named `which`; all rows when it is empty."""
    if not which:
        return rows
    for i, row in enumerate(rows, 1):
        if which in (str(i), row.name):
            return (row,)
    raise InputError(f"unknown row {which!r}; accepted: 1..{len(rows)} or a row name")
