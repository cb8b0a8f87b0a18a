"""The lambda-choice case run in one process (tests/test_distributed.py) and in two (two_process_run.py): the same
data, seed and arguments must keep the same lambda and the same support."""

from __future__ import annotations

from typing import Any

import torch

import hf_specialist as hfs
from hf_specialist import synthetic


def train_lambda_choice(seed: int = 0, epochs: int = 40) -> tuple[hfs.SpecialistAdapter, dict[str, Any]]:
    """The default lambda path on within-step latents (2 tasks, blocks of 2), long enough for supports to settle."""
    states, tasks, truth = synthetic.within_step_latents(n=1200, obs_dim=24, n_irrelevant=3, seed=seed)
    torch.manual_seed(seed)
    adapter = hfs.SpecialistAdapter(hfs.SpecialistConfig(
        d_in=24, d_latent=8, n_tasks=2, task_dims=truth["task_dims"], encoder_widths=[64], decoder_widths=[64],
        head_width=32))
    args = hfs.SpecialistTrainingArguments(epochs=epochs, batch_size=128, seed=seed, progress=False)
    history = hfs.train_specialist(adapter, states, tasks, args=args)
    return adapter, history


if __name__ == "__main__":  # under `torchrun --nproc_per_node 2`: each process writes what it kept
    import json
    import os
    import sys
    from pathlib import Path

    from accelerate import PartialState

    assert PartialState(cpu=True).num_processes == 2 and torch.distributed.get_world_size() == 2, "not two processes"
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0  # development seeds: recipes/benchmarks/development/
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    adapter, history = train_lambda_choice(seed, epochs)
    Path(sys.argv[1], f"rank{os.environ['RANK']}-choice.json").write_text(json.dumps({
        "selected": history["selected_sparsity"], "support": adapter.task_support_.astype(int).tolist(),
        "settled": history["settled"], "path": history["path"]}))
    torch.distributed.barrier()  # a clean teardown: exiting with the gloo group alive can abort at interpreter exit
    torch.distributed.destroy_process_group()
