"""`train_specialist`: training of a `SpecialistAdapter` with `accelerate`.

One model per lambda: the penalty warms up, then the support is frozen and fine-tuned. With `sparsity="auto"` a
dense model and one model per lambda of a grid are trained from the same seed and the sparsest whose held-out task
losses stay within tolerance of the dense model's is kept (training each model from scratch under the penalty
recovered the blocks far better than continuing one model along an increasing path, which kept a spread-out code).

Checkpoints (every `checkpoint_every` optimizer steps) hold the model, the optimizer, the RNG states and the
schedule position in safetensors and JSON files (no pickle); `resume=True` continues from the last one with the
same result as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._validation import to_numpy
from .model import SpecialistAdapter

CHECKPOINT_PREFIX = "checkpoint-"


def auto_lambda_path(n_values: int = 5, low: float = 3e-3, high: float = 0.3) -> list[float]:
    """The default geometric grid of lambdas tried by `sparsity="auto"`."""
    return [float(x) for x in np.geomspace(low, high, n_values)]


# --- input preparation -------------------------------------------------------------------------------


def prepare_training_data(
    adapter: SpecialistAdapter, states: Any, tasks: Any, task_mask: Any = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check inputs and bring them to training shape.

    Accepts states `(rows, d_in)` with tasks `(rows, C)`, or states `(n, T, d_in)` with per-sequence tasks
    `(n, C)` or per-step tasks `(n, T, C)`. `task_mask` may be `(rows, n_tasks)`, `(n, T, n_tasks)` or
    `(T, n_tasks)` (the same for every sequence, e.g. `TaskStructure.step_tasks_`).

    With the step readout everything is flattened to rows: states `(N, d_in)`, tasks `(N, C)` (per-sequence
    targets broadcast to every step), mask `(N, n_tasks)`. With the sequence readout (`config.task_readout`
    `"sequence"`, or `"auto"` given per-sequence targets of sequences) the result keeps sequences: states
    `(n, T, d_in)`, tasks `(n, C)`, step mask `(n, T, n_tasks)`. Raises before any work on a wrong hidden size,
    task count, NaN or inf, or classification labels out of range.
    """
    cfg = adapter.config
    states = to_numpy(states, "states", dtype=np.float32)
    tasks = to_numpy(tasks, "tasks", dtype=np.float64)
    if states.ndim < 2 or states.shape[-1] != cfg.d_in:
        raise ValueError(
            f"`states` has shape {states.shape}, but the adapter expects (..., {cfg.d_in}) (d_in={cfg.d_in}); "
            "the hidden size does not match."
        )
    width = cfg.n_target_columns
    if tasks.ndim == 1 and width == 1:
        tasks = tasks[:, None]
    if tasks.shape[-1] != width:
        raise ValueError(
            f"`tasks` has shape {tasks.shape} with {tasks.shape[-1]} target columns, but the adapter has "
            f"n_tasks={cfg.n_tasks} with task_dims={cfg.task_dims} ({width} columns); the task count does not match."
        )
    lead = states.shape[:-1]
    per_sequence = states.ndim == 3 and tasks.shape[:-1] == lead[:1]
    readout = cfg.task_readout if cfg.task_readout != "auto" else ("sequence" if per_sequence else "step")
    if readout == "sequence" and not per_sequence:
        raise ValueError(
            f"`task_readout='sequence'` needs `states` of shape (n, T, {cfg.d_in}) and one target row per sequence "
            f"(`tasks` of shape (n, {width})); got states {states.shape} and tasks {tasks.shape}."
        )
    if tasks.shape[:-1] == lead:
        pass
    elif per_sequence:
        tasks = np.broadcast_to(tasks[:, None, :], lead + (width,))
    else:
        raise ValueError(
            f"`tasks` has shape {tasks.shape}; with `states` of shape {states.shape} it must be {lead + (width,)}"
            + (f" or {lead[:1] + (width,)}" if states.ndim == 3 else "")
            + "."
        )
    if task_mask is None:
        mask = np.ones(lead + (cfg.n_tasks,), dtype=bool)
    else:
        mask = to_numpy(task_mask, "task_mask", dtype=bool)
        if mask.shape == lead + (cfg.n_tasks,):
            pass
        elif states.ndim == 3 and mask.shape == (lead[1], cfg.n_tasks):
            mask = np.broadcast_to(mask[None], lead + (cfg.n_tasks,))
        else:
            raise ValueError(f"`task_mask` has shape {mask.shape}; expected {lead + (cfg.n_tasks,)}"
                             + (f" or {(lead[1], cfg.n_tasks)}" if states.ndim == 3 else "") + ".")
    if readout == "sequence":  # one target row per sequence; `mask` says which rows count, `out_mask` which steps
        out_mask = np.ascontiguousarray(mask)
        tasks, mask = np.ascontiguousarray(tasks[:, 0]), out_mask.any(1)
    else:
        states = states.reshape(-1, cfg.d_in)
        tasks = np.ascontiguousarray(tasks).reshape(-1, width)
        mask = out_mask = np.ascontiguousarray(mask).reshape(-1, cfg.n_tasks)
    if not np.isfinite(states).all():
        raise ValueError(f"`states` contains {int((~np.isfinite(states)).sum())} NaN or infinite values.")
    column_mask = np.concatenate([np.repeat(mask[:, i : i + 1], d, axis=1) for i, d in enumerate(cfg.task_dims)], axis=1)
    if not np.isfinite(tasks[column_mask]).all():
        raise ValueError("`tasks` contains NaN or infinite values on rows that count; mark absent labels in "
                         "`task_mask` (False) instead of NaN.")
    tasks = np.where(column_mask, tasks, 0.0)
    for i, (kind, k, cols) in enumerate(zip(cfg.task_types, cfg.n_classes, cfg.target_columns)):
        if kind == "classification":
            labels = tasks[mask[:, i], cols.start]
            if len(labels) and (np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() >= k):
                raise ValueError(f"`tasks[:, {i}]` ({cfg.task_names[i]}) must hold integer labels in 0..{k - 1} "
                                 f"(n_classes={k}); got values in [{labels.min()}, {labels.max()}].")
    if not mask.any(0).all():
        empty = [cfg.task_names[i] for i in np.flatnonzero(~mask.any(0))]
        raise ValueError(f"`task_mask` leaves no row for tasks {empty}.")
    if len(states) < 10:
        unit = "sequences" if readout == "sequence" else "rows"
        raise ValueError(f"`states` has {len(states)} {unit}; at least 10 are needed to train.")
    return torch.from_numpy(states), torch.from_numpy(tasks).float(), torch.from_numpy(out_mask)


