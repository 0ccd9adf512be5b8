"""Accuracy tables built only from run records, with their statistics (scipy.stats).

A grid's table has one line per row: its settings, the published accuracy, mean ± std (n) over
seeds, the ensemble's accuracy (seeds trained together, their softmax averaged), the difference in
points, the 95% prediction interval of our seeds (mean ± t·s·√(1 + 1/n): where one more run of
ours would fall) and whether the published single run lies in it, seconds per run and platform;
rows outside it, or with a note, are listed under the table with the row's explanation. A study's
table pivots its first two axes into a matrix of cells (one matrix per value of any further axes),
each `mean ± std (n) [95% confidence interval of the mean]`; ★ marks the best cell of its row and ☆
the cells not significantly worse than it (Welch's one-sided t-test, p ≥ 0.05). Diverged runs are
counted in their row or cell, never averaged. Both export to markdown, CSV (every number raw:
`hidden=256 mean`, `hidden=256 ci_low`, ...), JSON and LaTeX.
"""

import csv
import dataclasses
import datetime
import io
import itertools
import json
import math
import os
import warnings

import numpy as np
from scipy import stats

from mlp_jax.campaign import grids
from mlp_jax.core.config import Config
from mlp_jax.store import results

LEVEL = 0.95  # of every interval
ALPHA = 0.05  # a cell is significantly worse than its row's best when Welch's p < ALPHA
BEST, NOT_WORSE = "★", "☆"  # a study cell's marks
DESCRIBED = ("row", "architecture", "activation", "dropout", "steps", "lr", "params", "published")
# CSV and JSON keep the raw numbers; markdown and LaTeX fold mean, std and n into one cell.
COLUMNS = (
    *DESCRIBED,
    *("mean", "std", "n", "ensemble", "delta_pp", "pi_low", "pi_high", "published_in_pi"),
    *("train_s_per_run", "platform", "diverged"),
)
HEADERS = [
    *DESCRIBED,
    *("mlp_jax mean ± std (n)", "ensemble", "Δ pp", "95% prediction interval", "published in it"),
    *("train s/run", "platform", "diverged"),
]


# The record fields a table reads (besides results.REQUIRED_FIELDS); others may be missing.
FIELDS = (
    "test_accuracy",
    "diverged",
    "steps",
    "n_params",
    "train_seconds",
    "replicas_trained_together",
    "platform",
    "device",
    "cpus",
)


def provenance(command: str, records: list[dict], wall_seconds: float | None = None) -> list[str]:
    """Return the markdown lines saying how, when and on what machine results were made; the date
    is that of the records (today for records without one)."""
    machines = sorted({f"{r['platform']} ({r['device']}, {r['cpus']} CPUs)" for r in records})
    days = sorted({r["time"][:10] for r in records if r.get("time")})
    days = days or [datetime.date.today().isoformat()]
    lines = [
        f"Command: `{command}`  ",
        f"Date: {days[0]}{f' to {days[-1]}' if len(days) > 1 else ''}  ",
        f"Machine: {', '.join(machines)}  ",
    ]
    if wall_seconds is not None:
        lines.append(f"Total wall time: {wall_seconds / 60:.1f} min ({wall_seconds:.0f} s)  ")
    return lines


