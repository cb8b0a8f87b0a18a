"""Frenzel-Pompe k-nearest-neighbour conditional mutual information with a local-permutation null.

References:
    Frenzel & Pompe (2007), Partial mutual information for coupling analysis of multivariate time series.
    Runge (2018), Conditional independence testing based on a nearest-neighbor estimator of CMI.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from scipy import special

from ..._validation import InputError, InstanceOf, Interval, Options, validate_params
from ._base import CITest
from ._box_counts import SortedColumn, box_bitsets, count_bits
from ._device_counts import neighbour_counts
from ._joint_radii import FixedNeighbours, joint_radii

if TYPE_CHECKING:
    import torch
from ._permutation import nearest_neighbour_permutations, neighbourhood_cells, permute_within_cells


INDEX_CACHE_BYTES = 1 << 30
NEIGHBOURS_CACHE_BYTES = 1 << 29
THREADS_BYTES = 1 << 30  # working memory of the estimates that run at once; fewer threads where one needs more


class KnnCMI(CITest):
    """Frenzel-Pompe k-nearest-neighbour estimate of `I(X; Y | Z)` (max-norm), with a local-permutation null.

    Each estimate finds every query row's k-th neighbour in the joint space and then counts the rows strictly
    inside that radius in the `(x, z)`, `(y, z)` and `z` spaces. The neighbour comes from a k-d tree (scipy's
    `cKDTree`) or, on the bitset path, from each row's nearest rows in `(y, z)`, searched once per test and reused
    by every null draw (which only shuffles x; `_joint_radii`, exact). The query rows are
    all rows, or with `query_rows` a fixed random subsample of them (neighbours are still found and counted among
    all rows). Up to `bitset_max` samples the counts come from per-column prefix bitsets
    (`_box_counts`: `O(n^2 / 64)` per column whatever `k`); above it from k-d tree range counts (`O(n)` memory), so
    `n` can reach the hundreds of thousands. The two paths give the same estimate.

    Args:
        k (`int` or `"auto"`, *optional*, defaults to `"auto"`): neighbours in the joint space; `"auto"` uses
            `max(10, 5% of n)` up to 2,000 samples and `max(100, 1% of n)` above. For testing (rather than
            estimating) a larger `k` lowers the variance of the statistic and the permutation null absorbs its
            bias: in the knn setting of `recipes/benchmarks/structure.py` (nonlinear collider sequences, n = 1,500,
            development seeds) F1 rose from 0.76 (k = 10) to 0.87 (k = 75), with the type-I error still near alpha.
        k_perm (`int`, *optional*): draw the null from Runge's nearest-neighbour restricted permutation with
            `k_perm` neighbours in Z instead of shuffling within k-d cells of `leaf_size` rows (the default, which
            had more power in our benchmark).
        query_rows (`int`, *optional*): average the estimate over this many rows (drawn once per fit, the same
            for the statistic and every null draw) when `n` is larger: the neighbour searches and counts then
            run for `query_rows` rows instead of `n` (still among all `n`), at a loss of power. Off by default: in
            `recipes/benchmarks/speed.py` row 3b (n = 20,000, 5,000 query rows) fits took 0.35-0.40x the time but F1
            fell from 1.000 to 0.889 and 0.857 on two of three evaluation seeds.
        n_permutations (`int`, *optional*, defaults to 50): most draws of the local-permutation null per test
            (fewer when `early_stop` settles the test first, see `CITest`).
        bitset_max (`int`, *optional*, defaults to 10000): largest `n` for the bitset counts (memory
            `n^2 / 8` bytes per indexed column).
        n_jobs (`int`, *optional*, defaults to -1): threads that compute a batch's estimates at once on the CPU
            paths (-1: every core this process may run on); the results do not depend on it (the permutations are
            drawn first).
        device (`str` or `torch.device`, *optional*): `"cpu"` for the CPU paths above, or an accelerator (`"cuda"`,
            `"cuda:1"`) to compute the radii and counts on by brute force in float64 (`_device_counts`), which gives
            the same estimate; by default the GPU when torch (already imported, as it is by any model or adapter
            work) sees one and `n <= DEVICE_MAX` (the brute force is `O(n^2)` per estimate), else the CPU paths.
    """

    DEVICE_MAX = 100_000
    # (y, z) candidates searched per query row for the joint radii, per joint neighbour (`_joint_radii`; below 2,
    # or when they would take over a quarter of `NEIGHBOURS_CACHE_BYTES`, every estimate searches the joint space
    # with a k-d tree). On development seeds 0 and 3 (n = 5,000, k = 100) 3 left 14 % and 28 % of the rows to the
    # k-d tree on average (at most 40 %); 5 left 7 % but its (y, z) searches cost more than that saved
    # (`recipes/benchmarks/development/knn_candidates.py SEED FACTOR`).
    CANDIDATES_PER_NEIGHBOUR = 3
    TESTS_AT_ONCE = 8  # tests whose estimates share the threads (their indexes and candidates held at once)

    name = "knn_cmi"
    min_samples = 20

    def __init__(self, *, k: int | str = "auto", n_permutations: int = 50, k_perm: int | None = None,
                 query_rows: int | None = None, bitset_max: int = 10_000,
                 device: str | torch.device | None = None, n_jobs: int = -1, **kwargs):
        super().__init__(n_permutations=n_permutations, **kwargs)
        validate_params("KnnCMI", {"k": k, "k_perm": k_perm, "query_rows": query_rows, "bitset_max": bitset_max,
                                   "device": device, "n_jobs": n_jobs},
                        {"k": [Options("auto"), Interval(int, 1, None)],
                         "query_rows": [Options(None), Interval(int, 1, None)],
                         "n_jobs": [Options(-1), Interval(int, 1, None)],
                         "k_perm": [Options(None), Interval(int, 1, None)], "bitset_max": [Interval(int, 0, None)],
                         "device": [InstanceOf(type(None), str, description="None, a torch device string"),
                                    _TorchDevice()]})
        if isinstance(device, str):  # a device was named: check it now, not after the data are prepared
            import torch

            try:
                torch.device(device)
            except RuntimeError as err:
                raise InputError(f"The 'device' parameter of KnnCMI must name a torch device such as 'cuda', "
                                 f"'cuda:1' or 'cpu'. Got {device!r} instead.") from err
        self.k, self.k_perm, self.query_rows, self.bitset_max, self.n_jobs = k, k_perm, query_rows, bitset_max, n_jobs
        self.device = str(device) if device is not None else None

    def _prepare(self) -> None:
        n = self.data_.shape[0]
        if self.k != "auto" and self.k >= n:
            raise InputError(f"`k`={self.k} must be smaller than the number of samples {n}.")
        if self.k == "auto":
            self.k_ = max(10, round(0.05 * n)) if n <= 2000 else max(100, round(0.01 * n))
        else:
            self.k_ = self.k
        self.k_ = min(self.k_, n - 1)
        self.values_ = self.data_ + self.rng_.normal(scale=1e-6, size=self.data_.shape)  # no ties
        subsample = self.query_rows is not None and self.query_rows < n
        self.query_ = np.sort(self.rng_.choice(n, self.query_rows, replace=False)) if subsample else None
        self.device_ = self._brute_force_device(n)
        self.bitsets_ = n <= self.bitset_max and self.device_ is None
        self._indexed: dict[int, SortedColumn] = {}
        self._fixed_neighbours: dict[tuple, FixedNeighbours] = {}

    def _brute_force_device(self, n: int) -> str | None:
        """The torch device of the brute-force path (`_device_counts`), or None for the CPU paths."""
        if self.device is None:  # torch is not imported for this check alone (it costs seconds on a CPU machine)
            torch = sys.modules.get("torch")
            gpu = torch is not None and torch.cuda.is_available()
            return "cuda" if gpu and n <= self.DEVICE_MAX else None
        import torch

        return None if torch.device(self.device).type == "cpu" else self.device

    def _column_indexes(self, columns: np.ndarray) -> list[SortedColumn]:
        """Bitset indexes of data columns, the most recent kept up to `INDEX_CACHE_BYTES` for the fit."""
        out = []
        for c in map(int, columns):
            column = self._indexed.pop(c, None) or SortedColumn.build(self.values_[:, c])
            self._indexed[c] = column  # most recently used last
            out.append(column)
        while out and len(self._indexed) > max(len(out), INDEX_CACHE_BYTES // out[0].prefix.nbytes):
            del self._indexed[next(iter(self._indexed))]
        return out

    def _neighbours_in(self, y: np.ndarray, z: np.ndarray) -> FixedNeighbours | None:
        """The query rows' nearest rows in the `(y, z)` columns of one test, kept for the fit up to
        `NEIGHBOURS_CACHE_BYTES` (the null is drawn in rounds); None when the estimates search the joint space."""
        n = self.values_.shape[0]
        n_candidates = min(n, self.CANDIDATES_PER_NEIGHBOUR * (self.k_ + 1))
        n_rows = n if self.query_ is None else len(self.query_)
        too_big = 16 * n_rows * n_candidates > NEIGHBOURS_CACHE_BYTES // 4  # a large k: search the joint space
        if not self.bitsets_ or n_candidates <= self.k_ + 1 or too_big:
            return None
        key = (tuple(map(int, y)), tuple(map(int, z)))
        found = self._fixed_neighbours.pop(key, None)
        if found is None:
            rows = slice(None) if self.query_ is None else self.query_
            found = FixedNeighbours.build(self.values_[:, np.concatenate([y, z])], rows, n_candidates)
        self._fixed_neighbours[key] = found  # most recently used last
        while len(self._fixed_neighbours) > max(1, NEIGHBOURS_CACHE_BYTES // found.nbytes):
            del self._fixed_neighbours[next(iter(self._fixed_neighbours))]
        return found

    def _cmi(self, xv: np.ndarray, yv: np.ndarray, zv: np.ndarray, x_index: list[SortedColumn] | None,
             y_index: list[SortedColumn] | None, z_index: list[SortedColumn] | None,
             neighbours: FixedNeighbours | None = None, workers: int = -1) -> float:
        """One estimate from the `(n, k*)` sample columns; the indexes are None on the k-d tree path, `neighbours`
        (the query rows' nearest rows in `(y, z)`) gives the joint radii without a joint-space search, `workers`
        are the k-d trees' threads."""
        from scipy.spatial import cKDTree

        n = len(xv)
        rows = slice(None) if self.query_ is None else self.query_
        if self.device_ is not None:
            counts = neighbour_counts(xv, yv, zv, self.k_, self.device_, rows=self.query_)
            return float(_knn_cmi_value(self.k_, n, *(c[None] for c in counts))[0])
        if neighbours is not None:
            eps = joint_radii(neighbours, xv, np.concatenate([yv, zv], axis=1), rows, self.k_, workers)
        else:
            joint = np.concatenate([xv, yv, zv], axis=1)
            eps = cKDTree(joint).query(joint[rows], k=[self.k_ + 1], p=np.inf, workers=workers)[0][:, 0]
        # strictly closer than the k-th neighbour: a relative margin keeps that neighbour, which lies on the box's
        # boundary in one coordinate, outside whatever the rounding of `centre +- eps`
        radius = eps * (1 - 1e-10)

        if x_index is not None:  # bitsets: each space's box once, the z box shared by the counts
            x_box, y_box = box_bitsets(x_index, xv[rows], radius), box_bitsets(y_index, yv[rows], radius)
            if zv.shape[1]:
                z_box = box_bitsets(z_index, zv[rows], radius)
                inside = [count_bits(x_box & z_box), count_bits(y_box & z_box), count_bits(z_box)]
            else:
                inside = [count_bits(x_box), count_bits(y_box)]
        else:
            spaces = [(xv, zv), (yv, zv), (zv,)] if zv.shape[1] else [(xv,), (yv,)]
            inside = [cKDTree(v).query_ball_point(v[rows], radius, p=np.inf, return_length=True, workers=workers)
                      for v in (np.concatenate(space, axis=1) for space in spaces)]
        # the counts include the query row itself
        return float(_knn_cmi_value(self.k_, n, *((c - 1.0)[None] for c in inside))[0])

    def statistic(self, data: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Per test, the k-nearest-neighbour estimate of the conditional mutual information I(x; y | z)."""
        return self._estimates(x, y, z, n_draws=0)[:, 0]

    def _null_permutations(self, z_cols: np.ndarray, n_draws: int) -> np.ndarray:
        """`(n_draws, n)` row orders that shuffle x within neighbourhoods of Z."""
        if self.k_perm is not None and len(z_cols):
            from scipy.spatial import cKDTree

            zv = self.values_[:, z_cols]
            neighbours = cKDTree(zv).query(zv, k=self.k_perm, p=np.inf, workers=-1)[1].reshape(len(zv), -1)
            return nearest_neighbour_permutations(neighbours, self.rng_, n_draws)
        cells = neighbourhood_cells(self.data_[:, z_cols], self.leaf_size)
        return permute_within_cells(cells, self.rng_, size=n_draws)

    def null_statistics(self, statistic: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                        n_draws: int) -> np.ndarray:
        """The local-permutation null: x shuffled within neighbourhoods of z, the estimate recomputed."""
        return self._estimates(x, y, z, n_draws)

    def _estimates(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, n_draws: int) -> np.ndarray:
        """Each test's estimate on the data (`(B, 1)`, with `n_draws == 0`) or with x shuffled by each of `n_draws`
        local permutations (`(B, n_draws)`), computed over `n_jobs` threads on the CPU paths (numpy and scipy
        release the GIL in the array work)."""
        out = np.empty((len(x), max(1, n_draws)))
        v = self.values_
        for start in range(0, len(x), self.TESTS_AT_ONCE):  # bounds the candidates held at once
            jobs = []  # (test, column, estimate); indexes and neighbours are cached, so built here in this thread
            for b in range(start, min(start + self.TESTS_AT_ONCE, len(x))):
                x_values, yv, zv = v[:, x[b]], v[:, y[b]], v[:, z[b]]
                y_index = self._column_indexes(y[b]) if self.bitsets_ else None
                z_index = self._column_indexes(z[b]) if self.bitsets_ else None
                neighbours = self._neighbours_in(y[b], z[b])
                if n_draws == 0:
                    x_index = self._column_indexes(x[b]) if self.bitsets_ else None
                    jobs.append((b, 0, partial(self._cmi, x_values, yv, zv, x_index, y_index, z_index, neighbours)))
                for r, perm in enumerate(self._null_permutations(z[b], n_draws) if n_draws else []):
                    jobs.append((b, r, partial(self._permuted_cmi, x_values[perm], yv, zv, y_index, z_index,
                                                   neighbours)))
            cores = _usable_cores()
            threads = min(len(jobs), self.n_jobs if self.n_jobs != -1 else cores, self._thread_budget())
            if threads < 2 or self.device_ is not None:
                values = [estimate() for _, _, estimate in jobs]
            else:  # the k-d trees share the cores with the other threads
                workers = max(1, cores // threads)
                with ThreadPoolExecutor(threads) as pool:
                    values = list(pool.map(lambda job: job[2](workers=workers), jobs))
            for (b, column, _), value in zip(jobs, values):
                out[b, column] = value
        return out

    def _thread_budget(self) -> int:
        """How many estimates fit in `THREADS_BYTES` at once: each holds its boxes (three bitsets per query row),
        a shuffled x's prefix bitsets and, with candidates, two `(rows, candidates)` arrays."""
        n = self.values_.shape[0]
        n_rows = n if self.query_ is None else len(self.query_)
        words = (n + 63) // 64
        candidates = min(n, self.CANDIDATES_PER_NEIGHBOUR * (self.k_ + 1))
        one = 8 * (3 * n_rows * words + (n + 1) * words + 2 * n_rows * candidates)
        return max(1, THREADS_BYTES // one)

    def _permuted_cmi(self, xv: np.ndarray, yv: np.ndarray, zv: np.ndarray, y_index: list[SortedColumn] | None,
                      z_index: list[SortedColumn] | None, neighbours: FixedNeighbours | None,
                      workers: int = -1) -> float:
        """One null draw's estimate, x already shuffled (its bitset index is built here, in the worker thread)."""
        x_index = [SortedColumn.build(column) for column in xv.T] if self.bitsets_ else None
        return self._cmi(xv, yv, zv, x_index, y_index, z_index, neighbours, workers)


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _TorchDevice:
    """A constraint accepting a `torch.device` (torch imported only when a value is checked)."""

    def accepts(self, value) -> bool:
        import torch

        return isinstance(value, torch.device)

    def __str__(self) -> str:
        return "a torch.device"


def _knn_cmi_value(k: int, n: int, n_a: np.ndarray, n_b: np.ndarray, n_z: np.ndarray | None = None) -> np.ndarray:
    """Frenzel-Pompe (or, without `n_z`, KSG) estimate from neighbour counts `(B, n)` strictly inside each
    point's k-th joint-space neighbour distance."""
    psi = special.digamma
    if n_z is None:
        return psi(k) + psi(n) - (psi(n_a + 1) + psi(n_b + 1)).mean(-1)
    return psi(k) - (psi(n_a + 1) + psi(n_b + 1) - psi(n_z + 1)).mean(-1)
