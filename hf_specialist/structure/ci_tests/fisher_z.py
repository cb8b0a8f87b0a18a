"""Gaussian CI test (Fisher's z, Wilks' lambda) from one correlation matrix or its sufficient statistics."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from ._base import CITest


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
