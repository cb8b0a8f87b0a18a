"""`SpecialistTrainingArguments`: every training option of `train_specialist` in one validated dataclass.

Modelled on `transformers.TrainingArguments`: each field has a default and a `metadata={"help": ...}`, the checks
run in `__post_init__` (so also after `dataclasses.replace`), and the object is written as `training_args.json`
beside a trained artifact so that a run can be reproduced. The CLI's `train` flags and the recipe keys of its
`train:` section are generated from these fields (`hf_specialist.cli`).

What the arguments do *not* hold: the data and the models (`states`, `tasks`, `task_mask`, `texts`, `base_model`,
`tokenizer`, a `peft.LoraConfig`, per-text step spans). Those stay keyword arguments of `train_specialist`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._validation import InputError, InputTypeError

MIXED_PRECISIONS = ("no", "fp16", "bf16")
SELECTION_RULES = ("one_se_margin", "one_se", "tolerance")
DEFAULT_EPOCHS, DEFAULT_LORA_EPOCHS = 100, 10
# optimizer steps of a default run (`epochs` and `max_steps` both None) on data large enough that 100 epochs would take
# more; chosen on development seeds (`recipes/benchmarks/development/epoch_budget.py`, see `default_schedule`)
DEFAULT_MAX_STEPS = 800


def default_schedule(steps_per_epoch: int, *, lora: bool = False) -> tuple[int | None, int | None]:
    """`(epochs, max_steps)` of a run whose arguments leave both `None`, from its optimizer steps per epoch.

    With a LoRA on the base: `DEFAULT_LORA_EPOCHS` epochs. Otherwise `DEFAULT_MAX_STEPS` optimizer steps, but never
    more than `DEFAULT_EPOCHS` passes (small data keeps the old default of 100 epochs) nor less than one pass (every
    row is seen once). Convergence goes with the number of optimizer steps, not passes: at 10,000 rows 100 epochs
    were 3,100 steps where 400 already gave exact supports on every development seed, and at 100,000 rows they
    would be 31,000.
    """
    if lora:
        return DEFAULT_LORA_EPOCHS, None
    if DEFAULT_EPOCHS * steps_per_epoch <= DEFAULT_MAX_STEPS:
        return DEFAULT_EPOCHS, None
    return None, max(DEFAULT_MAX_STEPS, steps_per_epoch)


def _help(text: str, cli_type: Any = None) -> dict[str, Any]:
    """Field metadata: the help line (CLI and docs) and, where it is not the plain type, how a flag is parsed."""
    return {"help": text, "cli_type": cli_type}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class SpecialistTrainingArguments:
    """The options of one `train_specialist` run.

    Args:
        epochs (`int`, *optional*): passes over the training rows per trained model. `None` (with `max_steps`
            `None`): 800 optimizer steps, at most 100 and at least one pass (`default_schedule`); 10 epochs when a
            LoRA on the base is trained jointly (each step then runs the base model).
        max_steps (`int`, *optional*): optimizer steps (updates: each `gradient_accumulation_steps` batches) per
            trained model; when set it wins over `epochs` (the last pass may be partial), as in
            `transformers.TrainingArguments`.
        batch_size (`int`, *optional*, defaults to 256): rows (steps) per optimizer step, **in total over all
            processes**: under `torchrun` each of P processes takes its `1/P` share of every batch, so one and two
            processes take the same optimizer steps over the same rows. With the sequence readout a batch holds
            `batch_size // T` sequences (at least one).
        lr (`float`, *optional*, defaults to 1e-3): learning rate of the encoder, decoder and heads.
        mask_lr (`float`, *optional*, defaults to 3e-2): learning rate of the task x latent mask logits.
        rotation_lr (`float`, *optional*, defaults to 1e-2): learning rate of the latent rotation.
        lora_lr (`float`, *optional*, defaults to 1e-4): learning rate of a LoRA on the base.
        weight_decay (`float`, *optional*, defaults to 0.0): Adam weight decay (not on the mask or the rotation).
        sparsity (`float` or `"auto"`, *optional*): lambda of the l1 penalty on the mask; `None` uses
            `adapter.config.sparsity`; `"auto"` trains the lambda path and keeps one (see `selection`); `0` trains
            the generalist ablation of Proposition 2.
        lambda_path (`list[float]`, *optional*): the lambdas tried by `"auto"` (default `auto_lambda_path()`).
        selection (`str`, *optional*, defaults to `"one_se_margin"`): how `"auto"` picks a lambda (rules and
            evidence in `select_lambda`). `"one_se_margin"`: the sparsest model whose held-out loss is, for every
            task, within `max(one standard error, config.sparsity_tolerance x the best loss + 0.02)` of the best
            model's; `"one_se"`: within one standard error alone (glmnet's `lambda.1se`); `"tolerance"`: the earlier rule,
            within `config.sparsity_tolerance` (relative, plus 0.02) of the dense model's loss.
        settle_retries (`int`, *optional*, defaults to 1): with `"auto"`, when the kept support (or a sparser one
            that passed the rule) was still changing when it was frozen, train the whole lambda path again with
            twice the schedule, up to this many times, before warning that the choice is not reliable; `0` only
            warns. Not with a LoRA on the base.
        validation_split (`float`, *optional*, defaults to 0.2): share of sequences held out (for `"auto"` and the
            reported metrics); the split depends on `seed` only, never on the process count.
        finetune_fraction (`float`, *optional*, defaults to 0.15): share of the schedule (epochs, or steps with
            `max_steps`) trained with the support frozen.
        seed (`int`, *optional*, defaults to 0): seeds the initialisation, the split, the batch order and the noise.
        mixed_precision (`str`, *optional*, defaults to `"no"`): `"no"`, `"fp16"` or `"bf16"` (accelerate).
        gradient_accumulation_steps (`int`, *optional*, defaults to 1): batches per optimizer step.
        checkpoint_dir (`str`, *optional*): where checkpoints and finished lambda runs go.
        checkpoint_every (`int`, *optional*): optimizer steps between checkpoints (needs `checkpoint_dir`).
        resume (`bool`, *optional*, defaults to `False`): continue from the newest checkpoint in `checkpoint_dir`.
        stop_after_steps (`int`, *optional*): stop after this many optimizer steps (simulates an interruption).
        progress (`bool`, *optional*): `None` (default): a tqdm bar when stderr is a terminal, otherwise a log line
            on stderr every 10% of training (and at least every `log_every` seconds), and a summary at the end;
            `True`: always the bar; `False`: quiet (nothing printed).
        log_every (`float`, *optional*, defaults to 30.0): longest time in seconds between two progress lines off
            a terminal.
        cpu (`bool`, *optional*): train on CPU even when a GPU is present.
    """

    epochs: int | None = field(default=None, metadata=_help(
        "passes over the training rows per trained model (default: 800 steps, 1 to 100 passes; 10 with a LoRA)",
        int))
    max_steps: int | None = field(default=None, metadata=_help(
        "optimizer steps per trained model; wins over epochs", int))
    batch_size: int = field(default=256, metadata=_help("rows per optimizer step, in total over all processes", int))
    lr: float = field(default=1e-3, metadata=_help("learning rate of encoder, decoder and heads", float))
    mask_lr: float = field(default=3e-2, metadata=_help("learning rate of the task x latent mask", float))
    rotation_lr: float = field(default=1e-2, metadata=_help("learning rate of the latent rotation", float))
    lora_lr: float = field(default=1e-4, metadata=_help("learning rate of a LoRA on the base", float))
    weight_decay: float = field(default=0.0, metadata=_help("Adam weight decay", float))
    sparsity: float | str | None = field(default=None, metadata=_help(
        "'auto' (a lambda path, one kept) or a lambda; default: the adapter config's", "sparsity"))
    lambda_path: list[float] | None = field(default=None, metadata=_help(
        "comma-separated lambdas tried by sparsity='auto'", "float_list"))
    selection: str = field(default="one_se_margin", metadata=_help(
        "how sparsity='auto' picks: one_se_margin, one_se or tolerance (see select_lambda)", str))
    settle_retries: int = field(default=1, metadata=_help(
        "times sparsity='auto' trains the path again with twice the schedule when the supports had not settled", int))
    validation_split: float = field(default=0.2, metadata=_help("held-out share of sequences", float))
    finetune_fraction: float = field(default=0.15, metadata=_help(
        "share of the schedule (epochs, or steps with max_steps) trained with the support frozen", float))
    seed: int = field(default=0, metadata=_help("seed of initialisation, split, batch order and noise", int))
    mixed_precision: str = field(default="no", metadata=_help("no, fp16 or bf16", str))
    gradient_accumulation_steps: int = field(default=1, metadata=_help("batches per optimizer step", int))
    checkpoint_dir: str | None = field(default=None, metadata=_help("folder for checkpoints", str))
    checkpoint_every: int | None = field(default=None, metadata=_help("optimizer steps between checkpoints", int))
    resume: bool = field(default=False, metadata=_help("continue from the newest checkpoint in checkpoint_dir", bool))
    stop_after_steps: int | None = field(default=None, metadata=_help("stop after this many optimizer steps", int))
    progress: bool | None = field(default=None, metadata=_help(
        "progress bar on a terminal, log lines otherwise; --no-progress is quiet", bool))
    log_every: float = field(default=30.0, metadata=_help("longest seconds between progress lines off a terminal",
                                                          float))
    cpu: bool | None = field(default=None, metadata=_help("train on CPU even when a GPU is present", bool))

    def __post_init__(self) -> None:
        if isinstance(self.checkpoint_dir, os.PathLike):
            self.checkpoint_dir = os.fspath(self.checkpoint_dir)
        if self.lambda_path is not None and not isinstance(self.lambda_path, str):
            try:
                self.lambda_path = [float(x) for x in self.lambda_path]
            except (TypeError, ValueError):
                pass  # reported below with the field's name
        self.validate()

    # -- checks ---------------------------------------------------------------------------------------
    def validate(self, *, n_epochs: int | None = None) -> None:
        """Check every field (called by `__post_init__`); `n_epochs` checks `finetune_fraction` against the
        epochs a run will use when `epochs` is `None`. Raises `ValueError` naming the field and what it expects."""

        def bad(name: str, expected: str) -> ValueError:
            return ValueError(f"SpecialistTrainingArguments.{name} must be {expected}; got {getattr(self, name)!r}.")

        for name in ("batch_size", "gradient_accumulation_steps"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "an int >= 1")
        for name in ("epochs", "max_steps", "checkpoint_every", "stop_after_steps"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise bad(name, "an int >= 1 or None")
        for name in ("lr", "mask_lr", "rotation_lr", "lora_lr"):
            if not _is_number(getattr(self, name)) or not getattr(self, name) > 0:
                raise bad(name, "a float > 0")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "a float >= 0")
        if not (self.sparsity is None or self.sparsity == "auto" or (_is_number(self.sparsity) and self.sparsity >= 0)):
            raise bad("sparsity", "a float >= 0, 'auto' or None (the adapter config's)")
        if self.lambda_path is not None and (
                not isinstance(self.lambda_path, list) or not self.lambda_path
                or not all(_is_number(x) and x > 0 for x in self.lambda_path)):
            raise bad("lambda_path", "a non-empty list of floats > 0 or None")
        if not _is_int(self.settle_retries) or self.settle_retries < 0:
            raise bad("settle_retries", "an int >= 0")
        if self.selection not in SELECTION_RULES:
            raise bad("selection", f"one of {SELECTION_RULES}")
        if not _is_number(self.validation_split) or not 0 < self.validation_split < 1:
            raise bad("validation_split", "a float in (0, 1)")
        if not _is_int(self.seed) or self.seed < 0:
            raise bad("seed", "an int >= 0")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise bad("mixed_precision", f"one of {MIXED_PRECISIONS}")
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, str):
            raise bad("checkpoint_dir", "a path or None")
        if self.checkpoint_every is not None and self.checkpoint_dir is None:
            raise InputError("SpecialistTrainingArguments.checkpoint_every needs checkpoint_dir (where checkpoints "
                             "go); got checkpoint_dir=None.")
        for name in ("resume",):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "a bool")
        for name in ("progress", "cpu"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise bad(name, "a bool or None")
        if not _is_number(self.log_every) or not self.log_every > 0:
            raise bad("log_every", "a float > 0 (seconds)")
        # the schedule's unit: optimizer steps when `max_steps` is set, else epochs
        units, unit = ((self.max_steps, "max_steps") if self.max_steps is not None
                       else (self.epochs if self.epochs is not None else n_epochs, "epochs"))
        if not _is_number(self.finetune_fraction) or not 0 <= self.finetune_fraction < 1 or (
                units is not None and units > 1 and units - max(1, round(self.finetune_fraction * units)) < 1):
            raise InputError(
                "SpecialistTrainingArguments.finetune_fraction must be a float in [0, 1) that leaves at least one "
                f"{'step' if unit == 'max_steps' else 'epoch'} before the support is frozen; got "
                f"{self.finetune_fraction!r} with {unit}={units}.")

    def resolved(self, *, lora: bool = False, config_sparsity: float | str = "auto",
                 steps_per_epoch: int | None = None) -> SpecialistTrainingArguments:
        """A copy with the run's defaults filled in: the schedule (`default_schedule` from `steps_per_epoch` when
        `epochs` and `max_steps` are both `None`; 100 epochs, or 10 with a LoRA, when `steps_per_epoch` is not
        known) and `sparsity` (the adapter config's). This copy is what `train_specialist` records and saves."""
        epochs, max_steps = self.epochs, self.max_steps
        if epochs is None and max_steps is None:
            if steps_per_epoch is None:
                epochs = DEFAULT_LORA_EPOCHS if lora else DEFAULT_EPOCHS
            else:
                epochs, max_steps = default_schedule(steps_per_epoch, lora=lora)
        sparsity = config_sparsity if self.sparsity is None else self.sparsity
        return dataclasses.replace(self, epochs=epochs, max_steps=max_steps, sparsity=sparsity)

    # -- serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values of every field."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), list) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SpecialistTrainingArguments:
        """Arguments from `to_dict()` output; unknown keys warn and are dropped (as unknown config keys are)."""
        if not isinstance(values, dict):
            raise InputTypeError(f"`values` must be a dict, got {type(values).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            warnings.warn(f"SpecialistTrainingArguments: ignoring unknown keys {unknown}.", UserWarning, stacklevel=2)
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_json_string(self) -> str:
        """The arguments as an indented JSON string."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> Path:
        """Write `to_json_string()` to `path`."""
        path = Path(path)
        path.write_text(self.to_json_string(), encoding="utf-8")
        return path

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> SpecialistTrainingArguments:
        """Read arguments written by `to_json_file` (e.g. an artifact's `training_args.json`)."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Each field's help line (the CLI flags' help)."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