# --- checkpoints (safetensors + JSON, no pickle) ------------------------------------------------------


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


def _model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    progress: dict[str, Any]) -> Path:
    """Write one checkpoint folder atomically and keep only the newest."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{CHECKPOINT_PREFIX}{progress['global_step']:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=directory))
    save_file(_model_tensors(model), str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda{i}"] = s
    save_file(rng, str(tmp / "rng.safetensors"))
    (tmp / "progress.json").write_text(json.dumps({**progress, "optimizer": opt_meta}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in directory.glob(f"{CHECKPOINT_PREFIX}*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(directory: str | os.PathLike | None) -> Path | None:
    """The newest complete checkpoint folder in `directory`, or `None`."""
    if directory is None or not Path(directory).is_dir():
        return None
    found = sorted(p for p in Path(directory).glob(f"{CHECKPOINT_PREFIX}*") if (p / "progress.json").exists())
    return found[-1] if found else None


def _load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    from safetensors.torch import load_file

    progress = json.loads((path / "progress.json").read_text())
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    optimizer.load_state_dict(_unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), progress.pop("optimizer")))
    rng = load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        states = [rng[k] for k in sorted(rng) if k.startswith("cuda")]
        if states:
            torch.cuda.set_rng_state_all(states)
    return progress


# --- training ------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(adapter: SpecialistAdapter, states: torch.Tensor, tasks: torch.Tensor, mask: torch.Tensor,
             batch_size: int = 4096) -> dict[str, float]:
    """Held-out metrics: per-task loss (standardised MSE or cross-entropy), reconstruction, explained variance."""
    was_training = adapter.training
    adapter.eval()
    device = adapter.input_mean.device
    sums: dict[str, float] = {}
    sq_total, var_total = 0.0, 0.0
    for start in range(0, len(states), batch_size):
        h = states[start : start + batch_size].to(device)
        t = tasks[start : start + batch_size].to(device)
        m = mask[start : start + batch_size].to(device)
        terms = adapter.loss_terms(h, t, m, 0.0)  # eval mode: the code is the posterior mean
        x = adapter.normalize(h.reshape(-1, h.shape[-1]))
        sq_total += float(terms["recon"]) * x.numel()
        var_total += float(((x - x.mean(0)) ** 2).sum())
        rows = m if m.ndim == 2 else m.any(1)
        for i in range(adapter.config.n_tasks):
            sums[f"task_{i}"] = sums.get(f"task_{i}", 0.0) + float(terms[f"task_{i}"]) * float(rows[:, i].sum())
    adapter.train(was_training)
    counts = (mask if mask.ndim == 2 else mask.any(1)).sum(0).clamp(min=1).tolist()
    out = {f"task_{i}": sums[f"task_{i}"] / counts[i] for i in range(adapter.config.n_tasks)}
    out["adapter/explained_variance"] = 1.0 - sq_total / max(var_total, 1e-12)
    return out


def _support_metrics(adapter: SpecialistAdapter) -> dict[str, float]:
    support = adapter.task_support_
    return {"adapter/support_size": int(support.sum()), "adapter/l0": float(support.sum(1).mean())}


def train_specialist(
    adapter: SpecialistAdapter,
    states: Any,
    tasks: Any,
    task_mask: Any = None,
    *,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 1e-3,
    mask_lr: float = 3e-2,
    rotation_lr: float = 1e-2,
    weight_decay: float = 0.0,
    sparsity: float | str | None = None,
    lambda_path: list[float] | None = None,
    validation_split: float = 0.2,
    finetune_fraction: float = 0.15,
    seed: int = 0,
    mixed_precision: str = "no",
    gradient_accumulation_steps: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    stop_after_steps: int | None = None,
    progress: bool | None = None,
    cpu: bool | None = None,
    base_model: torch.nn.Module | None = None,
    lora: Any = None,
    tokenizer: Any = None,
    steps: str = ". ",
) -> dict[str, Any]:
    """Train `adapter` on hidden states and task outcomes with `accelerate`.

    With `base_model=`, `lora=` (a `peft.LoraConfig`) and `tokenizer=`, `states` are the texts and the adapter
    is trained jointly with a LoRA on the base, hidden states computed on the fly (`train_specialist_with_lora`);
    the PEFT model is returned in the history under `"lora_model"`.

    With a fixed `sparsity` lambda the penalty warms up over `config.sparsity_warmup` of training, then the
    support (`mask > mask_threshold`) is frozen and the model fine-tuned. With `sparsity="auto"` (the default of
    `SpecialistConfig`), a dense model (lambda = 0) and one model per lambda of `lambda_path` are trained from the
    same seed, and the sparsest whose held-out task losses all stay within `config.sparsity_tolerance` (relative,
    plus 0.02 absolute on standardised losses) of the dense model's is kept. Users have no ground truth to tune
    lambda against; held-out task loss is what they do have.

    Args:
        adapter (`SpecialistAdapter`): the adapter; trained in place.
        states: `(rows, d_in)` or `(n_sequences, T, d_in)` hidden states (numpy or torch).
        tasks: `(rows, C)`, `(n_sequences, C)` (broadcast over steps) or `(n_sequences, T, C)` with
            `C = sum(config.task_dims)` target columns (class labels as integers).
        task_mask: which rows count for which task (`(rows, n_tasks)`, `(n_sequences, T, n_tasks)` or
            `(T, n_tasks)`, e.g. `TaskStructure.step_tasks_`); all rows when `None`.
        epochs (`int`, *optional*, defaults to 100): passes over the training rows per trained model.
        batch_size (`int`, *optional*, defaults to 256): steps per optimizer step (per process); with the sequence
            readout a batch holds `batch_size // T` sequences (at least one).
        lr (`float`, *optional*, defaults to 1e-3): learning rate; `mask_lr` for the mask logits and
            `rotation_lr` for the latent rotation.
        sparsity (`float` or `"auto"`, *optional*): overrides `adapter.config.sparsity`; `0` trains the generalist
            ablation of Proposition 2.
        lambda_path (`list[float]`, *optional*): the lambdas tried by `"auto"` (default `auto_lambda_path()`).
        validation_split (`float`, *optional*, defaults to 0.2): held-out share for `"auto"` and metrics.
        finetune_fraction (`float`, *optional*, defaults to 0.15): share of epochs with the support frozen.
        seed (`int`, *optional*, defaults to 0): seeds initialisation, data order and noise.
        mixed_precision (`str`, *optional*, defaults to `"no"`): `"no"`, `"fp16"` or `"bf16"` (accelerate).
        gradient_accumulation_steps (`int`, *optional*, defaults to 1): accumulate gradients over batches.
        checkpoint_dir (`str`, *optional*): where checkpoints go; `checkpoint_every` sets the step interval.
        resume (`bool`, *optional*, defaults to `False`): continue from the newest checkpoint in `checkpoint_dir`.
        stop_after_steps (`int`, *optional*): stop after this many optimizer steps (to simulate an interruption).
        progress (`bool`, *optional*): show a progress bar (default: when stderr is a terminal).
        cpu (`bool`, *optional*): force CPU even when a GPU is present.

    Returns:
        `dict` history: `"steps"` (logged loss terms and metrics, DESIGN §5 names), `"path"` (per lambda tried:
        held-out task losses, support size, whether within tolerance), `"selected_sparsity"`, `"final"`
        (held-out metrics of the kept model), or `"interrupted_at"` when `stop_after_steps` stopped it.
    """
    if base_model is not None or lora is not None:
        if base_model is None or lora is None or tokenizer is None:
            raise ValueError("Joint LoRA training needs `base_model`, `lora` (a peft.LoraConfig) and `tokenizer` together.")
        fixed = adapter.config.sparsity if sparsity is None else sparsity
        history, peft_model = train_specialist_with_lora(
            adapter, base_model, tokenizer, list(states), tasks, task_mask, lora=lora, steps=steps,
            sparsity=0.05 if fixed == "auto" else fixed, epochs=epochs, batch_size=min(batch_size, 32), lr=lr,
            seed=seed, progress=progress,
        )
        return {**history, "lora_model": peft_model}
    cfg = adapter.config
    chosen = cfg.sparsity if sparsity is None else sparsity
    if not (chosen == "auto" or (isinstance(chosen, (int, float)) and not isinstance(chosen, bool) and chosen >= 0)):
        raise ValueError(f"`sparsity` must be a non-negative float or 'auto', got {chosen!r}.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("gradient_accumulation_steps", gradient_accumulation_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1, got {value!r}.")
    if not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be in (0, 1), got {validation_split!r}.")
    if mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"`mixed_precision` must be 'no', 'fp16' or 'bf16', got {mixed_precision!r}.")
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError("`checkpoint_every` needs `checkpoint_dir`.")
    h_all, t_all, m_all = prepare_training_data(adapter, states, tasks, task_mask)
    cfg.task_readout = "sequence" if h_all.ndim == 3 else "step"
    if h_all.ndim == 3:  # batches of sequences holding about `batch_size` steps
        batch_size = max(1, batch_size // h_all.shape[1])

    order = np.random.default_rng(seed).permutation(len(h_all))
    n_val = max(1, int(round(validation_split * len(h_all))))
    val_idx, train_idx = torch.as_tensor(order[:n_val]), torch.as_tensor(order[n_val:])
    data = {
        "train": (h_all[train_idx], t_all[train_idx], m_all[train_idx]),
        "val": (h_all[val_idx], t_all[val_idx], m_all[val_idx]),
    }
    options = dict(epochs=epochs, batch_size=batch_size, lr=lr, mask_lr=mask_lr, rotation_lr=rotation_lr,
                   weight_decay=weight_decay, finetune_fraction=finetune_fraction, seed=seed,
                   mixed_precision=mixed_precision, gradient_accumulation_steps=gradient_accumulation_steps,
                   checkpoint_every=checkpoint_every, resume=resume, progress=progress, cpu=cpu)
    lambdas = [float(chosen)] if chosen != "auto" else [0.0] + [float(x) for x in (lambda_path or auto_lambda_path())]
    root = Path(checkpoint_dir) if checkpoint_dir is not None else None
    summary_path = root / "path.json" if root is not None else None
    path: list[dict[str, Any]] = []
    if resume and summary_path is not None and summary_path.exists():
        path = json.loads(summary_path.read_text())
    history_steps: list[dict[str, Any]] = []
    steps_left = stop_after_steps
    for k, lam in enumerate(lambdas):
        if k < len(path):
            continue  # finished before an interruption
        run_dir = root / f"run-{k:02d}" if root is not None else None
        model = adapter if len(lambdas) == 1 else _fresh_copy(adapter, seed)
        result = _train_one(model, data, lam, run_dir, stop_after_steps=steps_left, **options)
        history_steps += result["steps"]
        if "interrupted_at" in result:
            return {"interrupted_at": result["interrupted_at"], "steps": history_steps, "path": path}
        if steps_left is not None:
            steps_left -= result["n_steps"]
        record = {"sparsity": lam, **result["final"], "support": model.task_support_.astype(int).tolist()}
        path.append(record)
        if len(lambdas) > 1:
            if run_dir is not None:
                _save_run(run_dir, model)
            else:
                record["_state"] = _model_tensors(model)
        if summary_path is not None:
            summary_path.parent.mkdir(parents=True, exist_ok=True)
            summary_path.write_text(json.dumps([{k2: v for k2, v in r.items() if k2 != "_state"} for r in path]))
    best = select_sparsest(path, cfg.sparsity_tolerance, cfg.n_tasks)
    if len(lambdas) > 1:
        state = path[best].get("_state")
        if state is None:
            from safetensors.torch import load_file

            state = load_file(str(root / f"run-{best:02d}" / "final.safetensors"))
        adapter.load_state_dict(state)
    for record in path:
        record.pop("_state", None)
    adapter.eval()
    return {"steps": history_steps, "path": path, "selected_sparsity": path[best]["sparsity"],
            "final": {k2: v for k2, v in path[best].items() if k2 not in ("support", "sparsity", "within_tolerance")}}


def select_sparsest(path: list[dict[str, Any]], tolerance: float, n_tasks: int) -> int:
    """Index of the sparsest trained model whose held-out task losses stay within tolerance of the dense one's.

    The first entry is the dense model (or the only model). Marks each entry with `within_tolerance`.
    """
    dense = [path[0][f"task_{i}"] for i in range(n_tasks)]
    allowed = [d * (1 + tolerance) + 0.02 for d in dense]
    best = 0
    for index, record in enumerate(path):
        losses = [record[f"task_{i}"] for i in range(n_tasks)]
        ok = all(loss <= limit for loss, limit in zip(losses, allowed)) and all(any(row) for row in record["support"])
        record["within_tolerance"] = bool(ok)
        if ok and record["adapter/support_size"] <= path[best]["adapter/support_size"]:
            best = index
    return best


def _fresh_copy(adapter: SpecialistAdapter, seed: int) -> SpecialistAdapter:
    torch.manual_seed(seed)
    return type(adapter)(copy.deepcopy(adapter.config)).to(adapter.input_mean.device)


def _save_run(run_dir: Path, model: SpecialistAdapter) -> None:
    from safetensors.torch import save_file

    run_dir.mkdir(parents=True, exist_ok=True)
    save_file(_model_tensors(model), str(run_dir / "final.safetensors"))


def _train_one(
    adapter: SpecialistAdapter,
    data: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    sparsity: float,
    run_dir: Path | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    mask_lr: float,
    rotation_lr: float,
    weight_decay: float,
    finetune_fraction: float,
    seed: int,
    mixed_precision: str,
    gradient_accumulation_steps: int,
    checkpoint_every: int | None,
    resume: bool,
    stop_after_steps: int | None,
    progress: bool | None,
    cpu: bool | None,
) -> dict[str, Any]:
    """Train one model at a fixed lambda (warm-up, then the support frozen and fine-tuned)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    cfg = adapter.config
    h_tr, t_tr, m_tr = data["train"]
    set_seed(seed)
    adapter.fit_normalizer(h_tr, t_tr, m_tr)
    adapter.support_frozen.fill_(False)
    finetune_epochs = max(1, int(round(finetune_fraction * epochs))) if epochs > 1 else 0
    main_epochs = epochs - finetune_epochs

    accelerator = Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=gradient_accumulation_steps,
                              cpu=bool(cpu) or not torch.cuda.is_available())
    groups = [
        {"params": [p for n, p in adapter.named_parameters() if n != "mask_logits" and not n.startswith("rotation.")],
         "lr": lr, "weight_decay": weight_decay},
        {"params": [adapter.mask_logits], "lr": mask_lr, "weight_decay": 0.0},
        {"params": list(adapter.rotation.parameters()), "lr": rotation_lr, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.Adam(groups)
    model, optimizer = accelerator.prepare(adapter, optimizer)
    raw = accelerator.unwrap_model(model)
    steps_per_epoch = math.ceil(len(h_tr) / (batch_size * accelerator.num_processes))
    state: dict[str, Any] = {"global_step": 0, "epoch": 0, "history": []}
    if resume and run_dir is not None:
        found = latest_checkpoint(run_dir)
        if found is not None:
            state = _load_checkpoint(found, raw, optimizer)
    start_step = state["global_step"]
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    bar = tqdm(total=epochs * steps_per_epoch, initial=start_step, desc=f"train specialist (lambda={sparsity:.3g})",
               unit="step", disable=disable or not accelerator.is_main_process)
    device = accelerator.device
    interrupted = False
    while state["epoch"] < epochs and not interrupted:
        epoch = state["epoch"]
        if epoch >= main_epochs and not bool(raw.support_frozen):
            raw.freeze_support()
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        shard = torch.randperm(len(h_tr), generator=generator)[accelerator.process_index :: accelerator.num_processes]
        model.train()
        for b in range(state["global_step"] - epoch * steps_per_epoch, steps_per_epoch):
            rows = shard[b * batch_size : (b + 1) * batch_size]
            if len(rows) == 0:
                continue
            ramp = (epoch + b / steps_per_epoch) / max(main_epochs * cfg.sparsity_warmup, 1e-9)
            lam = sparsity * min(1.0, ramp)
            with accelerator.accumulate(model), accelerator.autocast():
                terms = model(h_tr[rows].to(device), t_tr[rows].to(device), m_tr[rows].to(device), lam)
                accelerator.backward(terms["loss"])
                optimizer.step()
                optimizer.zero_grad()
            state["global_step"] += 1
            bar.update(1)
            if state["global_step"] % 25 == 0 or (epoch == epochs - 1 and b == steps_per_epoch - 1):
                record = {k: float(v.detach()) for k, v in terms.items()}
                record.update(step=state["global_step"], sparsity=sparsity, sparsity_weight=lam, **_support_metrics(raw))
                state["history"].append(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", support=record["adapter/support_size"])
            if (checkpoint_every and run_dir is not None and state["global_step"] % checkpoint_every == 0
                    and accelerator.is_main_process):
                save_checkpoint(run_dir, raw, optimizer, state)
            if stop_after_steps is not None and state["global_step"] - start_step >= stop_after_steps:
                interrupted = True
                break
        if not interrupted:
            state["epoch"] += 1
    bar.close()
    if interrupted:
        return {"interrupted_at": state["global_step"], "steps": state["history"]}
    accelerator.wait_for_everyone()
    final = evaluate(raw, *data["val"])
    final.update(_support_metrics(raw))
    raw.eval()
    return {"steps": state["history"], "final": final, "n_steps": state["global_step"] - start_step}


def train_specialist_with_lora(
    adapter: SpecialistAdapter,
    base_model: torch.nn.Module,
    tokenizer: Any,
    texts: list[str],
    tasks: Any,
    task_mask: Any = None,
    *,
    lora: Any,
    steps: str = ". ",
    pool: str = "mean",
    sparsity: float = 0.05,
    epochs: int = 3,
    batch_size: int = 16,
    lr: float = 1e-3,
    lora_lr: float = 1e-4,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[dict[str, Any], Any]:
    """Train the adapter jointly with a LoRA on the base model; hidden states are computed on the fly.

    Gradients of the adapter's objective flow through the hook point into the LoRA weights (PEFT). The input
    statistics are fitted on the base model's states before training. Returns `(history, peft_model)`; save with
    `adapter.save_pretrained(dir, lora_model=peft_model)` (PEFT writes it to `lora/`).

    Args:
        adapter (`SpecialistAdapter`): the adapter; `config.hook_point` says where to read.
        base_model (`nn.Module`): the `transformers` model to wrap with `lora` (a `peft.LoraConfig`).
        tokenizer: its fast tokenizer. texts (`list[str]`): sequences with the same number of steps.
        tasks: `(n_sequences, C)` per-sequence targets. task_mask: `(T, n_tasks)` which steps count for which task.
        steps, pool (`str`): the step rule and pooling, as in `extract_steps`.
        sparsity (`float`, *optional*, defaults to 0.05): a fixed lambda ("auto" is not supported here).
    """
    from peft import get_peft_model

    from ..data import extract_steps
    from ..hooks import HiddenStateExtractor, resolve_hook_points
    from ..steps import assignment_matrix, pool_steps, step_spans

    if not isinstance(sparsity, (int, float)) or isinstance(sparsity, bool) or sparsity < 0:
        raise ValueError(f"`sparsity` must be a non-negative float for joint LoRA training, got {sparsity!r}.")
    hook_point = adapter.config.hook_point
    if hook_point is None:
        raise ValueError("Set `adapter.config.hook_point` to say where the adapter reads the base model.")
    hook_point = resolve_hook_points(base_model, hook_point)[0]
    states = extract_steps(base_model, tokenizer, texts, hook_point=hook_point, steps=steps, pool=pool,
                           batch_size=batch_size, progress=False)
    h_rows, t_rows, m_rows = prepare_training_data(adapter, states, tasks, task_mask)
    n, T = states.shape[:2]
    sequence = h_rows.ndim == 3
    adapter.config.task_readout = "sequence" if sequence else "step"
    adapter.fit_normalizer(h_rows, t_rows, m_rows)
    spans = step_spans(texts, steps)
    torch.manual_seed(seed)
    peft_model = get_peft_model(base_model, lora)
    peft_model.train()
    adapter.train()
    optimizer = torch.optim.Adam([
        {"params": [p for p in adapter.parameters()], "lr": lr},
        {"params": [p for p in peft_model.parameters() if p.requires_grad], "lr": lora_lr},
    ])
    t_seq = t_rows if sequence else t_rows.reshape(n, T, -1)
    m_seq = m_rows.reshape(n, T, -1)
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    history: list[dict[str, float]] = []
    device = next(peft_model.parameters()).device
    adapter.to(device)
    with HiddenStateExtractor(peft_model, hook_point, detach=False) as extractor:
        for epoch in tqdm(range(epochs), desc="train specialist + LoRA", disable=disable):
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
            for start in range(0, n, batch_size):
                rows = order[start : start + batch_size]
                encoded = tokenizer([texts[r] for r in rows], return_tensors="pt", padding=True,
                                    return_offsets_mapping=True, return_special_tokens_mask=True)
                offsets = encoded.pop("offset_mapping")
                special = encoded.pop("special_tokens_mask").bool()
                content = encoded["attention_mask"].bool() & ~special
                assign = assignment_matrix(offsets, content, [spans[r] for r in rows], T)
                hidden = extractor(**{k: v.to(device) for k, v in encoded.items()})[hook_point]
                pooled = pool_steps(hidden, assign.to(device), pool)
                if sequence:
                    terms = adapter(pooled, t_seq[rows].to(device), m_seq[rows].to(device), float(sparsity))
                else:
                    terms = adapter(pooled.reshape(-1, adapter.config.d_in),
                                    t_seq[rows].reshape(-1, t_seq.shape[-1]).to(device),
                                    m_seq[rows].reshape(-1, m_seq.shape[-1]).to(device), float(sparsity))
                optimizer.zero_grad()
                terms["loss"].backward()
                optimizer.step()
                history.append({k: float(v.detach()) for k, v in terms.items()} | {"epoch": epoch})
    adapter.freeze_support()
    adapter.eval()
    peft_model.eval()
    return {"steps": history, "final": history[-1] if history else {}}, peft_model