def _group(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Group records by (name, protocol), keeping the last record of each seed."""
    groups: dict[tuple[str, str], dict[int, dict]] = {}
    for record in records:
        key = (record["name"], results.protocol(record["config"]))
        groups.setdefault(key, {})[record["seed"]] = record
    return {key: list(by_seed.values()) for key, by_seed in groups.items()}


def _ensemble(runs: list[dict]) -> float | None:
    """Return the ensemble test accuracy of a row's runs: None unless one process trained all of
    its seeds together (the ensemble of some of a row's seeds is not the row's)."""
    values = {r.get("ensemble_test_accuracy") for r in runs}
    together = {r["replicas_trained_together"] for r in runs}
    return values.pop() if len(values) == 1 and together == {len(runs)} else None


def confidence_interval(values: list[float]) -> tuple[float, float] | None:
    """Return the LEVEL confidence interval of the mean of accuracies `values` (Student's t),
    clipped to [0, 1]; None for fewer than 2 values."""
    if len(values) < 2:
        return None
    mean, sem = float(np.mean(values)), float(stats.sem(values))
    if sem == 0:
        return mean, mean
    low, high = stats.t.interval(LEVEL, len(values) - 1, loc=mean, scale=sem)
    return max(float(low), 0.0), min(float(high), 1.0)


def prediction_interval(values: list[float]) -> tuple[float, float] | None:
    """Return the LEVEL interval that one more run of the same kind falls in: mean ± t·s·√(1 + 1/n);
    None for n < 2."""
    if len(values) < 2:
        return None
    mean, std, n = results.summarize(values)
    half = float(stats.t.ppf((1 + LEVEL) / 2, n - 1)) * std * math.sqrt(1 + 1 / n)
    return mean - half, mean + half


def _line(name: str, runs: list[dict]) -> dict:
    """Summarise the runs of one row."""
    config = {**dataclasses.asdict(Config()), **runs[-1]["config"]}  # older records lack some
    row = grids.find_row(name)
    finished = [r["test_accuracy"] for r in runs if not r["diverged"]]
    mean, std, n = results.summarize(finished) if finished else (None, None, 0)
    published = row.published if row else None
    interval = prediction_interval(finished)
    inside = (
        None if interval is None or published is None else interval[0] <= published <= interval[1]
    )
    dropout = f"{config['dropout']:g}" + (" (also at test)" if config["dropout_at_eval"] else "")
    return {
        "row": name,
        "architecture": "-".join(map(str, (784, *config["hidden"], 10))),
        "activation": config["act"] if config["hidden"] else "—",
        "dropout": dropout,
        "steps": runs[-1]["steps"],
        "lr": config["lr"],
        "params": runs[-1]["n_params"],
        "published": published,
        "mean": mean,
        "std": std,
        "n": n,
        "ensemble": _ensemble(runs),
        "delta_pp": None if mean is None or published is None else 100 * (mean - published),
        "pi_low": interval[0] if interval else None,
        "pi_high": interval[1] if interval else None,
        "published_in_pi": inside,
        "train_s_per_run": sum(r["train_seconds"] / r["replicas_trained_together"] for r in runs)
        / len(runs),
        "platform": f"{runs[-1]['platform']} ({runs[-1]['device']})",
        "diverged": sum(r["diverged"] for r in runs),
        "note": row.note if row else "",
        "source": row.source if row else "",
    }


def build(records: list[dict], grid: str | None = None) -> list[dict]:
    """Return one summary line per (row, protocol), in the grid's order when a grid is named."""
    order = {row.name: i for i, row in enumerate(grids.get(grid))} if grid else {}
    groups = _group(records)
    keys = sorted(groups, key=lambda k: order.get(k[0], len(order)))
    return [_line(name, groups[(name, proto)]) for name, proto in keys]


def _cells(line: dict) -> list[str]:
    def pct(x):
        return "—" if x is None else f"{x:.4f}"

    ours = "—" if line["mean"] is None else f"{line['mean']:.4f} ± {line['std']:.4f} ({line['n']})"
    delta = "—" if line["delta_pp"] is None else f"{line['delta_pp']:+.2f}"
    interval = "—" if line["pi_low"] is None else f"[{line['pi_low']:.4f}, {line['pi_high']:.4f}]"
    inside = {None: "—", True: "yes", False: "no"}[line["published_in_pi"]]
    flag = f"{line['diverged']} diverged" if line["diverged"] else ""
    return [
        line["row"],
        line["architecture"],
        line["activation"],
        line["dropout"],
        str(line["steps"]),
        f"{line['lr']:g}",
        f"{line['params']:,}",
        pct(line["published"]),
        ours,
        pct(line["ensemble"]),
        delta,
        interval,
        inside,
        f"{line['train_s_per_run']:.1f}",
        line["platform"],
        flag,
    ]


def notes(lines: list[dict]) -> list[str]:
    """Return, for each row whose published value lies outside our prediction interval or that has
    a note, where the published value lies and the row's explanation."""
    said = []
    for line in lines:
        if line["published_in_pi"] is None or (line["published_in_pi"] and not line["note"]):
            continue
        where = "inside" if line["published_in_pi"] else "outside"
        said.append(
            f"{line['row']}: {line['delta_pp']:+.2f} pp, published value {where} the "
            f"{LEVEL:.0%} prediction interval — {line['note'] or 'no explanation'}"
        )
    return said


def to_markdown(lines: list[dict], header: list[str]) -> str:
    """Render the table as markdown, with `header` lines above and notes below."""
    out = [*header, "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(_cells(line)) + " |" for line in lines]
    out += [
        "",
        f"The {LEVEL:.0%} prediction interval is where one more run of ours would fall: "
        "mean ± t(n−1)·s·√(1 + 1/n) over our seeds. A published single run outside it differs by "
        "more than seed-to-seed noise.",
    ]
    explained = notes(lines)
    if explained:
        out += ["", "Rows outside the interval, or with a note:"]
        out += [f"- {n}" for n in explained]
    return "\n".join(out) + "\n"


def to_csv(lines: list[dict], header: list[str]) -> str:
    """Render the table as CSV with the raw numbers (no header lines)."""
    del header
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*COLUMNS, "note", "source"])
    writer.writeheader()
    writer.writerows(lines)
    return buffer.getvalue()


def to_json(lines: list[dict], header: list[str]) -> str:
    """Render the table as JSON: the header lines and one object per row."""
    return json.dumps({"header": header, "rows": lines, "notes": notes(lines)}, indent=1) + "\n"


def _tex(cell: str) -> str:
    """Escape a cell's text for LaTeX."""
    return (
        cell.replace("\\", r"\textbackslash{}")
        .replace("_", r"\_")
        .replace("%", r"\%")
        .replace("±", r"$\pm$")
        .replace("—", "--")
        .replace("Δ", r"$\Delta$")
        .replace("&", r"\&")
        .replace("×", r"$\times$")
        .replace(BEST, r"$^{\star}$")
        .replace(NOT_WORSE, r"$^{\circ}$")
    )


def to_latex(lines: list[dict], header: list[str]) -> str:
    """Render the table as a LaTeX tabular, header lines as comments."""
    out = [f"% {h}" for h in header]
    out += [
        r"\begin{tabular}{" + "l" * len(HEADERS) + "}",
        r"\hline",
        " & ".join(_tex(h) for h in HEADERS) + r" \\",
        r"\hline",
    ]
    out += [" & ".join(_tex(c) for c in _cells(line)) + r" \\" for line in lines]
    out += [r"\hline", r"\end{tabular}"]
    return "\n".join(out) + "\n"


FORMATS = {"md": to_markdown, "csv": to_csv, "json": to_json, "latex": to_latex}
EXTENSIONS = {"md": "md", "csv": "csv", "json": "json", "latex": "tex"}


def write(stem: str, table, formats: dict, header: list[str]) -> list[str]:
    """Write `table` in each of `formats` (name -> renderer) as STEM.EXT; return the paths."""
    return [
        results.write_text(f"{stem}.{EXTENSIONS[form]}", render(table, header))
        for form, render in formats.items()
    ]


LEGEND = (
    "Each cell: test accuracy, mean ± std over the seeds that finished (their number) "
    f"[{LEVEL:.0%} confidence interval of the mean, Student's t, clipped to [0, 1]]; diverged "
    f"runs are counted beside them, never averaged. {BEST}: the best mean of its row; "
    f"{NOT_WORSE}: not significantly worse than that best (Welch's one-sided t-test, "
    f"p ≥ {ALPHA:g}); unmarked cells are significantly worse, or untestable (fewer than 2 "
    "finished seeds)."
)


def worse_p(best: list[float], values: list[float]) -> float | None:
    """Return Welch's one-sided p-value that `values` come from a lower mean than `best`; 1 for
    two identical constant samples, None when a sample has fewer than 2 values."""
    if len(best) < 2 or len(values) < 2:
        return None
    with warnings.catch_warnings():  # nearly equal samples: scipy warns of precision loss
        warnings.simplefilter("ignore", RuntimeWarning)
        p = stats.ttest_ind(best, values, equal_var=False, alternative="greater").pvalue
    return 1.0 if math.isnan(p) else float(p)


def _cell(runs: list[dict]) -> dict:
    """Summarise the runs of one study cell."""
    finished = [r["test_accuracy"] for r in runs if not r["diverged"]]
    mean, std, n = results.summarize(finished) if finished else (None, None, 0)
    interval = confidence_interval(finished)
    return {
        "accuracies": finished,
        "mean": mean,
        "std": std,
        "n": n,
        "diverged": sum(r["diverged"] for r in runs),
        "ci_low": interval[0] if interval else None,
        "ci_high": interval[1] if interval else None,
    }


def _mark_row(cells: list[dict]) -> None:
    """Mark the best cell of a matrix row and those not significantly worse (Welch's t-test)."""
    measured = [c for c in cells if c["mean"] is not None]
    best = max(measured, key=lambda c: c["mean"], default=None)
    for cell in cells:
        p = worse_p(best["accuracies"], cell["accuracies"]) if best and cell is not best else None
        cell["p_worse"] = p
        cell["mark"] = BEST if cell is best else NOT_WORSE if p is not None and p >= ALPHA else ""


def of_settings(records: list[dict], configs: dict[str, dict]) -> list[dict]:
    """Return the records run under the settings `configs` gives for their name (each row's
    settings by row name); records of names it does not give are kept."""
    wanted = {name: results.protocol(config) for name, config in configs.items()}
    kept = []
    for record in records:
        protocol = results.protocol(record["config"])
        if wanted.get(record["name"], protocol) == protocol:
            kept.append(record)
    return kept


def pivot(
    records: list[dict], study: grids.Study, configs: dict[str, dict] | None = None
) -> list[dict]:
    """Return the study's matrices: the first axis down, the second across (a lone axis across),
    one matrix per combination of values of any further axes; the last record of each seed counts.

    With `configs` (each row's settings by row name), records of other settings are left out.
    """
    by_name: dict[str, dict[int, dict]] = {}
    for record in records if configs is None else of_settings(records, configs):
        by_name.setdefault(record["name"], {})[record["seed"]] = record
    axes = study.axes if len(study.axes) > 1 else (grids.Axis("", ("",)), *study.axes)
    down, across, rest = axes[0], axes[1], axes[2:]
    matrices = []
    for fixed in itertools.product(*(axis.values for axis in rest)):
        rows = []
        for r in down.values:
            cells = []
            for c in across.values:
                coordinates = (r, c, *fixed) if len(study.axes) > 1 else (c,)
                runs = list(by_name.get(study.row_name(coordinates), {}).values())
                cells.append({"name": study.row_name(coordinates), **_cell(runs)})
            _mark_row(cells)
            rows.append(cells)
        matrices.append(
            {
                "fixed": {a.flag: a.label(v) for a, v in zip(rest, fixed, strict=True)},
                "down": down.flag,
                "across": across.flag,
                "rows": [down.label(v) if down.flag else "" for v in down.values],
                "columns": [across.label(v) for v in across.values],
                "cells": rows,
            }
        )
    return matrices


def cell_text(cell: dict) -> str:
    """Return a cell as `mean ± std (n) [CI low, high] mark`, with its diverged runs."""
    diverged = f", {cell['diverged']} diverged" if cell["diverged"] else ""
    if cell["mean"] is None:
        return f"{cell['diverged']} diverged" if cell["diverged"] else "—"
    interval = "" if cell["ci_low"] is None else f" [{cell['ci_low']:.4f}, {cell['ci_high']:.4f}]"
    text = f"{cell['mean']:.4f} ± {cell['std']:.4f} ({cell['n']}{diverged}){interval}"
    return f"{text} {cell['mark']}".rstrip()


def _title(matrix: dict) -> str:
    """Return what a matrix shows: `act × hidden`, and the values of any further axes."""
    title = f"{matrix['down']} × {matrix['across']}" if matrix["down"] else matrix["across"]
    fixed = ", ".join(f"{flag} = {value}" for flag, value in matrix["fixed"].items())
    return f"{title}, {fixed}" if fixed else title


def study_markdown(matrices: list[dict], header: list[str]) -> str:
    """Render a study's matrices as markdown tables, `header` lines above, the legend below."""
    out = [*header]
    for matrix in matrices:
        corner = f"{matrix['down']} \\ {matrix['across']}" if matrix["down"] else ""
        out += ["", f"### {_title(matrix)}", ""]
        out += ["| " + " | ".join([corner, *matrix["columns"]]) + " |"]
        out += ["|" + "---|" * (len(matrix["columns"]) + 1)]
        for label, cells in zip(matrix["rows"], matrix["cells"], strict=True):
            out.append("| " + " | ".join([label, *map(cell_text, cells)]) + " |")
    return "\n".join([*out, "", LEGEND]) + "\n"


STATISTICS = ("mean", "std", "n", "diverged", "ci_low", "ci_high", "p_worse", "mark")


def study_csv(matrices: list[dict], header: list[str]) -> str:
    """Render a study's matrices as CSV with the raw numbers: a line per matrix row, for each
    column value one field per statistic (`hidden=128 mean`, ...), any further axes first."""
    del header
    buffer = io.StringIO()
    writer = None
    for matrix in matrices:
        for label, cells in zip(matrix["rows"], matrix["cells"], strict=True):
            line = {**matrix["fixed"], matrix["down"] or "row": label}
            for column, cell in zip(matrix["columns"], cells, strict=True):
                line.update({f"{matrix['across']}={column} {k}": cell[k] for k in STATISTICS})
            if writer is None:
                writer = csv.DictWriter(buffer, fieldnames=list(line))
                writer.writeheader()
            writer.writerow(line)
    return buffer.getvalue()


def study_json(matrices: list[dict], header: list[str]) -> str:
    """Render a study's matrices as JSON: header lines, legend, and every cell's numbers."""
    return json.dumps({"header": header, "legend": LEGEND, "matrices": matrices}, indent=1) + "\n"


def study_latex(matrices: list[dict], header: list[str]) -> str:
    """Render a study's matrices as LaTeX tabulars, header lines and legend as comments."""
    out = [f"% {h}" for h in header] + [f"% {LEGEND} ({BEST}: star, {NOT_WORSE}: circle)"]
    for matrix in matrices:
        out += [f"% {_title(matrix)}", r"\begin{tabular}{l" + "l" * len(matrix["columns"]) + "}"]
        corner = [matrix["down"], *matrix["columns"]]
        out += [r"\hline", " & ".join(_tex(c) for c in corner) + r" \\", r"\hline"]
        for label, cells in zip(matrix["rows"], matrix["cells"], strict=True):
            out.append(" & ".join(_tex(c) for c in [label, *map(cell_text, cells)]) + r" \\")
        out += [r"\hline", r"\end{tabular}", ""]
    return "\n".join(out)


STUDY_FORMATS = {"md": study_markdown, "csv": study_csv, "json": study_json, "latex": study_latex}


def robustness_markdown(rows: list[dict]) -> str:
    """Render accuracy per model (rows) and corruption (columns) as mean ± std over seeds."""
    columns = [k for k in rows[0] if k not in ("model", "augment")]
    out = [
        "| model | trained with | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = [
            f"{row[c][0]:.4f}" + (f" ± {row[c][1]:.4f}" if row[c][2] > 1 else "") for c in columns
        ]
        out.append(f"| {row['model']} | {row['augment']} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def write_robustness(rows: list[dict], folder: str, header: list[str]) -> str:
    """Write the robustness table, `header` lines above it, as `folder/table.md`."""
    return results.write_text(
        os.path.join(folder, "table.md"), "\n".join([*header, "", robustness_markdown(rows)])
    )


def _share(value: float | None) -> str:
    """Return an accuracy as a table shows it: four decimals, a dash for none."""
    return "—" if value is None else f"{value:.4f}"


def _member_cells(member: dict) -> list[str]:
    """Return a committee member's cells: folder (`FOLDER@STEP`, its checkpoint, where the
    record knows it), seed, name, preprocessing, weight, accuracies."""
    status = ""
    if member["diverged_at_step"] is not None:
        status = f" (diverged at step {member['diverged_at_step']}, left out)"
    elif not member["entered"]:
        status = " (not finite, left out)"
    step = f"@{member['step']}" if "step" in member else ""
    return [
        f"`{member['folder']}{step}`",
        str(member["seed"]),
        member["name"] + status,
        member["preprocess"],
        f"{member['weight']:.3f}",
        _share(member["val_accuracy"]),
        _share(member["test_accuracy"]),
    ]


def committee_tta(record: dict) -> str:
    """Return a committee record's test-time augmentation (`none` for records made before it)."""
    return record.get("tta", "none")


def committee_markdown(record: dict, header: list[str]) -> str:
    """Render a committee's record (`evaluation.record`) as markdown, `header` lines above: each
    member's accuracies and weight, the committee's, and the test digits it gets right that its
    best member by validation accuracy misses and the reverse; its weights' cell names its
    test-time augmentation, if any."""
    columns = ["folder", "seed", "name", "preprocess", "weight", "validation", "test"]
    out = [*header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_member_cells(m)) + " |" for m in record["members"]]
    tta = committee_tta(record)
    weights = record["weights"] + (f", tta {tta}" if tta != "none" else "")
    out.append(
        f"| **committee** | | {record['entered']} of {len(record['members'])} replicas from "
        f"{results.committee_sources(record['folders'])} | | {weights} | "
        f"**{_share(record['val_accuracy'])}** | **{_share(record['test_accuracy'])}** |"
    )
    best = record["best_member"]
    out += [
        "",
        f"Against its best member by {record['best_by']} (`{best['folder']}`, seed "
        f"{best['seed']}), the committee gets {record['right_where_best_wrong']} test digits "
        f"right that the member misses, and misses {record['wrong_where_best_right']} that it "
        f"gets right; {record['left_out']} replica{'s' * (record['left_out'] != 1)} left out "
        f"({record['diverged']} diverged).",
    ]
    return "\n".join(out) + "\n"


# A search's table: one line per trial, in trial order.
TRIAL_COLUMNS = ("trial", "state", "steps", "examples", "val_accuracy", "train_seconds")


def _trial_state(record: dict) -> str:
    """Return a trial's state as its table says it: `pruned at step 3000`, `complete`, ..."""
    if record["trial_state"] == "pruned":
        return f"pruned at step {record['pruned_at_step']}"
    return record["trial_state"]


def trials(records: list[dict]) -> list[dict]:
    """Return one line per trial of a search's records (its last record), by trial number, the
    best complete trial by validation accuracy marked `best`."""
    last = {r["trial"]: r for r in records}
    lines = [
        {
            "trial": number,
            "state": _trial_state(r),
            "steps": r.get("steps"),
            "examples": r.get("examples"),
            "val_accuracy": r.get("val_accuracy"),
            "train_seconds": r.get("train_seconds"),
            "params": r["params"],
            "best": False,
        }
        for number, r in sorted(last.items())
    ]
    complete = [line for line in lines if line["state"] == "complete"]
    if complete:
        max(complete, key=lambda line: line["val_accuracy"])["best"] = True
    return lines


def _flags(lines: list[dict]) -> list[str]:
    """Return every flag some trial drew, in the order first drawn."""
    return list(dict.fromkeys(flag for line in lines for flag in line["params"]))


def _trial_cells(line: dict, flags: list[str]) -> list[str]:
    def number(x, form):
        return "—" if x is None else format(x, form)

    value = number(line["val_accuracy"], ".4f") + (f" {BEST}" if line["best"] else "")
    return [
        str(line["trial"]),
        line["state"],
        number(line["steps"], "d"),
        number(line["examples"], ","),
        value,
        number(line["train_seconds"], ".1f"),
        *(_drawn(line["params"].get(flag, "—")) for flag in flags),
    ]


def _drawn(value: str) -> str:
    """Return a drawn value as a table shows it: a float to 4 significant digits."""
    try:
        return value if "." not in value else f"{float(value):.4g}"
    except ValueError:
        return value


def trials_footer(lines: list[dict]) -> str:
    """Return the count of trials by state and the training examples they saw."""
    states = [line["state"].split(" ")[0] for line in lines]
    counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
    examples = sum(line["examples"] or 0 for line in lines)
    return (
        f"{len(lines)} trials ({counts}); {examples:,} training examples in all. Validation "
        f"accuracy at the trial's last evaluation (at pruning for a pruned one); {BEST}: the best "
        "complete trial. The test split was never read."
    )


def trials_markdown(lines: list[dict], header: list[str]) -> str:
    """Render a search's trials as markdown, `header` lines above, the counts below."""
    flags = _flags(lines)
    heads = [*TRIAL_COLUMNS, *flags]
    out = [*header, "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    out += ["| " + " | ".join(_trial_cells(line, flags)) + " |" for line in lines]
    return "\n".join([*out, "", trials_footer(lines)]) + "\n"


def trials_csv(lines: list[dict], header: list[str]) -> str:
    """Render a search's trials as CSV with the raw numbers, a column per flag drawn."""
    del header
    flags = _flags(lines)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*TRIAL_COLUMNS, "best", *flags])
    writer.writeheader()
    for line in lines:
        writer.writerow({**{k: line[k] for k in (*TRIAL_COLUMNS, "best")}, **line["params"]})
    return buffer.getvalue()


def trials_json(lines: list[dict], header: list[str]) -> str:
    """Render a search's trials as JSON: the header lines, the trials and their counts."""
    return json.dumps({"header": header, "trials": lines, "footer": trials_footer(lines)}, indent=1)


def trials_latex(lines: list[dict], header: list[str]) -> str:
    """Render a search's trials as a LaTeX tabular, header lines and counts as comments."""
    flags = _flags(lines)
    heads = [*TRIAL_COLUMNS, *flags]
    out = [f"% {h}" for h in header] + [f"% {trials_footer(lines)}"]
    out += [r"\begin{tabular}{" + "l" * len(heads) + "}", r"\hline"]
    out += [" & ".join(_tex(h) for h in heads) + r" \\", r"\hline"]
    out += [" & ".join(_tex(c) for c in _trial_cells(line, flags)) + r" \\" for line in lines]
    return "\n".join([*out, r"\hline", r"\end{tabular}"]) + "\n"


TRIAL_FORMATS = {
    "md": trials_markdown,
    "csv": trials_csv,
    "json": trials_json,
    "latex": trials_latex,
}
