"""Fitting a `TaskStructure` from a stream of batches: `partial_fit`, `fit(iterable)`, and several processes.

A sufficient-statistic test (`fisher_z`, `rff_z`) reads only the count, means and cross-products of the rows
`[steps | tasks]`, which add up over batches and processes. What every batch must share (the layout, the per-step
reduction and the test's feature map) is learned once from the first batch, on the main process, and broadcast.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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


def partial_fit(structure: TaskStructure, states: Any, tasks: Any) -> TaskStructure:
    """Add one batch to `structure`'s statistics and refit (see `TaskStructure.partial_fit`)."""
    first = getattr(structure, "_statistics", None) is None
    if first:
        structure._validate()
        require_statistics_test(structure)
    states, tasks = structure._check_batch(states, tasks)
    if first:
        structure._reset()
        states, tasks = structure._setup(states, tasks)
        structure._statistics = SufficientStatistics(structure._layout.n_columns())
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
    for batch in iterator:
        structure._statistics.update(structure._layout.rows(*structure._check_batch(*as_pair(batch))))
    structure._statistics.all_reduce()
    structure._check_enough(structure._statistics.count, structure._test_instance())
    return structure._decide_from_statistics()
