"""Per-step reduction of wide step states (hidden states) before the CI tests, keeping what the tasks need.

A Gaussian CI test on `T` steps of `d` dims each needs many more sequences than `T * d`; hidden states have
hundreds of dims, so each step is reduced to `k` dims first. Which `k` dims matters: the top-variance directions
(PCA) of a causal LM's sentence state can miss the direction that states the task-relevant fact entirely (measured:
a fact read at R^2 0.995 from the full 576-dim state and 0.03 from its top 8 PCA dims). `StepReduction` keeps

- ``"supervised"``: per step, the ridge directions that predict the tasks from that step's state, then
  the top-variance directions of what they leave (so the conditioning sets keep the bulk of each step as well);
- ``"pca"``: the top-variance directions only.

`TaskStructure(reduction="auto")`, the default, keeps PCA unless its dims carry under a tenth of what the full
states predict for some task, and then the supervised directions.

The supervised directions are learned on rows that are then *not* used by the tests (a split): a direction fitted
to predict a task on the same rows would correlate with it by chance, and the test would mark steps that do not
serve it. The unsupervised PCA does not look at the tasks and may reuse its rows.
"""

from __future__ import annotations

import numpy as np

from .._validation import InputError
from .._warnings import warn_user

REDUCTIONS = ("supervised", "pca")
LEARN_FRACTION = 0.25  # share of the first batch's rows that learns the supervised directions
MIN_LEARN_ROWS = 256  # ... but at least this many (or half the batch when it is smaller)
RIDGE_ALPHAS = np.logspace(-3, 3, 13)  # relative to the mean eigenvalue of the step's covariance
AUTO_CHECK_ROWS = 2000  # rows of the first batch on which reduction="auto" measures PCA's kept share
KEEP_SHARE = 0.1  # reduction="auto" keeps PCA's dims unless they carry less than this share of what the full
# states predict for some task (held-out ridge R^2); then the supervised task directions


