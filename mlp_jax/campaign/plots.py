"""Figures (matplotlib, Agg): training curves, misclassified digits, confusion matrix, tables."""

import functools
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def curves(history: list[dict], path: str, title: str = "") -> str:
    """Plot training loss and validation/test accuracy of every replica against steps."""
    steps = [h["step"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for key, ax, style in (
        ("train_loss", loss_ax, "-"),
        ("val_accuracy", acc_ax, "--"),
        ("test_accuracy", acc_ax, "-"),
    ):
        values = np.array([h[key] for h in history], dtype=float)  # (evaluations, replicas)
        for r in range(values.shape[1]):
            ax.plot(
                steps,
                values[:, r],
                style,
                color=f"C{r}",
                alpha=0.8,
                label=f"{key.replace('_', ' ')} seed {r}" if values.shape[1] < 6 else None,
            )
    loss_ax.set(xlabel="step", ylabel="training loss (mean over the interval)", yscale="log")
    acc_ax.set(xlabel="step", ylabel="accuracy (dashed: validation, solid: test)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def misclassified(
    images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, path: str, count: int = 64
) -> str:
    """Show the first `count` misclassified test digits with their true and predicted labels
    (every one of them for a net past 99.4%)."""
    errors = np.flatnonzero(predicted != labels)
    wrong = errors[:count]
    side = max(1, int(np.ceil(np.sqrt(len(wrong)))))
    fig, axes = plt.subplots(side, side, figsize=(1.4 * side, 1.6 * side), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):  # the grid may have spare panels
        ax.imshow(images[i].reshape(28, 28), cmap="gray_r")
        ax.set_title(f"{labels[i]} → {predicted[i]}", fontsize=9, color="C3")
    fig.suptitle(
        f"{len(errors)} of {len(labels)} test digits misclassified, "
        f"the first {len(wrong)} shown (true → predicted)",
        fontsize=10,
    )
    return _save(fig, path)


def confusion(labels: np.ndarray, predicted: np.ndarray, path: str, classes: int = 10) -> str:
    """Plot the confusion matrix of counts, true classes down, predicted across."""
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(np.log1p(matrix), cmap="Blues")
    for (t, p), n in np.ndenumerate(matrix):
        ax.text(
            p, t, str(n), ha="center", va="center", fontsize=7, color="white" if t == p else "black"
        )
    ax.set(
        xlabel="predicted",
        ylabel="true",
        xticks=range(classes),
        yticks=range(classes),
        title=f"confusion matrix, accuracy {np.trace(matrix) / matrix.sum():.4f}",
    )
    return _save(fig, path)


def run_figures(
    history: list[dict],
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    folder: str,
    name: str,
) -> list[str]:
    """Write a run's curves, misclassified digits and confusion matrix as `folder/name_*.png`."""
    return [
        curves(history, os.path.join(folder, f"{name}_curves.png"), name),
        misclassified(images, labels, predicted, os.path.join(folder, f"{name}_misclassified.png")),
        confusion(labels, predicted, os.path.join(folder, f"{name}_confusion.png")),
    ]


def first_layer_weights(kernel: np.ndarray, path: str, count: int = 64) -> str:
    """Draw the incoming weights of the first `count` units of a (784, units) kernel as 28x28
    images, on one diverging colour scale centred at 0."""
    shown = np.asarray(kernel)[:, :count].T.reshape(-1, 28, 28)
    limit = float(np.abs(shown).max()) or 1.0
    side = int(np.ceil(np.sqrt(len(shown))))
    fig, axes = plt.subplots(side, side, figsize=(1.1 * side + 1.5, 1.1 * side), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, weights in zip(axes.flat, shown, strict=False):  # the grid may have spare panels
        image = ax.imshow(weights, cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.colorbar(image, ax=axes, shrink=0.6, label="weight")
    fig.suptitle(f"input weights of {len(shown)} of {kernel.shape[1]} first-layer units")
    return _save(fig, path)


def table_chart(rows: list[dict], path: str, title: str = "") -> str:
    """Bar chart per row: our mean with ± std error bars beside the published value."""
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4.5))
    x = np.arange(len(rows))
    ours = [r["mean"] if r["mean"] is not None else np.nan for r in rows]
    ax.bar(
        x - 0.2,
        ours,
        0.4,
        yerr=[r["std"] or 0 for r in rows],
        capsize=3,
        label="mlp_jax mean ± std",
    )
    ax.bar(
        x + 0.2,
        [r["published"] if r["published"] is not None else np.nan for r in rows],
        0.4,
        label="published",
    )
    finite = [v for r in rows for v in (r["mean"], r["published"]) if v is not None]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 0.01), min(1.0, max(finite) + 0.005))
    ax.set_xticks(x, [r["row"] for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="test accuracy", title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _means(cells: list[list[dict]]) -> np.ndarray:
    """Return the mean of each cell of a study matrix, NaN where no seed finished."""
    return np.array([[np.nan if c["mean"] is None else c["mean"] for c in row] for row in cells])


def study_heatmap(matrices: list[dict], path: str, title: str = "") -> str:
    """Heatmap per study matrix: mean test accuracy per cell, annotated with mean, std and mark;
    colours span the best 5 pp so that close cells stay apart (lower ones share the darkest)."""
    means = np.concatenate([_means(m["cells"]).ravel() for m in matrices])
    top = np.nanmax(means) if np.isfinite(means).any() else 1.0
    low = max(np.nanmin(means) if np.isfinite(means).any() else 0.0, top - 0.05)
    rows, columns = len(matrices[0]["rows"]), len(matrices[0]["columns"])
    fig, axes = plt.subplots(
        1,
        len(matrices),
        figsize=((1.4 * columns + 2) * len(matrices), 0.5 * rows + 2),
        squeeze=False,
    )
    for ax, matrix in zip(axes.flat, matrices, strict=True):
        image = ax.imshow(
            np.ma.masked_invalid(_means(matrix["cells"])),
            cmap=matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey"),
            vmin=low,
            vmax=top,
            aspect="auto",
        )
        for i, row in enumerate(matrix["cells"]):
            for j, cell in enumerate(row):
                text = "—" if cell["mean"] is None else f"{cell['mean']:.4f}\n±{cell['std']:.4f}"
                if cell["diverged"]:
                    text += f"\n{cell['diverged']} diverged"
                bright = cell["mean"] is None or cell["mean"] > (low + top) / 2
                ax.text(
                    j,
                    i,
                    f"{text} {cell['mark']}".strip(),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if bright else "white",
                )
        ax.set_xticks(range(columns), matrix["columns"], rotation=30, ha="right")
        ax.set_yticks(range(rows), matrix["rows"])
        fixed = ", ".join(f"{flag} = {value}" for flag, value in matrix["fixed"].items())
        ax.set(xlabel=matrix["across"], ylabel=matrix["down"], title=fixed)
    fig.colorbar(image, ax=axes.ravel().tolist(), label="mean test accuracy", extend="min")
    fig.suptitle(f"{title}: ★ best of its row, ☆ not significantly worse than it")
    return _save(fig, path)


def image_rows(rows: list[tuple[str, np.ndarray]], path: str, title: str = "") -> str:
    """Show rows of flat 28x28 images, each row labelled on its left."""
    columns = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(1.3 * columns, 1.4 * len(rows)), squeeze=False
    )
    for (label, images), line in zip(rows, axes, strict=True):
        for ax, image in zip(line, images, strict=False):  # the grid may have spare panels
            ax.imshow(image.reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        for ax in line:
            ax.set_xticks([])
            ax.set_yticks([])
        line[0].set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=7)
    return _save(fig, path)


def robustness(rows: list[dict], stds: tuple[float, ...], path: str) -> str:
    """Plot each model's test accuracy against the std of the Gaussian noise on the test set."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        means = [row[f"noise {s:g}"][0] for s in stds]
        errors = [row[f"noise {s:g}"][1] for s in stds]
        ax.errorbar(
            stds,
            means,
            yerr=errors,
            marker="o",
            capsize=3,
            label=f"{row['model']} ({row['augment']})",
        )
    ax.set(
        xlabel="std of Gaussian noise added to the test images",
        ylabel="test accuracy",
        title="robustness to pixel noise",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def activation_gallery(curves: list[dict], path: str) -> str:
    """One panel per activation: f(z), its hand-written derivative, autodiff's dashed over it."""
    columns = 5
    rows = -(-len(curves) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.flat[len(curves) :]:
        ax.axis("off")
    for ax, c in zip(axes.flat, curves, strict=False):  # the grid may have spare panels
        ax.plot(c["z"], c["f"], label="f(z)")
        ax.plot(c["z"], c["manual"], label="f'(z) by hand")
        ax.plot(c["z"], c["autodiff"], "k--", lw=1, label="f'(z) by jax.grad")
        ax.set_title(c["name"], fontsize=10)
        ax.set_ylim(-1.5, 3)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    return _save(fig, path)


def decision_boundaries(panels: list[dict], grid: np.ndarray, path: str) -> str:
    """Draw each model's predicted class over the plane, with the data points on top."""
    side = int(np.sqrt(len(grid)))
    columns = 2
    fig, axes = plt.subplots(
        -(-len(panels) // columns), columns, figsize=(8, 3.6 * len(panels) / columns), squeeze=False
    )
    extent = (grid[:, 0].min(), grid[:, 0].max(), grid[:, 1].min(), grid[:, 1].max())
    for ax, panel in zip(axes.flat, panels, strict=False):  # the grid may have spare panels
        ax.imshow(
            panel["surface"].reshape(side, side),
            origin="lower",
            extent=extent,
            cmap="coolwarm",
            alpha=0.35,
            vmin=0,
            vmax=1,
        )
        ax.scatter(panel["x"][:, 0], panel["x"][:, 1], c=panel["y"], cmap="coolwarm", s=6)
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def approximation(
    x: np.ndarray, truth: np.ndarray, fits: dict[int, tuple[np.ndarray, float]], path: str
) -> str:
    """Left: the target and each width's fit. Right: maximum error against width (log-log)."""
    fig, (curve_ax, error_ax) = plt.subplots(1, 2, figsize=(11, 4))
    curve_ax.plot(x, truth, "k", lw=2, label="target")
    for width, (fitted, _) in fits.items():
        curve_ax.plot(x, fitted, lw=1, label=f"K = {width}")
    curve_ax.legend(fontsize=7)
    curve_ax.set(xlabel="x", ylabel="f(x)")
    widths = list(fits)
    error_ax.loglog(widths, [fits[w][1] for w in widths], "o-")
    error_ax.set(xlabel="hidden units K", ylabel="max abs error", title="error against width")
    for ax in (curve_ax, error_ax):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def gradient_norms(norms: dict[tuple[str, int], list[float]], path: str) -> str:
    """Plot each layer's weight-gradient norm (log scale) for every (net, step)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for (act, steps), values in norms.items():
        ax.semilogy(
            range(1, len(values) + 1),
            values,
            "o-" if act == "relu" else "s--",
            label=f"{act}, step {steps}",
        )
    ax.set(xlabel="layer (1 = next to the input)", ylabel="||dL/dW||", title="vanishing gradients")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def throughput_sweep(sweeps: dict[str, dict], path: str) -> str:
    """Plot examples/s against batch size and replicas, and fraction of peak against width."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    panels = [
        ("batch_size", "batch size", "examples/s"),
        ("num_seeds", "replicas trained together (vmap), batch 100", "examples/s, all replicas"),
        ("width", "hidden width (two layers), batch 100", "fraction of matmul peak"),
    ]
    for ax, (key, xlabel, ylabel) in zip(axes, panels, strict=True):
        for platform, sweep in sweeps.items():
            points = sweep[key]
            x = [p["hidden"][0] if key == "width" else p[key] for p in points]
            y = [p["fraction_of_peak" if key == "width" else "examples_per_sec"] for p in points]
            ax.plot(x, y, marker="o", label=platform)
        ax.set(xlabel=xlabel, ylabel=ylabel, ylim=(0, None))
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("mlp_jax training throughput")
    return _save(fig, path)


def search_figures(study, folder: str) -> list[str]:
    """Write Optuna's figures of a search's study (optimisation history, intermediate values,
    parameter importances, parallel coordinates) to `folder`; return those written (a figure
    the study cannot show yet, such as importances before two complete trials, is skipped)."""
    import warnings

    import optuna
    from optuna.visualization import matplotlib as figures

    importances = functools.partial(
        figures.plot_param_importances, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
    )
    plotters = {
        "history": figures.plot_optimization_history,
        "intermediate_values": figures.plot_intermediate_values,
        "importances": importances,
        "parallel_coordinates": figures.plot_parallel_coordinate,
    }
    written = []
    for name, plot in plotters.items():
        with warnings.catch_warnings():  # Optuna calls its matplotlib figures experimental
            warnings.simplefilter("ignore")
            try:
                axes = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue
        ax = np.ravel(axes)[0]
        if name in ("history", "intermediate_values"):
            zoom(ax, study)
        if name == "intermediate_values":
            ax.set_xlabel("evaluation (validation accuracy reported to the pruner)")
        written.append(_save(ax.figure, os.path.join(folder, f"{name}.png")))
    return written


def zoom(ax, study) -> None:
    """Show a search's curves from 3 points below its best value (a diverged or untrained
    trial's 0.1 would flatten the rest), and no legend of one line per trial."""
    values = [t.value for t in study.trials if t.value is not None]
    if values:
        ax.set_ylim(max(min(values), max(values) - 0.03), max(values) + 0.003)
        ax.set_title(f"{ax.get_title()} (from {max(values) - 0.03:.3f})")
    if ax.get_legend() and len(study.trials) > 10:
        ax.get_legend().remove()
