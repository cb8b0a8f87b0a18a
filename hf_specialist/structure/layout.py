"""What every batch of one structure fit shares, learned once from the first batch: the shapes, the per-step
reduction and the test's feature map; and the data matrix `[steps (T * d) | tasks (M * d_g)]` the tests read.

`TaskStructure.fit` learns a `BatchLayout` from its array, `partial_fit` and `fit(iterable)` from their first batch
(the main process's, broadcast to the others), and every later batch must match it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._arrays import as_task_array
from .._validation import InputError, check_array, check_consistent_length
from .ci_tests import CITest
from .reduction import StepReduction, choose_reduction


def as_batch(states: Any, tasks: Any) -> tuple[np.ndarray, np.ndarray]:
    """One batch's shape and value checks, as `(n, T, d)` states and `(n, M, d_g)` tasks."""
    states = check_array(states, "states", ndims=(2, 3), expected="(n_sequences, T) or (n_sequences, T, d)")
    tasks = check_array(as_task_array(tasks), "tasks", ndims=(1, 2, 3),
                        expected="(n_sequences, M) or (n_sequences, M, d_g)")
    check_consistent_length(states=states, tasks=tasks)
    if states.ndim == 2:
        states = states[:, :, None]
    if tasks.ndim == 1:
        tasks = tasks[:, None, None]
    elif tasks.ndim == 2:
        tasks = tasks[:, :, None]
    return states, tasks


def check_segments(T: int, segment_length: int, drop_last: bool, mode: str) -> None:
    """Refuse a number of steps `T` that the segment parameters cannot use (before any work)."""
    L = segment_length
    if T < 2:
        raise InputError(f"`states` has T={T} step per sequence; structure discovery needs at least 2 steps (did "
                         "the step rule split the texts?).")
    if T % L and not drop_last:
        raise InputError(
            f"`states` has T={T} steps, which is not a multiple of segment_length={L}. Pass "
            f"drop_last=True to drop the last {T % L} steps, or choose another segment_length."
        )
    if T // L < (2 if mode == "pairwise" else 1):
        raise InputError(f"`states` has {T // L} segment(s) of length {L}; mode={mode!r} needs at least 2.")


