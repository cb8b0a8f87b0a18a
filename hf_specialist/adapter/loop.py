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
from .._validation import InputError
from .batch_share import BatchShare, sharing, whole_batch_terms
from .checkpoints import (check_checkpoint_lambdas, gather_rng_states, latest_checkpoint, load_checkpoint,
                          save_checkpoint)
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
    """Held-out metrics over `(states, tasks, mask)` chunks.

    Per task: `task_i`, the mean loss over its rows (standardised MSE or cross-entropy); `task_i/se`, the standard
    error of that mean (the spread of the per-row losses over the square root of the row count: how much the number
    would move with another held-out sample); `task_i/r2` for regression (1 - MSE / mean squared deviation of the
    held-out targets from the training mean, i.e. R^2 against predicting the training mean) and `task_i/null` (that
    mean squared deviation: the loss of predicting the training mean) or, for classification, `task_i/accuracy` and
    `task_i/brier` (the mean Brier score over that of predicting the held-out class shares: 0 is perfect, 1 is no
    better than the class shares; absent when every held-out row has one class) with its standard error
    `task_i/brier_se`; `task_i/n` the held-out rows. Also `adapter/explained_variance` of the reconstruction.
    """
    was_training = adapter.training
    adapter.eval()
    device = adapter.input_mean.device
    cfg = adapter.config
    n_tasks = cfg.n_tasks
    sums, squares, counts, scores = np.zeros(n_tasks), np.zeros(n_tasks), np.zeros(n_tasks), np.zeros(n_tasks)
    brier_sums, brier_squares = np.zeros(n_tasks), np.zeros(n_tasks)
    label_counts: dict[int, np.ndarray] = {}
    sq_total, count, first, second = 0.0, 0, None, None
    for h, t, m in chunks:
        h, t, m = h.to(device), t.to(device), m.to(device)
        terms = adapter.loss_terms(h, t, m, 0.0, per_row=True)  # eval mode: the code is the posterior mean
        x = adapter.normalize(h.reshape(-1, h.shape[-1])).double()
        sq_total += float(terms["recon"]) * x.numel()
        first = x.sum(0) if first is None else first + x.sum(0)
        second = (x**2).sum(0) if second is None else second + (x**2).sum(0)
        count += len(x)
        for i in range(n_tasks):
            rows = terms[f"task_{i}/rows"]
            losses = terms[f"task_{i}/per_row"][rows].double()
            sums[i] += float(losses.sum())
            squares[i] += float((losses**2).sum())
            counts[i] += int(rows.sum())
            scores[i] += float(terms[f"task_{i}/score"][rows].double().sum())
            if f"task_{i}/brier" in terms:
                brier = terms[f"task_{i}/brier"][rows].double()
                brier_sums[i] += float(brier.sum())
                brier_squares[i] += float((brier**2).sum())
                seen = terms[f"task_{i}/labels"][rows].double().sum(0).cpu().numpy()
                label_counts[i] = seen if i not in label_counts else label_counts[i] + seen
    adapter.train(was_training)
    var_total = float((second - first**2 / max(count, 1)).sum())
    out: dict[str, float] = {}
    for i in range(n_tasks):
        n = max(counts[i], 1.0)
        mean = sums[i] / n
        out[f"task_{i}"] = float(mean)
        spread = max(squares[i] / n - mean**2, 0.0) * n / max(n - 1, 1.0)
        out[f"task_{i}/se"] = float(np.sqrt(spread / n))
        if cfg.task_types[i] == "regression":
            out[f"task_{i}/r2"] = float(1.0 - sums[i] / max(scores[i], 1e-12))
            out[f"task_{i}/null"] = float(scores[i] / n)  # the loss of predicting the training mean
        else:
            out[f"task_{i}/accuracy"] = float(scores[i] / n)
            shares = label_counts.get(i, np.ones(1)) / n
            null = 1.0 - float((shares**2).sum())  # the Brier score of predicting the class shares
            if null > 1e-6:  # one class in every held-out row leaves nothing to normalise by: no Brier score
                brier = brier_sums[i] / n
                brier_spread = max(brier_squares[i] / n - brier**2, 0.0) * n / max(n - 1, 1.0)
                out[f"task_{i}/brier"] = float(brier / null)
                out[f"task_{i}/brier_se"] = float(np.sqrt(brier_spread / n) / null)
        out[f"task_{i}/n"] = int(counts[i])
    out["adapter/explained_variance"] = 1.0 - sq_total / max(var_total, 1e-12)
    return out


