"""Training data for `train_specialist`: input checks and the batch sources the accelerate loop draws from.

`prepare_training_data` checks states, targets and the task mask and brings them to training shape. A batch
source hands the loop one batch of rows at a time:

- `StateBatches`: hidden states computed beforehand (rows `(N, d_in)` or sequences `(n, T, d_in)`);
- `DatasetBatches`: step states read from a memory-mapped `datasets.Dataset` (`dataset_source` builds it after
  checking the dataset against the adapter and the targets);
- `TextBatches`: texts tokenised and split into steps on the fly, for joint training with a LoRA on the base
  (the states are computed inside the trained module, so gradients reach the LoRA).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .._arrays import as_task_array, task_names_of
from .._validation import InputError, to_numpy
from ..steps import tokenize_steps
from .model import SpecialistAdapter


def prepare_training_data(
    adapter: SpecialistAdapter, states: Any, tasks: Any, task_mask: Any = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check inputs and bring them to training shape.

    Accepts states `(rows, d_in)` with tasks `(rows, C)`, or states `(n, T, d_in)` with per-sequence tasks
    `(n, C)` or per-step tasks `(n, T, C)`. `task_mask` may be `(rows, n_tasks)`, `(n, T, n_tasks)` or
    `(T, n_tasks)` (the same for every sequence, e.g. `TaskStructure.step_tasks_`).

    With the step readout everything is flattened to rows: states `(N, d_in)`, tasks `(N, C)` (per-sequence
    targets broadcast to every step), mask `(N, n_tasks)`. With the sequence readout (`config.task_readout`
    `"sequence"`, or `"auto"` given per-sequence targets of sequences) the result keeps sequences: states
    `(n, T, d_in)`, tasks `(n, C)`, step mask `(n, T, n_tasks)`. Raises before any work on a wrong hidden size,
    task count, NaN or inf, or classification labels out of range.
    """
    states = to_numpy(states, "states", dtype=np.float32)
    check_hidden_size(adapter, states.shape)
    tasks, out_mask, readout = prepare_targets(adapter, states.shape, tasks, task_mask)
    if readout == "step":
        states = states.reshape(-1, adapter.config.d_in)
    if not np.isfinite(states).all():
        raise InputError(f"`states` contains {int((~np.isfinite(states)).sum())} NaN or infinite values.")
    return torch.from_numpy(states), tasks, out_mask


def check_hidden_size(adapter: SpecialistAdapter, shape: tuple[int, ...]) -> None:
    """Raise when states of `shape` do not end in the adapter's `d_in`."""
    d_in = adapter.config.d_in
    if len(shape) < 2 or shape[-1] != d_in:
        raise InputError(f"`states` has shape {tuple(shape)}, but the adapter expects (..., {d_in}) (d_in={d_in}); "
                         "the hidden size does not match.")


def task_columns(adapter: SpecialistAdapter, tasks: Any) -> list[str] | None:
    """The columns of named tasks (a `datasets.Dataset`, pandas `DataFrame` or dict of columns) to read, in the
    adapter's task order: matched by name to `config.task_names` when those were given (extra columns, such as the
    texts, are left out); in the tasks' own order when the adapter's tasks are unnamed (`task_0`, ...).

    Raises `InputError` when the adapter's named tasks are not all among the columns.
    """
    names = task_names_of(tasks)
    recorded = list(adapter.config.task_names)
    if names is None or not adapter.config.named_tasks:
        return None
    missing = [name for name in recorded if name not in names]
    if missing:
        raise InputError(f"`tasks` has the columns {names}, but the adapter's tasks are {recorded} "
                         f"(`config.task_names`), and {missing} are not among them; pass those columns, or an array "
                         "in the adapter's task order.")
    return recorded


