"""Training: optimiser and loss from the config, a scanned and vmapped loop, evaluation."""

from collections.abc import Callable
import dataclasses
import functools
import time

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlp_jax import models
from mlp_jax.config import Config
from mlp_jax.data import Dataset


def make_model(cfg: Config) -> models.MLP:
    """Return the MLP that `cfg` describes."""
    return models.MLP(
        hidden=cfg.hidden, act=cfg.act, dropout=cfg.dropout, leaky_slope=cfg.leaky_slope,
        kernel_init=models.initializer(cfg.weight_init, cfg.init_scale, cfg.init_constant),
        bias_init=models.initializer(cfg.bias_init, cfg.init_scale, cfg.init_constant,
                                     accepted=models.BIAS_INITS))


def make_schedule(cfg: Config, total_steps: int) -> optax.ScalarOrSchedule:
    """Return the learning rate, constant or as a schedule over `total_steps`."""
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, total_steps)
    if cfg.schedule == "warmup_cosine":
        warmup = max(1, int(cfg.warmup_fraction * total_steps))
        return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, total_steps)
    return cfg.lr


def make_optimizer(cfg: Config, total_steps: int) -> optax.GradientTransformation:
    """Return the Optax optimiser that `cfg` names, with coupled weight decay if asked."""
    lr = make_schedule(cfg, total_steps)
    optimizer = {
        "sgd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=cfg.momentum),
        "nesterov": lambda: optax.sgd(lr, momentum=cfg.momentum, nesterov=True),
        "adam": lambda: optax.adam(lr),
        "adamw": lambda: optax.adamw(lr, weight_decay=cfg.weight_decay),
        "rmsprop": lambda: optax.rmsprop(lr),
    }[cfg.optimizer]()
    if cfg.weight_decay and cfg.optimizer != "adamw":
        return optax.chain(optax.add_decayed_weights(cfg.weight_decay), optimizer)
    return optimizer


def loss_value(logits: jax.Array, labels: jax.Array, kind: str) -> jax.Array:
    """Return the batch-mean loss: softmax cross-entropy, or squared error of the softmax."""
    if kind == "mse":
        error = jax.nn.softmax(logits) - jax.nn.one_hot(labels, logits.shape[-1])
        return 0.5 * jnp.mean(jnp.sum(error**2, axis=-1))
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@flax.struct.dataclass
class Replica:
    """One independently seeded training run; a leading axis stacks several."""

    params: dict
    opt_state: optax.OptState
    order: jax.Array  # this epoch's permutation of the training images
    order_key: jax.Array
    dropout_key: jax.Array


def init_replica(seed: jax.Array, data: Dataset, *, model: models.MLP,
                 tx: optax.GradientTransformation) -> Replica:
    """Return a fresh replica for the integer `seed`."""
    init_key, order_key, dropout_key = jax.random.split(jax.random.key(seed), 3)
    num_train, num_inputs = data.train_x.shape
    params = model.init(init_key, jnp.zeros((1, num_inputs)))
    return Replica(params=params, opt_state=tx.init(params),
                   order=jnp.zeros(num_train, jnp.int32),
                   order_key=order_key, dropout_key=dropout_key)


