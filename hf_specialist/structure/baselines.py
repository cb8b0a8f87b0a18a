"""Baselines for step x task structure, with the same `fit(states, tasks)` -> `step_tasks_ (T, M)` contract.

- `CCABaseline`: canonical correlation of each step with each task, kept when significant (Bartlett, Bonferroni).
- `GroupLassoBaseline`: each task regressed on all steps, one group per step; steps with a non-zero group count.
- `ChangePointClusterBaseline`: change points in the per-step profile of task correlations split the sequence
  into segments; per task, a two-cluster split of the segments' correlations marks the relevant ones.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .._arrays import standardise
from .._validation import check_array, check_consistent_length


def _as_3d(states, tasks) -> tuple[np.ndarray, np.ndarray]:
    states = check_array(states, "states", ndims=(2, 3), expected="(n_sequences, T) or (n_sequences, T, d)", min_samples=10)
    tasks = check_array(tasks, "tasks", ndims=(2, 3), expected="(n_sequences, M) or (n_sequences, M, d_g)")
    check_consistent_length(states=states, tasks=tasks)
    if states.ndim == 2:
        states = states[:, :, None]
    if tasks.ndim == 2:
        tasks = tasks[:, :, None]
    return standardise(states), standardise(tasks)


def _canonical_correlations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """All canonical correlations between `(n, p)` and `(n, q)` standardised blocks, largest first."""
    qx, _ = np.linalg.qr(x)
    qy, _ = np.linalg.qr(y)
    return np.clip(np.linalg.svd(qx.T @ qy, compute_uv=False), 0.0, 1.0)


def _canonical_r(x: np.ndarray, y: np.ndarray) -> float:
    """Largest canonical correlation between `(n, p)` and `(n, q)` standardised blocks."""
    return float(_canonical_correlations(x, y)[0])


class CCABaseline:
    """Mark step t for task i when `s_t` and `g_i` are correlated: Wilks' lambda over *all* their canonical
    correlations, `prod(1 - rho_k^2)`, with Bartlett's chi-square on `d * d_g` degrees of freedom.

    Args:
        alpha (`float`, *optional*, defaults to 0.05): family-wise level (Bonferroni over `T * M` tests).
    """

    def __init__(self, *, alpha: float = 0.05) -> None:
        self.alpha = alpha

    def fit(self, states: np.ndarray, tasks: np.ndarray) -> CCABaseline:
        """Fit on `(n, T[, d])` states and `(n, M[, d_g])` tasks."""
        states, tasks = _as_3d(states, tasks)
        n, T, d = states.shape
        M, d_g = tasks.shape[1], tasks.shape[2]
        rho = [[_canonical_correlations(states[:, t], tasks[:, i]) for i in range(M)] for t in range(T)]
        log_wilks = np.array([[np.sum(np.log(np.clip(1 - r**2, 1e-300, 1))) for r in row] for row in rho])
        stat = -(n - 1 - (d + d_g + 1) / 2) * log_wilks
        pvalues = stats.chi2.sf(stat, df=d * d_g)
        self.correlations_ = np.array([[r[0] for r in row] for row in rho])
        self.step_tasks_ = pvalues * T * M < self.alpha
        return self


class GroupLassoBaseline:
    """Group lasso of each task on all steps (one group per step), fitted by proximal gradient to convergence.

    The iterations run on the Gram matrix (`X^T X / n`, `X^T y / n`), so each costs `(T d)^2`, not `n T d`, and
    are warm-started along the path. A penalty whose fit has not converged within `max_iter` iterations (largest
    coefficient change above `tol`) raises scikit-learn's `ConvergenceWarning`. The penalty is picked on a path of
    `n_lambdas` values by BIC on the training data.
    """

    def __init__(self, *, n_lambdas: int = 12, max_iter: int = 20_000, tol: float = 1e-8) -> None:
        self.n_lambdas, self.max_iter, self.tol = n_lambdas, max_iter, tol

    def _fit_path(self, X: np.ndarray, y: np.ndarray, groups: int, d: int) -> np.ndarray:
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        n = len(y)
        gram, cross, yy = X.T @ X / n, X.T @ y / n, float(y @ y) / n
        step = 1.0 / np.linalg.eigvalsh(gram)[-1]
        lam_max = np.linalg.norm(cross.reshape(groups, d), axis=1).max()
        best, best_bic = np.zeros(X.shape[1]), np.inf
        w = np.zeros(X.shape[1])
        for lam in lam_max * np.logspace(0, -3, self.n_lambdas):
            for _ in range(self.max_iter):
                z = (w - step * (gram @ w - cross)).reshape(groups, d)
                norms = np.linalg.norm(z, axis=1, keepdims=True)
                w_new = (np.maximum(0, 1 - step * lam / np.maximum(norms, 1e-12)) * z).ravel()
                change = np.abs(w_new - w).max()
                w = w_new
                if change < self.tol:
                    break
            else:
                warnings.warn(f"GroupLassoBaseline: penalty {lam:.3g} did not converge in {self.max_iter} iterations "
                              f"(last change {change:.2g} > tol {self.tol}).", ConvergenceWarning, stacklevel=3)
            rss = n * max(yy - 2 * float(w @ cross) + float(w @ gram @ w), 0.0)
            k = np.count_nonzero(w)
            bic = n * np.log(rss / n + 1e-12) + k * np.log(n)
            if bic < best_bic:
                best, best_bic = w.copy(), bic
        return best

    def fit(self, states: np.ndarray, tasks: np.ndarray) -> GroupLassoBaseline:
        """Fit on `(n, T[, d])` states and `(n, M[, d_g])` tasks."""
        states, tasks = _as_3d(states, tasks)
        n, T, d = states.shape
        X = states.reshape(n, T * d)
        M = tasks.shape[1]
        step_tasks = np.zeros((T, M), dtype=bool)
        for i in range(M):
            for j in range(tasks.shape[2]):
                w = self._fit_path(X, tasks[:, i, j], T, d)
                step_tasks[:, i] |= np.linalg.norm(w.reshape(T, d), axis=1) > 1e-8
        self.step_tasks_ = step_tasks
        return self


def _binary_segmentation(profile: np.ndarray, n_breaks: int, min_size: int) -> list[int]:
    """Change points of a `(T, k)` profile by greedy binary segmentation with an L2 cost."""

    def cost(a: int, b: int) -> float:
        seg = profile[a:b]
        return float(((seg - seg.mean(0)) ** 2).sum())

    breaks = [0, len(profile)]
    for _ in range(n_breaks):
        best = None
        for a, b in zip(breaks[:-1], breaks[1:]):
            for c in range(a + min_size, b - min_size + 1):
                gain = cost(a, b) - cost(a, c) - cost(c, b)
                if best is None or gain > best[0]:
                    best = (gain, c)
        if best is None or best[0] <= 1e-12:
            break
        breaks = sorted(breaks + [best[1]])
    return breaks


class ChangePointClusterBaseline:
    """Segments from change points in the profile `|corr(s_t, g_i)|`, then a two-means split per task.

    Args:
        segment_length (`int`, *optional*, defaults to 2): the smallest segment; also sets the number of breaks
            (`T / segment_length - 1` at most).
    """

    def __init__(self, *, segment_length: int = 2) -> None:
        self.segment_length = segment_length

    def fit(self, states: np.ndarray, tasks: np.ndarray) -> ChangePointClusterBaseline:
        """Fit on `(n, T[, d])` states and `(n, M[, d_g])` tasks."""
        states, tasks = _as_3d(states, tasks)
        n, T, d = states.shape
        M = tasks.shape[1]
        profile = np.array([[_canonical_r(states[:, t], tasks[:, i]) for i in range(M)] for t in range(T)])
        breaks = _binary_segmentation(profile, T // self.segment_length - 1, self.segment_length)
        step_tasks = np.zeros((T, M), dtype=bool)
        means = np.array([profile[a:b].mean(0) for a, b in zip(breaks[:-1], breaks[1:])])
        for i in range(M):
            values = means[:, i]
            lo, hi = values.min(), values.max()
            for _ in range(50):  # two-means in one dimension
                high = np.abs(values - hi) < np.abs(values - lo)
                if high.all() or not high.any():
                    break
                lo, hi = values[~high].mean(), values[high].mean()
            for (a, b), h in zip(zip(breaks[:-1], breaks[1:]), high):
                step_tasks[a:b, i] = h
        self.profile_ = profile
        self.step_tasks_ = step_tasks
        return self


BASELINES = {"cca": CCABaseline, "group_lasso": GroupLassoBaseline, "changepoint_cluster": ChangePointClusterBaseline}