def prepare_targets(adapter: SpecialistAdapter, states_shape: tuple[int, ...], tasks: Any,
                    task_mask: Any = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Targets and mask in training shape for states of `states_shape` (see `prepare_training_data`).

    Returns `(tasks, mask, readout)`: with the sequence readout `(n, C)` and a step mask `(n, T, n_tasks)`, with the
    step readout `(N, C)` and `(N, n_tasks)` over the flattened rows.
    """
    cfg = adapter.config
    tasks = to_numpy(as_task_array(tasks, task_columns(adapter, tasks)), "tasks", dtype=np.float64)
    width = cfg.n_target_columns
    if tasks.ndim == 1 and width == 1:
        tasks = tasks[:, None]
    if tasks.shape[-1] != width:
        raise InputError(
            f"`tasks` has shape {tasks.shape} with {tasks.shape[-1]} target columns, but the adapter has "
            f"n_tasks={cfg.n_tasks} with task_dims={cfg.task_dims} ({width} columns); the task count does not match."
        )
    lead = tuple(states_shape[:-1])
    ndim = len(states_shape)
    per_sequence = ndim == 3 and tasks.shape[:-1] == lead[:1]
    readout = cfg.task_readout if cfg.task_readout != "auto" else ("sequence" if per_sequence else "step")
    if readout == "sequence" and not per_sequence:
        raise InputError(
            f"`task_readout='sequence'` needs `states` of shape (n, T, {cfg.d_in}) and one target row per sequence "
            f"(`tasks` of shape (n, {width})); got states {tuple(states_shape)} and tasks {tasks.shape}."
        )
    if tasks.shape[:-1] == lead:
        pass
    elif per_sequence:
        tasks = np.broadcast_to(tasks[:, None, :], lead + (width,))
    else:
        raise InputError(
            f"`tasks` has shape {tasks.shape}; with `states` of shape {tuple(states_shape)} it must be "
            f"{lead + (width,)}" + (f" or {lead[:1] + (width,)}" if ndim == 3 else "") + "."
        )
    if task_mask is None:
        mask = np.ones(lead + (cfg.n_tasks,), dtype=bool)
    else:
        mask = to_numpy(task_mask, "task_mask", dtype=bool)
        if mask.shape == lead + (cfg.n_tasks,):
            pass
        elif ndim == 3 and mask.shape == (lead[1], cfg.n_tasks):
            mask = np.broadcast_to(mask[None], lead + (cfg.n_tasks,))
        else:
            raise InputError(f"`task_mask` has shape {mask.shape}; expected {lead + (cfg.n_tasks,)}"
                             + (f" or {(lead[1], cfg.n_tasks)}" if ndim == 3 else "") + ".")
    if readout == "sequence":  # one target row per sequence; `mask` says which rows count, `out_mask` which steps
        out_mask = np.ascontiguousarray(mask)
        tasks, mask = np.ascontiguousarray(tasks[:, 0]), out_mask.any(1)
    else:
        tasks = np.ascontiguousarray(tasks).reshape(-1, width)
        mask = out_mask = np.ascontiguousarray(mask).reshape(-1, cfg.n_tasks)
    column_mask = np.concatenate([np.repeat(mask[:, i : i + 1], d, axis=1) for i, d in enumerate(cfg.task_dims)], axis=1)
    if not np.isfinite(tasks[column_mask]).all():
        raise InputError("`tasks` contains NaN or infinite values on rows that count; mark absent labels in "
                         "`task_mask` (False) instead of NaN.")
    tasks = np.where(column_mask, tasks, 0.0)
    for i, (kind, cols) in enumerate(zip(cfg.task_types, cfg.target_columns)):
        counted = tasks[mask[:, i], cols]
        if kind == "regression" and len(counted) > 1 and np.ptp(counted, axis=0).max() == 0:
            raise InputError(f"`tasks[:, {cols.start}]` ({cfg.task_names[i]}) is constant ({counted[0, 0]:g}) on every "
                             "row that counts: there is nothing to predict (its R^2 is undefined); drop the column.")
    for i, (kind, k, cols) in enumerate(zip(cfg.task_types, cfg.n_classes, cfg.target_columns)):
        if kind == "classification":
            labels = tasks[mask[:, i], cols.start]
            if len(labels) and (np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() >= k):
                raise InputError(f"`tasks[:, {i}]` ({cfg.task_names[i]}) must hold integer labels in 0..{k - 1} "
                                 f"(n_classes={k}); got values in [{labels.min()}, {labels.max()}].")
    if not mask.any(0).all():
        empty = [cfg.task_names[i] for i in np.flatnonzero(~mask.any(0))]
        raise InputError(f"`task_mask` leaves no row for tasks {empty}.")
    if len(tasks) < 10:
        unit = "sequences" if readout == "sequence" else "rows"
        raise InputError(f"`states` has {len(tasks)} {unit}; at least 10 are needed to train.")
    return torch.from_numpy(tasks).float(), torch.from_numpy(out_mask), readout


class StateBatches:
    """Batches of precomputed training rows (or sequences) `h`, targets `tasks` and mask `task_mask`.

    Args:
        h (`torch.Tensor`): `(rows, d_in)` or `(n, T, d_in)` states.
        tasks (`torch.Tensor`): `(rows, C)` or `(n, C)` targets.
        task_mask (`torch.Tensor`): `(rows, n_tasks)` or `(n, T, n_tasks)` bool.
    """

    def __init__(self, h: torch.Tensor, tasks: torch.Tensor, task_mask: torch.Tensor) -> None:
        self.h, self.tasks, self.task_mask = h, tasks, task_mask

    def __len__(self) -> int:
        return len(self.h)

    def subset(self, index: torch.Tensor) -> StateBatches:
        """The rows in `index`."""
        return StateBatches(self.h[index], self.tasks[index], self.task_mask[index])

    def batch(self, rows: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        """Keyword arguments of `SpecialistAdapter.forward` for the rows in `rows`."""
        return {"h": self.h[rows].to(device), "tasks": self.tasks[rows].to(device),
                "task_mask": self.task_mask[rows].to(device)}

    def evaluation_batches(self, module: torch.nn.Module | None = None,
                           batch_size: int = 4096) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """`(h, tasks, task_mask)` chunks of every row, for held-out metrics."""
        for start in range(0, len(self), batch_size):
            yield (self.h[start : start + batch_size], self.tasks[start : start + batch_size],
                   self.task_mask[start : start + batch_size])


class DatasetBatches:
    """Batches read from a memory-mapped `datasets.Dataset` of sequences (e.g. the Arrow cache of `extract_steps`),
    so training never holds all states in memory.

    Args:
        dataset (`datasets.Dataset`): one row per sequence, `column` holding its `(T, d_in)` step states.
        column (`str`): the states column.
        n_steps (`int`): `T`, the same for every sequence.
        tasks (`torch.Tensor`): `(n, C)` targets (sequence readout) or `(n * T, C)` (step readout).
        task_mask (`torch.Tensor`): `(n, T, n_tasks)` or `(n * T, n_tasks)` bool.
        step_rows (`bool`): rows are steps (step readout) instead of sequences.
        index (`torch.Tensor`, *optional*): the rows of this subset.
    """

    def __init__(self, dataset: Any, column: str, n_steps: int, tasks: torch.Tensor, task_mask: torch.Tensor,
                 step_rows: bool, index: torch.Tensor | None = None) -> None:
        self.dataset, self.column, self.n_steps, self.step_rows = dataset, column, n_steps, step_rows
        self.tasks, self.task_mask = tasks, task_mask
        self.index = torch.arange(len(tasks)) if index is None else index

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, index: torch.Tensor) -> DatasetBatches:
        """The rows in `index` (positions in this subset)."""
        return DatasetBatches(self.dataset, self.column, self.n_steps, self.tasks, self.task_mask, self.step_rows,
                              self.index[index])

    def _states(self, rows: torch.Tensor) -> torch.Tensor:
        """States of subset positions `rows`: `(b, T, d)` sequences, or `(b, d)` steps."""
        global_rows = self.index[rows]
        sequences = global_rows // self.n_steps if self.step_rows else global_rows
        unique, inverse = torch.unique(sequences, return_inverse=True)
        table = self.dataset[unique.tolist()][self.column]
        block = torch.from_numpy(np.stack([np.asarray(x, dtype=np.float32) for x in table]))
        if self.step_rows:
            return block[inverse, global_rows % self.n_steps]
        return block[inverse]

    def batch(self, rows: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        """Keyword arguments of `SpecialistAdapter.forward` for the rows in `rows`."""
        global_rows = self.index[rows]
        return {"h": self._states(rows).to(device), "tasks": self.tasks[global_rows].to(device),
                "task_mask": self.task_mask[global_rows].to(device)}

    def evaluation_batches(self, module: torch.nn.Module | None = None,
                           batch_size: int = 1024) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """`(h, tasks, task_mask)` chunks of every row of the subset."""
        for start in range(0, len(self), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(self)))
            global_rows = self.index[rows]
            yield self._states(rows), self.tasks[global_rows], self.task_mask[global_rows]

    def input_moments(self, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dim mean and std (ddof 1) of the subset's step states in one streaming pass (float64), checking
        that every value is finite."""
        total, total_sq, count, shift = 0.0, 0.0, 0, None
        for h, _, _ in self.evaluation_batches(batch_size=batch_size):
            flat = h.reshape(-1, h.shape[-1]).double()
            if not bool(torch.isfinite(flat).all()):
                raise InputError(f"`states` contains {int((~torch.isfinite(flat)).sum())} NaN or infinite values.")
            if shift is None:  # sums about a first row: no cancellation for dims with large means
                shift = flat[0]
            centred = flat - shift
            total = total + centred.sum(0)
            total_sq = total_sq + (centred**2).sum(0)
            count += len(flat)
        mean = total / count
        variance = (total_sq - count * mean**2) / max(count - 1, 1)
        return (mean + shift).float(), variance.clamp(min=0).sqrt().float()


class TextBatches:
    """Batches of texts whose step states are computed by the trained module (joint LoRA training).

    Args:
        texts (`list[str]`): `n` texts with `T` steps each.
        spans: their step spans (`steps.step_spans`), or `None` for token steps.
        tokenizer: the base model's tokenizer.
        tasks (`torch.Tensor`): `(n, C)` per-sequence targets (sequence readout) or `(n, T, C)` per-step targets.
        task_mask (`torch.Tensor`): `(n, T, n_tasks)` bool.
        max_length (`int`, *optional*): truncation, as in `extract_steps`.
    """

    def __init__(self, texts: Sequence[str], spans: Sequence[Any] | None, tokenizer: Any, tasks: torch.Tensor,
                 task_mask: torch.Tensor, max_length: int | None = None) -> None:
        self.texts, self.spans, self.tokenizer = list(texts), spans, tokenizer
        self.tasks, self.task_mask, self.max_length = tasks, task_mask, max_length

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: torch.Tensor) -> TextBatches:
        """The texts in `index`."""
        keep = index.tolist()
        return TextBatches([self.texts[i] for i in keep], None if self.spans is None else [self.spans[i] for i in keep],
                           self.tokenizer, self.tasks[index], self.task_mask[index], self.max_length)

    def batch(self, rows: torch.Tensor, device: torch.device) -> dict[str, Any]:
        """Keyword arguments of `JointLoraModel.forward` for the texts in `rows`."""
        keep = rows.tolist()
        spans = None if self.spans is None else [self.spans[i] for i in keep]
        inputs, assign, _ = tokenize_steps(self.tokenizer, [self.texts[i] for i in keep], spans, self.max_length)
        return {"inputs": {k: v.to(device) for k, v in inputs.items()}, "assign": assign.to(device),
                "tasks": self.tasks[rows].to(device), "task_mask": self.task_mask[rows].to(device)}

    @torch.no_grad()
    def evaluation_batches(self, module: torch.nn.Module,
                           batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Step states of the texts through `module`'s current base (LoRA included), with targets and mask, in
        chunks (flattened to rows for the step readout)."""
        for start in range(0, len(self), batch_size):
            part = self.subset(torch.arange(start, min(start + batch_size, len(self))))
            states = module.step_states(part)
            if part.tasks.ndim == 3:  # step readout: one row per step
                yield (states.reshape(-1, states.shape[-1]), part.tasks.reshape(-1, part.tasks.shape[-1]),
                       part.task_mask.reshape(-1, part.task_mask.shape[-1]))
            else:
                yield states, part.tasks, part.task_mask


def is_dataset(states: Any) -> bool:
    """Whether `states` is a `datasets.Dataset` (read in batches from disk)."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a hard dependency
        return False
    return isinstance(states, datasets.Dataset)


def dataset_source(adapter: SpecialistAdapter, dataset: Any, tasks: Any, task_mask: Any) -> DatasetBatches:
    """A batch source over a memory-mapped `datasets.Dataset` of sequences (column `"steps"`, or its only array
    column), checked against the adapter and the targets before any training."""
    column = "steps" if "steps" in dataset.column_names else None
    if column is None:
        arrays = [k for k, f in dataset.features.items() if type(f).__name__.startswith("Array")]
        if len(arrays) != 1:
            raise InputError(f"`states` is a dataset without a 'steps' column and with array columns {arrays}; "
                             "expected one column of (T, d_in) step states per sequence.")
        column = arrays[0]
    if len(dataset) == 0:
        raise InputError("`states` is an empty dataset.")
    first = np.asarray(dataset[0][column], dtype=np.float32)
    if first.ndim != 2:
        raise InputError(f"`states` rows must be (T, d_in) step states; row 0 has shape {first.shape}.")
    shape = (len(dataset),) + first.shape
    check_hidden_size(adapter, shape)
    tasks_t, mask_t, readout = prepare_targets(adapter, shape, tasks, task_mask)
    return DatasetBatches(dataset.with_format("numpy"), column, first.shape[0], tasks_t, mask_t,
                          step_rows=readout == "step")
