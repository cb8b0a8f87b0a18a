"""Structure and latent scores against ground truth."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import standardise
from ._validation import InputError


def _check_pair(pred: Any, truth: Any, name_pred: str = "pred", name_truth: str = "truth") -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise InputError(f"`{name_pred}` has shape {pred.shape} but `{name_truth}` has shape {truth.shape}; they must match.")
    return pred, truth


def structure_scores(pred: Any, truth: Any) -> dict[str, float]:
    """Accuracy, Matthews correlation and F1 of a binary step x task (or segment x task) matrix.

    Args:
        pred: `(T, M)` bool estimate. truth: `(T, M)` bool ground truth.

    Returns:
        `{"accuracy", "mcc", "f1"}`. MCC is 1.0 when the prediction equals a constant truth.
    """
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    pred, truth = _check_pair(pred, truth)
    p, t = pred.astype(bool).ravel(), truth.astype(bool).ravel()
    exact = bool((p == t).all())
    mcc = 1.0 if exact else float(matthews_corrcoef(t, p))
    f1 = 1.0 if exact and not t.any() else float(f1_score(t, p, zero_division=0.0))
    return {"accuracy": float(accuracy_score(t, p)), "mcc": mcc, "f1": f1}


def _cv_r2(features: np.ndarray, targets: np.ndarray, seed: int, max_samples: int, folds: int) -> float:
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict

    if features.shape[1] == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(features))[:max_samples]
    x, y = features[rows], targets[rows]
    x, y = standardise(x), standardise(y)
    gamma = 1.0 / x.shape[1]
    search = GridSearchCV(
        KernelRidge(),
        [
            {"kernel": ["rbf"], "alpha": [1e-3, 1e-1], "gamma": [gamma / 4, gamma]},
            {"kernel": ["linear"], "alpha": [1e-3]},
        ],
        cv=KFold(3, shuffle=True, random_state=seed),
    )
    predicted = cross_val_predict(search, x, y, cv=KFold(folds, shuffle=True, random_state=seed))
    return float(r2_score(y, predicted, multioutput="uniform_average"))


def block_r2(
    pred_block: Any,
    true_relevant: Any,
    true_irrelevant: Any,
    *,
    max_samples: int = 1500,
    folds: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Cross-validated R² of kernel ridge regression (RBF or linear kernel, chosen by inner CV) from the
    specialist block to the true latents.

    Args:
        pred_block: `(n, k)` the specialist block (e.g. `adapter.task_latents(h, task=i)`); `k` may be 0.
        true_relevant: `(n, a)` the true latents the task depends on.
        true_irrelevant: `(n, b)` the true latents it does not depend on.
        max_samples (`int`, *optional*, defaults to 1500): rows used (kernel ridge is quadratic in rows).
        folds (`int`, *optional*, defaults to 3): outer cross-validation folds (RBF width and ridge chosen inside).

    Returns:
        `{"r2_relevant", "r2_irrelevant"}` (uniform average over target dims). High relevant and low irrelevant
        R² is block-wise identification (Theorem 2); a generalist scores high on both.
    """
    block = np.asarray(pred_block.detach().cpu() if hasattr(pred_block, "detach") else pred_block, dtype=float)
    relevant = np.asarray(true_relevant, dtype=float)
    irrelevant = np.asarray(true_irrelevant, dtype=float)
    block = block.reshape(len(block), -1)
    relevant = relevant.reshape(len(relevant), -1)
    irrelevant = irrelevant.reshape(len(irrelevant), -1)
    if not len(block) == len(relevant) == len(irrelevant):
        raise InputError(
            f"`pred_block`, `true_relevant` and `true_irrelevant` must have the same number of rows, got "
            f"{len(block)}, {len(relevant)} and {len(irrelevant)}."
        )
    for name, value in (("pred_block", block), ("true_relevant", relevant), ("true_irrelevant", irrelevant)):
        if not np.isfinite(value).all():
            raise InputError(f"`{name}` contains {int((~np.isfinite(value)).sum())} NaN or infinite values; every "
                             "entry must be finite.")
    return {
        "r2_relevant": _cv_r2(block, relevant, seed, max_samples, folds),
        "r2_irrelevant": _cv_r2(block, irrelevant, seed, max_samples, folds) if irrelevant.shape[1] else 0.0,
    }
