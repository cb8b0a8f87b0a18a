"""Local permutations: shuffling a variable only among rows with similar conditioning values (the null draws of
the permutation-based CI tests)."""

from __future__ import annotations

import numpy as np


def neighbourhood_cells(z: np.ndarray, leaf_size: int = 5) -> np.ndarray:
    """Cell id per row: rows split recursively at the median of the widest dimension of `z`, cells of at most
    `leaf_size` rows. With no `z` columns every row is in one cell."""
    n = len(z)
    if z.ndim == 1:
        z = z[:, None]
    cells = np.zeros(n, dtype=np.int64)
    if z.shape[1] == 0:
        return cells
    pending = [np.arange(n)]
    next_id = 0
    while pending:
        idx = pending.pop()
        if len(idx) <= leaf_size:
            cells[idx] = next_id
            next_id += 1
            continue
        values = z[idx]
        dim = int(np.argmax(values.max(0) - values.min(0)))
        order = idx[np.argsort(values[:, dim], kind="stable")]
        half = len(order) // 2
        pending.extend([order[:half], order[half:]])
    return cells


def permute_within_cells(cells: np.ndarray, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """Random permutations that only exchange rows of the same cell: `(n,)`, or `(size, n)` when `size` is given."""
    n = len(cells)
    draws = 1 if size is None else size
    shuffled = np.argsort(cells[None, :] + rng.random((draws, n)), axis=-1)  # grouped by cell, random inside
    in_order = np.argsort(cells, kind="stable")  # grouped by cell, index order inside
    perm = np.empty((draws, n), dtype=np.int64)
    perm[:, in_order] = shuffled
    return perm[0] if size is None else perm


def local_permutation(z: np.ndarray, rng: np.random.Generator, leaf_size: int = 5) -> np.ndarray:
    """A permutation of the rows that only exchanges rows close in `z` (see `neighbourhood_cells`).

    Returns:
        `(n,)` int array `perm` such that `x[perm]` is x shuffled among rows with similar z.
    """
    return permute_within_cells(neighbourhood_cells(z, leaf_size), rng)


def nearest_neighbour_permutations(neighbours: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """`(size, n)` near-permutations in which row `i` takes the value of one of its nearest neighbours in Z.

    `neighbours` `(n, k)` lists each row's `k` nearest rows in the conditioning set (itself included or not).
    Rows are visited in random order and each takes a random neighbour not yet taken; when all of its neighbours
    are taken it takes a random one of them anyway (Runge 2018's restricted permutation, so the marginal of the
    shuffled variable is kept up to those few repeats). Vectorised over the `size` draws.
    """
    n, k = neighbours.shape
    taken = np.zeros((size, n), dtype=bool)
    perm = np.empty((size, n), dtype=np.int64)
    draws = np.arange(size)
    for i in rng.permutation(n):
        candidates = neighbours[i][np.argsort(rng.random((size, k)), axis=1)]  # (size, k) random order
        free = ~taken[draws[:, None], candidates]
        first_free = np.where(free.any(1), free.argmax(1), 0)
        chosen = candidates[draws, first_free]
        perm[:, i] = chosen
        taken[draws, chosen] = True
    return perm
