"""The structure's figures: the step x task heatmap (truth and p-values beside the marks) and the layer sweep's
heatmap. They live here so that the adapter's artifact and `sweep_layers` can draw them without importing the
presentation module `plots` (which re-exports them)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import InputError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike) -> Path:
    """Lay out, write as PNG (creating the folder) and close a figure."""
    import warnings

    plt = _pyplot()
    with warnings.catch_warnings():  # panels that cannot be laid out tighter keep their layout, without a warning
        warnings.filterwarnings("ignore", message=".*[Tt]ight.?layout.*", category=UserWarning)
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

def step_task_heatmap(
    estimate: Any,
    path: str | os.PathLike,
    truth: Any | None = None,
    task_names: Sequence[str] | None = None,
    title: str = "Step x task structure",
    pvalues: Any | None = None,
) -> Path:
    """Write the `(T, M)` step x task matrix as a heatmap PNG, with the ground truth beside it when known.

    With `pvalues` (`(M, T)` raw p-values of each step's test) a further panel shows the evidence as `-log10 p`,
    the marked steps dotted."""
    plt = _pyplot()
    estimate = np.asarray(estimate, dtype=float)
    if estimate.ndim != 2:
        raise InputError(f"`estimate` must be a (T, M) matrix, got shape {estimate.shape}.")
    panels = [("estimate", estimate)] if truth is None else [("truth", np.asarray(truth, dtype=float)), ("estimate", estimate)]
    if pvalues is not None:
        evidence = -np.log10(np.clip(np.nan_to_num(np.asarray(pvalues, dtype=float).T, nan=1.0), 1e-300, 1.0))
        panels.append(("-log10 p", evidence))
    T, M = estimate.shape
    fig, axes = plt.subplots(1, len(panels), figsize=(1.2 + 0.5 * M * len(panels) + 1.5, 1.0 + 0.25 * T), squeeze=False)
    names = list(task_names) if task_names is not None else [f"task {i}" for i in range(M)]
    for ax, (label, matrix) in zip(axes[0], panels):
        if label == "-log10 p":
            image = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0, vmax=max(float(np.percentile(matrix, 90)),
                                                                                     2.0), interpolation="nearest")
            rows, cols = np.nonzero(estimate > 0.5)
            ax.scatter(cols, rows, s=14, c="white")
            fig.colorbar(image, ax=ax)
        else:
            ax.imshow(matrix, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label)
        ax.set_xticks(range(M), names, rotation=45, ha="right")
        ax.set_yticks(range(T), [str(t + 1) for t in range(T)])
        ax.set_ylabel("step")
    fig.suptitle(title)
    return _save(fig, path)

def layer_sweep_heatmap(evidence: np.ndarray, marks: np.ndarray, hook_points: Sequence[str],
                        path: str | os.PathLike, critical: float | None = None,
                        task_names: Sequence[str] | None = None) -> Path:
    """One panel per task: hook points (rows) x steps (columns) coloured by `-log10 p` (`evidence (layers, M, T)`),
    marked steps dotted; the colour scale saturates at 4x the critical value's `-log10`."""
    plt = _pyplot()
    n_layers, M, T = evidence.shape
    names = list(task_names) if task_names is not None else [f"task {i}" for i in range(M)]
    top = 4 * critical if critical else float(np.nanmax(evidence))
    fig, axes = plt.subplots(1, M, figsize=(1.5 + 0.45 * T * M + 1.0, 1.2 + 0.3 * n_layers), squeeze=False)
    for i, ax in enumerate(axes[0]):
        image = ax.imshow(np.clip(evidence[:, i], 0, top), aspect="auto", cmap="viridis", vmin=0, vmax=top,
                          interpolation="nearest")
        rows, cols = np.nonzero(marks[:, i])
        ax.scatter(cols, rows, s=12, c="white", marker="o")
        ax.set_title(names[i])
        ax.set_xticks(range(T), [str(t + 1) for t in range(T)])
        ax.set_yticks(range(n_layers), list(hook_points) if i == 0 else [""] * n_layers)
        ax.set_xlabel("step")
    fig.colorbar(image, ax=axes[0].tolist(), label="-log10 p (dots: marked)")
    return _save(fig, path)
