"""Fitting a `TaskStructure` from a stream of batches: `partial_fit`, `fit(iterable)`, and several processes.

A sufficient-statistic test (`fisher_z`, `rff_z`) reads only the count, means and cross-products of the rows
`[steps | tasks]`, which add up over batches and processes. What every batch must share (the layout, the per-step
reduction and the test's feature map) is learned once from the first batch, on the main process, and broadcast.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._arrays import names_differ, task_names_of
from .statistics import SufficientStatistics
from .._validation import InputError, InputTypeError

TaskStructure = Any  # the estimator these functions fit (`discovery.TaskStructure`, which imports this module)


def as_pair(batch: Any) -> tuple[Any, Any]:
    """A `(states, tasks)` batch of a stream, checked."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise InputTypeError(f"Each batch must be a `(states, tasks)` pair, got {type(batch).__name__}.")
    return batch[0], batch[1]


def require_statistics_test(structure: TaskStructure) -> None:
    """Refuse streaming with a test that needs every row at once."""
    test = structure._test_instance()
    if not getattr(test, "supports_statistics", False):
        raise InputError(
            f"Streaming (partial_fit, fit of batches) needs a test computed from sufficient statistics "
            f"('fisher_z' or 'rff_z'); {test.name!r} needs every sample at once: pass arrays to fit()."
        )


def check_task_names(expected: list[str] | None, tasks: Any, batch: str) -> list[str] | None:
    """The task names a batch carries (`task_names_of`), refused when they differ from the first batch's: a
    `Dataset` whose columns come in another order would mix one task's statistics into another's."""
    names = task_names_of(tasks)
    if names_differ(expected, names):
        raise InputError(f"{batch} has the task columns {names}, but the first batch had {expected}; pass every "
                         "batch's tasks with the same columns in the same order.")
    return names


def partial_fit(structure: TaskStructure, states: Any, tasks: Any) -> TaskStructure:
    """Add one batch to `structure`'s statistics and refit (see `TaskStructure.partial_fit`)."""
    first = getattr(structure, "_statistics", None) is None
    if first:
        structure._validate()
        require_statistics_test(structure)
    expected = None if first else getattr(structure, "task_names_", None)
    names = check_task_names(expected, tasks, "this batch") or expected
    states, tasks = structure._check_batch(states, tasks)
    if first:
        structure._reset()
        states, tasks = structure._setup(states, tasks)
        structure._statistics = SufficientStatistics(structure._layout.n_columns())
    structure.task_names_ = names
    structure._statistics.update(structure._layout.rows(states, tasks))
    if structure._statistics.count < structure._min_samples(structure._test_instance()):
        return structure
    return structure._decide_from_statistics()


def fit_batches(structure: TaskStructure, batches: Iterable[tuple[Any, Any]]) -> TaskStructure:
    """`fit` of an iterable of `(states, tasks)` batches, summed across processes when there are several."""
    from .._distributed import is_main_process, world_size

    require_statistics_test(structure)
    structure._reset()
    iterator = iter(batches)
    first = next(iterator, None)
    world = world_size()
    first_rows = None
    if world > 1:  # every process takes the main process's layout, reduction and feature map
        import torch.distributed as dist

        box: list[Any] = [None]
        if is_main_process():  # a bad first batch raises on every process, not only here (no process left waiting)
            try:
                if first is None:
                    raise InputError("The main process got no batch; every process needs the layout of a first "
                                     "batch.")
                first_rows = structure._setup(*structure._check_batch(*as_pair(first)))
                box = [("ok", structure._layout)]
            except (InputError, ValueError, TypeError) as error:
                box = [("error", f"{type(error).__name__}: {error}")]
        dist.broadcast_object_list(box, src=0)
        status, payload = box[0]
        if status == "error":
            raise InputError(f"The main process's first batch was refused: {payload}")
        structure._adopt(payload)
        if first is not None and first_rows is None:
            first_rows = structure._check_batch(*as_pair(first))
    elif first is None:
        raise InputError("`fit` got an empty iterable of batches.")
    else:
        first_rows = structure._setup(*structure._check_batch(*as_pair(first)))
    structure._statistics = SufficientStatistics(structure._layout.n_columns())
    if first_rows is not None:
        structure._statistics.update(structure._layout.rows(*first_rows))
    names = check_task_names(None, as_pair(first)[1], "the first batch") if first is not None else None
    for i, batch in enumerate(iterator, start=2):
        pair = as_pair(batch)
        names = check_task_names(names, pair[1], f"batch {i}") or names
        structure._statistics.update(structure._layout.rows(*structure._check_batch(*pair)))
    structure._statistics.all_reduce()
    structure._check_enough(structure._statistics.count, structure._test_instance())
    structure._decide_from_statistics()
    structure.task_names_ = names
    return structure
