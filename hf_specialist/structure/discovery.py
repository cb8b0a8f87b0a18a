"""Algorithm 1 (Theorem 1): which segments of a sequence serve which task, from conditional-independence tests.

The tests run *across sequences*: each step index is a random variable observed once per sequence. With the
Gaussian test (`fisher_z`) a fit needs only the sufficient statistics of `[steps | tasks]`, so it also streams
(`partial_fit`, `fit` of an iterable of batches) and runs across processes; the planning of the tests
(`planning.py`), the multiple-testing family (`multitest.py`) and the chain decision (`decision.py`) live beside it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
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
from .ci_tests import CITest, get_ci_test
from .decision import chain_segments
from .multitest import adjust_pvalues, critical_pvalue
from .planning import _band_markov_pvalues, band_markov_pvalues, build_test_batches
from .serialization import structure_from_dict, structure_to_dict
from .statistics import SufficientStatistics

__all__ = ["TaskStructure", "adjust_pvalues", "band_markov_pvalues", "chain_segments", "critical_pvalue"]


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
    def _check_batch(self, states: Any, tasks: Any) -> tuple[np.ndarray, np.ndarray]:
        """Shape and value checks of one batch, as `(n, T, d)` states and `(n, M, d_g)` tasks."""
        states = check_array(states, "states", ndims=(2, 3), expected="(n_sequences, T) or (n_sequences, T, d)")
        tasks = check_array(tasks, "tasks", ndims=(1, 2, 3), expected="(n_sequences, M) or (n_sequences, M, d_g)")
        check_consistent_length(states=states, tasks=tasks)
        if states.ndim == 2:
            states = states[:, :, None]
        if tasks.ndim == 1:
            tasks = tasks[:, None, None]
        elif tasks.ndim == 2:
            tasks = tasks[:, :, None]
        layout = getattr(self, "_layout", None)
        if layout is not None and (states.shape[1:], tasks.shape[1:]) != layout:
            raise ValueError(
                f"This batch has states of shape (n, {', '.join(map(str, states.shape[1:]))}) and tasks (n, "
                f"{', '.join(map(str, tasks.shape[1:]))}), but earlier batches had (n, {', '.join(map(str, layout[0]))})"
                f" and (n, {', '.join(map(str, layout[1]))}); every batch needs the same steps, dims and tasks."
            )
        return states, tasks

    def _check_layout(self, states: np.ndarray, tasks: np.ndarray, ci: CITest) -> None:
        """Checks of the parameters against the first batch's layout (before any work)."""
        T, L = states.shape[1], self.segment_length
        if T % L and not self.drop_last:
            raise ValueError(
                f"`states` has T={T} steps, which is not a multiple of segment_length={L}. Pass "
                f"drop_last=True to drop the last {T % L} steps, or choose another segment_length."
            )
        if T // L < (2 if self.mode == "pairwise" else 1):
            raise ValueError(f"`states` has {T // L} segment(s) of length {L}; mode={self.mode!r} needs at least 2.")

    def _min_samples(self, ci: CITest, width: int, d_g: int, steps: int) -> int:
        needed = max(ci.min_samples, 4 * width + d_g + width * 2 + 5)
        if self.conditioning == "all":
            needed = max(needed, steps * width + d_g + 10)
        return needed

    def _check_enough(self, n: int, ci: CITest, width: int, d_g: int, steps: int) -> None:
        needed = self._min_samples(ci, width, d_g, steps)
        if n < needed:
            if self.conditioning == "all" and n >= self._min_samples(ci, width, d_g, 0):
                raise ValueError(f"conditioning='all' conditions on {(steps - 1) * width} dims but `states` has only "
                                 f"{n} sequences; use conditioning='band', a smaller `project`, or more sequences.")
            raise ValueError(
                f"`states` has {n} sequences but the {ci.name} test with these dimensions needs at least {needed}; "
                "pass more sequences (or a smaller `project`)."
            )

    def _test_instance(self) -> CITest:
        """A fresh test: a registered name's class, or a copy of the instance passed (never mutated)."""
        test = self.test
        if isinstance(test, CITest):
            return copy.deepcopy(test)
        return get_ci_test(test, seed=self.seed)

    # -- projection -------------------------------------------------------------------------------
    def _fit_projection(self, states: np.ndarray) -> None:
        """Per-step PCA to `project` dims, learned from `states` (the first batch) and kept for later batches."""
        self._projection = None
        if self.project is None or states.shape[2] <= self.project:
            return
        from sklearn.decomposition import PCA

        if len(states) < self.project:
            raise ValueError(f"project={self.project} needs a first batch of at least {self.project} sequences to "
                             f"learn the projection from; got {len(states)}.")
        means, components = [], []
        for t in range(states.shape[1]):
            pca = PCA(n_components=self.project, random_state=self.seed).fit(states[:, t])
            means.append(pca.mean_)
            components.append(pca.components_)
        self._projection = (np.stack(means), np.stack(components))  # (T, d), (T, k, d)

    def _apply_projection(self, states: np.ndarray) -> np.ndarray:
        if getattr(self, "_projection", None) is None:
            return states
        means, components = self._projection
        return np.einsum("ntd,tkd->ntk", states - means[None], components)

    def _rows(self, states: np.ndarray, tasks: np.ndarray) -> np.ndarray:
        """The data matrix `[steps (T * d) | tasks (M * d_g)]` of a checked batch (projected, trailing steps dropped)."""
        n = len(states)
        T = (states.shape[1] // self.segment_length) * self.segment_length
        projected = self._apply_projection(states[:, :T])
        return np.concatenate([projected.reshape(n, -1), tasks.reshape(n, -1)], axis=1)

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, states: Any, tasks: Any = None) -> TaskStructure:
        """Fit the structure.

        Args:
            states: `(n_sequences, T)` or `(n_sequences, T, d)` step states (numpy or torch); or an iterable of
                `(states, tasks)` batches (then leave `tasks` out). Under `torch.distributed` (`torchrun`,
                `accelerate launch`) each process passes its own batches; the sufficient statistics are summed
                across processes once and every process ends with the same structure, equal to one process fitted
                on all the batches. With `project`, the projection is learned from the main process's first
                batch and used for every batch. Streaming needs a sufficient-statistic test (`fisher_z`).
            tasks: `(n_sequences, M)` or `(n_sequences, M, d_g)` task variables.

        Returns:
            `self`.
        """
        validate_params(type(self).__name__, self.get_params(), self._parameter_constraints)
        if tasks is None:
            if isinstance(states, np.ndarray) or hasattr(states, "detach"):
                raise ValueError("`tasks` is required with an array of states (or pass an iterable of "
                                 "(states, tasks) batches as the only argument).")
            return self._fit_batches(states)
        self._reset()
        states, tasks = self._check_batch(states, tasks)
        ci = self._test_instance()
        self._check_layout(states, tasks, ci)
        self._layout = (states.shape[1:], tasks.shape[1:])
        self._fit_projection(states)
        width = states.shape[2] if self._projection is None else self.project
        T = (states.shape[1] // self.segment_length) * self.segment_length
        self._check_enough(len(states), ci, width, tasks.shape[2], T)
        rows = self._rows(states, tasks)
        if getattr(ci, "supports_statistics", False):
            self._statistics = SufficientStatistics(rows.shape[1]).update(rows)
            ci.fit_statistics(self._statistics)
        else:
            ci.fit(rows)
        return self._decide(ci, len(rows), width)

    def partial_fit(self, states: Any, tasks: Any) -> TaskStructure:
        """Add a batch of sequences and refit from the sufficient statistics of every row seen so far.

        After each call the fitted attributes equal `fit` on all the rows passed so far (with `project`, the
        projection is the one learned from the first batch). Until enough rows have come for the test, the
        attributes are not set yet. Needs a sufficient-statistic test (`fisher_z`); statistics stay in this
        process (`fit` of an iterable sums them across processes).

        Args:
            states: `(n_sequences, T)` or `(n_sequences, T, d)` step states of this batch.
            tasks: `(n_sequences, M)` or `(n_sequences, M, d_g)` task variables of this batch.

        Returns:
            `self`.
        """
        first = getattr(self, "_statistics", None) is None
        if first:
            validate_params(type(self).__name__, self.get_params(), self._parameter_constraints)
            self._require_statistics_test()
        states, tasks = self._check_batch(states, tasks)
        if first:
            self._reset()
            self._check_layout(states, tasks, self._test_instance())
            self._layout = (states.shape[1:], tasks.shape[1:])
            self._fit_projection(states)
        rows = self._rows(states, tasks)
        if first:
            self._statistics = SufficientStatistics(rows.shape[1])
        self._statistics.update(rows)
        return self._refit_from_statistics()

    def _require_statistics_test(self) -> None:
        if not getattr(self._test_instance(), "supports_statistics", False):
            raise ValueError(
                f"Streaming (partial_fit, fit of batches) needs a test computed from sufficient statistics "
                f"('fisher_z'); {self._test_instance().name!r} needs every sample at once: pass arrays to fit()."
            )

    def _refit_from_statistics(self) -> TaskStructure:
        stats = self._statistics
        (T_full, d_raw), (M, d_g) = self._layout
        width = d_raw if getattr(self, "_projection", None) is None else self.project
        T = (T_full // self.segment_length) * self.segment_length
        ci = self._test_instance()
        if stats.count < self._min_samples(ci, width, d_g, T):
            return self
        return self._decide(ci.fit_statistics(stats), stats.count, width)

    def _fit_batches(self, batches: Iterable[tuple[Any, Any]]) -> TaskStructure:
        """`fit` of an iterable of `(states, tasks)` batches, summed across processes when there are several."""
        from .._distributed import is_main_process, world_size

        self._require_statistics_test()
        self._reset()
        iterator = iter(batches)
        first = next(iterator, None)
        world = world_size()
        if world > 1:  # every process takes the main process's layout and projection
            import torch.distributed as dist

            if first is None and is_main_process():
                raise ValueError("The main process got no batch; every process needs the layout of a first batch.")
            if is_main_process():
                states, tasks = self._check_batch(*_as_pair(first))
                self._check_layout(states, tasks, self._test_instance())
                self._layout = (states.shape[1:], tasks.shape[1:])
                self._fit_projection(states)
            box = [(self._layout, self._projection) if is_main_process() else None]
            dist.broadcast_object_list(box, src=0)
            self._layout, self._projection = box[0]
        elif first is None:
            raise ValueError("`fit` got an empty iterable of batches.")
        else:
            states, tasks = self._check_batch(*_as_pair(first))
            self._check_layout(states, tasks, self._test_instance())
            self._layout = (states.shape[1:], tasks.shape[1:])
            self._fit_projection(states)
        (T_full, d_raw), (M, d_g) = self._layout
        width = d_raw if self._projection is None else self.project
        T = (T_full // self.segment_length) * self.segment_length
        self._statistics = SufficientStatistics(T * width + M * d_g)
        if first is not None:
            self._statistics.update(self._rows(*self._check_batch(*_as_pair(first))))
        for batch in iterator:
            self._statistics.update(self._rows(*self._check_batch(*_as_pair(batch))))
        self._statistics.all_reduce()
        ci = self._test_instance()
        self._check_enough(self._statistics.count, ci, width, d_g, T)
        return self._decide(ci.fit_statistics(self._statistics), self._statistics.count, width)

    def _reset(self) -> None:
        for name in list(vars(self)):
            if name.endswith("_") and not name.startswith("__"):
                delattr(self, name)
        self._statistics = None
        self._layout = None
        self._projection = None

    def _decide(self, ci: CITest, n: int, d: int) -> TaskStructure:
        """Run the planned tests on a fitted `ci` and set every fitted attribute."""
        L = self.segment_length
        (T_full, _), (M, d_g) = self._layout
        N = T_full // L
        T = N * L
        rep = np.arange(N) * L + (L - 1 if self.representative == "end" else 0)
        self.decision_ = self._choose_decision(ci)
        chain = self.decision_ == "chain"
        direct_steps = np.arange(T) if chain else rep
        self.conditioning_ = self._choose_conditioning(n, T, d, rep, ci, d_g)
        groups = build_test_batches(rep, T, d, M, d_g, self.mode, self.conditioning_, direct_steps)
        chunk = None if ci.name == "fisher_z" else max(1, getattr(ci, "batch_tests", 8))
        n_tests = sum(len(g[3]) for g in groups)
        family = (M * N if self.mode != "pairwise" else 0) + sum(len(g[3]) for g in groups if not g[4])
        if ci.stop_below is None:  # a permutation null may stop once a p-value is far below the smallest critical value
            ci.stop_below = 0.02 * self.alpha / max(family, 1)
        results: dict[bool, list[list[np.ndarray]]] = {False: [[], [], []], True: [[], [], []]}
        disable = None if self.progress is None else not self.progress
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
        self.n_features_in_ = self._layout[0][1]
        self.n_samples_seen_ = int(n)
        return self


    def _choose_decision(self, ci: CITest) -> str:
        """`"chain"` or `"representative"`; `"auto"` is the chain for `fisher_z`, the end-step rule otherwise."""
        if self.mode == "pairwise":
            return "representative"
        if self.decision != "auto":
            return self.decision
        return "chain" if ci.name == "fisher_z" else "representative"

    def _choose_conditioning(self, n: int, T: int, d: int, rep: np.ndarray, ci: CITest, d_g: int) -> str:
        """The direct test's conditioning set; for `"auto"`, `"all"` only where the band check passes."""
        self.markov_pvalue_ = None
        if self.conditioning != "auto":
            return self.conditioning
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
        return structure_to_dict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TaskStructure:
        """Rebuild a fitted `TaskStructure` from `to_dict()` output.

        Unknown keys (written by a newer version) warn and are dropped, as in `SpecialistConfig.from_dict`.
        """
        return structure_from_dict(cls, payload)

    def to_json(self) -> str:
        """`to_dict()` as a JSON string."""
        return json.dumps(self.to_dict(), indent=2)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != type(self)().__dict__.get(k)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


def _as_pair(batch: Any) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(f"Each batch must be a `(states, tasks)` pair, got {type(batch).__name__}.")
    return batch[0], batch[1]
