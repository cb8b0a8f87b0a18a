"""What the data say about a structure fit's assumptions, from the Gaussian test's covariance: how much of each
task each step predicts on its own (`step_r2_`; high on every step means content leaks between steps) and whether
consecutive steps depend on each other (`temporal_pvalues_`). `report()` prints both."""

from __future__ import annotations

import numpy as np

from .ci_tests import bartlett_statistic


def step_r2(cov: np.ndarray | None, M: int, T: int, d: int, d_g: int, T_full: int) -> np.ndarray | None:
    """`(M, T_full)` share of each task's variance that each tested step's (reduced) state predicts on its own
    (linear R^2, averaged over a task's dims; NaN for dropped steps), from a Gaussian test's covariance; `None`
    for tests without one.

    Args:
        cov (`np.ndarray`, *optional*): correlation matrix of `[steps (T * d) | tasks (M * d_g)]`.
        M, T, d, d_g, T_full (`int`): tasks, tested steps, dims per step and per task, steps before any drop.
    """
    if cov is None:
        return None
    x = np.arange(T)[:, None] * d + np.arange(d)  # (T, d)
    out = np.full((M, T_full), np.nan)
    for i in range(M):
        y = np.tile(T * d + i * d_g + np.arange(d_g), (T, 1))
        out[i, :T] = np.clip(1.0 - _residual_variance(cov, y, x) / np.maximum(cov[y, y].mean(1), 1e-12), 0.0, 1.0)
    return out


def _residual_variance(cov: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Mean over `y`'s columns of `Var(y_j | z)` per test: `y (B, q)`, `z (B, k)` column indices."""
    var_y = cov[y, y]  # (B, q)
    if z.shape[1] == 0:
        return var_y.mean(1)
    czz = cov[z[:, :, None], z[:, None, :]] + 1e-10 * np.eye(z.shape[1])
    czy = cov[z[:, :, None], y[:, None, :]]  # (B, k, q)
    explained = (czy * np.linalg.solve(czz, czy)).sum(1)  # (B, q)
    return (var_y - explained).mean(1)


def temporal_pvalues(cov: np.ndarray | None, n: int, T: int, d: int) -> np.ndarray | None:
    """Gaussian p-values that consecutive steps are independent (`(T - 1,)`), from the test's covariance.

    Args:
        cov (`np.ndarray`, *optional*): correlation matrix of `[steps (T * d) | ...]`; `None` (a test without
            one) returns `None`.
        n, T, d (`int`): sequences, tested steps and dims per step.
    """
    from scipy import stats

    if cov is None or T < 2:
        return None
    out = np.ones(T - 1)
    for t in range(T - 1):
        a, b = np.arange(t * d, (t + 1) * d), np.arange((t + 1) * d, (t + 2) * d)
        joint = np.linalg.slogdet(cov[np.ix_(np.r_[a, b], np.r_[a, b])] + 1e-10 * np.eye(2 * d))[1]
        log_lambda = (joint - np.linalg.slogdet(cov[np.ix_(a, a)] + 1e-10 * np.eye(d))[1]
                      - np.linalg.slogdet(cov[np.ix_(b, b)] + 1e-10 * np.eye(d))[1])
        out[t] = stats.chi2.sf(bartlett_statistic(np.array([log_lambda]), n, d, d, 0)[0], df=d * d)
    return out
