"""`train_specialist`: the public training entry point and the lambda path of `sparsity="auto"`.

One model per lambda: the penalty warms up, then the support is frozen and fine-tuned (`loop.train_one`). With
`sparsity="auto"` a dense model and one model per lambda of a grid are trained from the same seed (at once, as one
`StackedAdapters`, when the base is frozen and the precision is not fp16) and the sparsest whose held-out task
losses stay within max(one standard error, `sparsity_tolerance` x the best loss + 0.02) of the best model's is kept
(`select_lambda`; training each model from scratch under the penalty recovered the blocks far better than
continuing one model along an increasing path, which kept a spread-out code). The same path runs for precomputed
states and for joint training with a LoRA on the base.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._arrays import task_names_of
from .._constants import LAMBDA_PATH_DIR
from .._distributed import barrier, from_main_process, gathered, is_main_process, world_size
from .._validation import InputError, InputTypeError
from .._warnings import warn_user
from .batches import StateBatches, dataset_source, is_dataset, prepare_training_data
from .checkpoints import load_run_state, load_trainable_state, save_run_state, trainable_state
from .lora import prepare_text_training
from .loop import _say, train_one
from .model import SpecialistAdapter
from .stacked import StackedAdapters
from .training_args import DEFAULT_EPOCHS, DEFAULT_LORA_EPOCHS, SpecialistTrainingArguments

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_LORA_EPOCHS", "auto_lambda_path", "select_lambda", "select_sparsest",
           "selection_loss", "train_specialist", "training_summary", "unsettled_lambdas"]
# train the lambdas left as one `StackedAdapters` (frozen base only); `False` runs them one after another, the old
# path that `recipes/benchmarks/speed.py` times beside the new one
STACK_LAMBDAS = True


def auto_lambda_path(n_values: int = 5, low: float = 3e-3, high: float = 0.3) -> list[float]:
    """The default geometric grid of lambdas tried by `sparsity="auto"`."""
    return [float(x) for x in np.geomspace(low, high, n_values)]


def selection_loss(record: dict[str, Any], task: int, brier: bool = True) -> tuple[float, float, float]:
    """The held-out number that `select_lambda` compares for one task of one trained model, its standard error, and
    the same number for a model that knows nothing (the null).

    Regression: the standardised mean squared error (`task_i`; the null `task_i/null` is predicting the training
    mean, about 1). Classification: the Brier score over that of predicting the held-out class shares
    (`task_i/brier`, null 1) where the record has it, else the cross-entropy (null unknown: infinite). Why not the
    cross-entropy that training minimises: a held-out cross-entropy is dominated by the few confidently wrong rows,
    so models with the same accuracy and the same support differ by more than their supports explain (entities demo,
    development seeds 0 and 2-4: 0.08-0.23 among models of one support pattern); the Brier score is a proper score
    too, bounded per row, and on the same scale as the regression loss. `brier=False` reads the loss even where the
    record has a Brier score (to compare with records that lack one).
    """
    if brier and f"task_{task}/brier" in record:
        return float(record[f"task_{task}/brier"]), float(record.get(f"task_{task}/brier_se", 0.0)), 1.0
    return (float(record[f"task_{task}"]), float(record.get(f"task_{task}/se", 0.0)),
            float(record.get(f"task_{task}/null", math.inf)))


def shared_step_mask(step_masks: torch.Tensor) -> list[list[bool]] | None:
    """The `(T, n_tasks)` step mask that every sequence shares, task by task over the sequences that count for the
    task (a sequence whose label is absent, all False, does not count), as nested lists; `None` where they differ."""
    columns = []
    for i in range(step_masks.shape[-1]):
        rows = step_masks[..., i][step_masks[..., i].any(1)]
        if len(rows) == 0 or not bool((rows == rows[:1]).all()):
            return None
        columns.append(rows[0])
    return torch.stack(columns, 1).bool().tolist()


def select_sparsest(path: list[dict[str, Any]], tolerance: float, n_tasks: int) -> int:
    """Index of the sparsest trained model whose held-out task losses stay within tolerance of the dense one's.

    The first entry is the dense model (or the only model). Marks each entry with `within_tolerance`.
    """
    dense = [selection_loss(path[0], i)[0] for i in range(n_tasks)]
    allowed = [d * (1 + tolerance) + 0.02 for d in dense]
    best = 0
    for index, record in enumerate(path):
        losses = [selection_loss(record, i)[0] for i in range(n_tasks)]
        ok = all(loss <= limit for loss, limit in zip(losses, allowed)) and all(any(row) for row in record["support"])
        record["within_tolerance"] = bool(ok)
        if ok and record["adapter/support_size"] <= path[best]["adapter/support_size"]:
            best = index
    return best


def select_lambda(path: list[dict[str, Any]], n_tasks: int, rule: str = "one_se_margin",
                  tolerance: float = 0.1) -> tuple[int, dict[str, Any]]:
    """Index of the model that `sparsity="auto"` keeps, and the thresholds it used.

    `path` holds one record per trained model (the dense model first) with its held-out loss `task_i`, the standard
    error of that mean `task_i/se` per task (and for classification the Brier score `task_i/brier` with
    `task_i/brier_se`), `adapter/support_size`, `support` and `settled` (whether its support had stopped changing
    before it was frozen). Every record is marked with `within_tolerance`: whether its losses passed the rule's
    thresholds. "Loss" below is `selection_loss`: the standardised squared error for regression, the normalised
    Brier score for classification.

    Rules (`SpecialistTrainingArguments.selection`):
        `"one_se_margin"` (default): per task, the best model is the one with the lowest held-out loss. A model
        passes when every task's loss is at most `best + max(se_best, tolerance * best + 0.02)` (one standard
        error of the best loss, or the effect-size margin of `config.sparsity_tolerance` when that is larger) and
        every task keeps at least one latent. The sparsest model that passes is kept (smallest total support; on
        a tie, the larger lambda). A task that even its best model predicts no better than the null (a loss above
        `null - 2 se`: R^2 or Brier skill not above zero) has no held-out evidence about which latents it needs, so
        it does not vote (its threshold is `None`, its index in `"uninformative"`); it must still keep a latent.
        `"one_se"`: the same with one standard error alone (glmnet's `lambda.1se`, held-out rows for folds).
        `"tolerance"`: the earlier rule (`select_sparsest`): within `tolerance` (relative, plus 0.02) of the
        *dense* model's loss.
    Whether the choice can be trusted is a separate question, answered by `unsettled_lambdas`: `train_specialist`
    warns when the kept support, or a sparser one that passed, was still changing when it was frozen.

    Why this rule: each held-out loss is a mean over a finite sample of rows, so models that read the same
    relevant latents differ by split noise, which one standard error measures (how much the best loss would move
    with another held-out sample). Measuring against the *best* model, never less than that noise, keeps one
    noisy model (the dense one, in the earlier rule) from deciding alone, and widens the threshold when the
    held-out set is small. One standard error alone is too strict: a sparse model is also *truly* a little worse
    (a 2-latent block must code its task more tightly than 16 latents can), by more than the split noise once the
    held-out set is large, so `"one_se"` kept models that were too dense. The margin accepts that small true cost,
    while a model that lost a relevant latent is worse by far more (a task's null loss is 1 on standardised
    targets).

    Development evidence (seeds 0-9 only; `recipes/benchmarks/development/lambda_rule.py` applies every rule to
    the same trained paths; `lambda_processes.py` trains each seed in one process and in two):
        - 2,000 rows, 60 epochs, 2 tasks with blocks of 2: exact supports on 10/10 seeds with `"one_se_margin"`
          and `"tolerance"`, 5/10 with `"one_se"`; with one latent shared by the two blocks: 10/10, 10/10, 4/10.
        - 1,000 rows, 25 epochs (too short): no rule is exact on any seed; `"one_se_margin"` warns on all 10.
        - 1,200 rows, one process against two (torchrun; measured before `batch_share` made two processes train
          what one trains): at the default 100 epochs the same lambda and support
          pattern on 9/10 seeds with every rule, and the same exact support on 10/10 with `"one_se_margin"` (on
          seed 4 lambda 0.3 over-pruned in one process only, so 0.0949 was kept there, with the same support);
          at 40 epochs, too short on several seeds, the same choice on 7/10 (`"one_se_margin"`, `"tolerance"`)
          and 4/10 (`"one_se"`); preferring models whose support had settled (tried) gave 6/10 and was dropped.
    These settings have regression tasks only, all predicted well, so they are untouched by the later Brier score
    and the rule that a task no model predicts does not vote (both from the entities demo, `selection_loss`).
    Where `"one_se_margin"` and `"tolerance"` differ (a noisy dense model, small held-out sets) these seeds did
    not separate them; the choice of the former rests on the argument above.
    """
    if rule == "tolerance":
        best = select_sparsest(path, tolerance, n_tasks)
        return best, {"rule": "tolerance", "tolerance": tolerance}
    if rule not in ("one_se", "one_se_margin"):
        raise InputError(f"`rule` must be 'one_se_margin', 'one_se' or 'tolerance', got {rule!r}.")
    # one scale per task: where some records lack the Brier score (a resumed path begun before it), the loss for all
    brier_everywhere = [all(f"task_{i}/brier" in r for r in path) for i in range(n_tasks)]
    scored = np.array([[selection_loss(r, i, brier_everywhere[i]) for i in range(n_tasks)] for r in path], dtype=float)
    losses, errors = scored[..., 0], scored[..., 1]
    nonempty = np.array([all(any(row) for row in record["support"]) for record in path])
    pool = np.where(nonempty[:, None], losses, np.inf)
    best_rows = pool.argmin(0)
    base, noise = losses[best_rows, np.arange(n_tasks)], errors[best_rows, np.arange(n_tasks)]
    null = scored[best_rows, np.arange(n_tasks), 2]
    margin = noise if rule == "one_se" else np.maximum(noise, tolerance * base + 0.02)
    # a task that even its best model predicts no better than the null (within two standard errors) has no
    # held-out evidence about which latents it needs: its differences between models are noise, so it does not vote
    uninformative = base > null - 2.0 * noise
    thresholds = np.where(uninformative, np.inf, base + margin)
    passed = [bool(np.all(losses[k] <= thresholds + 1e-12)) and bool(nonempty[k]) for k in range(len(path))]
    for record, ok in zip(path, passed):
        record["within_tolerance"] = ok

    def sparser(k: int, than: int | None) -> bool:
        if than is None:
            return True
        a, b = path[k]["adapter/support_size"], path[than]["adapter/support_size"]
        return a < b or (a == b and path[k]["sparsity"] >= path[than]["sparsity"])

    chosen = None
    for index, ok in enumerate(passed):
        if ok and sparser(index, chosen):
            chosen = index
    if chosen is None:  # no model keeps every task: the best on average
        chosen = int(pool.mean(1).argmin())
    shown = [None if math.isinf(t) else float(t) for t in thresholds]
    return chosen, {"rule": rule, "best": [int(b) for b in best_rows], "thresholds": shown,
                    "tolerance": tolerance, "uninformative": [int(i) for i in np.flatnonzero(uninformative)]}


def unsettled_lambdas(path: list[dict[str, Any]], best: int) -> list[float]:
    """The lambdas whose supports make the choice of `path[best]` unreliable: the kept one, and any sparser one that
    passed the rule's thresholds (`within_tolerance`), whose support was still changing when it was frozen (a
    sparser model that had not settled might have been kept after longer training). Empty when the choice holds."""
    size = path[best]["adapter/support_size"]
    return [r["sparsity"] for k, r in enumerate(path)
            if (k == best or (r.get("within_tolerance") and r["adapter/support_size"] < size))
            and not r.get("settled", False)]


def _merge_arguments(args: SpecialistTrainingArguments | None, overrides: dict[str, Any], *,
                     lora: bool = False) -> SpecialistTrainingArguments:
    """`args` with keyword `overrides` on top, checked (the run's defaults are filled in later, by `resolved`, once
    the data's size is known)."""
    if args is not None and not isinstance(args, SpecialistTrainingArguments):
        raise InputTypeError(f"`args` must be a SpecialistTrainingArguments, got {type(args).__name__}.")
    names = {f.name for f in dataclasses.fields(SpecialistTrainingArguments)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise InputTypeError(f"train_specialist() got unexpected keyword arguments {unknown}; training options are the "
                             f"fields of SpecialistTrainingArguments: {sorted(names)}.")
    base = args if args is not None else SpecialistTrainingArguments()
    merged = dataclasses.replace(base, **overrides) if overrides else base
    # before any work: `finetune_fraction` against the shortest schedule a default run can get
    merged.validate(n_epochs=DEFAULT_LORA_EPOCHS if lora else DEFAULT_EPOCHS)
    return merged


def _check_same_call(inputs: Any, tasks: Any, task_mask: Any, requested: Any) -> None:
    """Under several processes, refuse (on every process, before any per-process check could raise on one alone)
    inputs of other shapes or other training arguments than process 0's; values are compared by the run's
    fingerprint once the data are prepared."""
    if world_size() < 2:
        return

    def shape(value: Any) -> Any:
        if value is None:
            return None
        found = getattr(value, "shape", None)
        return list(found) if found is not None else len(value) if hasattr(value, "__len__") else type(value).__name__

    shown = ("progress", "log_every")  # what each process prints may differ (`progress=rank == 0`)
    arguments = {k: v for k, v in requested.to_dict().items() if k not in shown}
    call = {"inputs": shape(inputs), "tasks": shape(tasks), "task_mask": shape(task_mask), **arguments}
    every = gathered(call)
    differs = sorted(k for k in call if any(other.get(k) != call[k] for other in every))
    if differs:
        raise InputError(f"the processes passed different data or arguments to `train_specialist` ({differs} differ "
                         f"across the {len(every)} processes); pass every process the same states, tasks and "
                         "arguments: each trains on its share of the batches.")


def run_fingerprint(source: Any, options: dict[str, Any], validation_split: float) -> dict[str, Any]:
    """What a finished run in a checkpoint folder was trained on: the rows (their count and the sums of the states,
    targets and mask, to 10 digits) and the schedule, so that `resume=True` never hands back runs of other data."""
    def total(tensor: Any, finite: bool = False) -> str:  # in float64 without a float64 copy; absent labels left out
        values = torch.as_tensor(tensor)
        values = values if finite or not values.is_floating_point() else values.nan_to_num(0.0)
        return f"{float(values.sum(dtype=torch.float64)):.10g}"

    data = {"rows": len(source)}
    if isinstance(source, StateBatches):
        data["states"] = total(source.h, finite=True)  # checked finite; no copy of the states
    data.update({name: total(getattr(source, name)) for name in ("tasks", "task_mask") if hasattr(source, name)})
    schedule = {k: options[k] for k in ("epochs", "max_steps", "batch_size", "lr", "mask_lr", "rotation_lr", "lora_lr",
                                        "weight_decay", "finetune_fraction", "gradient_accumulation_steps", "seed")}
    return {**data, **schedule, "validation_split": validation_split}


def finished_runs(summary_path: Path, fingerprint: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs `path.json` records as finished, refused (`InputError`) where they were trained on other data or
    another schedule than this call's (`run_fingerprint`; files of earlier versions have none and are trusted)."""
    payload = json.loads(summary_path.read_text())
    if isinstance(payload, list):
        return payload
    recorded = payload.get("fingerprint") or {}
    differs = sorted(k for k in set(recorded) | set(fingerprint) if recorded.get(k) != fingerprint.get(k))
    if differs:
        changes = ", ".join(f"{k}: {recorded.get(k)} then, {fingerprint.get(k)} now" for k in differs)
        raise InputError(f"`resume=True` found finished runs in {summary_path.parent} trained on other data or another "
                         f"schedule ({changes}); pass the same states, tasks and schedule, or use a new "
                         "`checkpoint_dir` (or `resume=False`).")
    return payload["runs"]


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
    args: SpecialistTrainingArguments | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train `adapter` on hidden states (or texts through a base model) and task outcomes, with `accelerate`.

    The same call runs in one process or several (`torchrun`, `accelerate launch`): each process trains on its
    share of every batch (DDP), every process ends with the same weights, and only the main process writes
    checkpoints.

    With a fixed `sparsity` lambda the penalty warms up over `config.sparsity_warmup` of training, then the support
    (`mask > mask_threshold`) is frozen and the model fine-tuned. With `sparsity="auto"` (the default of
    `SpecialistConfig`), a dense model (lambda = 0) and one model per lambda of `lambda_path` are trained from the
    same seed and one is kept by `select_lambda` (`args.selection`): by default the sparsest model whose
    held-out loss is, for every task, within `max(one standard error, a margin)` of the best model's (see `select_lambda` for the rule and why). Users have no ground truth to tune lambda against;
    held-out task loss is what they do have. When the kept model's support, or that of a sparser model that passed
    the rule's thresholds, was still changing when it was frozen, the whole path is trained again with twice the
    schedule (`args.settle_retries` times, default once; `history["settle_retries"]` lists the schedules that were
    too short); if the supports still move, a `UserWarning` says the run was too short for them to settle
    (`history["settled"]` is then `False`): train longer before trusting the choice. A task
    that no model predicts better than the null on held-out rows does not vote in the choice, and a `UserWarning`
    names it (`history["selection"]["uninformative"]`).

    Progress: a tqdm bar when stderr is a terminal, otherwise a line on stderr every 10% (and at least every
    `args.log_every` seconds); a one-paragraph summary at the end (`history["summary"]`); `progress=False` is quiet.

    The adapter's config changes only in recorded ways: a `config.task_readout` of `"auto"` is resolved to
    `"sequence"` or `"step"` from the shape of the data (the adapter needs one to predict), and the change is
    recorded in `history["config_changes"]` (`{"task_readout": ["auto", resolved]}`); training also records what
    the adapter was trained on, `config.n_steps` and, for the sequence readout, `config.step_tasks` (the steps
    each task is read from, which `predict` then uses by default). The arguments used
    (defaults filled in) are kept as `adapter.training_args_` and written by `save_pretrained` as
    `training_args.json`; the kept model's held-out metrics as `adapter.training_metrics_`, shown in the card.

    Args:
        adapter (`SpecialistAdapter`): the adapter; trained in place.
        states: `(rows, d_in)` or `(n_sequences, T, d_in)` hidden states (numpy or torch), or a memory-mapped
            `datasets.Dataset` with one `(T, d_in)` row of step states per sequence (the Arrow cache that
            `extract_steps_dataset(..., cache_dir=...)` returns): batches are then read from disk and the
            states are never all in memory. Leave out with `texts`.
        tasks: `(rows, C)`, `(n_sequences, C)` (broadcast over steps) or `(n_sequences, T, C)` with
            `C = sum(config.task_dims)` target columns (class labels as integers); or named columns (a
            `datasets.Dataset`, pandas `DataFrame` or dict), read by name where `config.task_names` names the tasks,
            and otherwise recorded as `config.task_names` in their order.
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
        args (`SpecialistTrainingArguments`, *optional*): the training options (epochs, batch size, learning
            rates, sparsity, lambda path, selection rule, split, seed, precision, checkpoints, progress); defaults
            when `None`.
        **overrides: any field of `SpecialistTrainingArguments` as a keyword (`epochs=10`, `seed=3`); it wins
            over `args`. Unknown names raise `TypeError`.

    Returns:
        `dict` history: `"steps"` (logged loss terms and metrics, DESIGN §5 names), `"path"` (per lambda tried:
        held-out task losses `task_i`, their standard errors `task_i/se`, `task_i/r2` or `task_i/accuracy`, support
        size, support, `settled`, and `within_tolerance`: whether the rule accepted it), `"selected_sparsity"`,
        `"selection"` (the rule and its thresholds), `"settled"`, `"final"` (held-out metrics of the kept model),
        `"summary"` (the closing paragraph), `"seconds"`, `"args"` (the arguments used, as a dict),
        `"config_changes"`, `"settle_retries"` when the path was trained again (per too-short attempt: its
        `"schedule"`, the lambdas whose supports still moved (`"unsettled"`) and its `"path"`; `"steps"` then holds
        every attempt's steps), `"lora_model"` with `lora`, or `"interrupted_at"` when `stop_after_steps` stopped it.
    """
    if not isinstance(adapter, SpecialistAdapter):
        raise InputTypeError(f"`adapter` must be a SpecialistAdapter, got {type(adapter).__name__}.")
    if isinstance(states, (list, tuple)) and states and isinstance(states[0], str):
        raise InputTypeError("`states` got texts; pass them as `texts=` (with `base_model=` and `tokenizer=`).")
    if (texts is None) == (states is None):
        raise InputError("Pass exactly one of `states` (hidden states) and `texts` (with `base_model=`).")
    if texts is None and (lora is not None or base_model is not None):
        raise InputError("`base_model=` and `lora=` need `texts=`: the states are then computed from the texts.")
    if texts is not None and base_model is None:
        raise InputError("Training from `texts` needs `base_model=` (and `tokenizer=`).")
    if tasks is None:
        raise InputError("`tasks` is required: one target row per sequence (or per row/step).")
    cfg = adapter.config
    names = task_names_of(tasks)
    if names and len(names) == cfg.n_tasks and not cfg.named_tasks:
        cfg.task_names = names  # unnamed tasks take the columns' names (the summary, the card, `predict(task=...)`)
    requested = _merge_arguments(args, overrides, lora=lora is not None)
    _check_same_call(states if texts is None else texts, tasks, task_mask, requested)
    for stale in ("training_args_", "training_metrics_", "lora_model_"):  # the record of an earlier run
        adapter.__dict__.pop(stale, None)
    run_args = requested.resolved(lora=lora is not None, config_sparsity=cfg.sparsity)  # the schedule: below
    started = time.perf_counter()
    chosen, batch_size, seed = run_args.sparsity, run_args.batch_size, run_args.seed
    mixed_precision, lambda_path = run_args.mixed_precision, run_args.lambda_path
    checkpoint_dir, resume, stop_after_steps = run_args.checkpoint_dir, run_args.resume, run_args.stop_after_steps
    validation_split = run_args.validation_split

    peft_model, joint = None, None
    if texts is not None:
        rule = steps if steps is not None else (cfg.step_rule or "token")
        joint, peft_model, source, prepared = prepare_text_training(
            adapter, texts, tasks, task_mask, base_model, tokenizer, lora, rule, pool, max_length, batch_size, seed)
        steps_per_sequence = sequence_length = source.task_mask.shape[1]
        if joint is None:  # a frozen base: train on the extracted states
            source = StateBatches(*prepared)
    elif is_dataset(states):
        source = dataset_source(adapter, states, tasks, task_mask)
        prepared, sequence_length = None, source.n_steps
    else:
        shape = getattr(states, "shape", None) or np.shape(states)
        steps_per_sequence = shape[1] if len(shape) == 3 else 1
        sequence_length = shape[1] if len(shape) == 3 else None
        prepared = prepare_training_data(adapter, states, tasks, task_mask)
        source = StateBatches(*prepared)
    if sequence_length:  # this run's T, also when an earlier run recorded another (`SpecialistModel` checks texts)
        cfg.n_steps = int(sequence_length)
    if prepared is None:
        readout = "step" if source.step_rows else "sequence"
        n_steps = 0 if source.step_rows else source.n_steps
    else:
        readout = "sequence" if prepared[0].ndim == 3 else "step"
        n_steps = source.task_mask.shape[1] if joint is not None else (source.h.shape[1] if source.h.ndim == 3 else 0)
    config_changes: dict[str, list[str]] = {}
    if cfg.task_readout != readout:  # only "auto" differs: an explicit readout that does not fit the data raised above
        config_changes["task_readout"] = [cfg.task_readout, readout]
        cfg.task_readout = readout
    # the steps each task is read from, so that `predict` reads the same ones afterwards
    cfg.step_tasks = shared_step_mask(torch.as_tensor(source.task_mask)) if readout == "sequence" else None
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

    # the schedule, now that the optimizer steps per epoch are known (`default_schedule`)
    batches = max(1, math.ceil(len(train_data) / batch_size))
    run_args = requested.resolved(lora=lora is not None, config_sparsity=cfg.sparsity,
                                  steps_per_epoch=math.ceil(batches / run_args.gradient_accumulation_steps))
    epochs, max_steps = run_args.epochs, run_args.max_steps
    options = dict(epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=run_args.lr, mask_lr=run_args.mask_lr,
                   rotation_lr=run_args.rotation_lr, lora_lr=run_args.lora_lr, weight_decay=run_args.weight_decay,
                   finetune_fraction=run_args.finetune_fraction, seed=seed, mixed_precision=mixed_precision,
                   gradient_accumulation_steps=run_args.gradient_accumulation_steps,
                   checkpoint_every=run_args.checkpoint_every, resume=resume, progress=run_args.progress,
                   log_every=run_args.log_every, cpu=run_args.cpu)
    lambdas = [float(chosen)] if chosen != "auto" else [0.0] + [float(x) for x in (lambda_path or auto_lambda_path())]
    root = Path(checkpoint_dir) if checkpoint_dir is not None else None
    summary_path = root / "path.json" if root is not None else None
    path: list[dict[str, Any]] = []
    checked = root is not None or world_size() > 1  # a fingerprint costs a pass over the states
    fingerprint = run_fingerprint(source, options, validation_split) if checked else {}
    options["fingerprint"] = fingerprint  # a checkpoint of an interrupted run resumes only on the same data
    every = gathered(fingerprint)
    if any(other != fingerprint for other in every):  # each process must hold all the rows: each reads its share
        differs = sorted(k for k in fingerprint if any(other.get(k) != fingerprint[k] for other in every))
        raise InputError(f"the processes passed different data or arguments to `train_specialist` ({differs} differ "
                         f"across the {len(every)} processes); pass every process the same states, tasks and "
                         "arguments: each trains on its share of the batches.")
    if resume and summary_path is not None and summary_path.exists():
        path = finished_runs(summary_path, fingerprint)
    lora_start = trainable_state(joint) if joint is not None else None
    history_steps: list[dict[str, Any]] = []
    steps_left = stop_after_steps
    run_states: dict[int, dict[str, torch.Tensor]] = {}
    for k, lam in enumerate(lambdas[: len(path)]):  # finished before an interruption
        if not np.isclose(path[k]["sparsity"], lam):
            raise InputError(f"`resume=True` found a finished run at lambda {path[k]['sparsity']} in "
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
        for k, run, final, settled in zip(ks, trained, finals, result["settled"]):
            adapter_of_run = run if len(ks) > 1 else model
            path.append({"sparsity": lambdas[k], **final, "support": adapter_of_run.task_support_.astype(int).tolist(),
                         "settled": bool(settled)})
            run_states[k] = trainable_state(run)
            if root is not None and is_main_process():  # so that a resumed call can hand back any finished run
                save_run_state(root / f"run-{k:02d}", run)
        if summary_path is not None and is_main_process():
            summary_path.parent.mkdir(parents=True, exist_ok=True)
            partial = summary_path.with_name(summary_path.name + ".tmp")
            partial.write_text(json.dumps({"fingerprint": fingerprint, "runs": path}))
            os.replace(partial, summary_path)
            if len(ks) > 1:  # its runs are in run-XX/final now; a later call may stack other lambdas here
                shutil.rmtree(run_dir, ignore_errors=True)
        barrier()
    best, selection = from_main_process(select_lambda(path, cfg.n_tasks, run_args.selection, cfg.sparsity_tolerance))
    state = run_states.get(best)  # this call's run, or one a resumed call finished earlier (on disk)
    if state is None:
        state = load_run_state(root / f"run-{best:02d}")
    target = adapter if joint is None else type(joint)(joint.peft_model, adapter, joint.hook_point, joint.pool)
    load_trainable_state(target, state)
    adapter.eval()
    if peft_model is not None and lora is not None:
        peft_model.eval()
    kept = path[best]["sparsity"]
    moving = from_main_process(unsettled_lambdas(path, best))
    settled = not moving
    budget = f"max_steps={max_steps}" if max_steps is not None else f"epochs={epochs}"
    if (moving and len(lambdas) > 1 and run_args.settle_retries > 0 and joint is None
            and (steps_left is None or steps_left >= 1)):
        # too short for the supports to settle: the whole path again, twice as long (each lambda from the same
        # seed, so this is the run the user would get by asking for the longer schedule)
        longer = dataclasses.replace(
            requested, settle_retries=run_args.settle_retries - 1,
            epochs=None if epochs is None else 2 * epochs, max_steps=None if max_steps is None else 2 * max_steps,
            checkpoint_dir=None if root is None else str(root / "settle-retry"),
            stop_after_steps=steps_left)
        if run_args.progress is not False and is_main_process():
            _say(f"train_specialist: the supports at lambda {', '.join(f'{x:.3g}' for x in moving)} were still "
                 f"changing when they were frozen ({budget}); training the lambda path again with twice the "
                 f"schedule (settle_retries={run_args.settle_retries}).")
        out = train_specialist(adapter, states, tasks, task_mask, texts=texts, base_model=base_model,
                               tokenizer=tokenizer, steps=steps, pool=pool, max_length=max_length, args=longer)
        attempt = {"schedule": budget, "unsettled": moving, "path": path}
        out["settle_retries"] = [attempt] + out.get("settle_retries", [])
        out["steps"] = history_steps + out["steps"]
        if "interrupted_at" in out:  # stopped inside the retry: a resumed call finds both paths on disk
            return out
        out["seconds"] = time.perf_counter() - started
        out["config_changes"] = {**config_changes, **out["config_changes"]}
        out["summary"] += (f" The path was trained {2 ** len(out['settle_retries'])}x the first schedule ({budget}) "
                           f"because the supports had not settled; {out['seconds']:.1f} s in all.")
        return out
    if moving and len(lambdas) > 1 and is_main_process():  # a choice is claimed: say when it cannot be trusted
        warn_user(
            f"train_specialist: kept lambda {kept:.3g}, but the supports at lambda "
            f"{', '.join(f'{x:.3g}' for x in moving)} were still changing when they were frozen ({budget}): "
            "the run was too short for the supports to settle, so this lambda and support are not a reliable "
            "choice. Train with more epochs (or max_steps).")
    if kept == 0.0 and len(lambdas) > 1 and is_main_process():  # the dense reference won: nothing was pruned
        warn_user(
            "train_specialist: every lambda of the path lost more held-out accuracy than the dense model's "
            "tolerance allows, so the dense model (lambda 0) was kept: no latent was pruned and the blocks are not "
            "specialists. See history['path'] for each lambda's held-out losses; a longer schedule, more "
            "sequences or smaller lambdas (`lambda_path`) may let a sparse model pass.")
    unpredicted = [cfg.task_names[i] for i in selection.get("uninformative", [])]
    if unpredicted and len(lambdas) > 1 and is_main_process():
        warn_user(
            f"train_specialist: no trained model predicts {', '.join(unpredicted)} better than the null on held-out "
            "rows (R^2 or Brier skill not above zero by two standard errors), so these tasks did not vote in the "
            "lambda choice and their latents are not backed by held-out evidence. Check the task's steps and the "
            "hook point (a layer whose states carry the task), or give more sequences.")
    final = {k2: v for k2, v in path[best].items() if k2 not in ("support", "sparsity", "within_tolerance", "settled")}
    seconds = time.perf_counter() - started
    summary = training_summary(adapter, path, best, selection, settled, seconds, multiple=len(lambdas) > 1)
    out = {"steps": history_steps, "path": path, "selected_sparsity": kept, "selection": selection,
           "settled": settled, "final": final, "summary": summary, "seconds": seconds, "args": run_args.to_dict(),
           "config_changes": config_changes}
    adapter.training_args_ = run_args
    adapter.training_metrics_ = {**final, "adapter/sparsity": kept}
    if run_args.progress is not False and is_main_process():
        _say(summary)
    if lora is not None:
        out["lora_model"] = peft_model
        adapter.__dict__["lora_model_"] = peft_model  # not a submodule: `save_pretrained` writes it to `lora/`
    cfg.trained_with_lora = lora is not None
    return out


def training_summary(adapter: SpecialistAdapter, path: list[dict[str, Any]], best: int, selection: dict[str, Any],
                     settled: bool, seconds: float, multiple: bool = True) -> str:
    """The closing paragraph of a run: the kept lambda and why, the support per task, held-out loss and R^2 or
    accuracy per task, and the time."""
    cfg = adapter.config
    record = path[best]
    support = np.asarray(record["support"], dtype=bool)
    if multiple:
        rule = {"one_se": "the sparsest model within one standard error of the best held-out loss per task",
                "one_se_margin": "the sparsest model within max(one standard error, "
                                 f"{selection.get('tolerance', 0.1):g} x the best + 0.02) of the best held-out loss per task "
                                 "(the Brier score for classification)",
                }.get(selection.get("rule"), "the sparsest model within tolerance of the dense one")
        tried = ", ".join(f"{r['sparsity']:.3g}" for r in path)
        head = (f"Trained {len(path)} models (lambda {tried}) and kept "
                f"lambda {record['sparsity']:.3g}, {rule}.")
    else:
        head = f"Trained one model at lambda {record['sparsity']:.3g}."
    parts = []
    for i, name in enumerate(cfg.task_names):
        score = (f"R^2 {record[f'task_{i}/r2']:.3f}" if f"task_{i}/r2" in record
                 else f"accuracy {record[f'task_{i}/accuracy']:.3f}" if f"task_{i}/accuracy" in record else "")
        if f"task_{i}/brier" in record:  # what the rule compared for a classification task
            score += (f", Brier score {record[f'task_{i}/brier']:.4f} (± {record[f'task_{i}/brier_se']:.4f}, "
                      "1 = the class shares)")
        latents = ", ".join(str(j) for j in np.flatnonzero(support[i])) or "none"
        parts.append(f"{name}: {int(support[i].sum())} of {cfg.d_latent} latents [{latents}], held-out loss "
                     f"{record[f'task_{i}']:.4f} (± {record.get(f'task_{i}/se', 0.0):.4f})"
                     + (f", {score}" if score else ""))
    tail = "" if settled or not multiple else (
        " Supports were still changing when they were frozen: train longer before trusting this choice.")
    if multiple and record["sparsity"] == 0.0:
        tail += " No lambda stayed within the tolerance: the dense model was kept and nothing was pruned."
    unpredicted = [cfg.task_names[i] for i in selection.get("uninformative", [])]
    if unpredicted and multiple:
        tail += f" Not predicted better than the null, so not voting in the choice: {', '.join(unpredicted)}."
    return (f"{head} Support and held-out metrics per task: " + "; ".join(parts)
            + f". Reconstruction explains {record['adapter/explained_variance']:.3f} of the input variance. "
            + f"Time {seconds:.1f} s." + tail)


def _fresh_copy(adapter: SpecialistAdapter, seed: int) -> SpecialistAdapter:
    torch.manual_seed(seed)
    return type(adapter)(copy.deepcopy(adapter.config)).to(adapter.input_mean.device)
