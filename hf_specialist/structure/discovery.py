"""Algorithm 1 (Theorem 1): which segments of a sequence serve which task, from conditional-independence tests.

The tests run *across sequences*: each step index is a random variable observed once per sequence.
"""

from __future__ import annotations

import json
import warnings
import sys
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .._validation import (
    InstanceOf,
    Interval,
    Options,
    check_array,
    check_consistent_length,
    check_is_fitted,
    validate_params,
)
from .ci_tests import CITest, bartlett_statistic, get_ci_test


def adjust_pvalues(pvalues: np.ndarray, correction: str | None) -> np.ndarray:
    """Family-wise adjusted p-values: `None` (unchanged), `"bonferroni"` or `"fdr_bh"` (Benjamini-Hochberg)."""
    p = np.asarray(pvalues, dtype=float)
    flat = p.ravel()
    finite = np.isfinite(flat)
    out = flat.copy()
    m = int(finite.sum())
    if correction is None or m == 0:
        return p
    if correction == "bonferroni":
        out[finite] = np.minimum(flat[finite] * m, 1.0)
    elif correction == "fdr_bh":
        from scipy.stats import false_discovery_control

        out[finite] = false_discovery_control(flat[finite], method="bh")
    else:
        raise ValueError(f"`correction` must be None, 'bonferroni' or 'fdr_bh', got {correction!r}.")
    return out.reshape(p.shape)


def _columns(steps: np.ndarray, d: int) -> np.ndarray:
    """Column indices `(..., k * d)` of step indices `(..., k)` in the flattened `(n, T * d)` layout."""
    return (steps[..., None] * d + np.arange(d)).reshape(*steps.shape[:-1], -1)


def band_markov_pvalues(states: np.ndarray, rep: np.ndarray) -> np.ndarray:
    """Gaussian test that the band screens each representative step from all the others.

    For each `r` in `rep`, tests `s_r ⫫ {s_t : |t - r| >= 2} | {s_{r-1}, s_{r+1}}` on `states (n, T, d)`:
    Wilks' lambda is `det Var(s_r | every other step) / det Var(s_r | band)`, the share of what the band leaves
    of `s_r` that the far steps still explain, and Bartlett's chi-square gives the p-value. The property holds
    for Markov sequences (also cut ones, or ones without temporal dependence); it fails when steps mix in each
    other's content. Everything comes from one covariance matrix and its inverse.

    Returns:
        `(len(rep),)` raw p-values (1.0 where a step has no far steps).
    """
    n, T, d = states.shape
    flat = states.reshape(n, T * d)
    flat = (flat - flat.mean(0)) / np.where(flat.std(0) > 0, flat.std(0), 1.0)
    return _band_markov_pvalues(flat.T @ flat / (n - 1), n, d, rep)


def _band_markov_pvalues(cov: np.ndarray, n: int, d: int, rep: np.ndarray) -> np.ndarray:
    """`band_markov_pvalues` from the `(T * d, T * d)` correlation matrix of the steps."""
    from scipy import stats

    T = cov.shape[0] // d
    cov = cov + 1e-10 * np.eye(T * d)
    precision = np.linalg.inv(cov)
    pvalues = np.ones(len(rep))
    for j, r in enumerate(rep):
        band = [t for t in (r - 1, r + 1) if 0 <= t < T]
        n_far = T - 1 - len(band)
        if n_far == 0:
            continue
        x = _columns(np.array([r]), d)
        z = _columns(np.array(band), d)
        given_rest = np.linalg.inv(precision[np.ix_(x, x)])
        given_band = cov[np.ix_(x, x)] - cov[np.ix_(x, z)] @ np.linalg.solve(cov[np.ix_(z, z)], cov[np.ix_(z, x)])
        log_lambda = np.linalg.slogdet(given_rest)[1] - np.linalg.slogdet(given_band)[1]
        statistic = bartlett_statistic(np.array([log_lambda]), n, d, n_far * d, len(band) * d)[0]
        pvalues[j] = stats.chi2.sf(statistic, df=d * n_far * d)
    return pvalues


