"""Training: optimiser and loss from the config, a scanned and vmapped loop, evaluation."""

from collections.abc import Callable, Sequence
import dataclasses
import functools
import time
from typing import Protocol

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlp_jax.core import augment, chain_rule, models, optim, parallel
from mlp_jax.core.config import Config
from mlp_jax.core.data import Dataset
from mlp_jax.core.errors import InputError


def make_model(cfg: Config) -> models.MLP:
    """Return the MLP that `cfg` describes."""
    return models.MLP(
        hidden=cfg.hidden,
        act=cfg.act,
        dropout=cfg.dropout,
        input_dropout=cfg.input_dropout,
        batch_norm=cfg.batch_norm,
        leaky_slope=cfg.leaky_slope,
        dtype=None if cfg.matmul_dtype == "float32" else jnp.dtype(cfg.matmul_dtype),
        kernel_init=models.initializer(cfg.weight_init, cfg.init_scale, cfg.init_constant),
        bias_init=models.initializer(
            cfg.bias_init, cfg.init_scale, cfg.init_constant, accepted=models.BIAS_INITS
        ),
    )


def make_schedule(cfg: Config, total_steps: int) -> optax.ScalarOrSchedule:
    """Return the learning rate, constant or as a schedule over `total_steps`."""
    return optim.SCHEDULES[cfg.schedule](cfg, total_steps)


def learning_rate(cfg: Config, total_steps: int, step: int) -> float:
    """Return the learning rate of step `step`."""
    schedule = make_schedule(cfg, total_steps)
    return float(schedule(step)) if callable(schedule) else schedule


def make_optimizer(cfg: Config, total_steps: int) -> optax.GradientTransformation:
    """Return the Optax optimiser that `cfg` names, with coupled weight decay if asked."""
    entry = optim.OPTIMIZERS[cfg.optimizer]
    optimizer = entry.build(make_schedule(cfg, total_steps), cfg)
    if cfg.weight_decay and not entry.decays_weights:
        return optax.chain(optax.add_decayed_weights(cfg.weight_decay), optimizer)
    return optimizer


def loss_value(
    logits: jax.Array, labels: jax.Array, kind: str, smoothing: float = 0.0
) -> jax.Array:
    """Return the batch-mean loss `kind` (`optim.LOSSES`) against labels smoothed by `smoothing`."""
    return optim.LOSSES[kind](logits, labels, smoothing)


@flax.struct.dataclass
class Replica:
    """One independently seeded training run; a leading axis stacks several."""

    params: dict  # the model's variables: "params", and "batch_stats" with batch norm
    opt_state: optax.OptState
    ema: dict | None  # moving average of params["params"], when --ema is on
    order: jax.Array  # the image order of the epoch the last chunk ended in
    order_key: jax.Array
    dropout_key: jax.Array


def epoch_order(order_key: jax.Array, epoch: jax.Array, num_train: int) -> jax.Array:
    """Return the order epoch `epoch` visits the training images in: TF1 next_batch's fresh
    permutation every epoch."""
    return jax.random.permutation(jax.random.fold_in(order_key, epoch), num_train)


def init_replica(
    seed: jax.Array,
    data: Dataset,
    *,
    model: models.MLP,
    tx: optax.GradientTransformation,
    ema: bool = False,
) -> Replica:
    """Return a fresh replica for the integer `seed`."""
    init_key, order_key, dropout_key = jax.random.split(jax.random.key(seed), 3)
    num_train, num_inputs = data.train_x.shape
    params = model.init(init_key, jnp.zeros((1, num_inputs)))
    return Replica(
        params=params,
        opt_state=tx.init(params["params"]),
        ema=params["params"] if ema else None,
        order=epoch_order(order_key, 0, num_train),
        order_key=order_key,
        dropout_key=dropout_key,
    )


def init_replicas(cfg: Config, seeds: jax.Array, data: Dataset) -> Replica:
    """Return fresh replicas of `cfg`'s run for the integer `seeds`, stacked."""
    tx = make_optimizer(cfg, cfg.total_steps(data.train_x.shape[0]))
    init = functools.partial(init_replica, model=make_model(cfg), tx=tx, ema=cfg.ema > 0)
    return jax.vmap(init, in_axes=(0, None))(seeds, data)


