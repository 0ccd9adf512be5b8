"""Searches: an Optuna study over a space (campaign/space.py), each trial a run like any other,
chosen on the validation split alone, by any number of workers on one machine or many.

    OUT/search.journal     the study (Optuna's journal file); --storage names another storage
    OUT/results.jsonl      one record per trial: the run's, plus `search`, `trial`,
                           `trial_state` (complete, pruned, failed, diverged), `pruned_at_step`,
                           `params` (the flags drawn) and `examples` (training examples seen)
    OUT/work/trial_N/      trial N's work folder; a retried trial resumes it
    OUT/workers/ID.lock    held by each live worker; OUT/search.lock: held while a worker takes
                           a trial, so that workers sharing OUT never take more than --trials
    OUT/table.*, OUT/figures/   the trials' table and Optuna's figures, written at the end
    OUT/confirm/           --confirm K: the best trial's settings retrained with seeds 1..K

Trials never see the test split: it is taken out of the data before training, and each trial
reports its validation accuracy at every evaluation (numbered 1, 2, ...) for the pruner. A trial
whose worker died (kill -9, a lost machine) is retried with the same values, resuming its work
folder: with the journal file, a worker is dead when its lock in OUT/workers is free; with a
database, when its trial's heartbeat stopped (Optuna's heartbeat). A trial recorded but not told
to the study (its worker died in between) is told from its record, never trained again.
"""

from collections.abc import Callable, Iterator
import contextlib
import dataclasses
import fcntl
import functools
import json
import math
import os
import threading
import time
import uuid
import warnings

import numpy as np
import optuna
from optuna.trial import TrialState

from mlp_jax.campaign import launcher, tables
from mlp_jax.campaign.space import Space
from mlp_jax.core import config, data, train
from mlp_jax.core.config import Config
from mlp_jax.core.errors import InputError, MachineError
from mlp_jax.store import results, runner


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its stop at the grid's end, which only an optimize loop
    allows: a search stops at `Search.target` itself."""

    def after_trial(self, study, trial, state, values) -> None:
        """Stop nothing."""


SAMPLERS: dict[str, Callable] = {
    # Multivariate TPE over groups handles conditional parameters; the constant liar keeps
    # parallel workers from drawing the same values.
    "tpe": lambda search, number: optuna.samplers.TPESampler(
        seed=search.seed + number, multivariate=True, group=True, constant_liar=True
    ),
    "random": lambda search, number: optuna.samplers.RandomSampler(seed=search.seed + number),
    # The seed shuffles the grid's order and trial N takes point N: one seed for every trial.
    "grid": lambda search, number: GridSampler(search.space.grid(), seed=search.seed),
}
PRUNERS: dict[str, Callable] = {
    # Evaluations are numbered 1, 2, ...: after 5 trials, a trial is judged from its first on.
    "median": lambda search: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    "successive_halving": lambda search: optuna.pruners.SuccessiveHalvingPruner(),
    "hyperband": lambda search: optuna.pruners.HyperbandPruner(),
    "none": lambda search: optuna.pruners.NopPruner(),
}
JOURNAL = "search.journal"
POLL_SECONDS = 2.0  # how often a worker with no trial to take looks for a dead worker's trial
STATES = ("complete", "pruned", "failed", "diverged")


@dataclasses.dataclass(frozen=True)
class Search:
    """A search: `trials` trials of `space` named `name`, every trial also given the flags
    `extra`, into folder `out`. `examples` > 0 sets each trial's steps to that many training
    examples over its batch size, evaluated `evaluations` times; `storage` is an Optuna storage
    URL or journal file (default OUT/search.journal); `heartbeat`: seconds between a database
    worker's heartbeats (a trial silent for twice that is retried)."""

    name: str
    space: Space
    out: str
    trials: int
    extra: tuple[str, ...] = ()
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    storage: str = ""
    examples: int = 0
    evaluations: int = 10
    heartbeat: int = 60

    def __post_init__(self):
        for value, registry, flag in (
            (self.sampler, SAMPLERS, "sampler"),
            (self.pruner, PRUNERS, "pruner"),
        ):
            if value not in registry:
                raise InputError(f"unknown --{flag} {value!r}; accepted: {', '.join(registry)}")
        if not self.space.params:
            raise InputError("the search samples nothing; accepted: a named space or --param")
        if self.examples:
            given = {arg.removeprefix("--").partition("=")[0] for arg in self.extra}
            clash = given & {"steps", "epochs", "eval_every"}
            if clash:
                raise InputError(
                    f"--{sorted(clash)[0]} after -- is set by --examples for each trial; "
                    "accepted: --examples, or the steps and eval_every flags without it"
                )

    @property
    def results(self) -> str:
        """The trials' records file."""
        return os.path.join(self.out, "results.jsonl")

    @property
    def target(self) -> int:
        """The trials the study ends with: `trials`, or fewer when a grid has fewer points."""
        if self.sampler != "grid":
            return self.trials
        return min(self.trials, math.prod(len(v) for v in self.space.grid().values()))