def build_test_batches(rep: np.ndarray, T: int, d: int, M: int, d_g: int, mode: str,
                       conditioning: str = "band",
                       direct_steps: np.ndarray | None = None) -> list[tuple[np.ndarray, ...]]:
    """All tests of Algorithm 1 as batches of equal shape: `(x, y, z, where, direct)`.

    Pairwise tests pair the representative steps `rep`: `where (B, 3)` holds `(task, segment k, segment v)`.
    Direct tests run on `direct_steps` (defaults to `rep`): `where` holds `(task, j, j)` with `j` the position in
    `direct_steps`; `direct` says which kind a batch is. Columns index the data matrix
    `[states (T * d) | tasks (M * d_g)]`. With `conditioning="all"` a direct test conditions on every other step
    instead of the two neighbours.
    """
    N = len(rep)
    direct_steps = rep if direct_steps is None else np.asarray(direct_steps, dtype=np.int64)
    S = len(direct_steps)
    batches = []
    task_cols = T * d + np.arange(M)[:, None] * d_g + np.arange(d_g)  # (M, d_g)

    def neighbour_sets(centres: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Group rows of neighbour candidates `(P, c)` by how many valid, distinct neighbours they have."""
        cand = np.concatenate([centres - 1, centres + 1], axis=1)
        cand = np.sort(cand, axis=1)
        valid = (cand >= 0) & (cand < T)
        for j in range(centres.shape[1]):
            valid &= cand != centres[:, j : j + 1]
        valid[:, 1:] &= cand[:, 1:] != cand[:, :-1]
        counts = valid.sum(1)
        out = []
        for count in np.unique(counts):
            rows = np.flatnonzero(counts == count)
            keep = np.where(valid[rows], cand[rows], np.iinfo(np.int64).max)
            out.append((rows, np.sort(keep, axis=1)[:, :count]))
        return out

    if mode in ("pairwise", "both") and N >= 2:
        k, v = np.triu_indices(N, 1)
        centres = np.stack([rep[k], rep[v]], axis=1)
        for rows, neighbours in neighbour_sets(centres):
            z_steps = _columns(neighbours, d)  # (P, c * d)
            P = len(rows)
            x = np.tile(_columns(rep[k[rows]][:, None], d), (M, 1))
            y = np.tile(_columns(rep[v[rows]][:, None], d), (M, 1))
            z = np.concatenate([np.tile(z_steps, (M, 1)), np.repeat(task_cols, P, axis=0)], axis=1)
            where = np.stack([np.repeat(np.arange(M), P), np.tile(k[rows], M), np.tile(v[rows], M)], axis=1)
            batches.append((x, y, z, where, False))
    if mode in ("direct", "both") and conditioning == "all":
        others = np.array([[t for t in range(T) if t != r] for r in direct_steps], dtype=np.int64).reshape(S, T - 1)
        x = np.tile(_columns(direct_steps[:, None], d), (M, 1))
        y = np.repeat(task_cols, S, axis=0)
        z = np.tile(_columns(others, d), (M, 1))
        where = np.stack([np.repeat(np.arange(M), S), np.tile(np.arange(S), M), np.tile(np.arange(S), M)], axis=1)
        batches.append((x, y, z, where, True))
    elif mode in ("direct", "both"):
        for rows, neighbours in neighbour_sets(direct_steps[:, None]):
            P = len(rows)
            x = np.tile(_columns(direct_steps[rows][:, None], d), (M, 1))
            y = np.repeat(task_cols, P, axis=0)
            z = np.tile(_columns(neighbours, d), (M, 1))
            where = np.stack([np.repeat(np.arange(M), P), np.tile(rows, M), np.tile(rows, M)], axis=1)
            batches.append((x, y, z, where, True))
    return batches


def critical_pvalue(pvalues: np.ndarray, alpha: float, correction: str | None) -> float:
    """The raw p-value below which a test of the family `pvalues` rejects under `correction` at level `alpha`.

    `None`: `alpha`; `"bonferroni"`: `alpha / m`; `"fdr_bh"`: the largest `p_(j) <= j alpha / m` of the sorted
    finite p-values (`alpha / m` when none qualifies, which is where Benjamini-Hochberg starts).
    """
    p = np.sort(np.asarray(pvalues, dtype=float)[np.isfinite(pvalues)])
    m = max(len(p), 1)
    if correction is None:
        return float(alpha)
    if correction == "bonferroni":
        return alpha / m
    if correction == "fdr_bh":
        passing = np.flatnonzero(p <= alpha * np.arange(1, len(p) + 1) / m)
        return float(p[passing[-1]]) if len(passing) else alpha / m
    raise ValueError(f"`correction` must be None, 'bonferroni' or 'fdr_bh', got {correction!r}.")


def chain_segments(step_pvalues: np.ndarray, segment_length: int, critical: float) -> np.ndarray:
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

    Returns:
        `(N, M)` bool segment marks.
    """
    from scipy import stats

    step_pvalues = np.asarray(step_pvalues, dtype=float)
    if step_pvalues.ndim != 2:
        raise ValueError(f"`step_pvalues` must have shape (M, T), got {step_pvalues.shape}.")
    M, T = step_pvalues.shape
    L = segment_length
    if not isinstance(L, (int, np.integer)) or L < 1 or T % L:
        raise ValueError(f"`segment_length` must be a positive int dividing T={T}, got {L!r}.")
    if not 0 < critical < 1:
        raise ValueError(f"`critical` must be a p-value in (0, 1), got {critical!r}.")
    N = T // L
    cost_lit = float(stats.chi2.isf(critical, 1))
    evidence = stats.chi2.isf(np.clip(np.nan_to_num(step_pvalues, nan=1.0), 1e-300, 1.0), 1).reshape(M, N, L)
    own_quiet = evidence[:, :, 1:].sum(-1)  # (M, N): the segment's later steps, quiet
    own_lit = np.full((M, N), cost_lit * (L - 1))
    first_quiet = evidence[:, :, 0]
    # best[c]: least cost of segments 0..k with segment k marked (c=1) or not (c=0); ties go to fewer marks
    best = np.stack([np.zeros(M), np.full(M, np.inf)], axis=1)
    back = np.zeros((N, M, 2), dtype=np.int8)
    for k in range(N):
        new = np.empty((M, 2))
        for cur in (0, 1):
            own = own_lit[:, k] if cur else own_quiet[:, k]
            # the segment's first step, by the previous segment's state (columns): lit when either is marked
            first = np.stack([np.full(M, cost_lit) if cur else first_quiet[:, k], np.full(M, cost_lit)], axis=1)
            total = best + first + own[:, None]
            back[k, :, cur] = np.where(total[:, 1] < total[:, 0], 1, 0)
            new[:, cur] = total.min(1)
        best = new
    marks = np.zeros((N, M), dtype=bool)
    state = np.where(best[:, 1] < best[:, 0], 1, 0)
    for k in range(N - 1, -1, -1):
        marks[k] = state.astype(bool)
        state = back[k, np.arange(M), state]
    return marks


def _joined(parts: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate the collected `(where, statistic, pvalue)` chunks of one kind of test (empty when none ran)."""
    where, statistic, pvalue = parts
    if not where:
        return np.zeros((0, 3), dtype=np.int64), np.zeros(0), np.zeros(0)
    return np.concatenate(where).astype(np.int64), np.concatenate(statistic), np.concatenate(pvalue)


class TaskStructure:
    """Discover the step x task structure of sequences (the paper's Algorithm 1, plus a direct test).

    Segment `k` (steps `kL-L+1 .. kL`, 1-based) is represented by its *end* step `s_{kL}`, whose parents lie in
    the same segment. Tests:

    - ``mode="pairwise"`` (the paper): for segments `k < v` and task `i`,
      `s_{kL} ⫫̸ s_{vL} | {s_{kL-1}, s_{kL+1}, s_{vL-1}, s_{vL+1}, g_i}` marks task `i` in both segments;
    - ``mode="direct"``: `s_{kL} ⫫̸ g_i | {s_{kL-1}, s_{kL+1}}` marks task `i` in segment `k` (also finds tasks
      served by a single segment);
    - ``mode="both"``: the union, with one multiple-testing family over all tests.

    The direct test may condition on every other step instead (``conditioning="all"``,
    `s_{kL} ⫫̸ g_i | {s_t : t != kL}`). Under the paper's Markov model it has the same answer (every path from
    `s_{kL}` to `g_i` other than through the segment's own actions runs through a conditioned step) and more
    power, because the other steps that serve task `i` explain part of `g_i`. But when step states mix in each
    other's content (attention in text, `synthetic.collider_step_latents(context>0)`), each conditioned step is a
    collider of its own content and the tested step's, and conditioning on it opens false paths: there it marks
    tasks wrongly where the band does not. Both cases are told apart by the states alone: the Markov property
    says the band screens each step from the far steps, `s_{kL} ⫫ {s_t : |t - kL| >= 2} | band`, and mixing
    breaks it. The default ``conditioning="auto"`` runs that check (`band_markov_pvalues`, Gaussian, Bonferroni
    over segments at `alpha`) and conditions on all steps only when it passes, the test is `fisher_z` and
    `n >= 100 * (T * d + d_g)` (the check has `d^2` degrees of freedom per far step; with fewer sequences it
    missed mild mixing that conditioning on all steps then turned into false marks); otherwise it uses the band. `conditioning_` and `markov_pvalue_` say what it did.

    How the direct tests become segment marks (``decision``): ``"representative"`` marks segment `k` for task `i`
    when its end step's test rejects. ``"chain"`` (the default for `fisher_z`) tests *every* step and uses what the
    Markov model says about the other steps too: step `t`'s test depends only on the actions `a_{t-1}` and `a_t`, so a segment
    serving a task lights all its steps and the next segment's first step. `chain_segments` picks the marks that
    explain all step tests at least cost (a step predicted lit costs one test's critical value, a step predicted
    quiet its own chi-square evidence). Where a segment's end-step effects nearly cancel (a finite-sample miss
    for the representative rule) its first step and the next segment's still point to it; a false rejection at
    one end step has to explain its quiet neighbours as well. It runs `T` instead of `N` direct tests per task.

    Args:
        segment_length (`int`, *optional*, defaults to 2): `L`, steps per segment (at least 2).
        test (`str` or `CITest`, *optional*, defaults to `"fisher_z"`): a registered CI test name or an instance.
        alpha (`float`, *optional*, defaults to 0.05): level after correction.
        mode (`str`, *optional*, defaults to `"direct"`): `"pairwise"`, `"direct"` or `"both"`.
        correction (`str`, *optional*, defaults to `"bonferroni"`): `None`, `"bonferroni"` or `"fdr_bh"`.
        project (`int`, *optional*): PCA each step's vector to this many dims before testing (for hidden states).
        conditioning (`str`, *optional*, defaults to `"auto"`): conditioning set of the direct test: `"band"`
            (the two neighbours), `"all"` (every other step) or `"auto"` (`"all"` where the band check passes;
            see above). Pairwise tests always use the paper's band set.
        representative (`str`, *optional*, defaults to `"end"`): `"end"` or `"start"` step of each segment.
        decision (`str`, *optional*, defaults to `"auto"`): `"chain"` (every step's direct test, explained by
            segment marks on the chain; see above), `"representative"` (each segment's representative step
            alone) or `"auto"`: the chain for `fisher_z`, whose analytic p-values make the step evidence exact
            and the extra tests nearly free; the end-step rule for permutation and critic tests (`knn_cmi`,
            `neural_cmi`, custom tests), where the chain doubles the cost and showed no gain in the benchmark.
            Pairwise tests always decide by their own rejections (in `"both"` mode, unioned with the chain).
        drop_last (`bool`, *optional*, defaults to `False`): drop trailing steps when `T` is not a multiple of `L`.
        seed (`int`, *optional*, defaults to 0): random seed for permutation nulls and neural critics.
        progress (`bool`, *optional*): show a progress bar (default: when stderr is a terminal).

    Attributes:
        segment_tasks_ (`np.ndarray` of shape `(N, M)`, bool): segment `k` serves task `i`.
        step_tasks_ (`np.ndarray` of shape `(T, M)`, bool): the segment sets copied to their steps (dropped
            trailing steps are `False`).
        pvalues_ (`np.ndarray`): adjusted p-values of the representative steps' tests (with the chain rule the
            marks come from all step tests, so they can differ from `pvalues_ < alpha`); `(M, N, N)` for
            `"pairwise"` and `"both"` (for `"both"` the
            diagonal `[i, k, k]` holds the direct test of segment `k`; for `"pairwise"` it is NaN), `(M, N)` for
            `"direct"`.
        statistics_ (`np.ndarray`): the test statistics, same shape as `pvalues_`.
        n_tests_ (`int`): number of CI tests run.
        conditioning_ (`str`): the direct test's conditioning set used, `"band"` or `"all"`.
        markov_pvalue_ (`float` or `None`): Bonferroni-adjusted p-value of the band check (`None` when not run).
        decision_ (`str`): the decision rule used, `"chain"` or `"representative"`.
        step_pvalues_ (`np.ndarray` of shape `(M, T)`): raw p-values of every step's direct test
            (`decision_ == "chain"` only).
        critical_pvalue_ (`float`): the raw p-value a single test must fall below under `correction` at `alpha`
            over the representative family (`decision_ == "chain"` only); `chain_segments` charges it per lit step.
        n_segments_, n_tasks_, n_steps_ (`int`): the fitted sizes.

    Examples:
        >>> from hf_specialist import TaskStructure, synthetic
        >>> states, tasks, truth = synthetic.paper_linear_gaussian(n=5000, T=8, seed=0)
        >>> ts = TaskStructure(segment_length=2).fit(states, tasks)
        >>> bool((ts.step_tasks_ == truth["step_tasks"]).all())
        True

    References:
        Zheng et al., "From Generalist to Specialist Representation", ICML 2026, Theorem 1 and Algorithm 1.
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "segment_length": [Interval(int, 2, None)],
        "test": [InstanceOf(str, CITest, type, description="a registered test name or a CITest instance")],
        "alpha": [Interval(float, 0, 1, "neither")],
        "mode": [Options("pairwise", "direct", "both")],
        "correction": [Options(None, "bonferroni", "fdr_bh")],
        "project": [Options(None), Interval(int, 1, None)],
        "conditioning": [Options("auto", "band", "all")],
        "representative": [Options("end", "start")],
        "decision": [Options("auto", "chain", "representative")],
        "drop_last": [Options(True, False)],
        "seed": [Options(None), Interval(int, 0, None)],
        "progress": [Options(None, True, False)],
    }

    def __init__(
        self,
        *,
        segment_length: int = 2,
        test: str | CITest = "fisher_z",
        alpha: float = 0.05,
        mode: str = "direct",
        correction: str | None = "bonferroni",
        project: int | None = None,
        conditioning: str = "auto",
        representative: str = "end",
        decision: str = "auto",
        drop_last: bool = False,
        seed: int | None = 0,
        progress: bool | None = None,
    ) -> None:
        self.segment_length = segment_length
        self.test = test
        self.alpha = alpha
        self.mode = mode
        self.correction = correction
        self.project = project
        self.conditioning = conditioning
        self.representative = representative
        self.decision = decision
        self.drop_last = drop_last
        self.seed = seed
        self.progress = progress

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments."""
        return {name: getattr(self, name) for name in self._parameter_constraints}

    # -- input ------------------------------------------------------------------------------------
    def _validate(self, states: Any, tasks: Any) -> tuple[np.ndarray, np.ndarray]:
        validate_params(type(self).__name__, self.get_params(), self._parameter_constraints)
        states = check_array(states, "states", ndims=(2, 3), expected="(n_sequences, T) or (n_sequences, T, d)")
        tasks = check_array(tasks, "tasks", ndims=(1, 2, 3), expected="(n_sequences, M) or (n_sequences, M, d_g)")
        check_consistent_length(states=states, tasks=tasks)
        if states.ndim == 2:
            states = states[:, :, None]
        if tasks.ndim == 1:
            tasks = tasks[:, None, None]
        elif tasks.ndim == 2:
            tasks = tasks[:, :, None]
        n, T, _ = states.shape
        L = self.segment_length
        if T % L:
            if not self.drop_last:
                raise ValueError(
                    f"`states` has T={T} steps, which is not a multiple of segment_length={L}. Pass "
                    f"drop_last=True to drop the last {T % L} steps, or choose another segment_length."
                )
        if T // L < (2 if self.mode == "pairwise" else 1):
            raise ValueError(f"`states` has {T // L} segment(s) of length {L}; mode={self.mode!r} needs at least 2.")
        ci = get_ci_test(self.test, seed=self.seed)
        width = states.shape[2] if self.project is None else min(self.project, states.shape[2])
        needed = max(ci.min_samples, 4 * width + tasks.shape[2] + width * 2 + 5)
        if n < needed:
            raise ValueError(
                f"`states` has {n} sequences but the {ci.name} test with these dimensions needs at least {needed}; "
                "pass more sequences (or a smaller `project`)."
            )
        steps = T - T % L
        if self.conditioning == "all" and n < steps * width + tasks.shape[2] + 10:
            raise ValueError(f"conditioning='all' conditions on {(steps - 1) * width} dims but `states` has only {n} "
                             "sequences; use conditioning='band', a smaller `project`, or more sequences.")
        return states, tasks

    def _project(self, states: np.ndarray) -> np.ndarray:
        if self.project is None or states.shape[2] <= self.project:
            return states
        from sklearn.decomposition import PCA

        out = np.empty(states.shape[:2] + (self.project,))
        for t in range(states.shape[1]):
            out[:, t] = PCA(n_components=self.project, random_state=self.seed).fit_transform(states[:, t])
        return out

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, states: Any, tasks: Any) -> TaskStructure:
        """Fit the structure.

        Args:
            states: `(n_sequences, T)` or `(n_sequences, T, d)` step states (numpy or torch).
            tasks: `(n_sequences, M)` or `(n_sequences, M, d_g)` task variables.

        Returns:
            `self`.
        """
        states, tasks = self._validate(states, tasks)
        L = self.segment_length
        n, T_full, _ = states.shape
        N = T_full // L
        T = N * L
        states = self._project(states[:, :T])
        d, M, d_g = states.shape[2], tasks.shape[1], tasks.shape[2]
        data = np.concatenate([states.reshape(n, T * d), tasks.reshape(n, M * d_g)], axis=1)

        rep = np.arange(N) * L + (L - 1 if self.representative == "end" else 0)
        ci = get_ci_test(self.test, seed=self.seed).fit(data)
        self.decision_ = self._choose_decision(ci)
        chain = self.decision_ == "chain"
        direct_steps = np.arange(T) if chain else rep
        self.conditioning_ = self._choose_conditioning(states, rep, ci, d_g)
        groups = build_test_batches(rep, T, d, M, d_g, self.mode, self.conditioning_, direct_steps)
        disable = (not sys.stderr.isatty()) if self.progress is None else not self.progress
        chunk = None if ci.name == "fisher_z" else max(1, getattr(ci, "batch_tests", 8))
        n_tests = sum(len(g[3]) for g in groups)
        results: dict[bool, list[list[np.ndarray]]] = {False: [[], [], []], True: [[], [], []]}
        with tqdm(total=n_tests, desc=f"CI tests ({ci.name})", unit="test", disable=disable) as bar:
            for x, y, z, index, direct in groups:
                step = chunk or len(x)
                for start in range(0, len(x), step):
                    result = ci.test_batch(x[start : start + step], y[start : start + step], z[start : start + step])
                    for store, value in zip(results[direct], (index[start : start + step], result.statistic,
                                                             result.pvalue)):
                        store.append(value)
                    bar.update(len(result.pvalue))
        pair_where, pair_stat, pair_p = _joined(results[False])
        step_where, step_stat, step_p = _joined(results[True])
        step_pvalues = np.full((M, len(direct_steps)), np.nan)
        step_statistics = np.full((M, len(direct_steps)), np.nan)
        step_pvalues[step_where[:, 0], step_where[:, 1]] = step_p
        step_statistics[step_where[:, 0], step_where[:, 1]] = step_stat
        if self.mode != "pairwise":
            # the representative direct tests, as (task, k, k) rows of the family
            position = rep if chain else np.arange(N)
            rep_where = np.stack([np.repeat(np.arange(M), N), np.tile(np.arange(N), M), np.tile(np.arange(N), M)], 1)
            rep_stat = step_statistics[:, position].ravel()
            rep_p = step_pvalues[:, position].ravel()
        else:
            rep_where, rep_stat, rep_p = np.zeros((0, 3), dtype=np.int64), np.zeros(0), np.zeros(0)
        where = np.concatenate([rep_where, pair_where])
        statistic = np.concatenate([rep_stat, pair_stat])
        raw = np.concatenate([rep_p, pair_p])
        adjusted = adjust_pvalues(raw, self.correction)

        shape = (M, N) if self.mode == "direct" else (M, N, N)
        self.pvalues_ = np.full(shape, np.nan)
        self.statistics_ = np.full(shape, np.nan)
        self.raw_pvalues_ = np.full(shape, np.nan)
        i, k, v = where.T
        index = (i, k) if self.mode == "direct" else (i, k, v)
        self.statistics_[index], self.raw_pvalues_[index], self.pvalues_[index] = statistic, raw, adjusted
        segment_tasks = np.zeros((N, M), dtype=bool)
        hit = adjusted < self.alpha
        if chain:
            hit &= k != v  # the direct tests decide through the chain rule below
            self.critical_pvalue_ = critical_pvalue(raw, self.alpha, self.correction)
            segment_tasks |= chain_segments(step_pvalues, L, self.critical_pvalue_)
            self.step_pvalues_ = step_pvalues
        segment_tasks[k[hit], i[hit]] = True
        segment_tasks[v[hit], i[hit]] = True
        if self.mode != "direct":
            for arr in (self.pvalues_, self.statistics_, self.raw_pvalues_):
                upper = np.triu_indices(N, 1)
                arr[:, upper[1], upper[0]] = arr[:, upper[0], upper[1]]
        self.segment_tasks_ = segment_tasks
        step_tasks = np.zeros((T_full, M), dtype=bool)
        step_tasks[:T] = np.repeat(segment_tasks, L, axis=0)
        self.step_tasks_ = step_tasks
        self.n_tests_ = n_tests
        self.n_segments_, self.n_tasks_, self.n_steps_ = N, M, T_full
        self.n_features_in_ = d
        return self

    def _choose_decision(self, ci: CITest) -> str:
        """`"chain"` or `"representative"`; `"auto"` is the chain for `fisher_z`, the end-step rule otherwise."""
        if self.mode == "pairwise":
            return "representative"
        if self.decision != "auto":
            return self.decision
        return "chain" if ci.name == "fisher_z" else "representative"

    def _choose_conditioning(self, states: np.ndarray, rep: np.ndarray, ci: CITest, d_g: int) -> str:
        """The direct test's conditioning set; for `"auto"`, `"all"` only where the band check passes."""
        self.markov_pvalue_ = None
        if self.conditioning != "auto":
            return self.conditioning
        n, T, d = states.shape
        if self.mode == "pairwise" or ci.name != "fisher_z" or n < 100 * (T * d + d_g) or len(rep) < 2:
            return "band"
        steps_cov = ci.cov_[: T * d, : T * d]  # fisher_z's correlation matrix of [steps | tasks]
        self.markov_pvalue_ = float(adjust_pvalues(_band_markov_pvalues(steps_cov, n, d, rep), "bonferroni").min())
        return "all" if self.markov_pvalue_ >= self.alpha else "band"

    # -- results ----------------------------------------------------------------------------------
    def task_mask(self, n_sequences: int | None = None) -> np.ndarray:
        """`(T, M)` bool (or `(n_sequences * T, M)` when `n_sequences` is given): which rows count for which task.

        Rows are steps, as the adapter's `task_mask` expects for states flattened to `(n_sequences * T, d)`.
        """
        check_is_fitted(self, ["step_tasks_"])
        if n_sequences is None:
            return self.step_tasks_.copy()
        return np.tile(self.step_tasks_, (n_sequences, 1))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (parameters and fitted structure) for `structure.json`."""
        check_is_fitted(self, ["segment_tasks_"])
        params = self.get_params()
        params["test"] = params["test"] if isinstance(params["test"], str) else getattr(params["test"], "name", "custom")

        def clean(a: np.ndarray) -> Any:
            return [None if not np.isfinite(x) else float(x) for x in a.ravel()]

        return {
            "params": params,
            "segment_tasks": self.segment_tasks_.astype(int).tolist(),
            "step_tasks": self.step_tasks_.astype(int).tolist(),
            "pvalues": {"shape": list(self.pvalues_.shape), "values": clean(self.pvalues_)},
            "statistics": {"shape": list(self.statistics_.shape), "values": clean(self.statistics_)},
            "n_tests": self.n_tests_,
            "conditioning_used": getattr(self, "conditioning_", None),
            "decision_used": getattr(self, "decision_", None),
            "markov_pvalue": getattr(self, "markov_pvalue_", None),
            "critical_pvalue": getattr(self, "critical_pvalue_", None),
            **({"step_pvalues": {"shape": list(self.step_pvalues_.shape), "values": clean(self.step_pvalues_)}}
               if hasattr(self, "step_pvalues_") else {}),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TaskStructure:
        """Rebuild a fitted `TaskStructure` from `to_dict()` output.

        Unknown keys (written by a newer version) warn and are dropped, as in `SpecialistConfig.from_dict`.
        """
        if not isinstance(payload, dict):
            raise ValueError(f"Invalid structure description: expected a JSON object, got {type(payload).__name__}.")
        known = {"params", "segment_tasks", "step_tasks", "pvalues", "statistics", "n_tests", "conditioning_used",
                 "decision_used", "markov_pvalue", "critical_pvalue", "step_pvalues"}
        params = dict(payload.get("params") or {})
        valid_params = set(cls().get_params())
        unknown = sorted(set(payload) - known) + [f"params.{k}" for k in sorted(set(params) - valid_params)]
        if unknown:
            warnings.warn(f"Ignoring unknown TaskStructure keys {unknown} (written by a newer hf_specialist?).",
                          UserWarning, stacklevel=2)
            params = {k: v for k, v in params.items() if k in valid_params}
        try:
            structure = cls(**params)
            structure.segment_tasks_ = np.asarray(payload["segment_tasks"], dtype=bool)
            structure.step_tasks_ = np.asarray(payload["step_tasks"], dtype=bool)
            for name in ("pvalues", "statistics", "step_pvalues"):
                if name == "step_pvalues" and name not in payload:  # only fitted with decision="chain"
                    continue
                block = payload[name]
                values = np.array([np.nan if v is None else v for v in block["values"]], dtype=float)
                setattr(structure, f"{name}_", values.reshape(block["shape"]))
            structure.n_tests_ = int(payload["n_tests"])
            structure.conditioning_ = payload.get("conditioning_used")
            structure.decision_ = payload.get("decision_used")
            structure.markov_pvalue_ = payload.get("markov_pvalue")
            if payload.get("critical_pvalue") is not None:
                structure.critical_pvalue_ = float(payload["critical_pvalue"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"Invalid structure description: {err}") from err
        structure.n_segments_, structure.n_tasks_ = structure.segment_tasks_.shape
        structure.n_steps_ = structure.step_tasks_.shape[0]
        return structure

    def to_json(self) -> str:
        """`to_dict()` as a JSON string."""
        return json.dumps(self.to_dict(), indent=2)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != type(self)().__dict__.get(k)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"
