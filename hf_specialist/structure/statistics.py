"""Sufficient statistics of the Gaussian CI tests: count, mean and centred cross-products of the data matrix.

The Fisher-z and Wilks tests of Algorithm 1 read only the correlation matrix of `[steps (T * d) | tasks (M * d_g)]`,
and that comes from the count, the column means and the centred cross-products, which add up over batches (Chan et
al.'s pairwise update, stable where raw sums of squares would cancel) and across processes (two all-reduces).
Accumulation is in float64: numpy on CPU, torch on the batch's device when a CUDA tensor is passed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import InputError


class SufficientStatistics:
    """Streaming count, mean and centred cross-product matrix of rows of `n_columns` values.

    Args:
        n_columns (`int`): width of every row.

    Attributes:
        count (`int`): rows seen.
        mean (`(n_columns,)` float64): column means.
        scatter (`(n_columns, n_columns)` float64): `sum_r (x_r - mean)(x_r - mean)^T`.
    """

    def __init__(self, n_columns: int) -> None:
        self.n_columns = int(n_columns)
        self.count = 0
        self.mean: Any = np.zeros(self.n_columns)
        self.scatter: Any = np.zeros((self.n_columns, self.n_columns))

    @property
    def on_torch(self) -> bool:
        """Whether the accumulators are torch tensors (on an accelerator)."""
        return not isinstance(self.mean, np.ndarray)

    def update(self, rows: Any) -> SufficientStatistics:
        """Add a batch of rows `(b, n_columns)` (numpy, or a torch tensor: accumulated on its device)."""
        if hasattr(rows, "detach") and rows.device.type != "cpu":
            return self._update_torch(rows)
        if hasattr(rows, "detach"):
            rows = rows.detach().numpy()
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_columns:
            raise InputError(f"`rows` must have shape (b, {self.n_columns}); got {rows.shape}.")
        if self.on_torch:
            import torch

            return self._update_torch(torch.from_numpy(rows).to(self.mean.device))
        b = len(rows)
        if b == 0:
            return self
        batch_mean = rows.mean(0)
        centred = rows - batch_mean
        self._merge(b, batch_mean, centred.T @ centred)
        return self

    def _update_torch(self, rows: Any) -> SufficientStatistics:
        import torch

        rows = rows.detach().to(torch.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_columns:
            raise InputError(f"`rows` must have shape (b, {self.n_columns}); got {tuple(rows.shape)}.")
        if not self.on_torch:
            self.mean = torch.as_tensor(self.mean, device=rows.device)
            self.scatter = torch.as_tensor(self.scatter, device=rows.device)
        if len(rows) == 0:
            return self
        batch_mean = rows.mean(0)
        centred = rows - batch_mean
        self._merge(len(rows), batch_mean, centred.T @ centred)
        return self

    def _merge(self, count: int, mean: Any, scatter: Any) -> None:
        total = self.count + count
        if self.count == 0:
            self.mean, self.scatter = mean, scatter
        else:
            delta = mean - self.mean
            outer = delta[:, None] * delta[None, :]
            self.scatter = self.scatter + scatter + outer * (self.count * count / total)
            self.mean = self.mean + delta * (count / total)
        self.count = total

    def merge(self, other: SufficientStatistics) -> SufficientStatistics:
        """Add another accumulator's rows."""
        if other.n_columns != self.n_columns:
            raise InputError(f"Cannot merge statistics of {other.n_columns} columns into {self.n_columns}.")
        if other.count:
            self._merge(other.count, other.mean, other.scatter)
        return self

    def all_reduce(self) -> SufficientStatistics:
        """Sum the statistics of every process of the `torch.distributed` group in place (a no-op outside one).

        Every process must call it; each ends with the statistics of all rows.
        """
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self
        device = self.mean.device if self.on_torch else torch.device("cpu")
        if dist.get_backend() == "nccl" and device.type == "cpu":
            device = torch.device("cuda", torch.cuda.current_device())
        mean = torch.as_tensor(self.mean, dtype=torch.float64, device=device)
        scatter = torch.as_tensor(self.scatter, dtype=torch.float64, device=device)
        count = torch.tensor([float(self.count)], dtype=torch.float64, device=device)
        total = count.clone()
        dist.all_reduce(total)
        weighted = mean * count
        dist.all_reduce(weighted)
        global_mean = weighted / total.clamp(min=1.0)
        delta = mean - global_mean
        scatter = scatter + count * delta[:, None] * delta[None, :]
        dist.all_reduce(scatter)
        self.count = int(round(float(total)))
        if self.on_torch:
            self.mean, self.scatter = global_mean, scatter
        else:
            self.mean, self.scatter = global_mean.cpu().numpy(), scatter.cpu().numpy()
        return self

    def correlation(self) -> np.ndarray:
        """The matrix the Fisher-z test reads: the data standardised with the population std (ddof 0), times
        `1 / (n - 1)` (so its diagonal is `n / (n - 1)`), as numpy float64; constant columns count as std 1."""
        scatter = self.scatter.cpu().numpy() if self.on_torch else self.scatter
        n = self.count
        variance = np.diag(scatter) / max(n, 1)
        std = np.sqrt(variance)
        std[std == 0] = 1.0
        return scatter / np.outer(std, std) / (n - 1)
