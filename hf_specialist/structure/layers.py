"""`sweep_layers`: the step x task structure at every layer of a model, from one forward pass per batch.

Attention carries each step's content into the other steps' states, more with depth: a structure read at a deep
layer answers *where in the model* a task's information sits, and there every step may hold it. The sweep shows
where that begins: per layer the marks, the evidence and a confidence score (how cleanly marked and unmarked steps
separate), and a plot of them side by side. To ask *which part of the input* serves a task, pass
`context="isolated"` (each step encoded alone, so no content leaks at any layer).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._arrays import task_names_of
from .._validation import InputError
from ..hooks import is_causal
from ..steps import StepRule
from .discovery import TaskStructure

CLEAN_MARGIN = 1.0  # decades of p-value between the weakest mark and the critical value (and the critical value
# and the strongest unmarked step) for a task's marks to count as clean


def structure_confidence(structure: TaskStructure) -> float:
    """Share of tasks whose marks separate cleanly: every marked step at least `CLEAN_MARGIN` decades below the
    critical p-value, every unmarked step at least that far above it, and neither no step nor every step marked."""
    p = np.clip(structure.step_pvalues_, 1e-300, 1.0)
    critical = np.log10(structure.critical_pvalue_)
    clean = []
    for i in range(p.shape[0]):
        marks = structure.step_tasks_[:, i]
        evidence = np.log10(p[i])
        finite = np.isfinite(evidence)
        if not marks.any() or marks[finite].all():
            clean.append(False)
            continue
        weakest_mark = evidence[marks & finite].max()
        strongest_unmarked = evidence[~marks & finite].min()
        clean.append(weakest_mark <= critical - CLEAN_MARGIN and strongest_unmarked >= critical + CLEAN_MARGIN)
    return float(np.mean(clean))


@dataclass
class LayerSweep:
    """The structure at each hook point of a sweep.

    Attributes:
        hook_points (`list[str]`): resolved hook points, in the order given (`"layers.*"`: shallow to deep).
        structures (`dict[str, TaskStructure]`): the fitted structure per hook point.
        confidence (`dict[str, float]`): `structure_confidence` per hook point.
    """

    hook_points: list[str]
    structures: dict[str, TaskStructure]
    confidence: dict[str, float] = field(default_factory=dict)

    def best(self) -> str:
        """The hook point of highest confidence (the first listed among ties)."""
        return max(self.hook_points, key=lambda point: (self.confidence[point], -self.hook_points.index(point)))

    def table(self, task_names: Sequence[str] | None = None) -> str:
        """One line per hook point: confidence and the steps marked for each task (1-based); tasks named by
        `task_names`, else by the columns of a `datasets.Dataset` of tasks."""
        M = next(iter(self.structures.values())).n_tasks_
        recorded = getattr(next(iter(self.structures.values())), "task_names_", None)
        names = list(task_names or recorded or [f"task {i}" for i in range(M)])
        width = max(len("hook point"), *(len(p) for p in self.hook_points))
        lines = [f"{'hook point':<{width}} | confidence | " + " | ".join(names)]
        for point in self.hook_points:
            marks = self.structures[point].step_tasks_
            cells = [",".join(str(t + 1) for t in np.flatnonzero(marks[:, i])) or "-" for i in range(M)]
            lines.append(f"{point:<{width}} | {self.confidence[point]:>10.2f} | " + " | ".join(cells))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record: the most confident hook point, and per hook point its confidence and fitted
        structure (`TaskStructure.to_dict`, which `TaskStructure.from_dict` reads back)."""
        return {"best": self.best(), "hook_points": list(self.hook_points),
                "layers": {point: {"confidence": self.confidence[point], "structure": self.structures[point].to_dict()}
                           for point in self.hook_points}}

    def plot(self, path: str | os.PathLike, task_names: Sequence[str] | None = None) -> Path:
        """A PNG per task panel: layers x steps of `-log10 p`, marked steps dotted."""
        from .figures import layer_sweep_heatmap

        evidence = np.stack([-np.log10(np.clip(self.structures[p].step_pvalues_, 1e-300, 1.0))
                             for p in self.hook_points])  # (layers, M, T)
        marks = np.stack([self.structures[p].step_tasks_.T for p in self.hook_points])
        critical = -np.log10(next(iter(self.structures.values())).critical_pvalue_)
        recorded = getattr(next(iter(self.structures.values())), "task_names_", None)
        return layer_sweep_heatmap(evidence, marks, self.hook_points, path, critical=critical,
                                   task_names=task_names or recorded)


