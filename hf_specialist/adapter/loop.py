"""The one `accelerate` training loop: one model at one lambda (or a `StackedAdapters`, one lambda per model),
over any batch source.

The sparsity weight warms up over `config.sparsity_warmup` of the main epochs, then the support is frozen and the
model fine-tuned. Under several processes (`torchrun`, `accelerate launch`) the module is wrapped in DDP, every
process draws an equal share of each epoch's rows, only the main process writes checkpoints, and at the end every
process holds the main process's weights and buffers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._distributed import barrier, is_main_process
from .checkpoints import check_checkpoint_lambdas, latest_checkpoint, load_checkpoint, save_checkpoint
from .model import SpecialistAdapter
from .stacked import StackedAdapters


@torch.no_grad()
def evaluate(adapter: SpecialistAdapter, states: torch.Tensor, tasks: torch.Tensor, mask: torch.Tensor,
             batch_size: int = 4096) -> dict[str, float]:
    """Held-out metrics on in-memory tensors (see `evaluate_batches`)."""
    chunks = ((states[i : i + batch_size], tasks[i : i + batch_size], mask[i : i + batch_size])
              for i in range(0, len(states), batch_size))
    return evaluate_batches(adapter, chunks)


@torch.no_grad()
def evaluate_batches(adapter: SpecialistAdapter, chunks: Any) -> dict[str, float]:
    """Held-out metrics over `(states, tasks, mask)` chunks: per-task loss (standardised MSE or cross-entropy),
    reconstruction, explained variance."""
    was_training = adapter.training
    adapter.eval()
    device = adapter.input_mean.device
    n_tasks = adapter.config.n_tasks
    sums, counts = np.zeros(n_tasks), np.zeros(n_tasks)
    sq_total, count, first, second = 0.0, 0, None, None
    for h, t, m in chunks:
        h, t, m = h.to(device), t.to(device), m.to(device)
        terms = adapter.loss_terms(h, t, m, 0.0)  # eval mode: the code is the posterior mean
        x = adapter.normalize(h.reshape(-1, h.shape[-1])).double()
        sq_total += float(terms["recon"]) * x.numel()
        first = x.sum(0) if first is None else first + x.sum(0)
        second = (x**2).sum(0) if second is None else second + (x**2).sum(0)
        count += len(x)
        rows = (m if m.ndim == 2 else m.any(1)).double().sum(0).cpu().numpy()
        sums += np.array([float(terms[f"task_{i}"]) for i in range(n_tasks)]) * rows
        counts += rows
    adapter.train(was_training)
    var_total = float((second - first**2 / max(count, 1)).sum())
    out = {f"task_{i}": float(sums[i] / max(counts[i], 1.0)) for i in range(n_tasks)}
    out["adapter/explained_variance"] = 1.0 - sq_total / max(var_total, 1e-12)
    return out


def support_metrics(support: np.ndarray) -> dict[str, float]:
    """`adapter/support_size` (mask entries on) and `adapter/l0` (mean per task) of a `(n_tasks, d_latent)` support."""
    return {"adapter/support_size": int(support.sum()), "adapter/l0": float(support.sum(1).mean())}


def epoch_shard(n: int, epoch: int, seed: int, process_index: int, num_processes: int) -> torch.Tensor:
    """This process's rows of one epoch: a seeded permutation, wrapped to a multiple of the process count (as
    `DistributedSampler` pads) so that every process runs the same number of non-empty batches."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    total = math.ceil(n / num_processes) * num_processes
    if total > n:
        order = torch.cat([order, order[: total - n]])
    return order[process_index::num_processes]


def _check_process_layout(num_processes: int) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() != num_processes:
        raise RuntimeError(
            f"torch.distributed runs {dist.get_world_size()} processes but accelerate's state sees {num_processes}: "
            "the state was created without `cpu=True` on a machine without GPU. Create it as "
            "`PartialState(cpu=True)` (or let hf_specialist create it) before any other accelerate call."
        )


