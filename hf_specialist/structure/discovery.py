"""Algorithm 1 (Theorem 1): which steps (or segments) of a sequence serve which task, from CI tests across
sequences.

Each step index is a random variable observed once per sequence. `TaskStructure` is the estimator's interface and
runs one fit in order: what every batch shares is learned from the first batch (`layout.py`: shapes, the per-step
reduction of `reduction.py`, the test's features); the tests are planned (`planning.py`: decision rule,
conditioning sets, batches of equal-shaped tests), run (`execution.py`), corrected as one family and turned into
marks (`decision.py`). With a sufficient-statistic test it streams (`streaming.py`); `diagnostics.py` measures
what the data say about the fit's assumptions and `report.py` prints them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np

from .._arrays import task_names_of
from .._warnings import warn_user
from .._validation import (
    InputError,
    InstanceOf,
    Interval,
    Options,
    check_is_fitted,
    validate_params,
)
from .ci_tests import CITest, get_ci_test
from .decision import chain_segments, family_marks
from .diagnostics import step_r2, temporal_pvalues
from .execution import no_tests, run_tests, weakest_direct_tests
from .layout import BatchLayout, as_batch, check_segments
from .multitest import adjust_pvalues, critical_pvalue
from .planning import (
    band_markov_pvalues,
    choose_conditioning,
    choose_decision,
    conditioning_widths,
    direct_conditionings,
    plan_tests,
)
from .serialization import structure_from_dict, structure_to_dict
from .statistics import SufficientStatistics

__all__ = ["TaskStructure", "adjust_pvalues", "band_markov_pvalues", "chain_segments", "critical_pvalue"]

AUTO_PROJECT = 8  # dims kept per step by project="auto" when the states are wider
PAST_WIDTH_FACTOR = 16  # causal states: the past set reads up to this many times the tested dims of each earlier step
PAST_COLUMNS = 2048  # ... and the stored columns of all steps together stay within this (statistics hold its square)


class TaskStructure:
    """Discover which steps of a sequence serve which task (the paper's Algorithm 1 at step level, plus segments).

    By default every step is tested on its own (``segment_length=1``): step `t` is marked for task `i` when
    `s_t ⫫̸ g_i | Z_t`, so tasks served by runs of any length at any offset are found. Which conditioning set
    `Z_t` makes that test valid depends on what a step's state holds:

    - **A step's state reads its own content** (hidden states of text, one sentence per step; features of each
      step): `s_t ⫫̸ g_i | Z_t` holds exactly when step `t`'s content enters `g_i`, with `Z_t` the two neighbours
      (``conditioning="band"``; also valid for sequences without temporal dependence or cut ones) or every
      other step (``"all"``: it also blocks content that attention copies from far steps into `s_t`, and has
      more power, since the other serving steps explain part of `g_i`). Where the states mix content between
      steps, each set fails somewhere (below), and ``"auto"`` requires both (``"band+all"``); with ``causal=True``
      (a decoder's states, in which step `t` reads only steps `<= t`) also the test given every earlier step
      (``"band+all+past"``), which later steps cannot bias. Marks are the rejections (``carryover=False``).
    - **A step's state carries the previous step's action** (the paper's model: `s_{t+1} = F(s_t, a_t)`): the
      path `s_t <- a_{t-1} -> g_i` is not blocked by any set of states, so the step *after* a run serving
      `g_i` is dependent too. The paper avoids that with segments of `L >= 2` steps whose end step represents
      them. At step level, ``carryover=True`` reads every run of rejections as the run plus its next step and
      marks the run (a Viterbi pass, `chain_segments`).

    The two cases give the same joint distribution of states and tasks in the linear-Gaussian model, so no test
    on the states can choose between them in general; ``carryover="auto"`` takes `False` at step level and the
    paper's `True` for segments (`segment_length >= 2`). What the data can tell, `report()` shows: whether the
    states screen each step from the far steps given its neighbours (`markov_pvalue_`; it fails where content
    leaks between steps, as attention does) and whether consecutive steps depend on each other at all
    (`temporal_pvalues_`; where they do not, no state can carry a previous action and both readings agree).

    Segments (``segment_length=L >= 2``, for users who know them): segment `k` (steps `kL-L+1 .. kL`, 1-based)
    is represented by its *end* step. ``mode="pairwise"`` is the paper's test, for segments `k < v` and task
    `i`: `s_{kL} ⫫̸ s_{vL} | {s_{kL-1}, s_{kL+1}, s_{vL-1}, s_{vL+1}, g_i}` marks task `i` in both segments;
    ``mode="direct"`` tests `s_{kL} ⫫̸ g_i | Z`; ``"both"`` is the union with one multiple-testing family.
    ``decision="chain"`` (the default for `fisher_z`) tests every step and picks the segment marks that explain
    all of them at least cost.

    Wide step states (hidden states) are reduced per step to `project` dims first, learned from the first batch:
    ``reduction="pca"`` keeps the top-variance directions; ``"supervised"`` the directions that predict the tasks,
    learned on a split of rows the tests then do not use, plus the top-variance directions of the rest; ``"auto"``
    (the default) PCA where it keeps at least a tenth of what the full states predict for every task (cross-validated
    on up to 2,000 rows of the first batch, which the tests then also use), else the supervised directions. PCA's
    top-variance dims also pass over faint content that attention copies between steps, which the task directions
    read (and the tests then mark); the supervised dims find task facts that PCA drops (a number stated among
    distractors in a causal LM's state). A warning says when the kept dims carry less than a tenth of what the full
    states predict (`kept_share_`, `reduction_`).

    Args:
        segment_length (`int`, *optional*, defaults to 1): `L`, steps per segment; 1 marks each step on its own.
        test (`str` or `CITest`, *optional*, defaults to `"fisher_z"`): a registered CI test name or an instance.
        alpha (`float`, *optional*, defaults to 0.05): level after correction.
        mode (`str`, *optional*, defaults to `"direct"`): `"pairwise"`, `"direct"` or `"both"`.
        correction (`str`, *optional*, defaults to `"bonferroni"`): `None`, `"bonferroni"` or `"fdr_bh"`.
        project (`int`, `"auto"` or `None`, *optional*, defaults to `"auto"`): dims kept per step; `"auto"`
            keeps 8 when the states are wider, `None` keeps every dim.
        reduction (`str`, *optional*, defaults to `"auto"`): how the `project` dims are chosen (see above):
            `"pca"`, `"supervised"`, or `"auto"`: PCA unless its dims carry less than a tenth of what the full
            states predict for some task (cross-validated ridge R^2 on up to 2,000 rows of the first batch;
            `structure.reduction.choose_reduction`), then the supervised directions.
        conditioning (`str`, *optional*, defaults to `"auto"`): the direct test's conditioning set: `"band"` (the
            two neighbours), `"all"` (every other step), `"past"` (every earlier step), `"band+all"` or
            `"band+all+past"` (several: a step is marked only where every set's test rejects; its p-value is the
            largest one) or `"auto"`: `"all"` where the band-screening check passes
            (`markov_pvalue_ >= alpha`, with `n >= 100 * (T * d + d_g)`), `"band+all"` where it fails (from
            `n >= 10 * (T * d + d_g)`; `"band+all+past"` with `causal=True`), else `"band"`. `"past"` is every
            earlier step. Where steps mix in each other's content, the band and every other step fail in opposite
            ways: the band does not block content copied from a far step into the tested one (attention), and
            every other step opens collider paths (each conditioned step mixes its own content with the tested
            step's; the later neighbour is in the band too). In causal states no earlier step holds the tested
            step's content, so the past opens no such path. Requiring every set keeps the level whenever one of
            them makes the null true (an intersection-union test). Pairwise tests always use the band; knn_cmi and
            neural_cmi use the band.
        causal (`bool`, *optional*, defaults to `None`): whether each step's state reads only its own and earlier steps (a decoder's
            hidden states in full context; `hfs.hooks.is_causal(model, hook_point)` measures it, and
            `hfs.discover` / `hfs.sweep_layers` set it from the model). `None` (unknown) and `False` leave
            `"auto"` without the past. With `True` and a reduction, the past set reads up to 16 times `project`
            dims of each earlier step (and at most 2,048 stored columns over all steps), as many as leave 10
            sequences per column of each test (`conditioning_dims_`; a test with fewer earlier steps reads more of
            each): no earlier step holds the tested step's content, so more of them block more of what they echo
            into it.
        carryover (`bool` or `"auto"`, *optional*, defaults to `"auto"`): whether a step's state carries the
            previous step's action (see above); `"auto"`: `True` for segments, `False` at step level.
        representative (`str`, *optional*, defaults to `"end"`): `"end"` or `"start"` step of each segment.
        decision (`str`, *optional*, defaults to `"auto"`): `"chain"` (every step's direct test, explained by
            marks on the chain), `"representative"` (each segment's representative step alone) or `"auto"`:
            the chain for sufficient-statistic tests, the representative rule for permutation and critic tests.
        drop_last (`bool`, *optional*, defaults to `False`): drop trailing steps when `T` is not a multiple of `L`.
        seed (`int`, *optional*, defaults to 0): random seed (the reduction's split, permutation nulls, critics).
        progress (`bool`, *optional*): show a progress bar (default: when stderr is a terminal).

    Attributes:
        segment_tasks_ (`np.ndarray` of shape `(N, M)`, bool): segment `k` serves task `i` (`N = T` at step level).
        step_tasks_ (`np.ndarray` of shape `(T, M)`, bool): the marks per step.
        step_pvalues_, step_statistics_ (`np.ndarray` of shape `(M, T)`): raw p-value and statistic of every
            tested step's direct test (NaN where a step was not tested); under several sets (`"band+all"`) the
            largest p-value of the sets and the statistic that goes with it.
        step_r2_ (`np.ndarray` of shape `(M, T)` or `None`): the share of each task's variance that each step's
            (reduced) state predicts on its own; high on every step means content leaks between steps.
        critical_pvalue_ (`float`): the raw p-value a single direct test must fall below under `correction`.
        pvalues_ (`np.ndarray`): adjusted p-values; `(M, N)` for `"direct"`, `(M, N, N)` for `"pairwise"` and
            `"both"` (the diagonal holds the direct tests).
        statistics_ (`np.ndarray`): the test statistics, same shape as `pvalues_`.
        n_tests_ (`int`): CI tests run (under several sets, every set's tests).
        conditioning_ (`str`), carryover_ (`bool`), decision_ (`str`): what the fit used.
        conditioning_dims_ (`dict[str, int | list[int]]`): dims per step the tests read: `"tested"` of the tested
            step, and per conditioning set of each conditioning step (the tested dims). For the past a list, per
            step the dims of each earlier step its direct test reads (more than the tested dims only for causal
            states, as that test's rows allow; 0 for the first step and for steps without a direct test).
        markov_pvalue_ (`float` or `None`): adjusted p-value of the band-screening check (`None` when not run).
        temporal_pvalues_ (`np.ndarray` of shape `(T - 1,)` or `None`): p-value that steps `t` and `t+1` are
            independent (Gaussian, on the tested dims).
        kept_share_ (`np.ndarray` of shape `(M * d_g,)` or `None`): per task column, the share of what the full
            states predict that the reduced states keep.
        reduction_ (`str` or `None`): the reduction used, `"pca"` or `"supervised"` (`None`: no reduction).
        context_ (`str`): set by `hfs.discover` and `hfs.sweep_layers` only: the context the states were
            extracted in, `"isolated"` or `"full"` (also in `structure.json` and `report()`; a later `partial_fit`
            drops it, since its states may come from elsewhere).
        task_names_ (`list[str]` or `None`): the tasks' names, where the tasks had them (the columns of a
            `datasets.Dataset`; `hf-specialist discover`: the table's columns); kept in `structure.json`, so that
            training on another table can match the marks to its columns by name.
        n_segments_, n_tasks_, n_steps_ (`int`): the fitted sizes.

    Examples:
        >>> from hf_specialist import TaskStructure, synthetic
        >>> states, tasks, truth = synthetic.paper_linear_gaussian(n=10_000, T=8, seed=0)
        >>> ts = TaskStructure(segment_length=2).fit(states, tasks)
        >>> bool((ts.step_tasks_ == truth["step_tasks"]).all())
        True

    References:
        Zheng et al., "From Generalist to Specialist Representation", ICML 2026, Theorem 1 and Algorithm 1.
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "segment_length": [Interval(int, 1, None)],
        "test": [InstanceOf(str, CITest, type, description="a registered test name or a CITest instance")],
        "alpha": [Interval(float, 0, 1, "neither")],
        "mode": [Options("pairwise", "direct", "both")],
        "correction": [Options(None, "bonferroni", "fdr_bh")],
        "project": [Options(None, "auto"), Interval(int, 1, None)],
        "reduction": [Options("auto", "supervised", "pca")],
        "conditioning": [Options("auto", "band", "all", "past", "band+all", "band+all+past")],
        "causal": [Options(None, True, False)],
        "carryover": [Options("auto", True, False)],
        "representative": [Options("end", "start")],
        "decision": [Options("auto", "chain", "representative")],
        "drop_last": [Options(True, False)],
        "seed": [Options(None), Interval(int, 0, None)],
        "progress": [Options(None, True, False)],
    }

    def __init__(
        self,
        *,
        segment_length: int = 1,
        test: str | CITest = "fisher_z",
        alpha: float = 0.05,
        mode: str = "direct",
        correction: str | None = "bonferroni",
        project: int | str | None = "auto",
        reduction: str = "auto",
        conditioning: str = "auto",
        causal: bool | None = None,
        carryover: bool | str = "auto",
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
        self.reduction = reduction
        self.conditioning = conditioning
        self.causal = causal
        self.carryover = carryover
        self.representative = representative
        self.decision = decision
        self.drop_last = drop_last
        self.seed = seed
        self.progress = progress

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments."""
        return {name: getattr(self, name) for name in self._parameter_constraints}

    def _validate(self) -> None:
        validate_params(type(self).__name__, self.get_params(), self._parameter_constraints)
        if self.segment_length == 1 and self.mode != "direct":
            raise InputError(f"mode={self.mode!r} pairs segments of segment_length >= 2 (the paper's test); at step "
                             "level (segment_length=1) use mode='direct'.")

    # -- input ------------------------------------------------------------------------------------
    def _check_batch(self, states: Any, tasks: Any) -> tuple[np.ndarray, np.ndarray]:
        """Shape and value checks of one batch, as `(n, T, d)` states and `(n, M, d_g)` tasks; after the first
        batch, also against its layout."""
        states, tasks = as_batch(states, tasks)
        if getattr(self, "_layout", None) is not None:
            self._layout.check(states, tasks)
        return states, tasks

    def _kept_dims(self, d: int) -> int | None:
        """Dims kept per step (`None`: every dim)."""
        k = AUTO_PROJECT if self.project == "auto" else self.project
        return None if k is None or d <= k else int(k)

    def _stored_dims(self, d: int, T: int, kept: int | None, test: CITest) -> int | None:
        """Dims kept per step (at least the tested `kept`): where the past may be a conditioning set of causal
        states (`causal=True`, conditioning `"auto"` or with `"past"`), a sufficient-statistic test on the steps as
        they are and a reduction, up to `PAST_WIDTH_FACTOR` times `kept`, capped at `d` and at `PAST_COLUMNS`
        over the states' `T` steps (all of them, tested or not: the safe side), which the past set reads as each
        test's rows allow (`planning.conditioning_widths`); else `kept`."""
        past_possible = self.mode != "pairwise" and (self.conditioning == "auto"
                                                     or "past" in self.conditioning.split("+"))
        if kept is None or self.causal is not True or not past_possible \
                or not getattr(test, "supports_statistics", False) or getattr(test, "n_features", 0):
            return kept
        return int(min(d, PAST_WIDTH_FACTOR * kept, max(kept, PAST_COLUMNS // T)))

    def _setup(self, states: np.ndarray, tasks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Learn what every batch shares from the first (checked) batch: the layout, the per-step reduction and
        the test's feature map (`BatchLayout`). Returns the rows of the batch left for the tests."""
        check_segments(states.shape[1], self.segment_length, self.drop_last, self.mode)
        kept, test = self._kept_dims(states.shape[2]), self._test_instance()
        layout, states, tasks = BatchLayout.learn(
            states, tasks, segment_length=self.segment_length, kept_dims=kept,
            reduction=self.reduction, seed=self.seed, test=test,
            stored_dims=self._stored_dims(states.shape[2], states.shape[1], kept, test))
        self._adopt(layout)
        return states, tasks

    def _adopt(self, layout: BatchLayout) -> None:
        """Take a learned layout (this process's or the main process's)."""
        self._layout = layout
        self.kept_share_, self.reduction_ = layout.kept_share, layout.reduction_used

    def _min_samples(self, ci: CITest) -> int:
        d, d_g = self._layout.tested_width(), self._layout.widths()[1]
        T = self._layout.tested_steps
        needed = max(ci.min_samples, 4 * d + d_g + d * 2 + 5)
        if self.conditioning not in ("auto", "band"):
            needed = max(needed, T * d + d_g + 10)
        return needed

    def _check_enough(self, n: int, ci: CITest) -> None:
        needed = self._min_samples(ci)
        if n < needed:
            d = self._layout.tested_width()
            if self.conditioning not in ("auto", "band"):
                raise InputError(f"conditioning={self.conditioning!r} conditions on "
                                 f"{(self._layout.tested_steps - 1) * d} dims but only {n} sequences are left for the "
                                 "tests; use conditioning='band', a smaller `project`, or more sequences.")
            raise InputError(
                f"`states` leaves {n} sequences for the tests but the {ci.name} test with these dimensions needs at "
                f"least {needed}; pass more sequences (or a smaller `project`)."
            )

    def _test_instance(self) -> CITest:
        """A fresh test: a registered name's class, or a copy of the instance passed (never mutated)."""
        test = self.test
        if isinstance(test, CITest):
            return copy.deepcopy(test)
        return get_ci_test(test, seed=self.seed)

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, states: Any, tasks: Any = None) -> TaskStructure:
        """Fit the structure.

        Args:
            states: `(n_sequences, T)` or `(n_sequences, T, d)` step states (numpy or torch); or an iterable of
                `(states, tasks)` batches (then leave `tasks` out). Under `torch.distributed` (`torchrun`,
                `accelerate launch`) each process passes its own batches; the sufficient statistics are summed
                across processes once and every process ends with the same structure, equal to one process fitted
                on all the batches. The reduction and the test's features are learned from the main process's
                first batch. Streaming needs a sufficient-statistic test (`fisher_z`, `rff_z`).
            tasks: `(n_sequences, M)` or `(n_sequences, M, d_g)` task variables (numpy, torch, or a
                `datasets.Dataset` of numeric columns).

        Returns:
            `self`.
        """
        from .streaming import fit_batches

        self._validate()
        if tasks is None:
            if isinstance(states, np.ndarray) or hasattr(states, "detach"):
                raise InputError("`tasks` is required with an array of states (or pass an iterable of "
                                 "(states, tasks) batches as the only argument).")
            return fit_batches(self, states)
        names = task_names_of(tasks)
        self._reset()
        states, tasks = self._setup(*self._check_batch(states, tasks))
        ci = self._test_instance()
        self._check_enough(len(states), ci)
        rows = self._layout.rows(states, tasks)
        if getattr(ci, "supports_statistics", False):
            self._statistics = SufficientStatistics(rows.shape[1]).update(rows)
            self._decide_from_statistics()
        else:
            self._decide(ci.fit(rows), len(rows))
        self.task_names_ = names
        return self

    def partial_fit(self, states: Any, tasks: Any) -> TaskStructure:
        """Add a batch of sequences and refit from the sufficient statistics of every row seen so far.

        After each call the fitted attributes equal `fit` of an iterable of the same batches (the reduction and
        the test's features are learned from the first batch, so `fit` of one concatenated array can differ where
        a reduction or features are learned). Until enough rows have come for the test, the attributes are not set
        yet. Needs a sufficient-statistic test (`fisher_z`, `rff_z`); statistics stay
        in this process (`fit` of an iterable sums them across processes).

        Args:
            states: `(n_sequences, T)` or `(n_sequences, T, d)` step states of this batch.
            tasks: `(n_sequences, M)` or `(n_sequences, M, d_g)` task variables of this batch.

        Returns:
            `self`.
        """
        from .streaming import partial_fit

        self.__dict__.pop("context_", None)  # hfs.discover's record covers only the texts it extracted
        return partial_fit(self, states, tasks)

    def _decide_from_statistics(self) -> TaskStructure:
        ci = self._test_instance()
        return self._decide(ci.fit_statistics(self._statistics), self._statistics.count)

    def _reset(self) -> None:
        for name in list(vars(self)):
            if name.endswith("_") and not name.startswith("__"):
                delattr(self, name)
        self._statistics = None
        self._layout = None

    def _decide(self, ci: CITest, n: int) -> TaskStructure:
        """Run the planned tests on a fitted `ci` and set every fitted attribute."""
        L = self.segment_length
        (T_full, _), (M, _) = self._layout.steps_shape, self._layout.tasks_shape
        (stored, d_g), d = self._layout.widths(), self._layout.tested_width()
        T = self._layout.tested_steps
        cov = getattr(ci, "cov_", None)
        if cov is not None and stored != d:  # the diagnostics read the tested columns
            tested = self._layout.tested_columns()
            cov = cov[np.ix_(tested, tested)]
        N = T // L
        rep = np.arange(N) * L + (L - 1 if self.representative == "end" else 0)
        self.decision_ = choose_decision(self.mode, self.decision, ci)
        self.carryover_ = bool(L >= 2 if self.carryover == "auto" else self.carryover)
        chain = self.decision_ == "chain"
        direct_steps = np.arange(T) if chain else rep
        self.conditioning_, self.markov_pvalue_ = choose_conditioning(self.conditioning, self.mode, cov, n, T, d,
                                                                      d_g, rep, self.alpha, self.causal)
        self.temporal_pvalues_ = temporal_pvalues(cov, n, T, d)
        sets = direct_conditionings(self.mode, self.conditioning_)
        widths = conditioning_widths(sets, n, T, d, stored, d_g, direct_steps=direct_steps)
        self.conditioning_dims_ = {"tested": d, **widths}
        batches = plan_tests(rep, T, d, M, d_g, self.mode, self.conditioning_, direct_steps, stored, widths)
        family = (M * N if self.mode != "pairwise" else 0) + sum(len(b.where) for b in batches if b.kind == "pair")
        if ci.stop_below is None:  # a permutation null may stop once a p-value is far below the smallest critical value
            ci.stop_below = 0.02 * self.alpha / max(family, 1)
        results = run_tests(ci, batches, self.progress)
        self.step_r2_ = step_r2(cov, M, T, d, d_g, T_full)
        tested_p, tested_stat = weakest_direct_tests(
            [results.get(f"direct {c}", no_tests()) for c in sets],
            M, len(direct_steps))
        self.step_pvalues_ = np.full((M, T_full), np.nan)
        self.step_statistics_ = np.full((M, T_full), np.nan)
        self.step_pvalues_[:, direct_steps] = tested_p
        self.step_statistics_[:, direct_steps] = tested_stat
        marks = family_marks(self.step_pvalues_, self.step_statistics_, results.get("pair", no_tests()), rep, L,
                             self.mode, self.alpha, self.correction, chain=chain, carryover=self.carryover_)
        self.pvalues_, self.statistics_, self.raw_pvalues_ = marks.pvalues, marks.statistics, marks.raw_pvalues
        self.critical_pvalue_ = marks.critical_pvalue
        self.segment_tasks_ = marks.segment_tasks
        step_tasks = np.zeros((T_full, M), dtype=bool)
        step_tasks[:T] = np.repeat(marks.segment_tasks, L, axis=0)
        self.step_tasks_ = step_tasks
        self.n_tests_ = sum(len(b.where) for b in batches)
        self.n_segments_, self.n_tasks_, self.n_steps_ = N, M, T_full
        self.n_features_in_ = self._layout.steps_shape[1]
        self.n_samples_seen_ = int(n)
        if getattr(self, "_extraction_context", None) is not None:  # set by hfs.discover around its fit
            self.context_ = self._extraction_context
        self._warn_leakage()
        return self

    def _warn_leakage(self) -> None:
        """Say at fit time when a task lights every step or every step predicts it alone (content mixed between
        steps): the marks then do not say which part of the input serves the task."""
        from .report import structure_warnings

        for message in structure_warnings(self):
            if "leak" in message or "mixed" in message:
                warn_user(message)

    # -- results ----------------------------------------------------------------------------------
    def task_mask(self, n_sequences: int | None = None) -> np.ndarray:
        """`(T, M)` bool (or `(n_sequences * T, M)` when `n_sequences` is given): which rows count for which task.

        Rows are steps, as the adapter's `task_mask` expects for states flattened to `(n_sequences * T, d)`.
        """
        check_is_fitted(self, ["step_tasks_"])
        if n_sequences is None:
            return self.step_tasks_.copy()
        return np.tile(self.step_tasks_, (n_sequences, 1))

    def report(self, task_names: list[str] | None = None, *, warn: bool = True) -> str:
        """The evidence behind the marks: per task and step the raw p-value (as `-log10 p`) and mark, what the
        data say about the fit's assumptions (band screening, dependence between consecutive steps), and warnings
        when a task lights every step (likely leakage) or none. Print it; `report_rows()` has the numbers.

        Args:
            task_names (`list[str]`, *optional*): row labels (default: `task_names_`, the columns of a
                `datasets.Dataset` of tasks, else `task 0`, `task 1`, ...).
            warn (`bool`, *optional*, defaults to `True`): also raise the warnings as `UserWarning`s.
        """
        import warnings

        from .report import format_report, structure_warnings

        check_is_fitted(self, ["step_tasks_"])
        if warn:
            for message in structure_warnings(self):
                warnings.warn(message, UserWarning, stacklevel=2)
        return format_report(self, task_names if task_names is not None else getattr(self, "task_names_", None))

    def report_rows(self) -> list[dict[str, Any]]:
        """Per task and step: `task`, `step` (1-based), raw `pvalue`, `statistic` and `marked` (JSON-ready)."""
        from .report import report_rows

        check_is_fitted(self, ["step_tasks_"])
        return report_rows(self)

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

