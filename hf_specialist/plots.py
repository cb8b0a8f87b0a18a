"""PNG plots: the step x task heatmap (truth beside estimate), relevant/irrelevant R² bars, training curves."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import InputError
from .structure.figures import _pyplot, _save, layer_sweep_heatmap, step_task_heatmap

__all__ = ["kept_dropped_bars", "lambda_path_plot", "layer_sweep_heatmap", "r2_bars", "step_task_heatmap",
           "training_curves"]


def r2_bars(scores: Mapping[str, Mapping[str, float]], path: str | os.PathLike, title: str = "Specialist latents") -> Path:
    """Bars of `latents/r2_relevant` and `latents/r2_irrelevant` per method: `{method: {"r2_relevant", "r2_irrelevant"}}`."""
    plt = _pyplot()
    methods = list(scores)
    x = np.arange(len(methods))
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(methods), 3.2))
    rel = [scores[m]["r2_relevant"] for m in methods]
    irr = [scores[m]["r2_irrelevant"] for m in methods]
    ax.bar(x - 0.2, rel, 0.4, label="R² relevant (higher is better)")
    ax.bar(x + 0.2, irr, 0.4, label="R² irrelevant (lower is better)")
    ax.set_xticks(x, methods, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside, not over, the bars
    ax.set_title(title)
    return _save(fig, path)


def kept_dropped_bars(table: Mapping[str, Mapping[str, Mapping[str, float]]], path: str | os.PathLike,
                      title: str = "What each block keeps", factors: Sequence[str] = ("own", "other", "name", "time",
                                                                                       "template")) -> Path:
    """One panel per task: normalised probe accuracy of each factor from each block (`knowledge.kept_and_dropped`).

    The task's own attribute should be kept (near 1); the other attribute and the surface dropped (near 0).
    """
    plt = _pyplot()
    methods = [m for m in table if m not in ("full state (accuracy)", "chance")]
    tasks = list(table[methods[0]])
    fig, axes = plt.subplots(1, len(tasks), figsize=(1.5 + 3.2 * len(tasks), 3.2), squeeze=False, sharey=True)
    x = np.arange(len(factors))
    width = 0.8 / len(methods)
    values = [table[m][t][f] for m in methods for t in tasks for f in factors if np.isfinite(table[m][t][f])]
    top = max([1.15] + [v + 0.1 for v in values])
    for ax, task in zip(axes[0], tasks):
        for j, method in enumerate(methods):
            ax.bar(x + (j - (len(methods) - 1) / 2) * width, [table[method][task][f] for f in factors], width,
                   label=method)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(x, factors, rotation=30, ha="right")
        ax.set_title(task)
        ax.set_ylim(-0.2, top)
    axes[0][0].set_ylabel("normalised probe accuracy")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.suptitle(title)
    return _save(fig, path)


def training_curves(history: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Loss terms and support size over optimizer steps from `train_specialist`'s history."""
    plt = _pyplot()
    steps = history.get("steps", [])
    if not steps:
        raise InputError("`history` has no logged steps to plot.")
    chosen = history.get("selected_sparsity")
    runs: dict[float, list[Mapping[str, Any]]] = {}
    for record in steps:  # one line per lambda of the path (each run counts its own steps)
        runs.setdefault(float(record.get("sparsity", 0.0)), []).append(record)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for k, (lam, records) in enumerate(sorted(runs.items())):
        x = [r["step"] for r in records]
        marked = chosen is not None and np.isclose(lam, chosen)
        style = dict(color=f"C{k % 10}", linewidth=2.2 if marked else 1.0, alpha=1.0 if marked else 0.7)
        label = f"lambda {lam:.3g}" + (" (chosen)" if marked else "")
        ax1.plot(x, [r["loss"] for r in records], label=label, **style)
        ax2.plot(x, [r["adapter/support_size"] for r in records], label=label, **style)
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss")
    ax2.set_xlabel("step")
    ax2.set_ylabel("adapter/support_size")
    ax2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _save(fig, path)


def lambda_path_plot(history: Mapping[str, Any], path: str | os.PathLike,
                     task_names: Sequence[str] | None = None) -> Path:
    """The lambda path of `train_specialist(..., sparsity="auto")` from its returned `history`, as a PNG.

    Left: the held-out loss that the rule compares per task (`lambda_path.selection_loss`: standardised squared
    error, or the normalised Brier score of a classification task) against lambda with one standard error as error
    bars, and the rule's threshold per task (dashed) when the one-standard-error rule chose (none for a task that
    did not vote); right: support size per task. The kept lambda is
    marked. The dense model (lambda 0) sits at the left edge of the log axis, labelled "0".

    Args:
        history (`dict`): what `train_specialist` returned (its `"path"` and `"selected_sparsity"`).
        path (`str` or `os.PathLike`): the PNG to write.
        task_names (`list[str]`, *optional*): legend names of the tasks (default `task_0`, `task_1`, ...).

    Returns:
        `Path` of the PNG.
    """
    from .adapter.lambda_path import selection_loss

    records = list(history.get("path") or [])
    if not records:
        raise InputError("`history` has no lambda path to plot (`history['path']` is empty).")
    n_tasks = sum(1 for key in records[0] if key.startswith("task_") and "/" not in key)
    names = list(task_names) if task_names is not None else [f"task_{i}" for i in range(n_tasks)]
    if len(names) != n_tasks:
        raise InputError(f"`task_names` has {len(names)} names, but the path has {n_tasks} tasks.")
    lambdas = np.array([float(r["sparsity"]) for r in records])
    positive = lambdas[lambdas > 0]
    zero_at = positive.min() / 3 if len(positive) else 1.0
    x = np.where(lambdas > 0, lambdas, zero_at)
    chosen = history.get("selected_sparsity")
    thresholds = (history.get("selection") or {}).get("thresholds")
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, name in enumerate(names):
        losses, errors, _ = zip(*(selection_loss(r, i) for r in records))
        ax1.errorbar(x, losses, yerr=errors, marker="o", capsize=3, color=f"C{i % 10}", label=name)
        if thresholds is not None and i < len(thresholds) and thresholds[i] is not None:
            ax1.axhline(thresholds[i], color=f"C{i % 10}", linestyle="--", linewidth=0.8)
        sizes = np.asarray([np.asarray(r["support"])[i].sum() for r in records])
        ax2.plot(x, sizes, marker="o", color=f"C{i % 10}", label=name)
    if chosen is not None:
        at = float(chosen) if float(chosen) > 0 else zero_at
        for ax in (ax1, ax2):
            ax.axvline(at, color="black", linewidth=1.2, alpha=0.6, label=f"kept: lambda {float(chosen):.3g}")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ticks = sorted(set(x.tolist()))
        ax.set_xticks(ticks, ["0" if np.isclose(t, zero_at) and not np.isin(t, positive) else f"{t:.3g}"
                              for t in ticks], rotation=30)
        ax.minorticks_off()
        ax.set_xlabel("lambda (l1 on the task x latent mask)")
    ax1.set_ylabel("held-out loss, 1 = the null (± 1 s.e.)")
    ax2.set_ylabel("support size (latents)")
    ax2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _save(fig, path)


