"""Conditional-independence tests, each evaluating many tests `X ⫫ Y | Z` in one call.

A test is three lists of column indices into one data matrix `(n_samples, n_columns)`. The base class `CITest`
owns validation, standardisation, grouping tests of equal shape into batches, the local-permutation null, the
random generator and a cache keyed by `(x, y, frozenset(z))`; a subclass adds `name`, a batched `statistic` and,
where one exists, an `analytic_pvalue`.

Registered tests (`get_ci_test(name)`):

- ``"fisher_z"``: partial correlation (Fisher's z) for scalar x, y; Wilks' lambda of the partial canonical
  correlations with Bartlett's chi-square for vector-valued x, y. Everything comes from one covariance matrix.
- ``"knn_cmi"``: the Frenzel-Pompe k-nearest-neighbour CMI estimate with a local-permutation null.
- ``"neural_cmi"``: an InfoNCE critic whose negatives are shuffled within neighbourhoods of Z, trained for all
  tests of a batch at once; the p-value comes from the same statistic with held-out x shuffled within Z-cells.

References:
    Frenzel & Pompe (2007), Partial mutual information for coupling analysis of multivariate time series.
    Runge (2018), Conditional independence testing based on a nearest-neighbor estimator of CMI.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from .._validation import Interval, Options, check_array, validate_params

Columns = Sequence[int]
TestSpec = tuple[Columns, Columns, Columns]


@dataclass
class CIResult:
    """Statistics and p-values of a batch of tests, each of shape `(n_tests,)`."""

    statistic: np.ndarray
    pvalue: np.ndarray


def neighbourhood_cells(z: np.ndarray, leaf_size: int = 5) -> np.ndarray:
    """Cell id per row: rows split recursively at the median of the widest dimension of `z`, cells of at most
    `leaf_size` rows. With no `z` columns every row is in one cell."""
    n = len(z)
    if z.ndim == 1:
        z = z[:, None]
    cells = np.zeros(n, dtype=np.int64)
    if z.shape[1] == 0:
        return cells
    pending = [np.arange(n)]
    next_id = 0
    while pending:
        idx = pending.pop()
        if len(idx) <= leaf_size:
            cells[idx] = next_id
            next_id += 1
            continue
        values = z[idx]
        dim = int(np.argmax(values.max(0) - values.min(0)))
        order = idx[np.argsort(values[:, dim], kind="stable")]
        half = len(order) // 2
        pending.extend([order[:half], order[half:]])
    return cells


def permute_within_cells(cells: np.ndarray, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """Random permutations that only exchange rows of the same cell: `(n,)`, or `(size, n)` when `size` is given."""
    n = len(cells)
    draws = 1 if size is None else size
    shuffled = np.argsort(cells[None, :] + rng.random((draws, n)), axis=-1)  # grouped by cell, random inside
    in_order = np.argsort(cells, kind="stable")  # grouped by cell, index order inside
    perm = np.empty((draws, n), dtype=np.int64)
    perm[:, in_order] = shuffled
    return perm[0] if size is None else perm


def local_permutation(z: np.ndarray, rng: np.random.Generator, leaf_size: int = 5) -> np.ndarray:
    """A permutation of the rows that only exchanges rows close in `z` (see `neighbourhood_cells`).

    Returns:
        `(n,)` int array `perm` such that `x[perm]` is x shuffled among rows with similar z.
    """
    return permute_within_cells(neighbourhood_cells(z, leaf_size), rng)


def nearest_neighbour_permutations(neighbours: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """`(size, n)` near-permutations in which row `i` takes the value of one of its nearest neighbours in Z.

    `neighbours` `(n, k)` lists each row's `k` nearest rows in the conditioning set (itself included or not).
    Rows are visited in random order and each takes a random neighbour not yet taken; when all of its neighbours
    are taken it takes a random one of them anyway (Runge 2018's restricted permutation, so the marginal of the
    shuffled variable is kept up to those few repeats). Vectorised over the `size` draws.
    """
    n, k = neighbours.shape
    taken = np.zeros((size, n), dtype=bool)
    perm = np.empty((size, n), dtype=np.int64)
    draws = np.arange(size)
    for i in rng.permutation(n):
        candidates = neighbours[i][np.argsort(rng.random((size, k)), axis=1)]  # (size, k) random order
        free = ~taken[draws[:, None], candidates]
        first_free = np.where(free.any(1), free.argmax(1), 0)
        chosen = candidates[draws, first_free]
        perm[:, i] = chosen
        taken[draws, chosen] = True
    return perm


class CITest:
    """Base class of batched conditional-independence tests.

    Args:
        pvalue (`str`, *optional*, defaults to `"analytic"`): `"analytic"` where the test has one, else
            `"permutation"` (local-permutation null).
        n_permutations (`int`, *optional*, defaults to 100): draws of the permutation null.
        leaf_size (`int`, *optional*, defaults to 5): neighbourhood size of the local permutation.
        null (`str`, *optional*, defaults to `"normal"`): how a permutation p-value is read off the null draws:
            `"normal"` fits a normal distribution to them (continuous p-values, small enough to survive a
            multiple-testing correction with few draws); `"empirical"` is the rank `(1 + #{null >= s}) / (1 + B)`.
        seed (`int`, *optional*): random seed.
    """

    name: str = "base"
    has_analytic = False
    min_samples = 10

    def __init__(self, *, pvalue: str | None = None, n_permutations: int = 100, leaf_size: int = 5,
                 null: str = "normal", seed: int | None = 0):
        self.pvalue = pvalue or ("analytic" if self.has_analytic else "permutation")
        if self.pvalue not in ("analytic", "permutation"):
            raise ValueError(f"`pvalue` must be 'analytic' or 'permutation', got {self.pvalue!r}.")
        if self.pvalue == "analytic" and not self.has_analytic:
            raise ValueError(f"{type(self).__name__} has no analytic p-value; use pvalue='permutation'.")
        validate_params(type(self).__name__, {"n_permutations": n_permutations, "leaf_size": leaf_size},
                        {"n_permutations": [Interval(int, 1, None)], "leaf_size": [Interval(int, 1, None)]})
        if null not in ("normal", "empirical"):
            raise ValueError(f"`null` must be 'normal' or 'empirical', got {null!r}.")
        self.n_permutations, self.leaf_size, self.null, self.seed = n_permutations, leaf_size, null, seed
        self._cache: dict[tuple, tuple[float, float]] = {}
        self.data_: np.ndarray | None = None

    # -- data ---------------------------------------------------------------------------------------
    def fit(self, data: np.ndarray) -> CITest:
        """Store standardised data `(n_samples, n_columns)` and precompute what the statistic needs."""
        data = check_array(data, "data", ndims=(2,), expected="(n_samples, n_columns)", min_samples=self.min_samples)
        std = data.std(0)
        std[std == 0] = 1.0
        self.data_ = (data - data.mean(0)) / std
        self.rng_ = np.random.default_rng(self.seed)
        self._cache.clear()
        self._prepare()
        return self

    def _prepare(self) -> None:
        """Hook for subclasses: precompute from `self.data_`."""

    # -- subclass interface -------------------------------------------------------------------------
    def statistic(self, data: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Statistics of a batch of tests of equal shape: `x (B, kx)`, `y (B, ky)`, `z (B, kz)` column indices."""
        raise NotImplementedError

    def analytic_pvalue(self, statistic: np.ndarray, kx: int, ky: int, kz: int) -> np.ndarray:
        """p-values from the statistic's known null distribution."""
        raise NotImplementedError

    # -- running ------------------------------------------------------------------------------------
    def test(self, tests: Sequence[TestSpec]) -> CIResult:
        """Run every test `(x_columns, y_columns, z_columns)`; returns statistics and p-values in order."""
        if self.data_ is None:
            raise RuntimeError(f"Call {type(self).__name__}.fit(data) before test().")
        n_columns = self.data_.shape[1]
        keys = []
        groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
        for index, (x, y, z) in enumerate(tests):
            x, y, z = tuple(int(c) for c in x), tuple(int(c) for c in y), tuple(sorted(set(int(c) for c in z)))
            if not x or not y:
                raise ValueError(f"Test {index} has an empty x or y.")
            if any(not 0 <= c < n_columns for c in x + y + z):
                raise ValueError(f"Test {index} uses a column outside 0..{n_columns - 1}.")
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
            raise RuntimeError(f"Call {type(self).__name__}.fit(data) before test_batch().")
        x, y, z = (np.asarray(a, dtype=np.int64).reshape(len(a), -1) for a in (x, y, z))
        if not (len(x) == len(y) == len(z)):
            raise ValueError(f"`x`, `y`, `z` must hold the same number of tests, got {len(x)}, {len(y)}, {len(z)}.")
        if x.shape[1] == 0 or y.shape[1] == 0:
            raise ValueError("Every test needs at least one x and one y column.")
        statistic = self.statistic(self.data_, x, y, z)
        if self.pvalue == "analytic":
            pvalue = self.analytic_pvalue(statistic, x.shape[1], y.shape[1], z.shape[1])
        else:
            pvalue = self._permutation_pvalue(statistic, x, y, z)
        return CIResult(statistic=np.asarray(statistic, dtype=float), pvalue=np.asarray(pvalue, dtype=float))

    def _permutation_pvalue(self, statistic: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Share of locally permuted statistics at least as large (x shuffled within neighbourhoods of z)."""
        nulls = np.empty((len(statistic), self.n_permutations))
        for b in range(len(statistic)):
            data = self.data_
            perms = permute_within_cells(neighbourhood_cells(data[:, z[b]], self.leaf_size), self.rng_, self.n_permutations)
            null = np.empty(self.n_permutations)
            for r, perm in enumerate(perms):
                permuted = data.copy()
                permuted[:, x[b]] = data[perm][:, x[b]]
                null[r] = self._single_statistic(permuted, x[b], y[b], z[b])
            nulls[b] = null
        return self.pvalue_from_null(statistic, nulls)

    def pvalue_from_null(self, statistic: np.ndarray, null: np.ndarray) -> np.ndarray:
        """One-sided p-values of `statistic (B,)` against null draws `(B, n_draws)`."""
        if self.null == "empirical":
            return ((null >= statistic[:, None]).sum(1) + 1) / (null.shape[1] + 1)
        mean, std = null.mean(1), null.std(1, ddof=1)
        return stats.norm.sf((statistic - mean) / np.maximum(std, 1e-12))

    def _single_statistic(self, data: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
        return float(self.statistic(data, x[None], y[None], z[None])[0])


class FisherZ(CITest):
    """Gaussian CI test from one covariance matrix.

    For scalar x and y the statistic is Fisher's `sqrt(n - |Z| - 3) * atanh(|r|)` of the partial correlation `r`;
    for vector-valued x, y it is Bartlett's `-(n - 1 - |Z| - (p + q + 1) / 2) * log(Wilks' lambda)` with
    `lambda = det(S_xyz) det(S_z) / (det(S_xz) det(S_yz))`, chi-square with `p * q` degrees of freedom.
    """

    name = "fisher_z"
    has_analytic = True

    @property
    def supports_statistics(self) -> bool:
        """Whether the test can run from sufficient statistics alone (the analytic p-values; a permutation null
        needs the rows)."""
        return self.pvalue == "analytic"

    def _prepare(self) -> None:
        data = self.data_
        self.n_ = data.shape[0]
        self.cov_ = (data.T @ data) / (self.n_ - 1)

    def fit_statistics(self, statistics: Any) -> FisherZ:
        """Fit from `structure.statistics.SufficientStatistics` of the data matrix instead of the rows (streaming,
        several processes). The analytic p-values need nothing else; the permutation null needs the rows."""
        if self.pvalue != "analytic":
            raise ValueError("FisherZ(pvalue='permutation') needs the rows; fit it with fit(data).")
        if statistics.count < self.min_samples:
            raise ValueError(f"FisherZ needs at least {self.min_samples} samples, got {statistics.count}.")
        self.data_ = None
        self.n_ = int(statistics.count)
        self.cov_ = statistics.correlation()
        self.rng_ = np.random.default_rng(self.seed)
        self._cache.clear()
        return self

    def _conditional_covariances(self, cov: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """`(B, kx + ky, kx + ky)` covariance of `(x, y)` given `z` per test, one precision matrix per distinct
        column set `x + y + z` (tests that differ only in which columns play x and y share it)."""
        cols = np.concatenate([x, y, z], axis=1)
        union = np.sort(cols, axis=1)
        out = np.empty((len(x), x.shape[1] + y.shape[1], x.shape[1] + y.shape[1]))
        keys, inverse = np.unique(union, axis=0, return_inverse=True)
        for g, key in enumerate(keys):
            rows = np.flatnonzero(inverse.reshape(-1) == g)
            precision = np.linalg.inv(cov[np.ix_(key, key)] + 1e-10 * np.eye(len(key)))
            pos = np.searchsorted(key, cols[rows, : x.shape[1] + y.shape[1]])  # (b, kx + ky)
            block = precision[pos[:, :, None], pos[:, None, :]]
            out[rows] = np.linalg.inv(block)
        return out

    def statistic(self, data: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        own = data is None or data is self.data_
        cov = self.cov_ if own else np.cov(data, rowvar=False)
        n = self.n_ if own else data.shape[0]
        kx, ky, kz = x.shape[1], y.shape[1], z.shape[1]
        if kz > 16:  # large conditioning sets: from precision matrices instead of one solve per test
            partial = self._conditional_covariances(cov, x, y, z)
            if kx == 1 and ky == 1:
                return fisher_z_statistic(partial, n, kz)
            log_lambda = (np.linalg.slogdet(partial)[1] - np.linalg.slogdet(partial[:, :kx, :kx])[1]
                          - np.linalg.slogdet(partial[:, kx:, kx:])[1])
            return bartlett_statistic(log_lambda, n, kx, ky, kz)
        if kx == 1 and ky == 1:
            idx = np.concatenate([x, y, z], axis=1)
            sub = cov[idx[:, :, None], idx[:, None, :]]
            if kz:
                szz = sub[:, 2:, 2:]
                sab = sub[:, :2, 2:]
                partial = sub[:, :2, :2] - sab @ np.linalg.solve(szz + 1e-12 * np.eye(kz), np.swapaxes(sab, 1, 2))
            else:
                partial = sub[:, :2, :2]
            return fisher_z_statistic(partial, n, kz)
        log_lambda = (
            _logdet(cov, np.concatenate([x, y, z], 1))
            + _logdet(cov, z)
            - _logdet(cov, np.concatenate([x, z], 1))
            - _logdet(cov, np.concatenate([y, z], 1))
        )
        return bartlett_statistic(log_lambda, n, kx, ky, kz)

    def analytic_pvalue(self, statistic: np.ndarray, kx: int, ky: int, kz: int) -> np.ndarray:
        if kx == 1 and ky == 1:
            return 2 * stats.norm.sf(statistic)
        return stats.chi2.sf(statistic, df=kx * ky)


def fisher_z_statistic(partial: np.ndarray, n: int, kz: int) -> np.ndarray:
    """Fisher's z statistic from `(B, 2, 2)` partial covariances of scalar x and y given `kz` columns."""
    r = partial[:, 0, 1] / np.sqrt(np.maximum(partial[:, 0, 0] * partial[:, 1, 1], 1e-300))
    r = np.clip(np.abs(r), 0.0, 1 - 1e-15)
    return np.sqrt(max(n - kz - 3, 1)) * np.arctanh(r)


def bartlett_statistic(log_lambda: np.ndarray, n: int, kx: int, ky: int, kz: int) -> np.ndarray:
    """Bartlett's chi-square statistic from the log of Wilks' lambda of the partial canonical correlations."""
    return -(n - 1 - kz - (kx + ky + 1) / 2) * np.minimum(log_lambda, 0.0)


def _logdet(cov: np.ndarray, idx: np.ndarray) -> np.ndarray:
    if idx.shape[1] == 0:
        return np.zeros(idx.shape[0])
    sub = cov[idx[:, :, None], idx[:, None, :]]
    sign, value = np.linalg.slogdet(sub + 1e-10 * np.eye(idx.shape[1]))
    return np.where(sign > 0, value, -np.inf)


class KnnCMI(CITest):
    """Frenzel-Pompe k-nearest-neighbour estimate of `I(X; Y | Z)` (max-norm), with a local-permutation null.

    Up to `dense_max` samples, distances are computed per column once (`n x n` each) and a batch of tests is
    evaluated together on the stacked distance matrices. Above it, each test queries k-d trees (scipy's
    `cKDTree`, `O(n log n)` time, `O(n)` memory), so `n` can reach the hundreds of thousands; the two paths give
    the same estimate.

    Args:
        k (`int` or `"auto"`, *optional*, defaults to `"auto"`): neighbours in the joint space; `"auto"` uses
            `max(10, 5% of n)` up to 2,000 samples and `max(100, 1% of n)` above. For testing (rather than
            estimating) a larger `k` lowers the variance of the statistic and the permutation null absorbs its
            bias: in the knn setting of `recipes/benchmarks/structure.py` (nonlinear collider sequences, n = 1,500)
            F1 rose from 0.76 (k = 10) to 0.87 (k = 75), with the type-I error still near alpha.
        k_perm (`int`, *optional*): draw the null from Runge's nearest-neighbour restricted permutation with
            `k_perm` neighbours in Z instead of shuffling within k-d cells of `leaf_size` rows (the default, which
            had more power in our benchmark).
        n_permutations (`int`, *optional*, defaults to 50): draws of the local-permutation null.
        batch_tests (`int`, *optional*, defaults to 8): tests evaluated together on the dense path (memory
            `batch_tests * n^2`).
        dense_max (`int`, *optional*, defaults to 2000): largest `n` for the dense path.
    """

    name = "knn_cmi"
    min_samples = 20

    def __init__(self, *, k: int | str = "auto", n_permutations: int = 50, batch_tests: int = 8,
                 k_perm: int | None = None, dense_max: int = 2000, **kwargs):
        super().__init__(n_permutations=n_permutations, **kwargs)
        validate_params("KnnCMI", {"k": k, "batch_tests": batch_tests, "k_perm": k_perm, "dense_max": dense_max},
                        {"k": [Options("auto"), Interval(int, 1, None)], "batch_tests": [Interval(int, 1, None)],
                         "k_perm": [Options(None), Interval(int, 1, None)], "dense_max": [Interval(int, 0, None)]})
        self.k, self.batch_tests, self.k_perm, self.dense_max = k, batch_tests, k_perm, dense_max

    def _prepare(self) -> None:
        import torch

        n = self.data_.shape[0]
        if self.k != "auto" and self.k >= n:
            raise ValueError(f"`k`={self.k} must be smaller than the number of samples {n}.")
        if self.k == "auto":
            self.k_ = max(10, round(0.05 * n)) if n <= 2000 else max(100, round(0.01 * n))
        else:
            self.k_ = self.k
        self.k_ = min(self.k_, n - 1)
        jitter = self.rng_.normal(scale=1e-6, size=self.data_.shape)
        self.values_ = self.data_ + jitter
        self.dense_ = n <= self.dense_max
        if self.dense_:
            values = torch.as_tensor(self.values_, dtype=torch.float32)
            self.dist_ = (values.T[:, :, None] - values.T[:, None, :]).abs()  # (columns, n, n)

    def _cmi(self, dx, dy, dz):
        """Batched estimate from `(B, n, n)` max-norm distance matrices (dz may be None)."""
        import torch

        n = dx.shape[-1]
        eye = torch.eye(n, dtype=torch.bool)
        joint = torch.maximum(dx, dy) if dz is None else torch.maximum(torch.maximum(dx, dy), dz)
        joint = joint.masked_fill(eye, float("inf"))
        eps = joint.kthvalue(self.k_, dim=-1).values.unsqueeze(-1)

        def count(d):
            return ((d < eps) & ~eye).sum(-1).double().numpy()

        if dz is None:
            return _knn_cmi_value(self.k_, n, count(dx), count(dy))
        return _knn_cmi_value(self.k_, n, count(torch.maximum(dx, dz)), count(torch.maximum(dy, dz)), count(dz))

    def _cmi_tree(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
        """One estimate from the `(n, k*)` sample columns with k-d trees (max-norm)."""
        from scipy.spatial import cKDTree

        n = len(x)
        joint = np.concatenate([x, y, z], axis=1)
        eps = cKDTree(joint).query(joint, k=[self.k_ + 1], p=np.inf, workers=-1)[0][:, 0]
        radius = np.nextafter(eps, 0)  # strictly closer than the k-th neighbour

        def count(a: np.ndarray) -> np.ndarray:
            inside = cKDTree(a).query_ball_point(a, radius, p=np.inf, return_length=True, workers=-1)
            return (inside - 1.0)[None]  # the point itself is inside

        if z.shape[1] == 0:
            return float(_knn_cmi_value(self.k_, n, count(x), count(y))[0])
        xz, yz = np.concatenate([x, z], axis=1), np.concatenate([y, z], axis=1)
        return float(_knn_cmi_value(self.k_, n, count(xz), count(yz), count(z))[0])

    def _distances(self, cols: np.ndarray):
        return self.dist_[cols].amax(dim=1) if cols.shape[1] else None

    def statistic(self, data: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        if not self.dense_:
            v = self.values_
            return np.array([self._cmi_tree(v[:, x[b]], v[:, y[b]], v[:, z[b]]) for b in range(len(x))])
        out = []
        for start in range(0, len(x), self.batch_tests):
            sl = slice(start, start + self.batch_tests)
            out.append(self._cmi(self._distances(x[sl]), self._distances(y[sl]), self._distances(z[sl])))
        return np.concatenate(out)

    def _null_permutations(self, z_cols: np.ndarray) -> np.ndarray:
        """`(n_permutations, n)` row orders that shuffle x within neighbourhoods of Z."""
        if self.k_perm is not None and len(z_cols):
            from scipy.spatial import cKDTree

            zv = self.values_[:, z_cols]
            neighbours = cKDTree(zv).query(zv, k=self.k_perm, p=np.inf, workers=-1)[1].reshape(len(zv), -1)
            return nearest_neighbour_permutations(neighbours, self.rng_, self.n_permutations)
        cells = neighbourhood_cells(self.data_[:, z_cols], self.leaf_size)
        return permute_within_cells(cells, self.rng_, size=self.n_permutations)

    def _permutation_pvalue(self, statistic, x, y, z):
        import torch

        nulls = np.empty((len(statistic), self.n_permutations))
        v = self.values_
        for b in range(len(statistic)):
            all_perms = self._null_permutations(z[b])
            if not self.dense_:
                xv, yv, zv = v[:, x[b]], v[:, y[b]], v[:, z[b]]
                nulls[b] = [self._cmi_tree(xv[perm], yv, zv) for perm in all_perms]
                continue
            dx, dy = self._distances(x[b : b + 1]), self._distances(y[b : b + 1])
            dz = self._distances(z[b : b + 1])
            for start in range(0, self.n_permutations, self.batch_tests):
                reps = min(self.batch_tests, self.n_permutations - start)
                perms = torch.as_tensor(all_perms[start : start + reps])
                dxp = dx[0][perms[:, :, None], perms[:, None, :]]
                nulls[b, start : start + reps] = self._cmi(
                    dxp, dy.expand(reps, -1, -1), None if dz is None else dz.expand(reps, -1, -1)
                )
        return self.pvalue_from_null(statistic, nulls)


def _knn_cmi_value(k: int, n: int, n_a: np.ndarray, n_b: np.ndarray, n_z: np.ndarray | None = None) -> np.ndarray:
    """Frenzel-Pompe (or, without `n_z`, KSG) estimate from neighbour counts `(B, n)` strictly inside each
    point's k-th joint-space neighbour distance."""
    psi = special.digamma
    if n_z is None:
        return psi(k) + psi(n) - (psi(n_a + 1) + psi(n_b + 1)).mean(-1)
    return psi(k) - (psi(n_a + 1) + psi(n_b + 1) - psi(n_z + 1)).mean(-1)


class NeuralCMI(CITest):
    """InfoNCE estimate of `I(X; Y | Z)` with negatives shuffled within neighbourhoods of Z.

    A critic `f(x, y, z)` (a small MLP, one per test, all tests of a batch trained together as one batched
    network) learns to tell the observed `y` from `y` values of rows with similar `z`. The statistic is the
    InfoNCE lower bound on held-out rows; the p-value compares it with the same statistic when the held-out `x`
    is shuffled within neighbourhoods of `z` (a draw from the null `X ⫫ Y | Z`) while `y` and its negatives stay
    as observed, so what the critic gains from the y-z relation (cells are never perfectly local in several
    dims) is in the null too. Shuffling `y` instead gave false positives in a 12-dim Z.

    Args:
        hidden (`int`, *optional*, defaults to 64): critic width.
        n_negatives (`int`, *optional*, defaults to 16): locally shuffled negatives per row.
        epochs (`int`, *optional*, defaults to 30): passes over the training rows.
        n_permutations (`int`, *optional*, defaults to 50): null draws on held-out rows.
        device (`str`, *optional*): "cuda" when available, else "cpu".
    """

    name = "neural_cmi"
    min_samples = 50

    def __init__(self, *, hidden: int = 64, n_negatives: int = 16, epochs: int = 30, lr: float = 3e-3,
                 batch_size: int = 512, n_permutations: int = 50, holdout: float = 0.3, batch_tests: int = 64,
                 device: str | None = None, **kwargs):
        super().__init__(n_permutations=n_permutations, **kwargs)
        validate_params("NeuralCMI", {"hidden": hidden, "n_negatives": n_negatives, "epochs": epochs, "lr": lr,
                                      "holdout": holdout},
                        {"hidden": [Interval(int, 1, None)], "n_negatives": [Interval(int, 1, None)],
                         "epochs": [Interval(int, 1, None)], "lr": [Interval(float, 0, None, "neither")],
                         "holdout": [Interval(float, 0, 1, "neither")]})
        self.hidden, self.n_negatives, self.epochs, self.lr = hidden, n_negatives, epochs, lr
        self.batch_size, self.holdout, self.batch_tests, self.device = batch_size, holdout, batch_tests, device

    def statistic(self, data, x, y, z):
        stats_out, nulls = [], []
        for start in range(0, len(x), self.batch_tests):
            sl = slice(start, start + self.batch_tests)
            s, null = self._run_batch(data, x[sl], y[sl], z[sl])
            stats_out.append(s)
            nulls.append(null)
        self._null = np.concatenate(nulls)
        return np.concatenate(stats_out)

    def _permutation_pvalue(self, statistic, x, y, z):
        return self.pvalue_from_null(statistic, self._null)

    def _run_batch(self, data, x, y, z):
        import torch

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        gen = torch.Generator().manual_seed(int(self.rng_.integers(2**31)))
        n = data.shape[0]
        n_test = max(int(n * self.holdout), 10)
        order = self.rng_.permutation(n)
        train_rows, test_rows = order[n_test:], order[:n_test]
        B = len(x)

        def gather(rows, cols):
            return torch.as_tensor(data[rows][:, cols].transpose(1, 0, 2), dtype=torch.float32, device=device)

        leaf = max(self.leaf_size, 2 * self.n_negatives)
        cells = {
            name: [neighbourhood_cells(data[rows][:, z[b]], leaf) for b in range(B)]
            for name, rows in (("train", train_rows), ("test", test_rows))
        }

        def neg_index(split, count):
            """(B, count, rows) indices into the split's rows, shuffled within z-neighbourhoods of each test."""
            out = np.stack([permute_within_cells(cells[split][b], self.rng_, size=count) for b in range(B)])
            return torch.as_tensor(out, device=device)

        xs = {name: gather(rows, x) for name, rows in (("train", train_rows), ("test", test_rows))}
        ys = {name: gather(rows, y) for name, rows in (("train", train_rows), ("test", test_rows))}
        zs = {name: gather(rows, z) for name, rows in (("train", train_rows), ("test", test_rows))}
        d_in = x.shape[1] + y.shape[1] + z.shape[1]
        h = self.hidden
        w1 = (torch.randn(B, d_in, h, generator=gen) / d_in**0.5).to(device).requires_grad_()
        b1 = torch.zeros(B, 1, h, device=device, requires_grad=True)
        w2 = (torch.randn(B, h, h, generator=gen) / h**0.5).to(device).requires_grad_()
        b2 = torch.zeros(B, 1, h, device=device, requires_grad=True)
        w3 = (torch.randn(B, h, 1, generator=gen) / h**0.5).to(device).requires_grad_()
        params = [w1, b1, w2, b2, w3]

        def critic(xv, yv, zv):  # (B, m, *) -> (B, m)
            inp = torch.cat([xv, yv, zv], -1)
            hid = torch.nn.functional.silu(torch.baddbmm(b1, inp, w1))
            hid = torch.nn.functional.silu(torch.baddbmm(b2, hid, w2))
            return torch.bmm(hid, w3).squeeze(-1)

        def infonce(xv, yv, zv, y_pool, neg):
            """Mean InfoNCE bound: `neg` (B, K, m) indexes rows of `y_pool` (B, N, ky) used as negatives."""
            pos = critic(xv, yv, zv)
            negs = [
                critic(xv, torch.gather(y_pool, 1, neg[:, k, :, None].expand(-1, -1, y_pool.shape[-1])), zv)
                for k in range(neg.shape[1])
            ]
            scores = torch.stack([pos] + negs, -1)  # (B, m, K+1)
            return (scores[..., 0] - torch.logsumexp(scores, -1) + np.log(scores.shape[-1])).mean(-1)

        optim = torch.optim.Adam(params, lr=self.lr)
        m = len(train_rows)
        for _ in range(self.epochs):
            negatives = neg_index("train", self.n_negatives)  # fresh local shuffles every epoch
            batch_order = torch.randperm(m, generator=gen).to(device)
            for start in range(0, m, self.batch_size):
                rows = batch_order[start : start + self.batch_size]
                bound = infonce(xs["train"][:, rows], ys["train"][:, rows], zs["train"][:, rows], ys["train"],
                                negatives[:, :, rows])
                loss = -bound.sum()
                optim.zero_grad()
                loss.backward()
                optim.step()
        with torch.no_grad():
            test_neg = neg_index("test", self.n_negatives)
            observed = infonce(xs["test"], ys["test"], zs["test"], ys["test"], test_neg).cpu().numpy()
            null = np.empty((B, self.n_permutations))
            for r in range(self.n_permutations):
                # x shuffled within z-cells, y and its negatives as observed: whatever the critic gains from the
                # y-z relation (cells are never perfectly local) is in the null draws too
                perm = neg_index("test", 1)[:, 0]
                x_null = torch.gather(xs["test"], 1, perm[:, :, None].expand(-1, -1, xs["test"].shape[-1]))
                null[:, r] = infonce(x_null, ys["test"], zs["test"], ys["test"], test_neg).cpu().numpy()
        return observed, null


CI_TESTS: dict[str, type[CITest]] = {}


def register_ci_test(cls: type[CITest]) -> type[CITest]:
    """Register a `CITest` subclass under its `name`; a duplicate name raises."""
    if cls.name in CI_TESTS:
        raise ValueError(f"A CI test named {cls.name!r} is already registered ({CI_TESTS[cls.name].__name__}).")
    CI_TESTS[cls.name] = cls
    return cls


for _cls in (FisherZ, KnnCMI, NeuralCMI):
    register_ci_test(_cls)


def get_ci_test(test: str | CITest, seed: int | None = None) -> CITest:
    """A configured test from a registered name, or the instance itself."""
    if isinstance(test, CITest):
        return test
    if isinstance(test, type):
        raise TypeError(
            f"`test` must be a registered name or a CITest instance, got the class {test.__name__}. "
            f"Pass an instance instead, e.g. test={test.__name__}()."
        )
    if not isinstance(test, str) or test not in CI_TESTS:
        raise ValueError(f"Unknown CI test {test!r}. Valid names: {sorted(CI_TESTS)}.")
    return CI_TESTS[test](seed=seed)
