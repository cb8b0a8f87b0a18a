"""Process-group helpers that work with or without `torch.distributed` (imports nothing of ours).

Under `torchrun` / `accelerate launch` every process runs the same script; only the main process writes files and
the others wait for it at a barrier.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def _group_ready() -> bool:
    """Whether a process group is up; under a launcher (`WORLD_SIZE` > 1) it is started through accelerate."""
    import torch.distributed as dist

    if not dist.is_available():
        return False
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        launch_state()
    return dist.is_initialized()


def launch_state():
    """accelerate's `PartialState`, created on CPU when there is no GPU (or `ACCELERATE_USE_CPU` is set).

    Measured with accelerate 1.15 under `torchrun`: a bare `PartialState()` with `ACCELERATE_USE_CPU=true` reports
    one process and no distributed type although the gloo group is up; `PartialState(cpu=True)` reports them all.
    """
    import torch
    from accelerate import PartialState

    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    return PartialState(cpu=use_cpu)


def process_layout() -> tuple[int, int]:
    """`(process_index, num_processes)`: from an initialised process group, else accelerate's launch state."""
    if _group_ready():
        import torch.distributed as dist

        return dist.get_rank(), dist.get_world_size()
    state = launch_state()
    return state.process_index, state.num_processes


def world_size() -> int:
    """Number of processes of the launch (1 outside `torchrun` / `accelerate launch`)."""
    if _group_ready():
        import torch.distributed as dist

        return dist.get_world_size()
    return 1


def is_main_process() -> bool:
    """Whether this is process 0 (always true outside a process group)."""
    if not _group_ready():
        return True
    import torch.distributed as dist

    return dist.get_rank() == 0


def gathered(value: object) -> list[object]:
    """`value` from every process, in rank order (`[value]` outside a process group)."""
    if not _group_ready():
        return [value]
    import torch.distributed as dist

    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def from_main_process(value: object) -> object:
    """Process 0's `value` on every process (`value` outside a process group): a choice that must not differ by a
    rounding between processes."""
    if not _group_ready():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every process of the group (a no-op outside one)."""
    if _group_ready():
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_process_first_writes() -> Iterator[bool]:
    """Yield whether this process should write; every process leaves only after the main one has written."""
    try:
        yield is_main_process()
    finally:
        barrier()
