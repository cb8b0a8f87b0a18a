"""The k-th joint-space neighbour radius for many draws of x against fixed `(y, z)` columns.

The local-permutation null recomputes the estimate for many shuffles of x while y and z stay as they are. In the
max norm a row's distance in the joint space is `max(d_x, d_yz) >= d_yz`, so its k-th neighbour lies among the rows
nearest to it in `(y, z)` alone whenever that radius does not pass the farthest of them: the `(y, z)` neighbours
are searched once per test, and each draw only takes `d_x` over them and a partition. Rows whose radius passes
their farthest candidate are searched again with a k-d tree, so the radius is exact, the same as a joint-space
k-d tree query gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FixedNeighbours:
    """Per query row, its `K` nearest rows in the fixed columns (max norm, itself included) and their distances,
    nearest first."""

    distance: np.ndarray  # (m, K)
    index: np.ndarray  # (m, K)

    @classmethod
    def build(cls, fixed: np.ndarray, rows: np.ndarray | slice, n_candidates: int) -> FixedNeighbours:
        """Search the `n_candidates` nearest rows of `fixed (n, columns)` for each of its `rows`."""
        from scipy.spatial import cKDTree

        distance, index = cKDTree(fixed).query(fixed[rows], k=n_candidates, p=np.inf, workers=-1)
        return cls(distance=distance.reshape(len(distance), -1), index=index.reshape(len(index), -1))

    @property
    def nbytes(self) -> int:
        return self.distance.nbytes + self.index.nbytes


def joint_radii(neighbours: FixedNeighbours, x: np.ndarray, fixed: np.ndarray, rows: np.ndarray | slice,
                k: int, workers: int = -1) -> np.ndarray:
    """`(m,)` distance from each query row to its k-th neighbour in the joint space `(x, fixed)` (max norm), where
    `x (n, kx)` is any column set and `neighbours` was built from `fixed (n, columns)` for the same `rows`;
    `workers` are the threads of the k-d tree search for rows the candidates miss."""
    x_rows = x[rows]
    gaps = np.abs(x[:, 0][neighbours.index] - x_rows[:, :1])
    for c in range(1, x.shape[1]):
        np.maximum(gaps, np.abs(x[:, c][neighbours.index] - x_rows[:, c : c + 1]), out=gaps)
    np.maximum(gaps, neighbours.distance, out=gaps)
    # the row itself is its own nearest candidate at distance 0, so the k-th neighbour is the (k + 1)-th smallest
    gaps.partition(k, axis=1)
    radius = gaps[:, k].copy()
    # a row outside the candidates is at least as far as the farthest candidate in (y, z) alone
    uncovered = np.flatnonzero(radius > neighbours.distance[:, -1])
    if len(uncovered):
        from scipy.spatial import cKDTree

        joint = np.concatenate([x, fixed], axis=1)
        centres = np.concatenate([x_rows[uncovered], fixed[rows][uncovered]], axis=1)
        radius[uncovered] = cKDTree(joint).query(centres, k=[k + 1], p=np.inf, workers=workers)[0][:, 0]
    return radius