def replica_step(rep: Replica, step: jax.Array, data: Dataset, *, model: models.MLP,
                 tx: optax.GradientTransformation, loss: str, batch_size: int
                 ) -> tuple[Replica, jax.Array]:
    """Take one optimiser step on the next batch of this epoch's permutation; return the loss."""
    num_train = data.train_x.shape[0]
    steps_per_epoch = num_train // batch_size
    position = step % steps_per_epoch
    # TF1 next_batch: a fresh permutation at the start of every epoch.
    order = jax.lax.cond(
        position == 0,
        lambda: jax.random.permutation(
            jax.random.fold_in(rep.order_key, step // steps_per_epoch), num_train),
        lambda: rep.order)
    batch = jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)
    x, y = data.train_x[batch], data.train_y[batch]

    def objective(params):
        logits = model.apply(params, x, train=True,
                             rngs={"dropout": jax.random.fold_in(rep.dropout_key, step)})
        return loss_value(logits, y, loss)

    value, grads = jax.value_and_grad(objective)(rep.params)
    updates, opt_state = tx.update(grads, rep.opt_state, rep.params)
    params = optax.apply_updates(rep.params, updates)
    return rep.replace(params=params, opt_state=opt_state, order=order), value


def per_replica(fn: Callable) -> Callable:
    """Map `fn` over the leading replica axis of its first argument (the rest are shared)."""
    def mapped(replicas, *shared):
        if jax.tree.leaves(replicas)[0].shape[0] == 1:
            # A lone replica skips vmap: XLA's batched matmul is ~10% slower on CPU.
            out = fn(jax.tree.map(lambda x: x[0], replicas), *shared)
            return jax.tree.map(lambda x: x[None], out)
        return jax.vmap(fn, in_axes=(0,) + (None,) * len(shared))(replicas, *shared)
    return mapped


def train_chunk(replica: Replica, data: Dataset, steps: jax.Array, **step_args
                ) -> tuple[Replica, jax.Array]:
    """Run `steps` (one per scan iteration) on one replica; return it and the losses."""
    step = functools.partial(replica_step, data=data, **step_args)
    return jax.lax.scan(step, replica, steps)


# Evaluation's dropout stream; training folds in step numbers, which stay below it.
EVAL_STREAM = 2**31 - 1


def predict(model: models.MLP, params: dict, x: jax.Array,
            dropout_key: jax.Array | None = None) -> jax.Array:
    """Return predicted classes; with `dropout_key`, dropout stays on (TF1 scripts' testing)."""
    if dropout_key is None:
        return jnp.argmax(model.apply(params, x), axis=-1)
    return jnp.argmax(model.apply(params, x, train=True, rngs={"dropout": dropout_key}), axis=-1)


def eval_dropout_key(rep: Replica, dropout_at_eval: bool) -> jax.Array | None:
    """Return the key of evaluation's dropout, or None when evaluation is deterministic."""
    return jax.random.fold_in(rep.dropout_key, EVAL_STREAM) if dropout_at_eval else None


def evaluate(model: models.MLP, rep: Replica, data: Dataset, dropout_at_eval: bool = False
             ) -> tuple[jax.Array, jax.Array]:
    """Return validation and test accuracy of one replica, on the whole splits."""
    key = eval_dropout_key(rep, dropout_at_eval)
    return (jnp.mean(predict(model, rep.params, data.val_x, key) == data.val_y),
            jnp.mean(predict(model, rep.params, data.test_x, key) == data.test_y))


@dataclasses.dataclass
class FitResult:
    """What training produced: the trained replicas, their metrics and timings."""

    replicas: Replica
    seeds: list[int]
    steps: int
    train_loss: np.ndarray  # (replicas,) mean loss over the last evaluation interval
    val_accuracy: np.ndarray
    test_accuracy: np.ndarray
    diverged_at_step: list[int | None]
    history: list[dict]  # per evaluation: step, and per-replica lists of the metrics
    n_params: int
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


def fit(cfg: Config, data: Dataset, on_eval: Callable[[dict], None] | None = None) -> FitResult:
    """Train `cfg.num_seeds` replicas of the configured MLP on `data`, evaluating as it goes."""
    model = make_model(cfg)
    total = cfg.total_steps(data.train_x.shape[0])
    tx = make_optimizer(cfg, total)
    seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
    init = jax.vmap(functools.partial(init_replica, model=model, tx=tx), in_axes=(0, None))
    replicas = jax.jit(init)(jnp.array(seeds), data)
    chunk = jax.jit(per_replica(functools.partial(
        train_chunk, model=model, tx=tx, loss=cfg.loss, batch_size=cfg.batch_size)),
        donate_argnums=0)
    tic = time.perf_counter()
    evaluator = jax.jit(per_replica(functools.partial(
        evaluate, model, dropout_at_eval=cfg.dropout_at_eval))).lower(replicas, data).compile()
    compiled, compile_seconds = {}, time.perf_counter() - tic
    train_seconds = eval_seconds = 0.0
    diverged: list[int | None] = [None] * len(seeds)
    history: list[dict] = []
    start = 0
    while start < total and not all(d is not None for d in diverged):
        steps = jnp.arange(start, min(start + cfg.eval_every, total), dtype=jnp.int32)
        if len(steps) not in compiled:
            tic = time.perf_counter()
            compiled[len(steps)] = chunk.lower(replicas, data, steps).compile()
            compile_seconds += time.perf_counter() - tic
        tic = time.perf_counter()
        replicas, losses = compiled[len(steps)](replicas, data, steps)
        losses = np.asarray(losses)  # waits for the chunk: the only host sync per interval
        chunk_seconds = time.perf_counter() - tic
        train_seconds += chunk_seconds
        _first_nonfinite(losses, start, diverged)
        start += len(steps)

        tic = time.perf_counter()
        val, test = (np.asarray(a) for a in evaluator(replicas, data))
        eval_seconds += time.perf_counter() - tic
        entry = {"step": start, "train_loss": losses.mean(axis=1).tolist(),
                 "val_accuracy": val.tolist(), "test_accuracy": test.tolist()}
        history.append(entry)
        if on_eval:
            on_eval({**entry, "steps_per_sec": len(steps) / chunk_seconds,
                     "diverged_at_step": list(diverged)})

    last = history[-1]
    return FitResult(
        replicas=replicas, seeds=seeds, steps=start,
        train_loss=np.array(last["train_loss"]), val_accuracy=np.array(last["val_accuracy"]),
        test_accuracy=np.array(last["test_accuracy"]), diverged_at_step=diverged,
        history=history, n_params=models.count_params(replicas.params) // len(seeds),
        compile_seconds=compile_seconds, train_seconds=train_seconds, eval_seconds=eval_seconds)


def predict_test_split(cfg: Config, result: FitResult, data: Dataset, replica: int = 0
                       ) -> np.ndarray:
    """Return one replica's predicted test classes, measured as its accuracy was."""
    rep = jax.tree.map(lambda x: x[replica], result.replicas)
    key = eval_dropout_key(rep, cfg.dropout_at_eval)
    return np.asarray(jax.jit(functools.partial(predict, make_model(cfg)))(
        rep.params, data.test_x, key))
