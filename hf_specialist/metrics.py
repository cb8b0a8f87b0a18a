"""Structure and latent scores against ground truth."""

from __future__ import annotations

from typing import Any

import numpy as np


def _check_pair(pred: Any, truth: Any, name_pred: str = "pred", name_truth: str = "truth") -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"`{name_pred}` has shape {pred.shape} but `{name_truth}` has shape {truth.shape}; they must match.")
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
