"""What a fitted `TaskStructure` found, in words a user can check: per task and step the p-value, statistic and
mark, what the data say about the fit's assumptions, and warnings for patterns that point at a wrong answer."""

from __future__ import annotations

from typing import Any

import numpy as np


def report_rows(structure: Any) -> list[dict[str, Any]]:
    """One dict per task and step: `task`, `step` (1-based), `pvalue` (raw), `statistic`, `marked`."""
    rows = []
    pvalues = getattr(structure, "step_pvalues_", None)
    statistics = getattr(structure, "step_statistics_", None)
    M, T = structure.step_tasks_.shape[1], structure.step_tasks_.shape[0]
    for i in range(M):
        for t in range(T):
            p = None if pvalues is None or not np.isfinite(pvalues[i, t]) else float(pvalues[i, t])
            s = None if statistics is None or not np.isfinite(statistics[i, t]) else float(statistics[i, t])
            rows.append({"task": i, "step": t + 1, "pvalue": p, "statistic": s,
                         "marked": bool(structure.step_tasks_[t, i])})
    return rows


def _isolated(structure: Any) -> bool:
    """Whether `hfs.discover` / `sweep_layers` encoded each step alone (`context_`)."""
    return getattr(structure, "context_", None) == "isolated"


def _isolate_hint(structure: Any) -> str:
    """How to encode each step alone, unless the states already were."""
    if _isolated(structure):
        return ("The steps were encoded alone, so this is not leakage: each step's own text predicts the task, or "
                "the steps' texts depend on each other.")
    return ("Try an earlier layer (hfs.sweep_layers), or, to ask which part of the input serves it, encode each step "
            "alone: hfs.discover(...) with sentence or span steps does by default, or extract_steps(..., "
            "context='isolated').")


def structure_warnings(structure: Any) -> list[str]:
    """Patterns in the marks that point at a wrong answer (a task on every step or on none)."""
    out = []
    T = structure.step_tasks_.shape[0]
    names = getattr(structure, "task_names_", None)

    def task(i: int) -> str:
        return f"task {i} ({names[i]!r})" if names else f"task {i}"

    for i, column in enumerate(structure.step_tasks_.T):
        if T > 2 and column.all():
            out.append(f"{task(i)} is marked on every step: content may leak between steps (attention carries "
                       "each step's content into the others). " + _isolate_hint(structure))
        elif not column.any():
            out.append(f"{task(i)} is marked on no step: no step's state predicts it beyond the others at this "
                       "level (or the reduction lost it: see kept_share_).")
    r2 = getattr(structure, "step_r2_", None)
    if r2 is not None and T > 2:
        for i, row in enumerate(r2):
            unmarked = row[~structure.step_tasks_[:, i] & np.isfinite(row)]
            if len(unmarked) == 0 and np.nanmin(row) > 0.5:
                out.append(f"each step's state alone predicts {task(i)} (R^2 >= {np.nanmin(row):.2f} on every step): "
                           "at this layer the steps' contents are mixed, so no step is singled out. "
                           + _isolate_hint(structure))
    share = getattr(structure, "kept_share_", None)
    if share is not None:
        for j, value in enumerate(share):
            if np.isfinite(value) and value < 0.1:
                out.append(f"the reduced states keep only {value:.2f} of what the full states predict for task "
                           f"column {j}: pass a larger `project` or reduction='supervised'.")
    return out


def _wider_sets(structure: Any) -> str:
    """`" (past: 13-65 dims of each earlier step)"` for the sets that read more dims than the tested step's (the
    past's range over its tested steps)."""
    widths = dict(getattr(structure, "conditioning_dims_", None) or {})
    tested = widths.pop("tested", None)
    wider = []
    for name, width in widths.items():
        per_test = [w for w in np.atleast_1d(width).tolist() if w > 0]  # the past: one width per tested step
        if tested is None or not per_test or max(per_test) <= tested:
            continue
        low, high = min(per_test), max(per_test)
        span = f"{high}" if low == high else f"{low}-{high}"
        wider.append(f"{name}: {span} dims of each {'earlier' if name == 'past' else 'conditioning'} step")
    return f" ({'; '.join(wider)})" if wider else ""