def redact(url: str) -> str:
    """Return a storage URL with its password, if any, replaced by ***."""
    if "://" not in url:
        return url
    import sqlalchemy.engine  # only for a database URL
    import sqlalchemy.exc

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:  # unparsable: shown without what follows its scheme
        return url.split("://")[0] + "://***"


def open_storage(search: Search) -> optuna.storages.BaseStorage:
    """Return the search's storage: a journal file (no server; safe for the workers of one
    machine) or a database by URL, with Optuna's heartbeat and retries of stale trials."""
    if "://" not in search.storage:
        path = search.storage or os.path.join(search.out, JOURNAL)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    import sqlalchemy.exc  # only for a database URL

    try:
        with warnings.catch_warnings():  # Optuna calls the heartbeat experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                search.storage,
                heartbeat_interval=search.heartbeat,
                grace_period=2 * search.heartbeat,
                heartbeat_stale_trial_callback=retry,
            )
    except (sqlalchemy.exc.ArgumentError, ImportError, ValueError) as e:
        raise InputError(
            f"--storage {redact(search.storage)!r} is not a storage URL Optuna can open "
            f"({type(e).__name__}); accepted: a journal file path, or an SQLAlchemy URL such as "
            "postgresql://USER@HOST/DB (password in $PGPASSWORD)"
        ) from None
    except sqlalchemy.exc.SQLAlchemyError as e:
        cause = str(getattr(e, "orig", e)).strip().splitlines()[0]
        raise MachineError(
            f"--storage {redact(search.storage)!r} cannot be reached: {cause}"
        ) from None


with warnings.catch_warnings():  # Optuna calls it experimental
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)


def identity(search: Search, base: Config) -> dict:
    """Return what a study resumed under the same name must share: space, trial flags, budget."""
    return {
        "space": search.space.describe(),
        "flags": results.protocol(config.to_dict(base)),
        "examples": search.examples,
        "evaluations": search.evaluations,
    }


def beats(storage: optuna.storages.BaseStorage) -> bool:
    """Return whether `storage` keeps trials' heartbeats (a database opened by open_storage)."""
    return isinstance(storage, optuna.storages.RDBStorage)


