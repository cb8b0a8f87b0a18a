"""Multiple testing over the family of CI tests of one fit: adjusted p-values and the per-test critical level."""

from __future__ import annotations

import numpy as np

from .._validation import InputError


def adjust_pvalues(pvalues: np.ndarray, correction: str | None) -> np.ndarray:
    """Family-wise adjusted p-values: `None` (unchanged), `"bonferroni"` or `"fdr_bh"` (Benjamini-Hochberg)."""
    p = np.asarray(pvalues, dtype=float)
    flat = p.ravel()
    finite = np.isfinite(flat)
    out = flat.copy()
    m = int(finite.sum())
    if correction is None or m == 0:
        return p
    if correction == "bonferroni":
        out[finite] = np.minimum(flat[finite] * m, 1.0)
    elif correction == "fdr_bh":
        from scipy.stats import false_discovery_control

        out[finite] = false_discovery_control(flat[finite], method="bh")
    else:
        raise InputError(f"`correction` must be None, 'bonferroni' or 'fdr_bh', got {correction!r}.")
    return out.reshape(p.shape)


def critical_pvalue(pvalues: np.ndarray, alpha: float, correction: str | None) -> float:
    """The raw p-value below which a test of the family `pvalues` rejects under `correction` at level `alpha`.

    `None`: `alpha`; `"bonferroni"`: `alpha / m`; `"fdr_bh"`: `j* alpha / m` for the largest `j*` with
    `p_(j*) <= j* alpha / m` among the sorted finite p-values (the same rejections as Benjamini-Hochberg, and
    never 0 when the smallest p-values underflow), or `alpha / m` when none qualifies.
    """
    p = np.sort(np.asarray(pvalues, dtype=float)[np.isfinite(pvalues)])
    m = max(len(p), 1)
    if correction is None:
        return float(alpha)
    if correction == "bonferroni":
        return alpha / m
    if correction == "fdr_bh":
        passing = np.flatnonzero(p <= alpha * np.arange(1, len(p) + 1) / m)
        return alpha * (passing[-1] + 1) / m if len(passing) else alpha / m
    raise InputError(f"`correction` must be None, 'bonferroni' or 'fdr_bh', got {correction!r}.")