def support_metrics(support: np.ndarray) -> dict[str, float]:
    """`adapter/support_size` (mask entries on) and `adapter/l0` (mean per task) of a `(n_tasks, d_latent)` support."""
    return {"adapter/support_size": int(support.sum()), "adapter/l0": float(support.sum(1).mean())}


def epoch_batches(n: int, epoch: int, seed: int, batch_size: int) -> list[torch.Tensor]:
    """The global batches of one epoch: a seeded permutation of the `n` training rows cut into
    `ceil(n / batch_size)` batches whose sizes differ by at most one (no batch of a single row for the batch norm).
    They depend on the seed and the epoch only, never on the process count."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return list(torch.tensor_split(order, max(1, math.ceil(n / batch_size))))


def process_share(batch: torch.Tensor, process_index: int, num_processes: int) -> torch.Tensor:
    """This process's rows of a global batch (every `num_processes`-th row). A batch too small to give every process
    two rows is wrapped around first (as `DistributedSampler` pads), so no process gets an empty or one-row batch."""
    return process_batch_share(batch, process_index, num_processes)[0]


def process_batch_share(batch: torch.Tensor, process_index: int, num_processes: int,
                        group: Any = None) -> tuple[torch.Tensor, BatchShare | None]:
    """`(rows, share)`: this process's rows of a global batch (`process_share`) and, with several processes, the
    `BatchShare` under which the adapter trains on them as on the whole batch (`None` in one process)."""
    if num_processes == 1:
        return batch, None
    need = 2 * num_processes
    if len(batch) < need:
        batch = batch[torch.arange(need) % len(batch)]
    positions = torch.arange(process_index, len(batch), num_processes)
    return batch[positions], BatchShare(positions=positions, global_rows=len(batch), world=num_processes,
                                        group=group)


def support_settled(trace: list[Any], main_points: int, warmup_points: float) -> list[bool]:
    """Whether each model's support had stopped changing before it was frozen.

    `trace` holds the support (`(n_tasks, d_latent)`, or `(n_models, n_tasks, d_latent)` for a stack) at each of the
    `main_points` trace points of the main phase (the end of each main epoch, or evenly spaced steps under
    `max_steps`); `warmup_points` is the sparsity warm-up in the same units. A support counts as settled when it
    was the same at the last `max(2, ceil(0.2 * main_points))` points and the point before them, all after the
    warm-up; a run too short to show that is not settled.
    """
    if not trace:
        return []
    supports = [np.asarray(x, dtype=bool) for x in trace]
    stacked = supports[0].ndim == 3
    supports = [x if stacked else x[None] for x in supports]
    tail = max(2, math.ceil(0.2 * main_points))
    n_models = supports[0].shape[0]
    window_start = main_points - tail - 1  # index of the first trace point in the window
    if len(supports) < main_points or window_start < 0 or window_start + 1 < warmup_points:
        return [False] * n_models
    window = supports[window_start:main_points]
    return [all(np.array_equal(w[j], window[-1][j]) for w in window) for j in range(n_models)]


class TrainingProgress:
    """Progress of a training run: a tqdm bar on a terminal, otherwise a line on stderr every 10% of the steps and at
    least every `log_every` seconds; nothing when quiet (`progress=False`) or on other processes than the main one.

    Args:
        total (`int`): optimizer steps of the run.
        initial (`int`): steps already done (a resumed run).
        label (`str`): what is trained (shown in the bar and the lines).
        progress (`bool`, *optional*): `None`: bar on a terminal, lines otherwise; `True`: bar; `False`: quiet.
        log_every (`float`): longest seconds between two lines.
        enabled (`bool`): `False` on processes other than the main one.
    """

    def __init__(self, total: int, initial: int, label: str, progress: bool | None, log_every: float,
                 enabled: bool = True) -> None:
        import sys

        self.total, self.step, self.label, self.log_every = max(total, 1), initial, label, log_every
        on_terminal = bool(getattr(sys.stderr, "isatty", lambda: False)())
        if not enabled or progress is False:
            self.mode = "quiet"
        else:
            self.mode = "bar" if progress or on_terminal else "log"
        self.bar = (tqdm(total=total, initial=initial, desc=f"train specialist ({label})", unit="step")
                    if self.mode == "bar" else None)
        self.started = self.last_line = _now()
        self.next_mark = (initial * 10 // self.total + 1)  # the next tenth of the run that prints a line
        self.postfix: dict[str, Any] = {}

    def update(self, epoch: int, epochs: int) -> None:
        """One optimizer step done (in `epoch` of `epochs`)."""
        self.step += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.mode == "log":
            now = _now()
            if self.step * 10 >= self.next_mark * self.total or now - self.last_line >= self.log_every:
                self.next_mark = self.step * 10 // self.total + 1
                self.last_line = now
                elapsed = now - self.started
                left = elapsed / max(self.step, 1) * (self.total - self.step)
                extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
                _say(f"train specialist ({self.label}): step {self.step}/{self.total} "
                     f"({100 * self.step / self.total:.0f}%), epoch {epoch + 1}/{epochs}{extra}, "
                     f"{elapsed:.1f} s elapsed, ~{left:.1f} s left")

    def set_postfix(self, **values: Any) -> None:
        """Latest loss and support (shown on the bar, and in the next line)."""
        self.postfix = values
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def close(self) -> None:
        """End the bar."""
        if self.bar is not None:
            self.bar.close()


def _now() -> float:
    import time

    return time.perf_counter()


def _say(line: str) -> None:
    """One progress or summary line on stderr (looked up at call time, so captured output sees it)."""
    import sys

    print(f"[hf_specialist] {line}", file=sys.stderr, flush=True)


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
    in step, and the batch-norm statistics agree up to rounding (`batch_share`); the copy makes them
    bit-identical); a frozen base is left."""
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
    epochs: int | None,
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
    log_every: float = 30.0,
    max_steps: int | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train `module` (the adapter itself, a `JointLoraModel` holding it, or a `StackedAdapters`, one lambda per
    model) at a fixed lambda.

    `train_data` / `val_data` are batch sources (`batches.StateBatches` or `TextBatches`). A stack trains at its
    own `sparsities` (the `sparsity` argument is not used); `resume` refuses a checkpoint of other lambdas.
    `batch_size` is the global batch: each process trains on its share of every batch (`process_share`), so the
    optimizer steps are the same in one process and in several. The schedule is `epochs` passes, or `max_steps`
    optimizer steps when given (the last pass partial): the penalty warms up over `config.sparsity_warmup` of the
    main phase, then the support is frozen for the last `finetune_fraction`. The support is traced at the end of
    every main epoch (with `max_steps`: at 20 evenly spaced steps of the main phase) for `support_settled`.
    Returns the logged steps (one row per model and
    logged step), the held-out metrics of the final model (`"final"`; a list with one dict per model for a stack),
    whether each model's support had settled before it was frozen (`"settled"`, a list) and the number of
    optimizer steps, or
    `{"interrupted_at", "steps"}` when `stop_after_steps` cut the run.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed

    cfg = adapter.config
    set_seed(seed)
    module.zero_grad(set_to_none=True)  # nothing left over from an earlier run on shared (LoRA) parameters
    adapter.support_frozen.fill_(False)

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
    share_group = None
    if world > 1:  # the batch share's collectives on a group of their own, apart from DDP's gradient buckets
        import torch.distributed as dist

        share_group = dist.new_group()
    steps_per_epoch = max(1, math.ceil(len(train_data) / batch_size))  # batches; `global_step` counts batches
    if max_steps is not None:  # optimizer steps: main and fine-tune phases in batches, the support traced 20 times
        total_steps = max_steps * gradient_accumulation_steps
        finetune = max(1, int(round(finetune_fraction * max_steps))) if max_steps > 1 else 0
        main_steps = total_steps - finetune * gradient_accumulation_steps
        trace_every = max(1, main_steps // 20)
    elif epochs is not None:  # epochs: phases in whole epochs, the support traced at each main epoch's end
        finetune_epochs = max(1, int(round(finetune_fraction * epochs))) if epochs > 1 else 0
        total_steps, main_steps, trace_every = (epochs * steps_per_epoch, (epochs - finetune_epochs) * steps_per_epoch,
                                                steps_per_epoch)
    else:
        raise ValueError("train_one needs `epochs` or `max_steps`.")
    epochs = math.ceil(total_steps / steps_per_epoch)
    main_points = math.ceil(main_steps / trace_every)  # support trace points of the main phase (the last at the freeze)
    schedule = {"steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "main_steps": main_steps,
                "trace_every": trace_every, **({"data": fingerprint} if fingerprint else {})}
    stacked = isinstance(adapter, StackedAdapters)
    lambdas = [float(x) for x in adapter.sparsities] if stacked else [float(sparsity)]
    state: dict[str, Any] = {"global_step": 0, "epoch": 0, "history": [], "sparsity": lambdas, "support_trace": [],
                             "schedule": schedule}
    if resume and run_dir is not None:
        found = latest_checkpoint(run_dir)
        if found is not None:
            check_checkpoint_lambdas(found, lambdas)
            state = load_checkpoint(found, raw, optimizer, process_index=rank)
            saved = state.get("schedule", schedule)  # checkpoints written before the schedule was recorded
            if "data" not in saved:  # nor the data (earlier versions)
                saved = {**saved, **({"data": fingerprint} if fingerprint else {})}
            if saved != schedule:
                raise InputError(f"`resume=True` found a checkpoint in {found} written under another schedule "
                                 f"({saved}) than this call's ({schedule}): resume with the same data, batch_size, "
                                 "epochs / max_steps and validation_split, or use a new `checkpoint_dir`.")
            state["schedule"] = schedule
            state["epoch"] = state["global_step"] // steps_per_epoch
            accelerator.step = state["global_step"] % gradient_accumulation_steps  # the accumulation window
    start_step = state["global_step"]
    if stacked:  # each model's lambda, on the training device
        sparsity = raw.sparsities
    label = f"{adapter.n_models} lambdas at once" if stacked else f"lambda={sparsity:.3g}"
    bar = TrainingProgress(total_steps, start_step, label, progress, log_every,
                           enabled=accelerator.is_main_process)
    state.setdefault("support_trace", [])
    device = accelerator.device
    interrupted = False
    while state["global_step"] < total_steps and not interrupted:
        epoch = state["epoch"]
        # global batches (sizes differ by at most one), each split across the processes
        batches = epoch_batches(len(train_data), epoch, seed, batch_size)
        wrapped.train()
        for b in range(state["global_step"] - epoch * steps_per_epoch, steps_per_epoch):
            step = state["global_step"]
            if step >= total_steps:
                break
            if step >= main_steps and not bool(adapter.support_frozen):
                adapter.freeze_support()
            rows, share = process_batch_share(batches[b], rank, world, share_group)
            ramp = step / max(main_steps * cfg.sparsity_warmup, 1e-9)
            lam = sparsity * min(1.0, ramp)
            with accelerator.accumulate(wrapped), accelerator.autocast(), sharing(share):
                terms = wrapped(**train_data.batch(rows, device), sparsity=lam)
                accelerator.backward(terms["loss"].sum())  # a stack's models are independent: one sum, own grads
                optimizer.step()
                if accelerator.sync_gradients:  # what accelerate's zero_grad does, without its per-call package probe
                    optimizer.optimizer.zero_grad(set_to_none=True)
            state["global_step"] += 1
            bar.update(epoch, epochs)
            if state["global_step"] <= main_steps and (state["global_step"] % trace_every == 0
                                                        or state["global_step"] == main_steps):
                # the support along the main phase: has it settled before the freeze?
                state["support_trace"].append(np.asarray(adapter.task_support_).astype(int).tolist())
            if state["global_step"] % 25 == 0 or state["global_step"] == total_steps:
                records = _records(whole_batch_terms(terms, share), adapter, sparsity, lam, state["global_step"])
                state["history"] += records
                bar.set_postfix(loss="/".join(f"{r['loss']:.3f}" for r in records),
                                support="/".join(str(r["adapter/support_size"]) for r in records))
            if checkpoint_every and run_dir is not None and state["global_step"] % checkpoint_every == 0:
                # every process's RNG states: the adapter's draws are the same in every process (`batch_share`),
                # but a LoRA's dropout on the base draws for its own rows, and each process must resume its own
                rng_states = gather_rng_states()
                if is_main_process():
                    save_checkpoint(run_dir, raw, optimizer, state, rng_states=rng_states)
            if stop_after_steps is not None and state["global_step"] - start_step >= stop_after_steps:
                interrupted = True
                break
        if not interrupted and state["global_step"] == (epoch + 1) * steps_per_epoch:
            state["epoch"] += 1
    bar.close()
    barrier()
    if share_group is not None:
        import torch.distributed as dist

        dist.destroy_process_group(share_group)
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
    settled = support_settled(state["support_trace"], main_points, main_points * cfg.sparsity_warmup)
    if not settled:  # a single epoch, or a resumed run without a trace
        settled = [False] * (adapter.n_models if stacked else 1)
    return {"steps": state["history"], "final": final, "settled": settled,
            "n_steps": state["global_step"] - start_step}
