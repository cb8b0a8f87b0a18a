"""One global batch trained in shares across processes as if one process held it.

Under `torchrun` each process trains on its share of every global batch (`loop.process_share`) and DDP averages
the gradients. Three things would still make the run depend on the process count: each process drawing its own
noise for its rows, the latent batch norm standardising with its share's statistics, and DDP's average of
per-process means weighting rows by `1 / share size` (shares differ by a row; per-task means count each process's
task rows). While a `BatchShare` is active (`sharing`), the adapter instead
- draws the noise of the whole global batch from the generator every process holds in the same state (the same
  seed, the same draws so far) and keeps its own rows (`randn_rows`), so one process draws exactly what it always
  drew and two processes draw the same numbers between them;
- standardises latents with the global batch's mean and variance (`sum_over_processes`, differentiable, also under
  `torch.func.vmap` for stacked models);
- divides each loss mean by the global batch's counts and scales it by the process count, so DDP's average is the
  global batch's mean.
What is left between one and several processes is float rounding (sums in another order). With a LoRA on the base
model, the base's and the LoRA's dropout draw for each process's own tokens first, so the processes' generators part
and the global draws differ between layouts: such runs are valid but not the same as one process's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

_ACTIVE: list[BatchShare] = []


@dataclass(frozen=True, eq=False)
class BatchShare:
    """This process's rows of a global batch.

    Args:
        positions (`torch.Tensor`): this process's positions in the global batch (every `world`-th, from its rank).
        global_rows (`int`): the global batch's rows (after any wrap-around padding).
        world (`int`): the number of processes.
        group (*optional*): the process group of the share's collectives; one apart from DDP's, so that they never
            interleave with DDP's gradient buckets (`None`: the default group).
    """

    positions: torch.Tensor
    global_rows: int
    world: int
    group: object = None

    def row_scale(self) -> float:
        """The factor that turns this process's mean over its rows into its part of the global batch's mean under
        DDP's average over processes: `world * local rows / global rows`."""
        return self.world * len(self.positions) / self.global_rows


@contextlib.contextmanager
def sharing(share: BatchShare | None) -> Iterator[None]:
    """Make `share` the active batch share for the adapter's forward passes inside the block (`None`: no share,
    one process)."""
    if share is None:
        yield
        return
    _ACTIVE.append(share)
    try:
        yield
    finally:
        _ACTIVE.pop()


def active_share() -> BatchShare | None:
    """The batch share of the running training step, or `None` outside one (evaluation, one process)."""
    return _ACTIVE[-1] if _ACTIVE else None


def randn_rows(shape: tuple[int, ...], row_dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal noise of `shape`, whose dim `row_dim` runs over this process's rows (a multiple of its batch
    rows: sequences' steps are rows too). With an active share the global batch's noise is drawn and this process's
    rows are kept; otherwise exactly `torch.randn(shape)`."""
    share = active_share()
    if share is None:
        return torch.randn(shape, device=device, dtype=dtype)
    per_row, left = divmod(shape[row_dim], len(share.positions))
    if left:
        raise ValueError(f"noise of shape {shape} runs over {shape[row_dim]} rows at dim {row_dim}, not a multiple "
                         f"of this process's {len(share.positions)} batch rows.")
    rows = (share.positions.to(device)[:, None] * per_row + torch.arange(per_row, device=device)).reshape(-1)
    full = list(shape)
    full[row_dim] = share.global_rows * per_row
    return torch.randn(full, device=device, dtype=dtype).index_select(row_dim, rows)


def _all_reduce(x: torch.Tensor) -> None:
    import torch.distributed as dist

    share = active_share()
    dist.all_reduce(x, group=None if share is None else share.group)


class _SumOverProcesses(torch.autograd.Function):
    """`all_reduce(SUM)` with its gradient (the sum of every process's gradient) and a vmap rule (the collective is
    element-wise, so a stack of models reduces as one tensor)."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        total = x.detach().clone(memory_format=torch.contiguous_format)
        _all_reduce(total)
        return total

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone(memory_format=torch.contiguous_format)
        _all_reduce(total)
        return total

    @staticmethod
    def vmap(info, in_dims, x):
        return _SumOverProcesses.apply(x), in_dims[0]


def sum_over_processes(x: torch.Tensor) -> torch.Tensor:
    """`x` summed over the processes of an active share (differentiable); `x` itself otherwise."""
    share = active_share()
    if share is None or share.world == 1:
        return x
    return _SumOverProcesses.apply(x)


def global_batch_norm(z: torch.Tensor, norm: torch.nn.BatchNorm1d) -> torch.Tensor:
    """`norm(z)` in training mode with the global batch's statistics: what `BatchNorm1d` computes on the whole
    global batch (biased variance to standardise, unbiased into the running variance), from every process's share.
    Without a share of several processes it is `norm(z)`."""
    share = active_share()
    if share is None or share.world == 1 or not norm.training:
        return norm(z)
    if norm.momentum is None:
        raise ValueError("global_batch_norm follows a BatchNorm1d with a momentum; a cumulative average "
                         "(momentum=None) is not supported.")
    count = float(share.global_rows * (z.shape[0] // len(share.positions)))
    z32 = z.float()  # statistics in float32 whatever autocast runs the layers in, as BatchNorm keeps them
    mean = sum_over_processes(z32.sum(0)) / count
    variance = sum_over_processes(((z32 - mean) ** 2).sum(0)) / count  # two passes: no cancellation
    with torch.no_grad():
        norm.running_mean.mul_(1 - norm.momentum).add_(norm.momentum * mean.detach())
        norm.running_var.mul_(1 - norm.momentum).add_(
            norm.momentum * variance.detach() * count / max(count - 1.0, 1.0))
        norm.num_batches_tracked.add_(1)
    return ((z32 - mean) / torch.sqrt(variance + norm.eps)).to(z.dtype)


def whole_batch_terms(terms: dict[str, torch.Tensor], share: BatchShare | None) -> dict[str, torch.Tensor]:
    """Loss terms of the whole global batch from each process's (a collective: call on every process). Under a share
    each process's term is its part of the global mean times the process count, so their mean over processes is
    the global batch's value; without a share the terms are returned as they are."""
    if share is None or share.world == 1:
        return terms
    import torch.distributed as dist

    names = list(terms)
    flat = torch.cat([terms[k].detach().float().reshape(-1) for k in names])
    dist.all_reduce(flat, group=share.group)
    flat /= share.world
    out, start = {}, 0
    for k in names:
        size = terms[k].numel()
        out[k] = flat[start : start + size].reshape(terms[k].shape)
        start += size
    return out