def sweep_layers(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str] | Any,
    tasks: Any,
    *,
    hook_points: str | Sequence[str] = "layers.*",
    steps: StepRule = "token",
    pool: str = "mean",
    context: str = "full",
    max_length: int | None = None,
    batch_size: int = 16,
    chunk_size: int = 2048,
    column: str | None = None,
    progress: bool | None = None,
    plot: str | os.PathLike | None = None,
    **structure_kwargs: Any,
) -> LayerSweep:
    """Fit the step x task structure at every hook point from one forward pass per batch of texts.

    Texts are extracted in chunks; each chunk's step states at every hook point feed that hook point's
    `TaskStructure.partial_fit` (so memory holds one chunk, and the reduction of each layer is learned from the
    first chunk). Runs in one process.

    Args:
        model, tokenizer, texts, tasks: as in `discover`.
        hook_points (`str` or `list[str]`, *optional*, defaults to `"layers.*"`): every layer, or any specs
            `resolve_hook_points` takes (`["embed", "layers.0", "layers.3"]`).
        steps, pool, context, max_length, batch_size, column: as in `extract_steps`.
        chunk_size (`int`, *optional*, defaults to 2048): texts per chunk.
        progress (`bool`, *optional*): progress bars.
        plot (`str`, *optional*): write the sweep's heatmap PNG here.
        **structure_kwargs: `TaskStructure` arguments (a sufficient-statistic test); in full context `causal`,
            when not given, is measured per hook point (`hooks.is_causal`).

    Returns:
        `LayerSweep`: the structure and confidence per hook point; `.table()`, `.best()`, `.plot(path)`.
    """
    from ..data import iter_layer_step_arrays
    from ..steps import stack_steps
    from .from_model import check_text_inputs, recording_context

    specs = [hook_points] if isinstance(hook_points, str) else list(hook_points)
    names = task_names_of(tasks)
    texts, tasks, points, spans = check_text_inputs(model, texts, tasks, column, specs, steps, pool, batch_size,
                                                    chunk_size, context, tokenizer, max_length)
    points = list(dict.fromkeys(points))  # a hook point named twice is fitted once
    structure_kwargs.setdefault("progress", False)
    structures = {point: TaskStructure(**structure_kwargs) for point in points}
    from .streaming import require_statistics_test

    prototype = next(iter(structures.values()))
    prototype._validate()  # bad parameters fail before the first forward pass
    require_statistics_test(prototype)
    if context == "full" and structure_kwargs.get("causal") is None:  # measured per hook point, as in `discover`
        for point, structure in structures.items():
            structure.causal = is_causal(model, point)
    import time

    from .._progress import progress_lines, say

    started = time.perf_counter()
    starts = range(0, len(texts), chunk_size)
    with recording_context(list(structures.values()), context):
        for start in progress_lines(starts, len(starts), f"sweep {len(points)} hook points", progress):
            lo, hi = start, min(start + chunk_size, len(texts))
            per_text = list(iter_layer_step_arrays(model, tokenizer, texts[lo:hi],
                                                   None if spans is None else spans[lo:hi], points, pool, batch_size,
                                                   max_length, progress=False, context=context))
            for point in points:
                states = stack_steps([row[point] for row in per_text], pad_steps=False)
                structures[point].partial_fit(states, tasks[lo:hi])
    for point, structure in structures.items():
        if not hasattr(structure, "step_tasks_"):
            raise InputError(f"{len(texts)} texts are too few for the structure test at {point}; pass more texts.")
        structure.task_names_ = names
    sweep = LayerSweep(points, structures, {p: structure_confidence(s) for p, s in structures.items()})
    if plot is not None:
        sweep.plot(plot)
    if progress is not False:
        say(f"sweep_layers: {len(texts)} texts, {len(points)} hook points in {time.perf_counter() - started:.1f} s; "
            f"most confident {sweep.best()} ({sweep.confidence[sweep.best()]:.2f}). sweep.table() lists them all.")
    return sweep
