"""Training checkpoints in safetensors and JSON (no pickle), written atomically by the main process only.

A checkpoint folder holds the trainable state (`model.safetensors`), the optimizer's tensors and its JSON metadata,
the RNG states and the schedule position; `resume=True` continues from the newest one with the same result as an
uninterrupted run with the same seed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_folder
from .._constants import CHECKPOINT_PREFIX
from .._validation import InputError

MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, PROGRESS_FILE = "model.safetensors", "optimizer.safetensors", "rng.safetensors", "progress.json"


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, values in state["state"].items():
        meta["state"][str(pid)] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                meta["state"][str(pid)][key] = value
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(values) for pid, values in meta["state"].items()}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of what training changes: `module.checkpoint_state()` where defined, else its state dict."""
    state = module.checkpoint_state() if hasattr(module, "checkpoint_state") else module.state_dict()
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def load_trainable_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """The inverse of `trainable_state` (strict)."""
    if hasattr(module, "load_checkpoint_state"):
        module.load_checkpoint_state(tensors)
    else:
        module.load_state_dict(tensors, strict=True)


def rng_state() -> dict[str, torch.Tensor]:
    """This process's RNG states: `torch` (CPU) and `cuda{i}` per visible GPU."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda{i}"] = s
    return rng


def gather_rng_states() -> list[dict[str, torch.Tensor]]:
    """Every process's `rng_state()`, in process order (a collective: call on every process).

    The adapter draws the global batch's noise in every process (`batch_share`), but other modules draw for their
    own rows (a LoRA's dropout on the base), so the streams can differ and a checkpoint holds each one's state for a
    resumed run to draw what the uninterrupted run drew.
    """
    import torch.distributed as dist

    own = rng_state()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [own]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, own)
    return [{k: v.cpu() for k, v in s.items()} for s in states]


def save_checkpoint(directory: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    progress: dict[str, Any], rng_states: list[dict[str, torch.Tensor]] | None = None) -> Path:
    """Write one checkpoint folder atomically and keep only the newest. Call on the main process only.

    `rng_states` holds every process's RNG states (`gather_rng_states()`); without it the calling process's.
    """
    from safetensors.torch import save_file

    rng_states = rng_states or [rng_state()]

    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{CHECKPOINT_PREFIX}{progress['global_step']:08d}"
    with atomic_folder(final) as tmp:
        save_file(trainable_state(module), str(tmp / MODEL_FILE))
        opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
        # the main process's states under their plain names, every process's also under `rank{r}.`
        rng = dict(rng_states[0])
        rng.update({f"rank{r}.{k}": v for r, states in enumerate(rng_states) for k, v in states.items()})
        save_file({k: v.clone().contiguous() for k, v in rng.items()}, str(tmp / RNG_FILE))  # no shared storage
        (tmp / PROGRESS_FILE).write_text(json.dumps({**progress, "optimizer": opt_meta}))
    for old in directory.glob(f"{CHECKPOINT_PREFIX}*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(directory: str | os.PathLike | None) -> Path | None:
    """The newest complete checkpoint folder in `directory`, or `None`."""
    if directory is None or not Path(directory).is_dir():
        return None
    found = sorted(p for p in Path(directory).glob(f"{CHECKPOINT_PREFIX}*") if (p / PROGRESS_FILE).exists())
    return found[-1] if found else None


def check_checkpoint_lambdas(path: Path, lambdas: list[float]) -> None:
    """Refuse to resume from a checkpoint that trained other lambdas (before any tensor is loaded)."""
    saved = json.loads((path / PROGRESS_FILE).read_text()).get("sparsity")
    if saved is not None and (len(saved) != len(lambdas) or not all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
                                                                     for a, b in zip(saved, lambdas))):
        raise InputError(f"`resume=True` found a checkpoint in {path} of lambdas {saved}, but this call trains "
                         f"{lambdas}: resume with the same `sparsity` / `lambda_path`, or use a new `checkpoint_dir`.")


def load_checkpoint(path: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    process_index: int = 0) -> dict[str, Any]:
    """Restore the module, optimizer and RNG states from `path`; returns the schedule position.

    Process `process_index` takes its own RNG states when the checkpoint holds them (it was written by as many
    processes or more), else the main process's.
    """
    from safetensors.torch import load_file

    progress = json.loads((path / PROGRESS_FILE).read_text())
    load_trainable_state(module, load_file(str(path / MODEL_FILE)))
    optimizer.load_state_dict(_unflatten_optimizer(load_file(str(path / OPTIMIZER_FILE)), progress.pop("optimizer")))
    saved = load_file(str(path / RNG_FILE))
    prefix = f"rank{process_index}."
    own = {k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)}
    rng = own or {k: v for k, v in saved.items() if not k.startswith("rank")}
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        states = [rng[k] for k in sorted((k for k in rng if k.startswith("cuda")), key=lambda k: int(k[4:]))]
        if states:
            torch.cuda.set_rng_state_all(states)
    return progress


def save_run_state(run_dir: Path, module: torch.nn.Module) -> None:
    """The final trainable state of one lambda's run (so an interrupted path need not retrain it)."""
    from safetensors.torch import save_file

    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_folder(run_dir / "final") as tmp:
        save_file(trainable_state(module), str(tmp / MODEL_FILE))


def load_run_state(run_dir: Path) -> dict[str, torch.Tensor]:
    """The tensors written by `save_run_state`."""
    from safetensors.torch import load_file

    return load_file(str(run_dir / "final" / MODEL_FILE))
