"""`train_specialist`: the public training entry point and the lambda path of `sparsity="auto"`.

One model per lambda: the penalty warms up, then the support is frozen and fine-tuned (`loop.train_one`). With
`sparsity="auto"` a dense model and one model per lambda of a grid are trained from the same seed (at once, as one
`StackedAdapters`, when the base is frozen and the precision is not fp16) and the sparsest
whose held-out task losses stay within tolerance of the dense model's is kept (training each model from scratch
under the penalty recovered the blocks far better than continuing one model along an increasing path, which kept a
spread-out code). The same path runs for precomputed states and for joint training with a LoRA on the base.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._constants import LAMBDA_PATH_DIR
from .._distributed import barrier, is_main_process
from .batches import StateBatches, dataset_source, is_dataset, prepare_training_data
from .checkpoints import load_run_state, load_trainable_state, save_run_state, trainable_state
from .lora import prepare_text_training
from .loop import train_one
from .model import SpecialistAdapter
from .stacked import StackedAdapters

DEFAULT_EPOCHS, DEFAULT_LORA_EPOCHS = 100, 10
# train the lambdas left as one `StackedAdapters` (frozen base only); `False` runs them one after another, the old
# path that `recipes/benchmarks/speed.py` times beside the new one
STACK_LAMBDAS = True


def auto_lambda_path(n_values: int = 5, low: float = 3e-3, high: float = 0.3) -> list[float]:
    """The default geometric grid of lambdas tried by `sparsity="auto"`."""
    return [float(x) for x in np.geomspace(low, high, n_values)]


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


def _check_options(chosen: Any, epochs: int, batch_size: int, gradient_accumulation_steps: int,
                   validation_split: float, mixed_precision: str, checkpoint_every: int | None,
                   checkpoint_dir: Any, finetune_fraction: float) -> None:
    if not (chosen == "auto" or (isinstance(chosen, (int, float)) and not isinstance(chosen, bool) and chosen >= 0)):
        raise ValueError(f"`sparsity` must be a non-negative float or 'auto', got {chosen!r}.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size),
                        ("gradient_accumulation_steps", gradient_accumulation_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1, got {value!r}.")
    if not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be in (0, 1), got {validation_split!r}.")
    if mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"`mixed_precision` must be 'no', 'fp16' or 'bf16', got {mixed_precision!r}.")
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError("`checkpoint_every` needs `checkpoint_dir`.")
    if not 0 <= finetune_fraction < 1 or (epochs > 1 and epochs - max(1, round(finetune_fraction * epochs)) < 1):
        raise ValueError(f"`finetune_fraction` must be in [0, 1) and leave at least one epoch before the support is "
                         f"frozen; got {finetune_fraction!r} with epochs={epochs}.")


def train_specialist(
    adapter: SpecialistAdapter,
    states: Any = None,
    tasks: Any = None,
    task_mask: Any = None,
    *,
    texts: list[str] | None = None,
    base_model: torch.nn.Module | None = None,
    tokenizer: Any = None,
    lora: Any = None,
    steps: Any = None,
    pool: str = "mean",
    max_length: int | None = None,
    epochs: int | None = None,
    batch_size: int = 256,
    lr: float = 1e-3,
    mask_lr: float = 3e-2,
    rotation_lr: float = 1e-2,
    lora_lr: float = 1e-4,
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
) -> dict[str, Any]:
    """Train `adapter` on hidden states (or texts through a base model) and task outcomes, with `accelerate`.

    The same call runs in one process or several (`torchrun`, `accelerate launch`): each process trains on its
    share of every batch (DDP), every process ends with the same weights, and only the main process writes
    checkpoints.

    With a fixed `sparsity` lambda the penalty warms up over `config.sparsity_warmup` of training, then the support
    (`mask > mask_threshold`) is frozen and the model fine-tuned. With `sparsity="auto"` (the default of
    `SpecialistConfig`), a dense model (lambda = 0) and one model per lambda of `lambda_path` are trained from the
    same seed, and the sparsest whose held-out task losses all stay within `config.sparsity_tolerance` (relative,
    plus 0.02 absolute on standardised losses) of the dense model's is kept. Users have no ground truth to tune
    lambda against; held-out task loss is what they do have.

    Args:
        adapter (`SpecialistAdapter`): the adapter; trained in place.
        states: `(rows, d_in)` or `(n_sequences, T, d_in)` hidden states (numpy or torch), or a memory-mapped
            `datasets.Dataset` with one `(T, d_in)` row of step states per sequence (the Arrow cache that
            `extract_steps(..., cache_dir=..., as_dataset=True)` returns): batches are then read from disk and the
            states are never all in memory. Leave out with `texts`.
        tasks: `(rows, C)`, `(n_sequences, C)` (broadcast over steps) or `(n_sequences, T, C)` with
            `C = sum(config.task_dims)` target columns (class labels as integers).
        task_mask: which rows count for which task (`(rows, n_tasks)`, `(n_sequences, T, n_tasks)` or
            `(T, n_tasks)`, e.g. `TaskStructure.step_tasks_`); all rows when `None`.
        texts (`list[str]`, *optional*): train from texts instead of states: their step states are read from
            `base_model` at `config.hook_point` with the step rule `steps`, pooling `pool` and `max_length`, which
            are recorded in the config (so `SpecialistModel` reproduces them). Needs `base_model` and `tokenizer`.
        base_model (`nn.Module`, *optional*): the `transformers` model that `texts` go through.
        tokenizer (*optional*): its tokenizer.
        lora (`peft.LoraConfig`, *optional*): train a LoRA on the base jointly with the adapter (gradients reach it
            through the hook point); the PEFT model is returned under `"lora_model"` and saved by
            `adapter.save_pretrained(dir, lora_model=...)` in `lora/`.
        steps (*optional*): the step rule for `texts` (`"token"`, a separator, or per-text spans); defaults to
            `config.step_rule`, else `"token"`.
        pool (`str`, *optional*, defaults to `"mean"`), max_length (`int`, *optional*): as in `extract_steps`.
        epochs (`int`, *optional*): passes over the training rows per trained model; defaults to 100, or 10 with
            `lora` (each step then runs the base model).
        batch_size (`int`, *optional*, defaults to 256): steps per optimizer step (per process); with the sequence
            readout a batch holds `batch_size // T` sequences (at least one).
        lr (`float`, *optional*, defaults to 1e-3): learning rate; `mask_lr` for the mask logits, `rotation_lr` for
            the latent rotation, `lora_lr` for the LoRA weights.
        sparsity (`float` or `"auto"`, *optional*): overrides `adapter.config.sparsity`; `0` trains the generalist
            ablation of Proposition 2.
        lambda_path (`list[float]`, *optional*): the lambdas tried by `"auto"` (default `auto_lambda_path()`).
        validation_split (`float`, *optional*, defaults to 0.2): held-out share for `"auto"` and metrics.
        finetune_fraction (`float`, *optional*, defaults to 0.15): share of epochs with the support frozen.
        seed (`int`, *optional*, defaults to 0): seeds initialisation, data order and noise.
        mixed_precision (`str`, *optional*, defaults to `"no"`): `"no"`, `"fp16"` or `"bf16"` (accelerate); with
            `"fp16"` the lambdas of `"auto"` train one after another (one loss scale would tie them together).
        gradient_accumulation_steps (`int`, *optional*, defaults to 1): accumulate gradients over batches.
        checkpoint_dir (`str`, *optional*): where checkpoints go; `checkpoint_every` sets the step interval.
        resume (`bool`, *optional*, defaults to `False`): continue from the newest checkpoint in `checkpoint_dir`.
        stop_after_steps (`int`, *optional*): stop after this many optimizer steps (to simulate an interruption).
        progress (`bool`, *optional*): show a progress bar (default: when stderr is a terminal).
        cpu (`bool`, *optional*): force CPU even when a GPU is present.

    Returns:
        `dict` history: `"steps"` (logged loss terms and metrics, DESIGN §5 names), `"path"` (per lambda tried:
        held-out task losses, support size, whether within tolerance), `"selected_sparsity"`, `"final"`
        (held-out metrics of the kept model), `"lora_model"` with `lora`, or `"interrupted_at"` when
        `stop_after_steps` stopped it.
    """
    if not isinstance(adapter, SpecialistAdapter):
        raise TypeError(f"`adapter` must be a SpecialistAdapter, got {type(adapter).__name__}.")
    if isinstance(states, (list, tuple)) and states and isinstance(states[0], str):
        raise TypeError("`states` got texts; pass them as `texts=` (with `base_model=` and `tokenizer=`).")
    if (texts is None) == (states is None):
        raise ValueError("Pass exactly one of `states` (hidden states) and `texts` (with `base_model=`).")
    if texts is None and (lora is not None or base_model is not None):
        raise ValueError("`base_model=` and `lora=` need `texts=`: the states are then computed from the texts.")
    if texts is not None and base_model is None:
        raise ValueError("Training from `texts` needs `base_model=` (and `tokenizer=`).")
    if tasks is None:
        raise ValueError("`tasks` is required: one target row per sequence (or per row/step).")
    cfg = adapter.config
    chosen = cfg.sparsity if sparsity is None else sparsity
    epochs = epochs if epochs is not None else (DEFAULT_LORA_EPOCHS if lora is not None else DEFAULT_EPOCHS)
    _check_options(chosen, epochs, batch_size, gradient_accumulation_steps, validation_split, mixed_precision,
                   checkpoint_every, checkpoint_dir, finetune_fraction)

    peft_model, joint = None, None
    if texts is not None:
        rule = steps if steps is not None else (cfg.step_rule or "token")
        joint, peft_model, source, prepared = prepare_text_training(
            adapter, texts, tasks, task_mask, base_model, tokenizer, lora, rule, pool, max_length, batch_size, seed)
        steps_per_sequence = source.task_mask.shape[1]
        if joint is None:  # a frozen base: train on the extracted states
            source = StateBatches(*prepared)
    elif is_dataset(states):
        source = dataset_source(adapter, states, tasks, task_mask)
        prepared = None
    else:
        shape = getattr(states, "shape", None) or np.shape(states)
        steps_per_sequence = shape[1] if len(shape) == 3 else 1
        prepared = prepare_training_data(adapter, states, tasks, task_mask)
        source = StateBatches(*prepared)
    if prepared is None:
        cfg.task_readout = "step" if source.step_rows else "sequence"
        n_steps = 0 if source.step_rows else source.n_steps
    else:
        cfg.task_readout = "sequence" if prepared[0].ndim == 3 else "step"
        n_steps = source.task_mask.shape[1] if joint is not None else (source.h.shape[1] if source.h.ndim == 3 else 0)
    if n_steps:  # batches of sequences holding about `batch_size` steps
        batch_size = max(1, batch_size // n_steps)

    # the held-out split is by sequence: steps of one sequence (which share its outcome) never sit on both sides
    if prepared is None:
        group = source.n_steps if source.step_rows else 1
    else:
        group = steps_per_sequence if (joint is None and prepared[0].ndim == 2) else 1
    n_groups = len(source) // group
    sequences = np.random.default_rng(seed).permutation(n_groups)
    order = torch.as_tensor((sequences[:, None] * group + np.arange(group)).reshape(-1))
    n_val = max(1, int(round(validation_split * n_groups))) * group
    train_data, val_data = source.subset(order[n_val:]), source.subset(order[:n_val])
    rows = order[n_val:]
    if prepared is None:  # a memory-mapped dataset: input moments in one streaming pass over the training rows
        global_rows = train_data.index
        normaliser = dict(states=None, tasks=source.tasks[global_rows], task_mask=source.task_mask[global_rows],
                          moments=train_data.input_moments())
    else:
        if joint is not None and prepared[0].ndim == 2:  # sequences index the source, steps the prepared rows
            rows = (rows[:, None] * n_steps + torch.arange(n_steps)).reshape(-1)
        normaliser = dict(zip(("states", "tasks", "task_mask"), (x[rows] for x in prepared)))

    options = dict(epochs=epochs, batch_size=batch_size, lr=lr, mask_lr=mask_lr, rotation_lr=rotation_lr,
                   lora_lr=lora_lr, weight_decay=weight_decay, finetune_fraction=finetune_fraction, seed=seed,
                   mixed_precision=mixed_precision, gradient_accumulation_steps=gradient_accumulation_steps,
                   checkpoint_every=checkpoint_every, resume=resume, progress=progress, cpu=cpu)
    lambdas = [float(chosen)] if chosen != "auto" else [0.0] + [float(x) for x in (lambda_path or auto_lambda_path())]
    root = Path(checkpoint_dir) if checkpoint_dir is not None else None
    summary_path = root / "path.json" if root is not None else None
    path: list[dict[str, Any]] = []
    if resume and summary_path is not None and summary_path.exists():
        path = json.loads(summary_path.read_text())
    lora_start = trainable_state(joint) if joint is not None else None
    history_steps: list[dict[str, Any]] = []
    steps_left = stop_after_steps
    run_states: dict[int, dict[str, torch.Tensor]] = {}
    for k, lam in enumerate(lambdas[: len(path)]):  # finished before an interruption
        if not np.isclose(path[k]["sparsity"], lam):
            raise ValueError(f"`resume=True` found a finished run at lambda {path[k]['sparsity']} in "
                             f"{summary_path}, but this call's lambda {k} is {lam}: resume with the same "
                             "`sparsity` / `lambda_path`, or use a new `checkpoint_dir`.")
    todo = list(range(len(path), len(lambdas)))
    # the lambdas left, as one stacked model (`StackedAdapters`) when the base is frozen; with a LoRA on the base
    # each lambda needs its own LoRA, and fp16 loss scaling would tie the models' steps, so they run one by one
    stack = STACK_LAMBDAS and joint is None and mixed_precision != "fp16" and len(todo) > 1
    batches = [todo] if stack else [[k] for k in todo]
    for ks in batches:
        run_dir = None if root is None else root / (f"run-{ks[0]:02d}" if len(ks) == 1 else LAMBDA_PATH_DIR)
        model = adapter if len(lambdas) == 1 else _fresh_copy(adapter, seed)
        module = model
        if joint is not None:
            load_trainable_state(joint, lora_start)  # every lambda starts from the same LoRA
            module = type(joint)(joint.peft_model, model, joint.hook_point, joint.pool)
        model.fit_normalizer(**normaliser)
        if len(ks) > 1:
            module = StackedAdapters(model, [lambdas[k] for k in ks])
            result = train_one(module, module, train_data, val_data, module.sparsities, run_dir,
                               stop_after_steps=steps_left, **options)
        else:
            result = train_one(module, model, train_data, val_data, lambdas[ks[0]], run_dir,
                               stop_after_steps=steps_left, **options)
        history_steps += result["steps"]
        if "interrupted_at" in result:
            return {"interrupted_at": result["interrupted_at"], "steps": history_steps, "path": path}
        if steps_left is not None:
            steps_left -= result["n_steps"]
        trained = module.unstack() if len(ks) > 1 else [module]
        finals = result["final"] if len(ks) > 1 else [result["final"]]
        for k, run, final in zip(ks, trained, finals):
            adapter_of_run = run if len(ks) > 1 else model
            path.append({"sparsity": lambdas[k], **final, "support": adapter_of_run.task_support_.astype(int).tolist()})
            run_states[k] = trainable_state(run)
            if root is not None and is_main_process():  # so that a resumed call can hand back any finished run
                save_run_state(root / f"run-{k:02d}", run)
        if summary_path is not None and is_main_process():
            summary_path.parent.mkdir(parents=True, exist_ok=True)
            partial = summary_path.with_name(summary_path.name + ".tmp")
            partial.write_text(json.dumps(path))
            os.replace(partial, summary_path)
            if len(ks) > 1:  # its runs are in run-XX/final now; a later call may stack other lambdas here
                shutil.rmtree(run_dir, ignore_errors=True)
        barrier()
    best = _agree(select_sparsest(path, cfg.sparsity_tolerance, cfg.n_tasks))
    state = run_states.get(best)  # this call's run, or one a resumed call finished earlier (on disk)
    if state is None:
        state = load_run_state(root / f"run-{best:02d}")
    target = adapter if joint is None else type(joint)(joint.peft_model, adapter, joint.hook_point, joint.pool)
    load_trainable_state(target, state)
    adapter.eval()
    if peft_model is not None and lora is not None:
        peft_model.eval()
    out = {"steps": history_steps, "path": path, "selected_sparsity": path[best]["sparsity"],
           "final": {k2: v for k2, v in path[best].items() if k2 not in ("support", "sparsity", "within_tolerance")}}
    if lora is not None:
        out["lora_model"] = peft_model
    return out


def _agree(value: int) -> int:
    """The main process's value on every process (selection must not differ by a rounding)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return int(box[0])
    return value


def _fresh_copy(adapter: SpecialistAdapter, seed: int) -> SpecialistAdapter:
    torch.manual_seed(seed)
    return type(adapter)(copy.deepcopy(adapter.config)).to(adapter.input_mean.device)