def _context_line(structure: Any) -> list[str]:
    """The states' context when `hfs.discover` or `sweep_layers` extracted them (nothing for arrays passed in)."""
    context = getattr(structure, "context_", None)
    if context == "isolated":
        return ["States: each step's text encoded on its own (context 'isolated': which part of the input)."]
    if context == "full":
        return ["States: whole texts (context 'full': a step's state also reads the steps it attends to)."]
    return []


def format_report(structure: Any, names: list[str] | None = None) -> str:
    """A plain-text table (tasks x steps of `-log10 p`, marks starred) and the notes under it."""
    step_tasks = structure.step_tasks_
    T, M = step_tasks.shape
    names = list(names) if names is not None else [f"task {i}" for i in range(M)]
    if len(names) != M:
        from .._validation import InputError

        raise InputError(f"`task_names` has {len(names)} names for {M} tasks; pass one name per task.")
    pvalues = getattr(structure, "step_pvalues_", None)
    width = max(len(n) for n in names)
    lines = [f"Task structure: {T} steps x {M} tasks, test {getattr(structure, 'test', '?')!s}, "
             f"conditioning {getattr(structure, 'conditioning_', '?')}{_wider_sets(structure)}, "
             f"critical p {getattr(structure, 'critical_pvalue_', float('nan')):.2g} "
             f"({getattr(structure, 'correction', None)} at alpha {structure.alpha}).",
             *_context_line(structure),
             "Cells: -log10 of each step's raw p-value; * = marked; steps numbered from 1 (step t is row t - 1 of "
             "step_tasks_).",
             " " * width + " | " + " ".join(f"{t + 1:>7}" for t in range(T))]
    for i in range(M):
        cells = []
        for t in range(T):
            p = np.nan if pvalues is None else pvalues[i, t]
            value = "-" if not np.isfinite(p) else f"{min(abs(-np.log10(max(p, 1e-300))), 300):.1f}"
            cells.append(f"{value + ('*' if step_tasks[t, i] else ' '):>7}")
        lines.append(f"{names[i]:>{width}} | " + " ".join(cells))
    markov = getattr(structure, "markov_pvalue_", None)
    if markov is not None:
        lines.append(f"Neighbours screen each step from the far steps: p = {markov:.3g} "
                     + ("(holds: a Markov sequence)." if markov >= structure.alpha else
                        "(fails: far steps depend on each other beyond the neighbours"
                        + ("" if _isolated(structure) else ", as where content leaks between steps through attention")
                        + "; conditioning='auto' then "
                        "marks a step only where the tests given the band and given every other step both reject, "
                        "and for a decoder's states (causal=True) also the test given every earlier step; this fit "
                        f"ran {getattr(structure, 'conditioning_', '?')}. That removes some leaked marks, not all; "
                        + ("with each step encoded alone, as here, what remains is the texts' own dependence)."
                           if _isolated(structure) else
                           "encoding each step alone removes them: context='isolated', discover's default for "
                           "sentence steps).")))
    temporal = getattr(structure, "temporal_pvalues_", None)
    if temporal is not None:
        dependent = int((temporal < structure.alpha / max(len(temporal), 1)).sum())
        lines.append(f"Consecutive steps dependent at {dependent} of {len(temporal)} boundaries"
                     + (" (none: no step can carry the previous step's action; carryover does not matter)."
                        if dependent == 0 else
                        f"; carryover={getattr(structure, 'carryover_', None)} (True reads each run of rejections as "
                        "the run plus the step after it: the paper's action model)."))
    lines += [f"Warning: {w}" for w in structure_warnings(structure)]
    return "\n".join(lines)
