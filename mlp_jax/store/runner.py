"""One way to run and record: open the work folder, train, record the run, close the folder.

Every entry point that trains calls `train_and_record`; the benchmark times `fit_in` inside
`work_folder`.
"""

from collections.abc import Callable, Iterator
import contextlib
from typing import NamedTuple

import jax

from mlp_jax.core import memory, parallel, train
from mlp_jax.core.config import Config
from mlp_jax.core.data import Dataset
from mlp_jax.store import checkpoints, results


@contextlib.contextmanager
def work_folder(
    path: str | None, cfg: Config, command: str, data: Dataset
) -> Iterator[checkpoints.Workdir | None]:
    """Yield the locked work folder at `path` for a run of `cfg` on `data` started by `command`
    (None without a path), and close it after."""
    if not path:
        yield None
        return
    versions = results.environment()["versions"]
    workdir = checkpoints.Workdir(path, cfg, command, versions, data.digest)
    try:
        yield workdir
    finally:
        workdir.close()


def fit_in(
    cfg: Config,
    data: Dataset,
    workdir: checkpoints.Workdir | None,
    on_eval: Callable[[train.Evaluation], bool | None] | None = None,
) -> train.FitResult:
    """Train `cfg` on `data`, resuming from and saving to `workdir` when there is one, each
    evaluation written to its event log before `on_eval` sees it."""

    def each(evaluation: train.Evaluation) -> bool | None:
        if workdir:
            workdir.events.log(evaluation)
        return on_eval(evaluation) if on_eval else None

    return train.fit(cfg, data, on_eval=each, store=workdir)


def record(records: list[dict], out: str, workdir: checkpoints.Workdir | None) -> bool:
    """Append a finished run's records to `out` (and its work folder's file), each file once;
    return False when every file held them already (a finished run started again)."""
    if workdir is None:
        results.append(records, out)
        return True
    return workdir.record(records, out)


class Recorded(NamedTuple):
    """What `train_and_record` returns."""

    fit: train.FitResult
    records: list[dict]
    new: bool  # False: every file held the records already (a finished run started again)


def train_and_record(
    cfg: Config,
    data: Dataset,
    out: str,
    workdir: str | None = None,
    *,
    on_eval: Callable[[train.Evaluation], bool | None] | None = None,
    annotate: Callable[[train.FitResult, list[dict]], None] | None = None,
    command: str = "",
) -> Recorded:
    """Train `cfg` on `data` in the work folder `workdir` (a path; None for none), then append
    its records to `out` and the folder's results.jsonl, each file once.

    `on_eval` sees each evaluation (returning True stops training); `annotate(fit, records)`
    adds a study's fields to the records before they are written; a finished run started again
    returns the records its folder holds, as they were annotated then. A run that cannot fit in
    memory, or whose records cannot be written, is refused before training. A multi-host run
    records from its first process alone.
    """
    memory.check_memory(cfg, data, parallel.select_devices(cfg.devices))
    recording = jax.process_index() == 0
    if recording:
        results.check_appendable(out)
    with work_folder(workdir, cfg, command, data) as folder:
        fit = fit_in(cfg, data, folder, on_eval)
        records = results.run_records(cfg, fit, cfg.dataset, data.digest)
        kept = folder.kept(records) if folder else None
        if kept is not None:  # a finished run started again: what its first start recorded
            records = kept
        elif annotate:
            annotate(fit, records)
        if folder:
            folder.events.hparams(records)
        new = record(records, out, folder) if recording else True
    return Recorded(fit, records, new)
