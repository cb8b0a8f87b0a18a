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


def save_checkpoint(directory: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    progress: dict[str, Any]) -> Path:
    """Write one checkpoint folder atomically and keep only the newest. Call on the main process only."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{CHECKPOINT_PREFIX}{progress['global_step']:08d}"
    with atomic_folder(final) as tmp:
        save_file(trainable_state(module), str(tmp / MODEL_FILE))
        opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda{i}"] = s
        save_file(rng, str(tmp / RNG_FILE))
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
        raise ValueError(f"`resume=True` found a checkpoint in {path} of lambdas {saved}, but this call trains "
                         f"{lambdas}: resume with the same `sparsity` / `lambda_path`, or use a new `checkpoint_dir`.")


def load_checkpoint(path: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the module, optimizer and RNG states from `path`; returns the schedule position."""
    from safetensors.torch import load_file

    progress = json.loads((path / PROGRESS_FILE).read_text())
    load_trainable_state(module, load_file(str(path / MODEL_FILE)))
    optimizer.load_state_dict(_unflatten_optimizer(load_file(str(path / OPTIMIZER_FILE)), progress.pop("optimizer")))
    rng = load_file(str(path / RNG_FILE))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        states = [rng[k] for k in sorted(rng) if k.startswith("cuda")]
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