def open_study(search: Search, base: Config, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create or load the study `search.name` in `storage`; InputError when it was started
    with another space, other flags for every trial, or another budget."""
    study = optuna.create_study(
        study_name=search.name,
        storage=storage,
        sampler=sampler(search, 0),
        pruner=PRUNERS[search.pruner](search),
        direction="maximize",
        load_if_exists=True,
    )
    wanted = identity(search, base)
    saved = study.user_attrs.get("identity")
    if saved is None:
        study.set_user_attr("identity", wanted)
    elif saved != wanted:
        differ = [key for key in wanted if saved.get(key) != wanted[key]]
        raise InputError(
            f"search {search.name!r} in {redact(search.storage) or search.out} was started with "
            f"other {', '.join(differ)}; accepted: its own --param and flags after --, or "
            "another name or --out"
        )
    return study


def sampler(search: Search, number: int) -> optuna.samplers.BaseSampler:
    """Return the sampler that draws trial `number`, seeded by the search's seed and the number
    (the grid's by the seed alone): workers draw apart, and a search with one worker draws the
    same trials every time."""
    with warnings.catch_warnings():  # Optuna calls some samplers' options experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[search.sampler](search, number)


def first_number(trial: optuna.trial.FrozenTrial) -> int:
    """Return the number of the trial that `trial` is, or retries: its work folder's."""
    return trial.system_attrs.get("failed_trial", trial.number)


def current(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Return the trials that count: all but those that a retry replaced."""
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return [t for t in trials if t.number not in replaced]


def trial_args(search: Search, drawn: dict[str, str], base: Config) -> list[str]:
    """Return a trial's flags: those for every trial, the values drawn and, with --examples,
    the steps and evaluation interval its batch size makes of the budget."""
    args = [*search.extra, *(f"--{flag}={value}" for flag, value in drawn.items())]
    if search.examples:
        steps = search.examples // int(drawn.get("batch_size", base.batch_size))
        every = max(1, math.ceil(steps / search.evaluations))
        args += ["--epochs=0", f"--steps={max(steps, 1)}", f"--eval_every={every}"]
    return args


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (made if missing)."""
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def worker_alive(out: str, worker: str | None) -> bool:
    """Return whether the worker `worker` still holds its lock in OUT/workers."""
    path = os.path.join(out, "workers", f"{worker}.lock")
    if not worker or not os.path.exists(path):
        return False
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    os.remove(path)
    return False


def retry_dead(study: optuna.Study, storage: optuna.storages.BaseStorage, out: str) -> None:
    """Fail each running trial whose worker is dead and queue its retry: by heartbeat for a
    database, by the worker's lock for the journal file (under OUT/search.lock)."""
    if beats(storage):
        optuna.storages.fail_stale_trials(study)
        return
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not worker_alive(out, trial.user_attrs.get("worker")):
            retry(study, study.tell(trial.number, state=TrialState.FAIL))


class Worker:
    """One process taking trials of a search until it has its number of trials."""

    def __init__(self, search: Search, study: optuna.Study, storage: optuna.storages.BaseStorage):
        self.search, self.study, self.storage = search, study, storage
        self.id = uuid.uuid4().hex[:12]
        os.makedirs(os.path.join(search.out, "workers"), exist_ok=True)
        self._lock = open(os.path.join(search.out, "workers", f"{self.id}.lock"), "a")  # noqa: SIM115
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def take(self) -> optuna.Trial | None:
        """Return the next trial to train (a queued retry first), or None when every trial
        is taken."""
        with file_lock(os.path.join(self.search.out, "search.lock")):
            retry_dead(self.study, self.storage, self.search.out)
            every = self.study.get_trials(deepcopy=False)
            trials = current(every)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if len(trials) >= self.search.target and not waiting:
                return None
            self.study.sampler = sampler(self.search, len(every))
            trial = self.study.ask()
            trial.set_user_attr("worker", self.id)
            if beats(self.storage):
                self.storage.record_heartbeat(trial._trial_id)
            return trial

    def unfinished(self) -> bool:
        """Return whether a trial that counts is still running or queued."""
        trials = current(self.study.get_trials(deepcopy=False))
        return any(not t.state.is_finished() for t in trials)

    def close(self) -> None:
        """Release the worker's lock."""
        self._lock.close()
        with contextlib.suppress(OSError):
            os.remove(self._lock.name)


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat every interval while it trains (databases only)."""
    if not beats(storage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(storage.get_heartbeat_interval()):
            storage.record_heartbeat(trial._trial_id)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def recorded_trial(search: Search, number: int) -> dict | None:
    """Return the record of the search's trial `number`, if there is one."""
    found = [r for r in trial_records(search) if r["trial"] == number]
    return found[-1] if found else None


def tell(study: optuna.Study, trial: optuna.Trial, record: dict) -> None:
    """Tell the study a trial's outcome as its record says."""
    state = record["trial_state"]
    trial.set_user_attr("state", state)
    if state == "complete":
        study.tell(trial, record["val_accuracy"])
    else:
        study.tell(trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)


def validation_only(dataset: data.Dataset) -> data.Dataset:
    """Return the dataset without its test split: a search chooses on validation alone."""
    return dataset.replace(test_x=dataset.test_x[:0], test_y=dataset.test_y[:0])


def failed_record(search: Search, number: int, drawn: dict, cfg: Config | None, why: str) -> dict:
    """Return the record of a trial that could not train."""
    return {
        "name": f"trial_{number:04d}",
        "seed": 0,
        "config": config.to_dict(cfg) if cfg else {},
        "search": search.name,
        "trial": number,
        "trial_state": "failed",
        "pruned_at_step": None,
        "params": drawn,
        "error": why,
        "val_accuracy": None,
        "diverged": False,
    }


def run_trial(
    search: Search,
    worker: "Worker",
    trial: optuna.Trial,
    configure: Callable[[list[str]], Config],
    base: Config,
    command: str,
) -> dict:
    """Train one trial in its work folder, reporting each evaluation to the pruner; record it
    once and tell the study; return its record."""
    number = first_number(worker.study.get_trials(deepcopy=False)[trial.number])
    drawn = search.space.sample(trial, {k: str(v) for k, v in config.to_dict(base).items()})
    done = recorded_trial(search, number)
    if done is None:
        done = train_trial(search, worker.storage, trial, number, drawn, configure, base, command)
    tell(worker.study, trial, done)
    return done


def train_trial(
    search: Search,
    storage: optuna.storages.BaseStorage,
    trial: optuna.Trial,
    number: int,
    drawn: dict[str, str],
    configure: Callable[[list[str]], Config],
    base: Config,
    command: str,
) -> dict:
    """Train and record trial `number` with the values `drawn`; return its record."""
    cfg = None
    try:
        cfg = configure(
            [*trial_args(search, drawn, base), f"--name=trial_{number:04d}", "--seed=0"]
        )
        dataset = validation_only(
            load_data(cfg.dataset, cfg.data_dir, cfg.validation_size, cfg.preprocess)
        )
        total = cfg.total_steps(dataset.train_x.shape[0])
        pruned: list[int] = []

        def report(evaluation: train.Evaluation) -> bool:
            value = float(np.mean(evaluation.val_accuracy))
            if not math.isfinite(value):
                return False
            trial.report(value, math.ceil(evaluation.step / cfg.eval_every))
            if evaluation.step < total and trial.should_prune():
                pruned.append(evaluation.step)
                return True
            return False

        def annotate(fit: train.FitResult, records: list[dict]) -> None:
            for record in records:
                state = "diverged" if record["diverged"] else "pruned" if pruned else "complete"
                record.update(
                    search=search.name,
                    trial=number,
                    trial_state=state,
                    pruned_at_step=pruned[0] if pruned else None,
                    params=drawn,
                    examples=fit.steps * cfg.batch_size,
                )

        workdir = os.path.join(search.out, "work", f"trial_{number:04d}")
        with heartbeat(storage, trial):
            recorded = runner.train_and_record(
                cfg, dataset, search.results, workdir, on_eval=report, annotate=annotate,
                command=command,
            )  # fmt: skip
        return recorded.records[0]
    except (InputError, MachineError) as e:
        record = failed_record(search, number, drawn, cfg, str(e))
        results.append([record], search.results)
        return record


load_data = functools.lru_cache(maxsize=4)(data.load)


def progress(study: optuna.Study, search: Search, record: dict, start: float) -> str:
    """Return the line printed after a trial: its outcome, the count and the best so far."""
    state = record["trial_state"]
    if state == "pruned":
        state = f"pruned at step {record['pruned_at_step']}"
    value = record.get("val_accuracy")
    shown = f", val_accuracy {value:.4f}" if value is not None and state != "failed" else ""
    if record.get("error"):
        shown += f": {record['error']}"
    trials = current(study.get_trials(deepcopy=False))
    finished = sum(t.state.is_finished() for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value, default=None)
    best_text = f", best {best.value:.4f} (trial {first_number(best)})" if best else ""
    return (
        f"trial {record['trial']}: {state}{shown} ({finished}/{search.target}{best_text}, "
        f"elapsed {launcher.clock(time.monotonic() - start)})"
    )


def opened(
    search: Search, configure: Callable[[list[str]], Config]
) -> tuple[Config, optuna.storages.BaseStorage, optuna.Study]:
    """Return the settings of every trial, the storage and the search's study, created if new;
    InputError when it was started otherwise."""
    base = configure(list(search.extra))
    os.makedirs(search.out, exist_ok=True)
    storage = open_storage(search)
    return base, storage, open_study(search, base, storage)


def load(search: Search, configure: Callable[[list[str]], Config]) -> optuna.Study:
    """Return the search's study, created if new; InputError when it was started otherwise."""
    return opened(search, configure)[2]


def work(
    search: Search,
    configure: Callable[[list[str]], Config],
    command: str,
    printer: Callable[[str], None] = print,
) -> optuna.Study:
    """Take and train trials until the study has `search.trials` finished ones; return it."""
    base, storage, study = opened(search, configure)
    worker = Worker(search, study, storage)
    start = time.monotonic()
    try:
        while True:
            trial = worker.take()
            if trial is not None:
                record = run_trial(search, worker, trial, configure, base, command)
                printer(progress(study, search, record, start))
            elif worker.unfinished():
                time.sleep(POLL_SECONDS)  # another worker's trial: retry it if that one dies
            else:
                return study
    finally:
        worker.close()


def best_args(search: Search, study: optuna.Study, base: Config) -> tuple[int, list[str]]:
    """Return the best complete trial's number and flags."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise InputError(f"search {search.name!r} has no complete trial to confirm")
    number = first_number(max(complete, key=lambda t: t.value))
    return number, trial_args(search, recorded_trial(search, number)["params"], base)


def confirm(
    search: Search,
    study: optuna.Study,
    configure: Callable[[list[str]], Config],
    seeds: int,
    command: str,
) -> list[dict]:
    """Retrain the best trial's settings with seeds 1..`seeds` together, on the test split
    too (read now for the first time); return their records (OUT/confirm/results.jsonl)."""
    base = configure(list(search.extra))
    number, args = best_args(search, study, base)
    cfg = configure([*args, f"--name={search.name}_best", "--seed=1", f"--num_seeds={seeds}"])
    dataset = load_data(cfg.dataset, cfg.data_dir, cfg.validation_size, cfg.preprocess)
    folder = os.path.join(search.out, "confirm")
    workdir = os.path.join(folder, "work", f"trial_{number:04d}_seeds_1_{seeds}")
    out = os.path.join(folder, "results.jsonl")
    return runner.train_and_record(cfg, dataset, out, workdir, command=command).records


def export_confirmation(search: Search, records: list[dict], command: str) -> list[str]:
    """Write the confirmation's table (OUT/confirm/table.*), as a grid's: mean ± std and the
    prediction interval of its seeds."""
    top = tables.provenance(command, records)
    stem = os.path.join(search.out, "confirm", "table")
    return tables.write(stem, tables.build(records), tables.FORMATS, top)


def summary(records: list[dict]) -> str:
    """Return the confirmation's line: test mean ± std and the 95% prediction interval."""
    finished = [r["test_accuracy"] for r in records if not r["diverged"]]
    if not finished:
        return "every confirmation seed diverged"
    mean, std, n = results.summarize(finished)
    interval = tables.prediction_interval(finished)
    shown = f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "— (one seed)"
    return (
        f"test_accuracy={mean:.4f} ± {std:.4f} (mean ± std over {n} seeds), "
        f"{tables.LEVEL:.0%} prediction interval {shown}"
    )


def trial_records(search: Search) -> list[dict]:
    """Return the records of the search's trials in OUT/results.jsonl."""
    if not os.path.exists(search.results):
        return []
    return [r for r in results.read(search.results) if r.get("search") == search.name]


def describe(search: Search) -> str:
    """Return the search as its first printed line says it."""
    return json.dumps(
        {
            "search": search.name,
            "trials": search.trials,
            "sampler": search.sampler,
            "pruner": search.pruner,
            "storage": redact(search.storage) or os.path.join(search.out, JOURNAL),
            "space": [p.text() for p in search.space.params],
        }
    )


def export(search: Search, study: optuna.Study, command: str) -> list[str]:
    """Write the trials' table (OUT/table.md, .csv, .json, .tex) and Optuna's figures
    (OUT/figures/); return the files written."""
    from mlp_jax.campaign import plots  # matplotlib: only once the trials are done

    records = trial_records(search)
    top = tables.provenance(command, [r for r in records if "platform" in r])
    written = tables.write(
        os.path.join(search.out, "table"), tables.trials(records), tables.TRIAL_FORMATS, top
    )
    return written + plots.search_figures(study, os.path.join(search.out, "figures"))
