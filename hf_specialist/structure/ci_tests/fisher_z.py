"""Gaussian CI test (Fisher's z, Wilks' lambda) from one correlation matrix or its sufficient statistics."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from ..._validation import InputError
from ._base import CITest


class FisherZ(CITest):
    """Gaussian CI test from one covariance matrix.

    For scalar x and y the statistic is Fisher's `sqrt(n - |Z| - 3) * atanh(|r|)` of the partial correlation `r`;
    for vector-valued x, y it is Bartlett's `-(n - 1 - |Z| - (p + q + 1) / 2) * log(Wilks' lambda)` with
    `lambda = det(S_xyz) det(S_z) / (det(S_xz) det(S_yz))`, chi-square with `p * q` degrees of freedom.

    Args:
        backend (`str`, *optional*, defaults to `"auto"`): where the batched statistics run: `"numpy"`, `"torch"`
            (float64 on `device`), or `"auto"`: torch on the accelerator when the sufficient statistics were
            accumulated there (`fit_statistics` of CUDA batches), numpy otherwise. Both give the same values
            within 1e-6 (tested); conditioning sets over 16 columns always run in numpy.
        device (`str`, *optional*): the torch device for `backend="torch"` (default: the statistics' device, else
            CPU).
        Other arguments as in `CITest`.
    """

    name = "fisher_z"
    has_analytic = True

    def __init__(self, *, backend: str = "auto", device: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if backend not in ("auto", "numpy", "torch"):
            raise InputError(f"`backend` must be 'auto', 'numpy' or 'torch', got {backend!r}.")
        self.backend, self.device = backend, device

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
            raise InputError("FisherZ(pvalue='permutation') needs the rows; fit it with fit(data).")
        if statistics.count < self.min_samples:
            raise InputError(f"FisherZ needs at least {self.min_samples} samples, got {statistics.count}.")
        self.data_ = None
        self.n_ = int(statistics.count)
        self.cov_ = statistics.correlation()
        self.statistics_device_ = str(statistics.mean.device) if statistics.on_torch else None
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
        """Per test, |Fisher z| of the partial correlation of x and y given z (one column each), or Bartlett's
        chi-square statistic of the blocks' Wilks' lambda, from the fitted covariance (or `data`'s)."""
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
        device = self._torch_device() if own else None
        if device is not None:
            return _band_statistic_torch(self.cov_, n, x, y, z, device)
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

    def _torch_device(self) -> str | None:
        """The device the batched statistics run on in torch, or `None` for numpy."""
        on_accelerator = getattr(self, "statistics_device_", None)
        if self.backend == "torch":
            return self.device or on_accelerator or "cpu"
        if self.backend == "auto" and on_accelerator is not None and not on_accelerator.startswith("cpu"):
            return self.device or on_accelerator
        return None

    def analytic_pvalue(self, statistic: np.ndarray, kx: int, ky: int, kz: int) -> np.ndarray:
        """Two-sided normal p-value for one column each, else chi-square with `kx * ky` degrees of freedom."""
        if kx == 1 and ky == 1:
            return 2 * stats.norm.sf(statistic)
        return stats.chi2.sf(statistic, df=kx * ky)


def _band_statistic_torch(cov: np.ndarray, n: int, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                          device: str) -> np.ndarray:
    """The same statistics as the numpy paths (conditioning sets of at most 16 columns), batched in float64 torch."""
    import torch

    c = torch.as_tensor(cov, dtype=torch.float64, device=device)
    kx, ky, kz = x.shape[1], y.shape[1], z.shape[1]

    def block(idx: np.ndarray) -> torch.Tensor:
        i = torch.as_tensor(idx, device=device)
        return c[i[:, :, None], i[:, None, :]]

    if kx == 1 and ky == 1:
        sub = block(np.concatenate([x, y, z], axis=1))
        partial = sub[:, :2, :2]
        if kz:
            sab = sub[:, :2, 2:]
            eye = torch.eye(kz, dtype=torch.float64, device=device)
            partial = partial - sab @ torch.linalg.solve(sub[:, 2:, 2:] + 1e-12 * eye, sab.transpose(1, 2))
        return fisher_z_statistic(partial.cpu().numpy(), n, kz)

    def logdet(idx: np.ndarray) -> torch.Tensor:
        if idx.shape[1] == 0:
            return torch.zeros(len(idx), dtype=torch.float64, device=device)
        eye = torch.eye(idx.shape[1], dtype=torch.float64, device=device)
        sign, value = torch.linalg.slogdet(block(idx) + 1e-10 * eye)
        return torch.where(sign > 0, value, torch.full_like(value, -torch.inf))

    log_lambda = (logdet(np.concatenate([x, y, z], 1)) + logdet(z) - logdet(np.concatenate([x, z], 1))
                  - logdet(np.concatenate([y, z], 1)))
    return bartlett_statistic(log_lambda.cpu().numpy(), n, kx, ky, kz)


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