def chunk_orders(
    rep: Replica, first_step: jax.Array, count: int, num_train: int, per_epoch: int
) -> tuple[jax.Array, jax.Array]:
    """Return the orders of the epochs that `count` steps from `first_step` visit, and the
    number of the first: the order carried in, then each new epoch's, each made only once."""
    first_epoch = jnp.maximum(first_step - 1, 0) // per_epoch  # the carried order's epoch
    last_epoch = (first_step + count - 1) // per_epoch

    def new(epoch):  # the predicate is the same for every replica, so vmap keeps the cond
        return jax.lax.cond(
            epoch <= last_epoch,
            lambda: epoch_order(rep.order_key, epoch, num_train),
            lambda: jnp.zeros(num_train, rep.order.dtype),
        )

    news = jax.lax.map(new, first_epoch + jnp.arange(1, (count - 1) // per_epoch + 2))
    return jnp.concatenate([rep.order[None], news]), first_epoch


def clip_max_norm(params: dict, limit: float) -> dict:
    """Scale each unit's incoming weight vector (a kernel column) down to L2 norm `limit`."""

    def clip(path, w):
        if path[-1].key != "kernel":
            return w
        norms = jnp.linalg.norm(w, axis=0, keepdims=True)
        return w * jnp.minimum(1.0, limit / jnp.maximum(norms, 1e-12))

    return jax.tree_util.tree_map_with_path(clip, params)


def update_ema(ema: dict, params: dict, decay: float, step: jax.Array) -> dict:
    """Move the average towards `params`; early steps use a smaller decay, as TF's EMA does."""
    rate = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda e, p: rate * e + (1 - rate) * p, ema, params)


def replica_step(
    rep: Replica,
    step: jax.Array,
    batch: jax.Array,
    data: Dataset,
    *,
    model: models.MLP,
    tx: optax.GradientTransformation,
    cfg: Config,
    augmenter: augment.Augment | None,
    batch_sharding: jax.sharding.NamedSharding | None = None,
) -> tuple[Replica, jax.Array]:
    """Take one optimiser step on the training images `batch` (indices); return the loss.

    With `batch_sharding`, the batch is split across devices and XLA reduces the gradients.
    """
    x, y = data.train_x[batch], data.train_y[batch]
    if batch_sharding is not None:
        x, y = jax.lax.with_sharding_constraint((x, y), batch_sharding)
    step_key = jax.random.fold_in(rep.dropout_key, step)
    if augmenter:
        x = augmenter(jax.random.fold_in(step_key, 1), x)

    def objective(trainable):
        logits, state = model.apply(
            {**rep.params, "params": trainable},
            x,
            train=True,
            rngs={"dropout": step_key},
            mutable=["batch_stats"],
        )
        return loss_value(logits, y, cfg.loss, cfg.label_smoothing), state

    if cfg.grad == "manual":  # one forward pass serves the loss and the chain rule
        zs, acts = chain_rule.forward(rep.params, x, cfg.act, cfg.leaky_slope)
        value, state = loss_value(zs[-1], y, cfg.loss, cfg.label_smoothing), {}
        grads = chain_rule.backward(
            rep.params, zs, acts, y, cfg.act, cfg.loss, cfg.leaky_slope, cfg.label_smoothing
        )["params"]
    else:
        (value, state), grads = jax.value_and_grad(objective, has_aux=True)(rep.params["params"])
    updates, opt_state = tx.update(grads, rep.opt_state, rep.params["params"])
    trainable = optax.apply_updates(rep.params["params"], updates)
    if cfg.max_norm:
        trainable = clip_max_norm(trainable, cfg.max_norm)
    ema = update_ema(rep.ema, trainable, cfg.ema, step) if cfg.ema else rep.ema
    return rep.replace(
        params={**rep.params, **state, "params": trainable}, opt_state=opt_state, ema=ema
    ), value


def per_replica(fn: Callable) -> Callable:
    """Map `fn` over the leading replica axis of its first argument (the rest are shared)."""

    def mapped(replicas, *shared):
        if jax.tree.leaves(replicas)[0].shape[0] == 1:
            # A lone replica skips vmap: XLA's batched matmul is ~10% slower on CPU.
            out = fn(jax.tree.map(lambda x: x[0], replicas), *shared)
            return jax.tree.map(lambda x: x[None], out)
        return jax.vmap(fn, in_axes=(0,) + (None,) * len(shared))(replicas, *shared)

    return mapped


def train_chunk(
    replica: Replica, data: Dataset, steps: jax.Array, *, cfg: Config, **step_args
) -> tuple[Replica, jax.Array]:
    """Run `steps` (consecutive step numbers) on one replica; return it and the losses."""
    num_train = data.train_x.shape[0]
    per_epoch = num_train // cfg.batch_size
    # Loop constants: an order carried from step to step would be copied at every step (-8%).
    orders, first_epoch = chunk_orders(replica, steps[0], len(steps), num_train, per_epoch)

    def step(rep, number):
        start = (number // per_epoch - first_epoch, number % per_epoch * cfg.batch_size)
        batch = jax.lax.dynamic_slice(orders, start, (1, cfg.batch_size))[0]
        return replica_step(rep, number, batch, data, cfg=cfg, **step_args)

    replica, losses = jax.lax.scan(step, replica, steps)
    return replica.replace(order=orders[steps[-1] // per_epoch - first_epoch]), losses


# Evaluation's dropout stream; training folds in step numbers, which stay below it.
EVAL_STREAM = 2**31 - 1


def predict(
    model: models.MLP, params: dict, x: jax.Array, dropout_key: jax.Array | None = None
) -> jax.Array:
    """Return predicted classes; with `dropout_key`, dropout stays on (TF1 scripts' testing)."""
    if dropout_key is None:
        return jnp.argmax(model.apply(params, x), axis=-1)
    return jnp.argmax(model.apply(params, x, train=True, rngs={"dropout": dropout_key}), axis=-1)


def eval_dropout_key(rep: Replica, dropout_at_eval: bool) -> jax.Array | None:
    """Return the key of evaluation's dropout, or None when evaluation is deterministic."""
    return jax.random.fold_in(rep.dropout_key, EVAL_STREAM) if dropout_at_eval else None


def eval_params(rep: Replica) -> dict:
    """Return the variables evaluation uses: the moving average of the weights when kept."""
    return rep.params if rep.ema is None else {**rep.params, "params": rep.ema}


def count_correct(
    model: models.MLP,
    rep: Replica,
    data: Dataset,
    dropout_at_eval: bool = False,
    batch_sharding: jax.sharding.NamedSharding | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Return how many validation and test images one replica classifies right (whole splits)."""
    key, params = eval_dropout_key(rep, dropout_at_eval), eval_params(rep)

    def correct(x, y):
        if batch_sharding is not None:
            x, y = jax.lax.with_sharding_constraint((x, y), batch_sharding)
        return jnp.sum(predict(model, params, x, key) == y)

    return correct(data.val_x, data.val_y), correct(data.test_x, data.test_y)


def probabilities(
    cfg: Config,
    replicas: Replica,
    x: jax.Array,
    views: augment.Views = augment.TEST_VIEWS["none"],
) -> jax.Array:
    """Return each replica's class probabilities for the flat images `x`, shape (replicas, N,
    classes), computed as its accuracy is measured (moving average, dropout at evaluation):
    the mean softmax over `views` of each image (`augment.TEST_VIEWS`), the image itself by
    default."""
    model = make_model(cfg)

    def softmax(rep, images):
        key = eval_dropout_key(rep, cfg.dropout_at_eval)
        variables = eval_params(rep)
        if key is None:
            return jax.nn.softmax(model.apply(variables, images))
        return jax.nn.softmax(model.apply(variables, images, train=True, rngs={"dropout": key}))

    def one(rep, images):
        return sum(softmax(rep, augment.shift(images, *view)) for view in views) / len(views)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))(replicas, x)


def finished(diverged_at_step: Sequence[int | None], probs: jax.Array) -> np.ndarray:
    """Return which replicas may enter an ensemble: those whose loss never diverged and whose
    class probabilities `probs` (replicas, ...) are all finite; one NaN would poison the mean."""
    finite = np.isfinite(np.asarray(probs)).reshape(len(diverged_at_step), -1).all(axis=1)
    return np.array([step is None for step in diverged_at_step], bool) & finite


def committee(
    probs: jax.Array, members: np.ndarray, weights: np.ndarray | None = None
) -> jax.Array:
    """Return the class probabilities averaged over the `members` (a mask) of the replicas,
    weighted by `weights` (one per replica, renormalised over the members; None: equal)."""
    chosen = np.flatnonzero(members)
    if weights is None:
        return jnp.asarray(probs)[chosen].mean(axis=0)
    share = np.asarray(weights, np.float64)[chosen]
    return jnp.tensordot(
        jnp.asarray(share / share.sum(), jnp.float32), jnp.asarray(probs)[chosen], axes=1
    )


def ensemble_label(members: int, replicas: int) -> str:
    """Return how a printout names an ensemble: `ensemble of 2 of 3 finished replicas`."""
    return f"ensemble of {members} of {replicas} finished replicas"


def ensemble_accuracy(probs: jax.Array, labels: jax.Array, members: np.ndarray) -> float | None:
    """Return the accuracy of the members' averaged softmax (a committee of networks); None
    when no replica is a member."""
    if not members.any():
        return None
    correct = int(jnp.sum(jnp.argmax(committee(probs, members), axis=-1) == labels))
    return correct / len(labels)  # exact, as `fraction` is


def fraction(correct: np.ndarray, total: int) -> np.ndarray:
    """Return exact accuracies from counts (NaN for an empty split)."""
    return correct / total if total else np.full(correct.shape, np.nan)


def replica_seeds(cfg: Config) -> list[int]:
    """Return the seeds of `cfg`'s replicas: --seed and the --num_seeds - 1 after it."""
    return [cfg.seed + i for i in range(cfg.num_seeds)]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One evaluation during training, as `fit` passes it to `on_eval`: every replica's metrics
    (arrays over replicas) and the run's speed, learning rate, divergence and seconds so far."""

    step: int
    train_loss: np.ndarray  # mean loss over the steps since the last evaluation
    val_accuracy: np.ndarray
    test_accuracy: np.ndarray
    steps_per_sec: float  # of the chunk just trained, compilation excluded
    learning_rate: float  # of the last step taken
    diverged_at_step: tuple[int | None, ...]
    train_seconds: float
    eval_seconds: float

    def curve_point(self) -> dict:
        """Return what a run's history keeps of it: the step and the per-replica metrics."""
        return {
            "step": self.step,
            "train_loss": self.train_loss.tolist(),
            "val_accuracy": self.val_accuracy.tolist(),
            "test_accuracy": self.test_accuracy.tolist(),
        }


@dataclasses.dataclass
class FitResult:
    """What training produced: the trained replicas, their metrics and timings."""

    replicas: Replica
    seeds: list[int]
    steps: int
    trained_steps: int  # in this call; fewer than `steps` when it resumed from a checkpoint
    train_loss: np.ndarray  # (replicas,) mean loss over the last evaluation interval
    val_accuracy: np.ndarray
    test_accuracy: np.ndarray
    ensemble_test_accuracy: float | None  # of the finished replicas' averaged softmax
    ensemble_members: int | None  # replicas that entered it; None for a lone replica
    diverged_at_step: list[int | None]
    history: list[dict]  # per evaluation: `Evaluation.curve_point`
    n_params: int
    device_count: int
    compile_seconds: float
    train_seconds: float
    eval_seconds: float

    @property
    def params(self) -> dict:
        """Parameters of every replica, stacked on a leading axis."""
        return self.replicas.params

    @property
    def steps_per_sec(self) -> float:
        """Training steps per second of wall time, compilation and evaluation excluded."""
        return self.steps / self.train_seconds if self.train_seconds else float("nan")


def _first_nonfinite(losses: np.ndarray, start: int, diverged: list[int | None]) -> None:
    """Record, for each replica not yet diverged, the first step whose loss is not finite."""
    for r, row in enumerate(losses):
        bad = np.flatnonzero(~np.isfinite(row))
        if diverged[r] is None and bad.size:
            diverged[r] = start + int(bad[0])


def check_batch_fits(cfg: Config, num_train: int) -> None:
    """Raise InputError when one batch needs more images than the training split holds."""
    if cfg.batch_size > num_train:
        raise InputError(
            f"--batch_size {cfg.batch_size} is larger than the training split ({num_train} "
            f"images once --validation_size {cfg.validation_size} are held out); accepted: "
            f"1..{num_train}, or a smaller --validation_size"
        )


def chunk_program(
    cfg: Config, model: models.MLP, tx: optax.GradientTransformation, where: parallel.Placement
) -> Callable:
    """Return the jitted program that trains every replica for a chunk of steps, laid out as
    `where` says, the replicas' buffers donated."""
    augmenter = augment.make(cfg.augmentations(), cfg.strengths())
    return jax.jit(
        per_replica(
            functools.partial(
                train_chunk,
                model=model,
                tx=tx,
                cfg=cfg,
                augmenter=augmenter,
                batch_sharding=where.batch,
            )
        ),
        donate_argnums=0,
        out_shardings=(where.replicas, where.whole),
    )


@dataclasses.dataclass
class Progress:
    """What the training loop carries besides the replicas; a checkpoint saves both."""

    step: int
    diverged_at_step: list[int | None]
    interval_losses: np.ndarray  # (replicas, steps): the losses since the last evaluation
    history: list[dict] = dataclasses.field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0

    @classmethod
    def fresh(cls, replicas: int) -> "Progress":
        """Return the progress of `replicas` replicas before their first step."""
        return cls(0, [None] * replicas, np.zeros((replicas, 0), np.float32))

    def add_chunk(self, losses: np.ndarray, seconds: float) -> None:
        """Count a trained chunk: its losses (replicas, steps), divergence and seconds."""
        _first_nonfinite(losses, self.step, self.diverged_at_step)
        self.step += losses.shape[1]
        self.interval_losses = np.concatenate([self.interval_losses, losses], axis=1)
        self.train_seconds += seconds

    def add_evaluation(self, evaluation: Evaluation) -> None:
        """Keep an evaluation in the history and start the next interval's losses."""
        self.history.append(evaluation.curve_point())
        self.interval_losses = np.zeros((len(self.interval_losses), 0), np.float32)


class Store(Protocol):
    """Where a run's state goes between chunks: `checkpoints.Workdir`."""

    def restore(self, fresh: Replica) -> tuple[Replica, Progress] | None: ...

    def save(self, replicas: Replica, progress: Progress) -> None: ...


def next_stop(step: int, total: int, cfg: Config) -> int:
    """Return where the chunk starting at `step` ends: the next evaluation, checkpoint (every
    --checkpoint_every and --keep_every steps) or end."""
    every = [cfg.eval_every, cfg.checkpoint_every, cfg.keep_every]
    return min([total] + [(step // n + 1) * n for n in every if n])


def evaluator(cfg: Config, where: parallel.Placement) -> Callable:
    """Return the jitted program counting every replica's right answers on validation and test."""
    count = functools.partial(
        count_correct,
        make_model(cfg),
        dropout_at_eval=cfg.dropout_at_eval,
        batch_sharding=where.batch,
    )
    return jax.jit(per_replica(count), out_shardings=where.whole)


def cache_compilations(folder: str) -> None:
    """Keep every program this process compiles in `folder` (JAX's persistent compilation cache)
    and load from there those a run compiled before: same programs, no compile time."""
    jax.config.update("jax_compilation_cache_dir", folder)
    # Every program, however quick to compile: a run's few small ones add up to seconds.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


class Programs:
    """A run's compiled programs: evaluation, and training for each chunk length met (each
    compiled once), with the seconds compiling took."""

    def __init__(self, cfg: Config, where: parallel.Placement, replicas: Replica, data: Dataset):
        tx = make_optimizer(cfg, cfg.total_steps(data.train_x.shape[0]))
        self.train = chunk_program(cfg, make_model(cfg), tx, where)
        self.compiled: dict[int, Callable] = {}
        tic = time.perf_counter()
        self.evaluate = evaluator(cfg, where).lower(replicas, data).compile()
        self.compile_seconds = time.perf_counter() - tic

    def chunk(self, replicas: Replica, data: Dataset, steps: jax.Array) -> Callable:
        """Return the compiled program that trains a chunk as long as `steps`."""
        if len(steps) not in self.compiled:
            tic = time.perf_counter()
            self.compiled[len(steps)] = self.train.lower(replicas, data, steps).compile()
            self.compile_seconds += time.perf_counter() - tic
        return self.compiled[len(steps)]


def start(
    cfg: Config, data: Dataset, where: parallel.Placement, store: Store | None
) -> tuple[Replica, Progress]:
    """Return fresh replicas and progress, or the `store`'s last saved ones, laid out as `where`
    says."""
    init = jax.jit(functools.partial(init_replicas, cfg), out_shardings=where.replicas)
    replicas = init(jnp.array(replica_seeds(cfg)), data)
    restored = store.restore(replicas) if store else None
    if restored is None:
        return replicas, Progress.fresh(cfg.num_seeds)
    return jax.device_put(restored[0], where.replicas), restored[1]


def run_chunk(
    program: Callable, replicas: Replica, data: Dataset, steps: jax.Array, progress: Progress
) -> tuple[Replica, float]:
    """Train every replica through `steps` with the compiled `program` and count the chunk in
    `progress`; return the replicas and the seconds it took."""
    tic = time.perf_counter()
    replicas, losses = program(replicas, data, steps)
    losses = np.asarray(losses)  # waits for the chunk: the only host sync per chunk
    seconds = time.perf_counter() - tic
    progress.add_chunk(losses, seconds)
    return replicas, seconds


def run_evaluation(
    cfg: Config,
    program: Callable,
    replicas: Replica,
    data: Dataset,
    progress: Progress,
    steps_per_sec: float,
) -> Evaluation:
    """Measure every replica on the validation and test splits with the compiled `program`;
    keep the evaluation in `progress` and return it."""
    tic = time.perf_counter()
    val, test = program(replicas, data)
    val = fraction(np.asarray(val), len(data.val_y))
    test = fraction(np.asarray(test), len(data.test_y))
    progress.eval_seconds += time.perf_counter() - tic
    evaluation = Evaluation(
        step=progress.step,
        train_loss=progress.interval_losses.mean(axis=1),
        val_accuracy=val,
        test_accuracy=test,
        steps_per_sec=steps_per_sec,
        learning_rate=learning_rate(cfg, cfg.total_steps(len(data.train_y)), progress.step - 1),
        diverged_at_step=tuple(progress.diverged_at_step),
        train_seconds=progress.train_seconds,
        eval_seconds=progress.eval_seconds,
    )
    progress.add_evaluation(evaluation)
    return evaluation


def fit_result(
    cfg: Config,
    data: Dataset,
    replicas: Replica,
    progress: Progress,
    trained_steps: int,
    compile_seconds: float,
    device_count: int,
) -> FitResult:
    """Return what training produced, with the ensemble of the finished replicas when several."""
    last = progress.history[-1]
    ensemble = members = None
    if cfg.num_seeds > 1:
        probs = probabilities(cfg, replicas, data.test_x)
        members = finished(progress.diverged_at_step, probs)
        ensemble = ensemble_accuracy(probs, data.test_y, members)
    return FitResult(
        replicas=replicas,
        seeds=replica_seeds(cfg),
        steps=progress.step,
        trained_steps=trained_steps,
        train_loss=np.array(last["train_loss"]),
        val_accuracy=np.array(last["val_accuracy"]),
        test_accuracy=np.array(last["test_accuracy"]),
        ensemble_test_accuracy=ensemble,
        ensemble_members=None if members is None else int(members.sum()),
        diverged_at_step=progress.diverged_at_step,
        history=progress.history,
        n_params=models.count_params(replicas.params["params"]) // cfg.num_seeds,
        device_count=device_count,
        compile_seconds=compile_seconds,
        train_seconds=progress.train_seconds,
        eval_seconds=progress.eval_seconds,
    )


def fit(
    cfg: Config,
    data: Dataset,
    on_eval: Callable[[Evaluation], bool | None] | None = None,
    visible: Sequence[jax.Device] | None = None,
    store: Store | None = None,
) -> FitResult:
    """Train `cfg.num_seeds` replicas of the configured MLP on `data`, evaluating as it goes.

    Training uses `cfg.devices` of the `visible` devices (default: the default platform's).
    `on_eval` sees each evaluation; returning True stops training. With a `store`, training
    starts from its last state and saves its state after every chunk.
    """
    check_batch_fits(cfg, data.train_x.shape[0])
    where = parallel.placement(cfg, parallel.select_devices(cfg.devices, visible))
    data = jax.device_put(data, where.whole)
    replicas, progress = start(cfg, data, where, store)
    first_step, total = progress.step, cfg.total_steps(data.train_x.shape[0])
    programs = Programs(cfg, where, replicas, data)
    while progress.step < total and None in progress.diverged_at_step:
        steps = jnp.arange(progress.step, next_stop(progress.step, total, cfg), dtype=jnp.int32)
        program = programs.chunk(replicas, data, steps)
        replicas, seconds = run_chunk(program, replicas, data, steps, progress)
        stop = False
        if progress.step % cfg.eval_every == 0 or progress.step == total:
            speed = len(steps) / seconds
            evaluation = run_evaluation(cfg, programs.evaluate, replicas, data, progress, speed)
            stop = bool(on_eval and on_eval(evaluation))
        if store:
            store.save(replicas, progress)
        if stop:
            break
    trained = progress.step - first_step
    return fit_result(
        cfg, data, replicas, progress, trained, programs.compile_seconds, len(where.devices)
    )


def predict_test_split(
    cfg: Config, result: FitResult, data: Dataset, replica: int = 0
) -> np.ndarray:
    """Return one replica's predicted test classes, measured as its accuracy was."""
    rep = jax.tree.map(lambda x: x[replica], result.replicas)
    key = eval_dropout_key(rep, cfg.dropout_at_eval)
    return np.asarray(
        jax.jit(functools.partial(predict, make_model(cfg)))(eval_params(rep), data.test_x, key)
    )