@dataclass
class BatchLayout:
    """The layout of one fit's batches and the maps learned from its first batch.

    Attributes:
        steps_shape (`tuple[int, int]`): `(T_full, d)` of each sequence's states as given.
        tasks_shape (`tuple[int, int]`): `(M, d_g)` of each sequence's tasks.
        tested_steps (`int`): `T`, the leading steps the tests read (a multiple of the segment length).
        reduction (`StepReduction`, *optional*): the per-step reduction (`None`: every dim is kept).
        features (*optional*): the test's feature map (`rff_z`), applied after the reduction.
        kept_share (`np.ndarray`, *optional*): per task column, the share of what the full states predict that the
            reduced states keep.
        reduction_used (`str`, *optional*): ``"pca"`` or ``"supervised"`` (`None`: no reduction).
        tested (`int`, *optional*): the leading columns of each step that the tested step contributes (`None`: all
            of them); the columns after them are read only where the step is in a conditioning set.
    """

    steps_shape: tuple[int, int]
    tasks_shape: tuple[int, int]
    tested_steps: int
    reduction: StepReduction | None = None
    features: Any = None
    kept_share: np.ndarray | None = None
    reduction_used: str | None = None
    tested: int | None = None

    @classmethod
    def learn(cls, states: np.ndarray, tasks: np.ndarray, *, segment_length: int, kept_dims: int | None,
              reduction: str, seed: int | None, test: CITest, stored_dims: int | None = None
              ) -> tuple[BatchLayout, np.ndarray, np.ndarray]:
        """Learn the layout from a checked first batch (`as_batch`).

        Args:
            states (`np.ndarray` of shape `(n, T_full, d)`), tasks (`np.ndarray` of shape `(n, M, d_g)`): the batch.
            segment_length (`int`): steps per segment; the tested steps are the whole segments.
            kept_dims (`int`, *optional*): dims kept per step (`None`: every dim).
            reduction (`str`): how they are chosen (`choose_reduction`).
            seed (`int`, *optional*): seed of the reduction's split.
            test (`CITest`): the fit's test; its feature map, if it has one, is drawn here.
            stored_dims (`int`, *optional*): dims per step kept for the conditioning sets (at least `kept_dims`,
                which the tested step contributes); `None`: `kept_dims`.

        Returns:
            `(layout, states, tasks)`: the layout and the rows of the batch left for the tests (all of them, except
            the rows that learned supervised directions).
        """
        T = (states.shape[1] // segment_length) * segment_length
        layout = cls(tuple(states.shape[1:]), tuple(tasks.shape[1:]), T)
        if kept_dims is not None:
            layout.reduction, layout.kept_share, layout.reduction_used, rest = choose_reduction(
                states[:, :T], tasks, kept_dims, reduction, seed, stored_dims)
            if stored_dims is not None and stored_dims > kept_dims:  # the columns after the tested ones condition
                layout.tested = layout.reduction.tested_dims(kept_dims)
            states, tasks = states[rest], tasks[rest]
        if hasattr(test, "feature_map"):
            layout.features = test.feature_map(layout.reduce(states[:, :T]), tasks)
        return layout, states, tasks

    def check(self, states: np.ndarray, tasks: np.ndarray) -> None:
        """Refuse a checked batch whose steps, dims or tasks differ from the first batch's."""
        if (states.shape[1:], tasks.shape[1:]) != (self.steps_shape, self.tasks_shape):
            def shape(dims: tuple[int, ...]) -> str:
                return f"(n, {', '.join(map(str, dims))})"

            raise InputError(
                f"This batch has states of shape {shape(states.shape[1:])} and tasks {shape(tasks.shape[1:])}, but "
                f"earlier batches had {shape(self.steps_shape)} and {shape(self.tasks_shape)}; every batch needs the "
                "same steps, dims and tasks."
            )

    def reduce(self, states: np.ndarray) -> np.ndarray:
        """`(n, T, d)` states reduced per step (unchanged without a reduction)."""
        return states if self.reduction is None else self.reduction.transform(states)

    def widths(self) -> tuple[int, int]:
        """Columns per step and per task in the data matrix the test reads."""
        if self.features is not None:
            return self.features.step_width, self.features.task_width
        d = self.steps_shape[1] if self.reduction is None else self.reduction.k
        return d, self.tasks_shape[1]

    def tested_width(self) -> int:
        """Columns per step that the tested step contributes (the first of its block in the data matrix)."""
        d, _ = self.widths()
        return d if self.tested is None else min(self.tested, d)

    def tested_columns(self) -> np.ndarray:
        """Indices of the tested columns of every step, then every task column, in the data matrix: the matrix of
        a fit that kept only the tested dims."""
        (d, d_g), k = self.widths(), self.tested_width()
        T, M = self.tested_steps, self.tasks_shape[0]
        steps = (np.arange(T)[:, None] * d + np.arange(k)).ravel()
        return np.concatenate([steps, T * d + np.arange(M * d_g)])

    def n_columns(self) -> int:
        """Columns of the data matrix: `T * d + M * d_g` in the test's widths."""
        d, d_g = self.widths()
        return self.tested_steps * d + self.tasks_shape[0] * d_g

    def rows(self, states: np.ndarray, tasks: np.ndarray) -> np.ndarray:
        """The data matrix `[steps (T * d) | tasks (M * d_g)]` of a checked batch (reduced, featurised)."""
        n = len(states)
        steps = self.reduce(states[:, : self.tested_steps])
        if self.features is not None:
            steps, tasks = self.features.transform(steps, tasks)
        return np.concatenate([steps.reshape(n, -1), tasks.reshape(n, -1)], axis=1)
