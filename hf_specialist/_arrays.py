"""Array helpers shared across modules (imports nothing of ours)."""

from __future__ import annotations

import numpy as np


def standardise(values: np.ndarray) -> np.ndarray:
    """Columns (axis 0) centred and scaled to unit population std; a constant column is only centred."""
    std = values.std(0)
    return (values - values.mean(0)) / np.where(std > 0, std, 1.0)
