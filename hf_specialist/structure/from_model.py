"""`discover`: from a model and texts to a fitted `TaskStructure` without holding the states.

Texts are extracted in chunks and each chunk's step states feed the test's sufficient statistics, so peak memory is
bounded by the chunk, not by the number of texts. Under `torchrun` / `accelerate launch` each process extracts its
own shard of the texts and the statistics are summed across processes once; every process ends with the same
structure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
import time
from typing import Any

import numpy as np

from .._distributed import process_layout
from .._arrays import as_task_array, task_names_of
from .._progress import progress_lines, say
from .._validation import InputError, check_array
from ..hooks import is_causal
from ..steps import StepRule
from .discovery import TaskStructure


def check_text_inputs(model: Any, texts: Any, tasks: Any, column: str | None, hook_points: Any, steps: StepRule,
                      pool: str, batch_size: int, chunk_size: int, context: str, tokenizer: Any = None,
                      max_length: int | None = None, contexts: tuple[str, ...] = ("full", "isolated"),
                      ) -> tuple[list[str], np.ndarray, list[str], list[list[tuple[int, int]]] | None]:
    """The checks `discover` and `sweep_layers` share, before any forward pass: texts, one task row per text, the
    chunk size, the context (one of `contexts`) and the step rule (one step count for every text). Returns the
    texts, the tasks, the resolved hook points and the step spans."""
    from ..data import _texts_from, check_equal_steps, check_extraction
    from ..hooks import resolve_hook_points

    texts = _texts_from(texts, column)
    tasks = check_array(as_task_array(tasks), "tasks", ndims=(1, 2, 3),
                        expected="(n_sequences, M) or (n_sequences, M, d_g)")
    if len(tasks) != len(texts):
        raise InputError(f"`tasks` has {len(tasks)} rows but {len(texts)} texts were passed; one row per text.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"`chunk_size` must be a positive int, got {chunk_size!r}.")
    if context not in contexts:
        raise InputError(f"`context` must be one of {', '.join(map(repr, contexts))}, got {context!r}.")
    points = [name for spec in hook_points for name in resolve_hook_points(model, spec)]
    _, spans = check_extraction(model, texts, points[0], steps, pool, batch_size)
    if context == "isolated" and spans is None:
        raise InputError("context='isolated' needs a separator or per-text spans as `steps`, not 'token'.")
    if context in ("isolated", "auto") and spans is not None:  # a step encoded alone needs text of its own
        for i, (text, text_spans) in enumerate(zip(texts, spans)):
            blank = [t for t, (a, b) in enumerate(text_spans) if not text[a:b].strip()]
            if blank:
                raise InputError(f"`texts[{i}]` step {blank[0] + 1} is blank; encoded on its own (context="
                                 f"{context!r}: each step's text alone) it has no tokens. Fix the steps, or pass "
                                 "context='full'.")
    check_equal_steps(spans, texts, steps, tokenizer=tokenizer, max_length=max_length)  # token steps: counted
    return texts, tasks, points, spans


def choose_context(spans: list[list[tuple[int, int]]] | None) -> str:
    """`context="auto"`: `"isolated"` where the steps are text spans (`spans`: from a separator or per-text spans),
    so each step's text is encoded on its own; `"full"` for token steps, which cannot be split that way.

    In full context a step's state also reads the steps it attends to (both ways in an encoder, the earlier ones in
    a decoder), so it depends on a task through the steps that serve it. Conditioning on the other steps' states
    removes that only where a linear function of them accounts for the whole echo: never for an encoder, and for a
    decoder only while the outcome is linear in the earlier states (docs/structure.md). A step encoded alone is a
    function of its own text, which is what the test assumes, whatever the model and the outcome.
    """
    return "full" if spans is None else "isolated"


@contextmanager
def recording_context(structures: Sequence[TaskStructure], context: str) -> Iterator[None]:
    """While `discover` or `sweep_layers` fit `structures` on states extracted in `context`, each fit records it as
    `context_` when it decides (so its fit-time warnings read it); a `partial_fit` outside drops the record."""
    for structure in structures:
        structure._extraction_context = context
    try:
        yield
    finally:
        for structure in structures:
            del structure._extraction_context


def discover(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str] | Any,
    tasks: Any,
    *,
    hook_point: str = "layers.-1",
    steps: StepRule = "token",
    pool: str = "mean",
    context: str = "auto",
    max_length: int | None = None,
    batch_size: int = 16,
    chunk_size: int = 1024,
    column: str | None = None,
    structure: TaskStructure | None = None,
    progress: bool | None = None,
    **structure_kwargs: Any,
) -> TaskStructure:
    """Extract step states of `texts` in chunks and fit the step x task structure from them as they come.

    Args:
        model (`nn.Module`): a `transformers` model (or `peft.PeftModel`) on the device to run on.
        tokenizer: its tokenizer.
        texts (`list[str]` or `datasets.Dataset`): the sequences, each with the same number of steps.
        tasks: `(n_sequences, M)` or `(n_sequences, M, d_g)` task variables, one row per text.
        hook_point, steps, pool, max_length, batch_size, column: as in `extract_steps`.
        context (`str`, *optional*, defaults to `"auto"`): `"isolated"` runs each step's text alone (which part of
            the *input* serves each task; no content leaks between steps), `"full"` runs whole texts (where in the
            model the structure can be read; `hfs.sweep_layers` does that by default). `"auto"` (`choose_context`):
            isolated where the steps are text spans (a separator or spans), full for token steps.
        chunk_size (`int`, *optional*, defaults to 1024): texts extracted before their statistics are added; peak
            memory holds one chunk's states.
        structure (`TaskStructure`, *optional*): the estimator to fit (default `TaskStructure(**structure_kwargs)`);
            it must use a sufficient-statistic test (`fisher_z` or `rff_z`). In full context, when its `causal` is not given,
            a copy with `causal` measured on the model (`hooks.is_causal`: a decoder's states read only earlier
            steps) is fitted and returned instead, and the estimator passed in is left as it was.
        progress (`bool`, *optional*): show a progress bar over chunks.

    Returns:
        The fitted `TaskStructure`.
    """
    from ..data import extract_step_list, iter_isolated_step_arrays
    from ..steps import stack_steps

    if structure is not None and structure_kwargs:
        raise InputError("Pass either `structure=` or TaskStructure keyword arguments, not both.")
    structure = structure if structure is not None else TaskStructure(**structure_kwargs)
    names = task_names_of(tasks)
    texts, tasks, points, spans = check_text_inputs(model, texts, tasks, column, [hook_point], steps, pool,
                                                    batch_size, chunk_size, context, tokenizer, max_length,
                                                    contexts=("auto", "full", "isolated"))
    if len(points) != 1:
        raise InputError(f"`hook_point` must resolve to exactly one hook point, got {points}; to fit several layers "
                         "at once use hfs.sweep_layers.")
    point = points[0]
    if context == "auto":
        context = choose_context(spans)
    if context == "full" and structure.causal is None:  # a copy: the estimator passed in keeps its parameters
        structure = type(structure)(**{**structure.get_params(), "causal": is_causal(model, point)})
    rank, world = process_layout()
    shard = np.array_split(np.arange(len(texts)), world)[rank]

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        starts = range(0, len(shard), chunk_size)
        shown = False if rank else progress
        for start in progress_lines(starts, len(starts), f"discover at {point}", shown):
            rows = shard[start : start + chunk_size]
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            if context == "isolated":
                chunk = list(iter_isolated_step_arrays(model, tokenizer, texts[lo:hi], spans[lo:hi], point, pool,
                                                       batch_size, max_length, progress=False))
            else:
                chunk = extract_step_list(model, tokenizer, texts[lo:hi], None if spans is None else spans[lo:hi],
                                          point, pool, batch_size, max_length, progress=False)
            yield stack_steps(chunk, pad_steps=False), tasks[lo:hi]

    started = time.perf_counter()
    with recording_context([structure], context):
        structure.fit(batches())
    structure.task_names_ = names
    if rank == 0 and progress is not False:
        marks = "; ".join(f"{names[i] if names else f'task {i}'}: steps "
                          f"{','.join(str(t + 1) for t in np.flatnonzero(c)) or 'none'}"
                          for i, c in enumerate(structure.step_tasks_.T))
        say(f"discover at {point}: {len(texts)} texts x {structure.n_steps_} steps, {structure.n_tests_} CI tests "
            f"({structure.test if isinstance(structure.test, str) else structure.test.name}, {context} context, "
            f"conditioning {structure.conditioning_}) in {time.perf_counter() - started:.1f} s; {marks}. "
            "structure.report() has the evidence.")
    return structure
