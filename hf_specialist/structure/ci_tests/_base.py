"""The CI-test contract: `CITest` owns validation, standardisation, batching, the cache, the random generator and
the p-values; a subclass gives a statistic and, where it has one, an analytic null or its own null draws."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..._arrays import standardise
from ..._validation import InputError, Interval, NotFittedError, Options, check_array, validate_params
from ._permutation import neighbourhood_cells, permute_within_cells

Columns = Sequence[int]
TestSpec = tuple[Columns, Columns, Columns]


@dataclass
class CIResult:
    """Statistics and p-values of a batch of tests, each of shape `(n_tests,)`."""

    statistic: np.ndarray
    pvalue: np.ndarray


class CITest:
    """Base class of batched conditional-independence tests.

    Args:
        pvalue (`str`, *optional*, defaults to `"analytic"`): `"analytic"` where the test has one, else
            `"permutation"` (local-permutation null).
        n_permutations (`int`, *optional*, defaults to 100): draws of the permutation null.
        leaf_size (`int`, *optional*, defaults to 5): neighbourhood size of the local permutation.
        null (`str`, *optional*, defaults to `"normal"`): how a permutation p-value is read off the null draws:
            `"normal"` treats the `B` draws as a normal sample and gives the predictive p-value of the statistic,
            `t_{B-1}((s - mean) / (sd * sqrt(1 + 1/B)))`, which is exact for normal draws at any `B` (continuous
            p-values, small enough to survive a multiple-testing correction with few draws); `"empirical"` is the
            rank `(1 + #{null >= s}) / (1 + B)`.
        early_stop (`bool`, *optional*, defaults to `True`): with `null="normal"`, draw the null in rounds
            (`FIRST_DRAWS`, then `ROUND_DRAWS` at a time) and stop drawing for a test once its p-value is below
            `stop_below` (split evenly over the interim looks) or above `STOP_ABOVE` (it is then not significant
            at any level up to 0.2); only tests near a threshold get all `n_permutations` draws. A null test is
            marked with probability at most its level plus `stop_below`. Tests that compute their null in one
            pass (`NeuralCMI`) draw all of it.
        stop_below (`float`, *optional*): the p-value under which drawing stops, summed over the looks;
            `STOP_BELOW` when not set. `TaskStructure` sets it on its copy of a test that leaves it unset to 2% of
            its smallest critical value (`alpha / family size`), so the family-wise rate is at most `1.02 alpha`.
        seed (`int`, *optional*): random seed.
    """

    FIRST_DRAWS = 5
    ROUND_DRAWS = 10
    STOP_BELOW = 1e-6
    STOP_ABOVE = 0.2

    name: str = "base"
    has_analytic = False
    min_samples = 10

    def __init__(self, *, pvalue: str | None = None, n_permutations: int = 100, leaf_size: int = 5,
                 null: str = "normal", early_stop: bool = True, stop_below: float | None = None,
                 seed: int | None = 0):
        self.pvalue = pvalue or ("analytic" if self.has_analytic else "permutation")
        if self.pvalue not in ("analytic", "permutation"):
            raise InputError(f"`pvalue` must be 'analytic' or 'permutation', got {self.pvalue!r}.")
        if self.pvalue == "analytic" and not self.has_analytic:
            raise InputError(f"{type(self).__name__} has no analytic p-value; use pvalue='permutation'.")
        validate_params(type(self).__name__,
                        {"n_permutations": n_permutations, "leaf_size": leaf_size, "stop_below": stop_below},
                        {"n_permutations": [Interval(int, 2, None)], "leaf_size": [Interval(int, 1, None)],
                         "stop_below": [Options(None), Interval(float, 0, 1, "left")]})
        if null not in ("normal", "empirical"):
            raise InputError(f"`null` must be 'normal' or 'empirical', got {null!r}.")
        self.n_permutations, self.leaf_size, self.null, self.seed = n_permutations, leaf_size, null, seed
        self.early_stop, self.stop_below = early_stop, stop_below
        self._cache: dict[tuple, tuple[float, float]] = {}
        self.data_: np.ndarray | None = None

    # -- data ---------------------------------------------------------------------------------------
    def fit(self, data: np.ndarray) -> CITest:
        """Store standardised data `(n_samples, n_columns)` and precompute what the statistic needs."""
        data = check_array(data, "data", ndims=(2,), expected="(n_samples, n_columns)", min_samples=self.min_samples)
        self.data_ = standardise(data)
        self.rng_ = np.random.default_rng(self.seed)
        self._cache.clear()
        self._prepare()
        return self

    def _prepare(self) -> None:
        """Hook for subclasses: precompute from `self.data_`."""

    # -- subclass interface -------------------------------------------------------------------------
    def statistic(self, data: np.ndarray | None, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Statistics of a batch of tests of equal shape: `x (B, kx)`, `y (B, ky)`, `z (B, kz)` column indices."""
        raise NotImplementedError

    def analytic_pvalue(self, statistic: np.ndarray, kx: int, ky: int, kz: int) -> np.ndarray:
        """p-values from the statistic's known null distribution (tests with `has_analytic`)."""
        raise NotImplementedError

    def null_statistics(self, statistic: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                        n_draws: int) -> np.ndarray:
        """`(B, n_draws)` draws of the statistic under `X ⫫ Y | Z`: by default, x shuffled within
        neighbourhoods of z and the statistic recomputed; subclasses may give a faster equivalent."""
        nulls = np.empty((len(statistic), n_draws))
        for b in range(len(statistic)):
            data = self.data_
            perms = permute_within_cells(neighbourhood_cells(data[:, z[b]], self.leaf_size), self.rng_, n_draws)
            for r, perm in enumerate(perms):
                permuted = data.copy()
                permuted[:, x[b]] = data[perm][:, x[b]]
                nulls[b, r] = self._single_statistic(permuted, x[b], y[b], z[b])
        return nulls

    def statistic_and_null(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The statistic and its null draws per test (all `n_permutations`, or fewer for tests `early_stop`
        settles); tests that compute both in one pass (a trained critic) override it."""
        statistic = self.statistic(self.data_, x, y, z)
        sequential = self.early_stop and self.null == "normal"
        first = min(self.n_permutations, self.FIRST_DRAWS) if sequential else self.n_permutations
        nulls = list(self.null_statistics(statistic, x, y, z, first))
        looks = max(1, math.ceil((self.n_permutations - first) / self.ROUND_DRAWS))
        stop_below = (self.STOP_BELOW if self.stop_below is None else self.stop_below) / looks
        active = np.arange(len(statistic))
        while sequential and len(active) and len(nulls[active[0]]) < self.n_permutations:
            p = self.pvalue_from_null(statistic[active], [nulls[b] for b in active])
            active = active[(p >= stop_below) & (p <= self.STOP_ABOVE)]
            if not len(active):
                break
            draws = min(self.ROUND_DRAWS, self.n_permutations - len(nulls[active[0]]))
            more = self.null_statistics(statistic[active], x[active], y[active], z[active], draws)
            for b, row in zip(active, more):
                nulls[b] = np.concatenate([nulls[b], row])
        return statistic, nulls

    # -- running ------------------------------------------------------------------------------------
    def test(self, tests: Sequence[TestSpec]) -> CIResult:
        """Run every test `(x_columns, y_columns, z_columns)`; returns statistics and p-values in order."""
        if self.data_ is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate "
                                 "arguments before using this estimator.")
        n_columns = self.data_.shape[1]
        keys = []
        groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
        for index, (x, y, z) in enumerate(tests):
            x, y, z = tuple(int(c) for c in x), tuple(int(c) for c in y), tuple(sorted(set(int(c) for c in z)))
            if not x or not y:
                raise InputError(f"Test {index} has an empty x or y.")
            if any(not 0 <= c < n_columns for c in x + y + z):
                raise InputError(f"Test {index} uses a column outside 0..{n_columns - 1}.")
            key = (x, y, frozenset(z))
            keys.append((key, x, y, z))
            if key not in self._cache:
                groups[(len(x), len(y), len(z))].append(index)
        for (kx, ky, kz), members in groups.items():
            unique: dict[tuple, int] = {}
            for m in members:
                unique.setdefault(keys[m][0], m)
            rows = list(unique.values())
            x = np.array([keys[m][1] for m in rows], dtype=np.int64).reshape(len(rows), kx)
            y = np.array([keys[m][2] for m in rows], dtype=np.int64).reshape(len(rows), ky)
            z = np.array([keys[m][3] for m in rows], dtype=np.int64).reshape(len(rows), kz)
            result = self.test_batch(x, y, z)
            for m, s, p in zip(rows, result.statistic, result.pvalue):
                self._cache[keys[m][0]] = (float(s), float(p))
        values = np.array([self._cache[k[0]] for k in keys], dtype=np.float64).reshape(len(keys), 2)
        return CIResult(statistic=values[:, 0], pvalue=values[:, 1])

    def test_batch(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> CIResult:
        """Run a batch of tests of equal shape given as column-index arrays `x (B, kx)`, `y (B, ky)`, `z (B, kz)`.

        The vectorised path behind `test` (no per-test Python work, no cache).
        """
        if self.data_ is None and getattr(self, "cov_", None) is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate "
                                 "arguments before using this estimator.")
        x, y, z = (np.asarray(a, dtype=np.int64).reshape(len(a), -1) for a in (x, y, z))
        if not (len(x) == len(y) == len(z)):
            raise InputError(f"`x`, `y`, `z` must hold the same number of tests, got {len(x)}, {len(y)}, {len(z)}.")
        if x.shape[1] == 0 or y.shape[1] == 0:
            raise InputError("Every test needs at least one x and one y column.")
        if self.pvalue == "analytic":
            statistic = self.statistic(self.data_, x, y, z)
            pvalue = self.analytic_pvalue(statistic, x.shape[1], y.shape[1], z.shape[1])
        else:
            statistic, null = self.statistic_and_null(x, y, z)
            pvalue = self.pvalue_from_null(np.asarray(statistic, dtype=float), null)
        return CIResult(statistic=np.asarray(statistic, dtype=float), pvalue=np.asarray(pvalue, dtype=float))

    def pvalue_from_null(self, statistic: np.ndarray, null: Sequence[np.ndarray]) -> np.ndarray:
        """One-sided p-values of `statistic (B,)` against each test's null draws (`(B, n_draws)` or one array of
        draws per test)."""
        pvalues = np.empty(len(statistic))
        for b, draws in enumerate(null):
            draws = np.asarray(draws, dtype=float)
            if self.null == "empirical":
                pvalues[b] = ((draws >= statistic[b]).sum() + 1) / (len(draws) + 1)
                continue
            scale = max(draws.std(ddof=1), 1e-12) * np.sqrt(1 + 1 / len(draws))
            pvalues[b] = stats.t.sf((statistic[b] - draws.mean()) / scale, df=len(draws) - 1)
        return pvalues

    def _single_statistic(self, data: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
        return float(self.statistic(data, x[None], y[None], z[None])[0])
