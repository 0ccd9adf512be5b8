"""Accuracy tables built only from run records: mean ± std per row, exported in four formats."""

import csv
import datetime
import io
import json
import os
import shlex

from mlp_jax import grids, results

TOLERANCE_PP = 0.5  # a row within this many percentage points of the published value agrees
DESCRIBED = ("row", "architecture", "activation", "dropout", "steps", "lr", "params", "published")
# CSV and JSON keep the raw numbers; markdown and LaTeX fold mean, std and n into one cell.
COLUMNS = (
    *DESCRIBED,
    *("mean", "std", "n", "ensemble", "delta_pp", "train_s_per_run", "platform", "diverged"),
)
HEADERS = [
    *DESCRIBED,
    *("mlp_jax mean ± std (n)", "ensemble", "Δ pp", "train s/run", "platform", "diverged"),
]


def command_line(module: str, argv: list[str]) -> str:
    """Return the shell command `python -m module argv...` that ran, arguments quoted as needed."""
    return shlex.join(["python", "-m", module, *argv])


def provenance(command: str, records: list[dict], wall_seconds: float | None = None) -> list[str]:
    """Return the markdown lines saying how, when and on what machine results were made."""
    machines = sorted({f"{r['platform']} ({r['device']}, {r['cpus']} CPUs)" for r in records})
    lines = [
        f"Command: `{command}`  ",
        f"Date: {datetime.date.today().isoformat()}  ",
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
    """Return the ensemble test accuracy of a row's runs, None where no process trained several."""
    # Records of one process share one value; a row recorded by several processes shows the mean
    # of their distinct values (the value itself when they agree). Older records lack the field.
    values = {r.get("ensemble_test_accuracy") for r in runs} - {None}
    return sum(values) / len(values) if values else None


def _line(name: str, runs: list[dict]) -> dict:
    """Summarise the runs of one row."""
    config, row = runs[-1]["config"], grids.find_row(name)
    finished = [r["test_accuracy"] for r in runs if not r["diverged"]]
    mean, std, n = results.summarize(finished) if finished else (None, None, 0)
    published = row.published if row else None
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
        f"{line['train_s_per_run']:.1f}",
        line["platform"],
        flag,
    ]


def notes(lines: list[dict]) -> list[str]:
    """Return the explanation of each row further than TOLERANCE_PP from its published value."""
    return [
        f"{line['row']}: {line['delta_pp']:+.2f} pp — {line['note'] or 'no explanation'}"
        for line in lines
        if line["delta_pp"] is not None and abs(line["delta_pp"]) > TOLERANCE_PP
    ]


def to_markdown(lines: list[dict], header: list[str]) -> str:
    """Render the table as markdown, with `header` lines above and notes below."""
    out = [*header, "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(_cells(line)) + " |" for line in lines]
    explained = notes(lines)
    if explained:
        out += ["", f"Rows more than {TOLERANCE_PP} percentage points from the published value:"]
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


def to_latex(lines: list[dict], header: list[str]) -> str:
    """Render the table as a LaTeX tabular, header lines as comments."""

    def tex(cell: str) -> str:
        return (
            cell.replace("\\", r"\textbackslash{}")
            .replace("_", r"\_")
            .replace("%", r"\%")
            .replace("±", r"$\pm$")
            .replace("—", "--")
            .replace("Δ", r"$\Delta$")
            .replace("&", r"\&")
        )

    out = [f"% {h}" for h in header]
    out += [
        r"\begin{tabular}{" + "l" * len(HEADERS) + "}",
        r"\hline",
        " & ".join(tex(h) for h in HEADERS) + r" \\",
        r"\hline",
    ]
    out += [" & ".join(tex(c) for c in _cells(line)) + r" \\" for line in lines]
    out += [r"\hline", r"\end{tabular}"]
    return "\n".join(out) + "\n"


FORMATS = {"md": to_markdown, "csv": to_csv, "json": to_json, "latex": to_latex}
EXTENSIONS = {"md": "md", "csv": "csv", "json": "json", "latex": "tex"}


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