def _sync_from_main(module: torch.nn.Module, adapter: SpecialistAdapter) -> None:
    """Copy the main process's trained parameters and the adapter's buffers to every process (DDP keeps parameters
    in step, but each process's last forward updates its own normalisation statistics); a frozen base is left."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        trained = [p for p in module.parameters() if p.requires_grad]
        for tensor in trained + list(adapter.buffers()):
            dist.broadcast(tensor.data, src=0)


def parameter_groups(adapter: SpecialistAdapter | StackedAdapters, *, lr: float, mask_lr: float, rotation_lr: float,
                     weight_decay: float) -> list[dict[str, Any]]:
    """Adam's parameter groups: the mask logits at `mask_lr`, the latent rotation at `rotation_lr`, the rest at
    `lr` with `weight_decay` (selected by the adapter's parameter names, also for a stack of adapters)."""
    named = list(getattr(adapter, "adapter_named_parameters", adapter.named_parameters)())
    return [
        {"params": [p for n, p in named if n != "mask_logits" and not n.startswith("rotation.")],
         "lr": lr, "weight_decay": weight_decay},
        {"params": [p for n, p in named if n == "mask_logits"], "lr": mask_lr, "weight_decay": 0.0},
        {"params": [p for n, p in named if n.startswith("rotation.")], "lr": rotation_lr, "weight_decay": 0.0},
    ]


def _records(terms: dict[str, torch.Tensor], adapter: SpecialistAdapter | StackedAdapters, sparsity: Any,
             weight: Any, step: int) -> list[dict[str, Any]]:
    """Logged rows of one step: one per model (a stack logs each lambda's terms in its own row)."""
    if isinstance(adapter, StackedAdapters):
        supports = adapter.task_support_
        return [{**{k: float(v[j].detach()) for k, v in terms.items()}, "step": step,
                 "sparsity": float(sparsity[j]), "sparsity_weight": float(weight[j]),
                 **support_metrics(supports[j])} for j in range(adapter.n_models)]
    record = {k: float(v.detach()) for k, v in terms.items()}
    record.update(step=step, sparsity=sparsity, sparsity_weight=weight, **support_metrics(adapter.task_support_))
    return [record]


def train_one(
    module: torch.nn.Module,
    adapter: SpecialistAdapter | StackedAdapters,
    train_data: Any,
    val_data: Any,
    sparsity: float | torch.Tensor,
    run_dir: Path | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    mask_lr: float,
    rotation_lr: float,
    lora_lr: float,
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
    """Train `module` (the adapter itself, a `JointLoraModel` holding it, or a `StackedAdapters`, one lambda per
    model) at a fixed lambda.

    `train_data` / `val_data` are batch sources (`batches.StateBatches` or `TextBatches`). A stack trains at its
    own `sparsities` (the `sparsity` argument is not used); `resume` refuses a checkpoint of other lambdas.
    Returns the logged steps (one row per model and logged step), the held-out metrics of the final model
    (`"final"`; a list with one dict per model for a stack) and the number of optimizer steps, or
    `{"interrupted_at", "steps"}` when `stop_after_steps` cut the run.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed

    cfg = adapter.config
    set_seed(seed)
    module.zero_grad(set_to_none=True)  # nothing left over from an earlier run on shared (LoRA) parameters
    adapter.support_frozen.fill_(False)
    finetune_epochs = max(1, int(round(finetune_fraction * epochs))) if epochs > 1 else 0
    main_epochs = epochs - finetune_epochs

    # after the support is frozen the mask logits take no part in the loss: DDP must not wait for their gradient
    accelerator = Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=gradient_accumulation_steps,
                              cpu=bool(cpu) or not torch.cuda.is_available(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    _check_process_layout(accelerator.num_processes)
    groups = parameter_groups(adapter, lr=lr, mask_lr=mask_lr, rotation_lr=rotation_lr, weight_decay=weight_decay)
    adapter_params = {id(p) for p in adapter.parameters()}
    others = [p for p in module.parameters() if p.requires_grad and id(p) not in adapter_params]
    if others:  # a LoRA on the base
        groups.append({"params": others, "lr": lora_lr, "weight_decay": weight_decay})
    # fused: one kernel for all parameters. On CPU `foreach` still loops over the ~50 small tensors one op at a
    # time (a quarter of a step); the fused kernel took a step of the default adapter from 9.9 to 7.5 ms
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"])
    optimizer = torch.optim.Adam(groups, fused=fused or None)
    wrapped, optimizer = accelerator.prepare(module, optimizer)
    raw = accelerator.unwrap_model(wrapped)
    rank, world = accelerator.process_index, accelerator.num_processes
    steps_per_epoch = math.ceil(math.ceil(len(train_data) / world) / batch_size)
    stacked = isinstance(adapter, StackedAdapters)
    lambdas = [float(x) for x in adapter.sparsities] if stacked else [float(sparsity)]
    state: dict[str, Any] = {"global_step": 0, "epoch": 0, "history": [], "sparsity": lambdas}
    if resume and run_dir is not None:
        found = latest_checkpoint(run_dir)
        if found is not None:
            check_checkpoint_lambdas(found, lambdas)
            state = load_checkpoint(found, raw, optimizer)
    start_step = state["global_step"]
    if stacked:  # each model's lambda, on the training device
        sparsity = raw.sparsities
    label = f"{adapter.n_models} lambdas at once" if stacked else f"lambda={sparsity:.3g}"
    bar = tqdm(total=epochs * steps_per_epoch, initial=start_step, desc=f"train specialist ({label})",
               unit="step", disable=True if not accelerator.is_main_process else (None if progress is None else not progress))
    device = accelerator.device
    interrupted = False
    while state["epoch"] < epochs and not interrupted:
        epoch = state["epoch"]
        if epoch >= main_epochs and not bool(adapter.support_frozen):
            adapter.freeze_support()
        # equal-sized batches (sizes differ by at most one): no batch of a single row for the batch norm
        batches = torch.tensor_split(epoch_shard(len(train_data), epoch, seed, rank, world), steps_per_epoch)
        wrapped.train()
        for b in range(state["global_step"] - epoch * steps_per_epoch, steps_per_epoch):
            rows = batches[b]
            ramp = (epoch + b / steps_per_epoch) / max(main_epochs * cfg.sparsity_warmup, 1e-9)
            lam = sparsity * min(1.0, ramp)
            with accelerator.accumulate(wrapped), accelerator.autocast():
                terms = wrapped(**train_data.batch(rows, device), sparsity=lam)
                accelerator.backward(terms["loss"].sum())  # a stack's models are independent: one sum, own grads
                optimizer.step()
                if accelerator.sync_gradients:  # what accelerate's zero_grad does, without its per-call package probe
                    optimizer.optimizer.zero_grad(set_to_none=True)
            state["global_step"] += 1
            bar.update(1)
            if state["global_step"] % 25 == 0 or (epoch == epochs - 1 and b == steps_per_epoch - 1):
                records = _records(terms, adapter, sparsity, lam, state["global_step"])
                state["history"] += records
                bar.set_postfix(loss=f"{records[-1]['loss']:.3f}", support=records[-1]["adapter/support_size"])
            if checkpoint_every and run_dir is not None and state["global_step"] % checkpoint_every == 0:
                if is_main_process():
                    save_checkpoint(run_dir, raw, optimizer, state)
            if stop_after_steps is not None and state["global_step"] - start_step >= stop_after_steps:
                interrupted = True
                break
        if not interrupted:
            state["epoch"] += 1
    bar.close()
    barrier()
    if interrupted:
        return {"interrupted_at": state["global_step"], "steps": state["history"]}
    _sync_from_main(raw, adapter)
    adapter.eval()
    if stacked:
        final = [{**evaluate_batches(model, val_data.evaluation_batches(raw)), **support_metrics(model.task_support_)}
                 for model in adapter.unstack()]
    else:
        final = evaluate_batches(adapter, val_data.evaluation_batches(raw))
        final.update(support_metrics(adapter.task_support_))
    return {"steps": state["history"], "final": final, "n_steps": state["global_step"] - start_step}