def learning_rows(n: int, method: str, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """`(learn, test)` row indices of a first batch of `n` rows: a seeded split for ``"supervised"``, all rows for
    both with ``"pca"``."""
    everything = np.arange(n)
    if method != "supervised":
        return everything, everything
    size = int(min(max(LEARN_FRACTION * n, MIN_LEARN_ROWS), n // 2))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:size]), np.sort(order[size:])


def _ridge_directions(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Columns of the ridge map from centred `x (n, d)` to centred `y (n, q)`, its penalty chosen per target by
    leave-one-out error (efficient form over the eigenvalues of `x x^T` or `x^T x`)."""
    n, d = x.shape
    scale = max(float((x * x).sum()) / max(min(n, d), 1), 1e-12)
    if n <= d:  # kernel form
        eigval, eigvec = np.linalg.eigh(x @ x.T)
        qy = eigvec.T @ y
        best = np.full(y.shape[1], np.inf)
        coef = np.zeros((d, y.shape[1]))
        for alpha in RIDGE_ALPHAS * scale:
            shrink = 1.0 / (eigval + alpha)
            dual = eigvec @ (shrink[:, None] * qy)  # (n, q)
            hat_diag = ((eigvec ** 2) * (eigval * shrink)[None]).sum(1)
            loo = (((dual * alpha) / np.maximum(1 - hat_diag, 1e-9)[:, None]) ** 2).mean(0)
            better = loo < best
            best = np.where(better, loo, best)
            coef[:, better] = (x.T @ dual)[:, better]
        return coef
    eigval, eigvec = np.linalg.eigh(x.T @ x)
    xv = x @ eigvec  # (n, d)
    qy = xv.T @ y
    best = np.full(y.shape[1], np.inf)
    coef = np.zeros((d, y.shape[1]))
    for alpha in RIDGE_ALPHAS * scale:
        shrink = 1.0 / (eigval + alpha)
        fitted = xv @ (shrink[:, None] * qy)
        hat_diag = ((xv ** 2) * shrink[None]).sum(1)
        loo = (((y - fitted) / np.maximum(1 - hat_diag, 1e-9)[:, None]) ** 2).mean(0)
        better = loo < best
        best = np.where(better, loo, best)
        coef[:, better] = (eigvec @ (shrink[:, None] * qy))[:, better]
    return coef


class StepReduction:
    """A per-step linear map `R^d -> R^k` (`k` the same for every step), learned once and applied to every batch.

    Args:
        k (`int`): dims kept per step.
        method (`str`, *optional*, defaults to `"supervised"`): see the module docstring.
        seed (`int`, *optional*): random seed of PCA's solver.

    Attributes (after `fit`):
        means_ (`(T, d)`), components_ (`(T, k, d)`): `transform(s)[:, t] = (s[:, t] - means_[t]) @ components_[t].T`.
        n_supervised_ (`int`): leading components per step that are task directions.
    """

    def __init__(self, k: int, method: str = "supervised", seed: int | None = 0) -> None:
        if method not in REDUCTIONS:
            raise InputError(f"`reduction` must be one of {REDUCTIONS}, got {method!r}.")
        self.k, self.method, self.seed = int(k), method, seed

    def fit(self, states: np.ndarray, tasks: np.ndarray) -> StepReduction:
        """Learn the map from `states (n, T, d)` and `tasks (n, M, d_g)` (the tasks only for ``"supervised"``)."""
        n, T, d = states.shape
        targets = tasks.reshape(n, -1).astype(np.float64)
        targets = targets - targets.mean(0)
        targets = targets[:, targets.std(0) > 1e-12]
        n_task_dirs = min(targets.shape[1], d) if self.method == "supervised" else 0
        if n_task_dirs >= self.k:  # one direction per task column, and one more of variance
            self.k = min(n_task_dirs + 1, d)
        means, components = [], []
        for t in range(T):
            x = states[:, t].astype(np.float64)
            mean = x.mean(0)
            x = x - mean
            basis = np.zeros((0, d))
            if n_task_dirs:
                directions = _ridge_directions(x, targets)[:, :n_task_dirs]
                q, r = np.linalg.qr(directions)
                basis = q[:, np.abs(np.diag(r)) > 1e-10 * max(np.abs(np.diag(r)).max(), 1e-300)].T
            rest = x - (x @ basis.T) @ basis
            _, _, vt = np.linalg.svd(rest, full_matrices=False)
            basis = np.concatenate([basis, vt[: self.k - len(basis)]])
            means.append(mean)
            components.append(basis)
        width = min(len(c) for c in components)  # a few rows give fewer directions than asked for
        self.k = width
        self.n_supervised_ = n_task_dirs
        self.means_, self.components_ = np.stack(means), np.stack([c[:width] for c in components])
        return self

    def transform(self, states: np.ndarray) -> np.ndarray:
        """`(n, T, d)` -> `(n, T, k)`."""
        return np.einsum("ntd,tkd->ntk", states - self.means_[None], self.components_)

    def tested_dims(self, k: int) -> int:
        """The leading dims of each step a test of `k` dims reads: `k`, or one more than the task directions where
        those take `k` or more (as `fit` does for a map of `k` dims)."""
        return min(max(int(k), getattr(self, "n_supervised_", 0) + 1 if self.method == "supervised" else 0),
                   self.components_.shape[1])

    def kept_share(self, states: np.ndarray, tasks: np.ndarray, dims: int | None = None) -> np.ndarray:
        """Per task column, the share of what the full states predict (held-out ridge R^2 over all steps) that
        the kept dims (the leading `dims` of each step; all by default) still predict, on rows not used to learn
        the map. `(M * d_g,)`, NaN where the full states predict nothing (R^2 < 0.05)."""
        from sklearn.linear_model import RidgeCV
        from sklearn.model_selection import cross_val_score

        n = len(states)
        y = tasks.reshape(n, -1)
        full = states.reshape(n, -1)
        kept = self.transform(states)[:, :, :dims].reshape(n, -1)
        shares = np.full(y.shape[1], np.nan)
        for j in range(y.shape[1]):
            if y[:, j].std() < 1e-12:
                continue
            scores = [cross_val_score(RidgeCV(alphas=np.logspace(-2, 4, 7)), x, y[:, j], cv=3, scoring="r2").mean()
                      for x in (full, kept)]
            if scores[0] >= 0.05:
                shares[j] = max(scores[1], 0.0) / scores[0]
        return shares


def warn_if_signal_lost(shares: np.ndarray, k: int, method: str, threshold: float = KEEP_SHARE) -> None:
    """Warn (at the user's call) when the kept dims carry less than `threshold` of what the full states predict for
    some task."""
    lost = np.flatnonzero(np.nan_to_num(shares, nan=1.0) < threshold)
    if len(lost):
        warn_user(
            f"The {k} dims kept per step ({method!r} reduction) carry only "
            f"{', '.join(f'{shares[j]:.2f}' for j in lost)} of what the full step states predict for task column(s) "
            f"{lost.tolist()}: the tests may miss those tasks. Keep more dims (`project=`)"
            + (" or use reduction='supervised'." if method == "pca" else "."))


def choose_reduction(states: np.ndarray, tasks: np.ndarray, k: int, method: str,
                     seed: int | None, stored: int | None = None
                     ) -> tuple[StepReduction, np.ndarray | None, str, np.ndarray]:
    """Learn the per-step reduction to `k` tested dims from a first batch `(n, T, d)` with tasks `(n, M, d_g)`,
    and, where `stored > k`, the next directions of the same kind after them (the conditioning sets read them; the
    choice of method and the kept share look at the first `k` only).

    Warns when the kept dims carry little of what the full states predict.

    Args:
        states (`np.ndarray` of shape `(n, T, d)`): the first batch's step states (the tested steps).
        tasks (`np.ndarray` of shape `(n, M, d_g)`): its task variables.
        k (`int`): dims kept per step.
        method (`str`): ``"pca"``, ``"supervised"`` or ``"auto"``: PCA unless its dims carry less than
            `KEEP_SHARE` of what the full states predict for some task (measured on up to `AUTO_CHECK_ROWS` rows),
            then the supervised directions.
        seed (`int`, *optional*): seed of the learning split and the measured rows.
        stored (`int`, *optional*): dims per step of the returned map (`k` by default).

    Returns:
        `(reduction, kept_share, method_used, test_rows)`: the fitted `StepReduction`, its kept share per task
        column (`None` when too few rows measured it), ``"pca"`` or ``"supervised"``, and the rows of the batch
        left for the tests (every row, except those that learned supervised directions).
    """
    n = len(states)
    learn, rest = learning_rows(n, "supervised" if method == "auto" else method, seed)
    needed = k if method == "pca" else max(k, 20)
    if len(learn) < needed:
        raise InputError(f"project={k} with reduction={method!r} needs a first batch of at least "
                         f"{needed if method == 'pca' else 2 * needed} sequences to learn the reduction from; got "
                         f"{n} (pass a larger first batch or chunk_size, or project=None).")
    reduction, share = None, None
    if method == "auto":  # PCA unless it loses what the full states predict; then the task directions
        # PCA does not look at the tasks: learned from every row of the first batch, and its share measured on up to
        # AUTO_CHECK_ROWS of them (a few hundred learning rows alone gave a noisy share)
        pca = StepReduction(max(k, stored or k), "pca", seed).fit(states, tasks)
        check = np.sort(np.random.default_rng(seed).permutation(n)[:AUTO_CHECK_ROWS])
        pca_share = pca.kept_share(states[check], tasks[check], k) if len(check) >= 30 else None
        lost = pca_share is not None and np.nanmin(np.append(pca_share, 1.0)) < KEEP_SHARE
        method = "supervised" if lost else "pca"
        if not lost:  # tested on every row (the one binary choice read the tasks)
            learn = rest = np.arange(n)
            reduction, share = pca, pca_share
    if reduction is None:
        reduction = StepReduction(max(k, stored or k), method, seed).fit(states[learn], tasks[learn])
        # measured on rows that did not learn the map, as many as the check allows: on a few hundred rows the kept
        # dims' cross-validated R^2 is noisy (an AND of three sentences: -0.06 on 256 rows, 0.19 on 768)
        check = learn if method == "pca" else rest[:AUTO_CHECK_ROWS]
        if len(check) >= 30:
            share = reduction.kept_share(states[check], tasks[check], reduction.tested_dims(k))
    if share is not None:
        warn_if_signal_lost(share, reduction.tested_dims(k), method, KEEP_SHARE)
    return reduction, share, method, rest
