"""From test results to segment marks: the multiple-testing family of a fit (`family_marks`) and the chain
(Viterbi) rule of `decision="chain"` (`chain_segments`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._validation import InputError
from .multitest import adjust_pvalues, critical_pvalue

RUN_START, MARK = 1e-6, 1e-9  # tie-breaking costs, as shares of one lit step's cost


def chain_segments(step_pvalues: np.ndarray, segment_length: int, critical: float, *,
                   carryover: bool = True) -> np.ndarray:
    """Segment marks that best explain every step's direct test on a Markov chain (a Viterbi pass).

    On a Markov sequence whose tasks are colliders of per-step actions, the direct test of step `t` against task
    `i` (given its neighbours, or every other step) depends only on the actions `a_{t-1}` and `a_t`: it lights up
    when step `t`'s own segment serves the task or, for the first step of a segment, when the previous segment
    does (`a_{t-1}` is a parent of `s_t`). So segment `k` serving task `i` predicts lit steps `kL-L+1 .. kL` and the
    next segment's first step. The marks are chosen to minimise a cost over all steps: a step the marks predict
    lit costs the critical chi-square value `c` of one test (`critical` as a p-value, on one degree of freedom),
    a step predicted quiet costs its own evidence `chi2.isf(p_t, 1)`. A segment flanked by marked segments is then
    marked exactly when its end step's test rejects at `critical` (the representative-step rule); elsewhere the
    first steps add evidence, so a segment whose end-step effects cancel is still found through its first step and
    the next segment's, and a lone false rejection at an end step must also explain its quiet neighbours.

    Args:
        step_pvalues: `(M, T)` raw p-values of every step's direct test (`T` a multiple of `segment_length`).
        segment_length: `L`.
        critical: the per-test rejection level (see `critical_pvalue`).
        carryover (`bool`, *optional*, defaults to `True`): whether a marked segment also lights the next
            segment's first step (states that carry the previous action, as above). `False` (states that read
            their own step): a marked segment predicts only its own steps lit, so at `segment_length=1` the marks
            are exactly the steps whose test rejects at `critical`.

    Returns:
        `(N, M)` bool segment marks.
    """
    from scipy import stats

    step_pvalues = np.asarray(step_pvalues, dtype=float)
    if step_pvalues.ndim != 2:
        raise InputError(f"`step_pvalues` must have shape (M, T), got {step_pvalues.shape}.")
    M, T = step_pvalues.shape
    L = segment_length
    if not isinstance(L, (int, np.integer)) or L < 1 or T % L:
        raise InputError(f"`segment_length` must be a positive int dividing T={T}, got {L!r}.")
    if not 0 < critical < 1:
        raise InputError(f"`critical` must be a p-value in (0, 1), got {critical!r}.")
    N = T // L
    cost_lit = float(stats.chi2.isf(critical, 1))
    evidence = stats.chi2.isf(np.clip(np.nan_to_num(step_pvalues, nan=1.0), 1e-300, 1.0), 1).reshape(M, N, L)
    own_quiet = evidence[:, :, 1:].sum(-1)  # (M, N): the segment's later steps, quiet
    own_lit = np.full((M, N), cost_lit * (L - 1))
    first_quiet = evidence[:, :, 0]
    # best[c]: least cost of segments 0..k with segment k marked (c=1) or not (c=0); ties: see RUN_START, MARK
    best = np.stack([np.zeros(M), np.full(M, np.inf)], axis=1)
    back = np.zeros((N, M, 2), dtype=np.int8)
    for k in range(N):
        new = np.empty((M, 2))
        for cur in (0, 1):
            own = own_lit[:, k] if cur else own_quiet[:, k]
            # the segment's first step, by the previous segment's state (columns): lit when either is marked
            first_when_prev = np.full(M, cost_lit) if carryover else (np.full(M, cost_lit) if cur else first_quiet[:, k])
            first = np.stack([np.full(M, cost_lit) if cur else first_quiet[:, k], first_when_prev], axis=1)
            total = best + first + own[:, None]
            if cur:  # ties: fewer runs of marks first (a gap inside a run lights the same steps), then fewer marks,
                # except that a lit last segment after a marked one is marked (no later step can tell carry-over apart)
                mark = -MARK if (carryover and k == N - 1) else MARK
                total = total + np.array([RUN_START, 0.0]) * cost_lit + mark * cost_lit
            back[k, :, cur] = np.where(total[:, 1] < total[:, 0], 1, 0)
            new[:, cur] = total.min(1)
        best = new
    marks = np.zeros((N, M), dtype=bool)
    state = np.where(best[:, 1] < best[:, 0], 1, 0)
    for k in range(N - 1, -1, -1):
        marks[k] = state.astype(bool)
        state = back[k, np.arange(M), state]
    return marks


class FamilyMarks(NamedTuple):
    """The family's results, `(M, N)` for direct mode and `(M, N, N)` with pairwise tests (the diagonal holds the
    direct tests; symmetric), and the segment marks `(N, M)`."""

    pvalues: np.ndarray
    statistics: np.ndarray
    raw_pvalues: np.ndarray
    critical_pvalue: float
    segment_tasks: np.ndarray


def family_marks(step_pvalues: np.ndarray, step_statistics: np.ndarray,
                 pairs: tuple[np.ndarray, np.ndarray, np.ndarray], rep: np.ndarray, segment_length: int, mode: str,
                 alpha: float, correction: str | None, *, chain: bool, carryover: bool) -> FamilyMarks:
    """Correct the family of one fit's tests and mark the segments.

    The family is each segment's representative direct test (unless `mode="pairwise"`) and every pairwise test.
    A pairwise rejection marks the task in both segments; a direct one in its segment. With `chain` (or carry-over
    at step level) the direct tests decide through `chain_segments` on every step's p-value instead.

    Args:
        step_pvalues, step_statistics (`np.ndarray` of shape `(M, T_full)`): every tested step's direct test (NaN
            where not tested).
        pairs (`tuple[np.ndarray, np.ndarray, np.ndarray]`): the pairwise tests' `(where (B, 3), statistic (B,),
            pvalue (B,))`, `where` holding `(task, k, v)` (empty arrays without pairwise tests).
        rep (`np.ndarray` of shape `(N,)`): each segment's representative step.
        segment_length (`int`): `L`.
        mode, alpha, correction: as in `TaskStructure`.
        chain (`bool`): the chain decision rule.
        carryover (`bool`): whether a marked segment also lights the next step (`chain_segments`).
    """
    M, N, L = step_pvalues.shape[0], len(rep), segment_length
    pair_where, pair_stat, pair_p = pairs
    if mode != "pairwise":  # the representative direct tests, as (task, k, k) rows of the family
        rep_where = np.stack([np.repeat(np.arange(M), N), np.tile(np.arange(N), M), np.tile(np.arange(N), M)], 1)
        rep_stat, rep_p = step_statistics[:, rep].ravel(), step_pvalues[:, rep].ravel()
    else:
        rep_where, rep_stat, rep_p = np.zeros((0, 3), dtype=np.int64), np.zeros(0), np.zeros(0)
    where = np.concatenate([rep_where, pair_where])
    statistic = np.concatenate([rep_stat, pair_stat])
    raw = np.concatenate([rep_p, pair_p])
    adjusted = adjust_pvalues(raw, correction)

    shape = (M, N) if mode == "direct" else (M, N, N)
    pvalues, statistics, raw_pvalues = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    i, k, v = where.T
    index = (i, k) if mode == "direct" else (i, k, v)
    statistics[index], raw_pvalues[index], pvalues[index] = statistic, raw, adjusted
    critical = critical_pvalue(raw, alpha, correction)
    segment_tasks = np.zeros((N, M), dtype=bool)
    hit = adjusted < alpha
    if chain or (carryover and L == 1):  # at step level every step is tested either way
        hit &= k != v  # the direct tests decide through the chain rule below
        segment_tasks |= chain_segments(step_pvalues[:, : N * L], L, critical, carryover=carryover)
    segment_tasks[k[hit], i[hit]] = True
    segment_tasks[v[hit], i[hit]] = True
    if mode != "direct":
        upper = np.triu_indices(N, 1)
        for arr in (pvalues, statistics, raw_pvalues):
            arr[:, upper[1], upper[0]] = arr[:, upper[0], upper[1]]
    return FamilyMarks(pvalues, statistics, raw_pvalues, critical, segment_tasks)
