"""`SpecialistConfig`: every hyper-parameter and piece of metadata of a specialist adapter."""

from __future__ import annotations

import difflib
import inspect
import json
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from .._constants import BASE_REVISION_ATTRIBUTE
from .._validation import InputError, InputTypeError
from .._version import __version__

TASK_TYPES = ("regression", "classification")
TASK_READOUTS = ("auto", "step", "sequence")


def base_identity(model: Any) -> tuple[str | None, str | None]:
    """A base model's id and revision as `SpecialistConfig.record_base` records them: `config._name_or_path`, and
    the revision `models.load_model` stamped on the model, else `config._commit_hash` (`None` where unknown)."""
    config = getattr(model, "config", None)
    model_id = getattr(config, "_name_or_path", None) or None
    revision = getattr(model, BASE_REVISION_ATTRIBUTE, None) or getattr(config, "_commit_hash", None) or None
    return model_id, revision


@dataclass
class SpecialistConfig:
    """Configuration of a `SpecialistAdapter`.

    Args:
        d_in (`int`): hidden size of the states the adapter reads (the base model's hidden size).
        d_latent (`int`, *optional*, defaults to 16): latent dims.
        n_tasks (`int`, *optional*, defaults to 1): number of tasks (heads).
        task_names (`list[str]`, *optional*): one name per task; defaults to `task_0`, `task_1`, ...
        task_types (`list[str]`, *optional*): `"regression"` or `"classification"` per task; defaults to
            regression, except where `n_classes` gives classes.
        n_classes (`list[int]`, *optional*): classes per task, 0 for a regression task (given without
            `task_types`, a task with classes is a classification task; for a task typed regression, classes are
            ignored with a warning and recorded as 0).
        task_dims (`list[int]`, *optional*): output dims per regression task (a task may be vector-valued);
            defaults to 1 each. Targets are passed as `sum(task_dims)` columns, task by task.
        encoder_widths (`list[int]`, *optional*, defaults to `[256, 256]`): hidden widths of the encoder MLP.
        decoder_widths (`list[int]`, *optional*, defaults to `[256, 256]`): hidden widths of the decoder MLP.
        head_width (`int`, *optional*, defaults to 64): hidden width of each task head.
        task_readout (`str`, *optional*, defaults to `"auto"`): how a task's outcome is predicted. `"step"`: from
            each step's latent alone. `"sequence"`: from all the steps that serve the task together, as
            `readout_i(sum_t head_i(masked z_t))` over the steps in the task mask (a set function, the collider of
            DESIGN 2.1), so each step's block carries that step's own contribution instead of a guess at the
            other steps'. `"auto"` picks `"sequence"` when training gets sequences `(n, T, d_in)` with one target
            per sequence, `"step"` otherwise, and records the choice here.
        variational (`bool`, *optional*, defaults to `True`): a VAE posterior (else a deterministic encoder).
        kl_weight (`float`, *optional*, defaults to 1e-3): weight of the KL term when `variational`.
        task_weight (`float`, *optional*, defaults to 1.0): weight of the task losses.
        sparsity (`float` or `"auto"`, *optional*, defaults to `"auto"`): lambda of the l1 penalty on the
            task x latent mask; `"auto"` selects it on held-out data (by default the sparsest mask whose held-out
            task loss stays within max(one standard error, `sparsity_tolerance` x the best loss + 0.02) of the best
            model's, per task; `SpecialistTrainingArguments.selection`); `0` is the generalist ablation.
        sparsity_tolerance (`float`, *optional*, defaults to 0.1): relative held-out task-loss margin of `"auto"`.
        sparsity_warmup (`float`, *optional*, defaults to 0.3): share of training before the penalty is fully on.
        mask_threshold (`float`, *optional*, defaults to 0.5): mask values above it form the task support.
        normalize_inputs (`bool`, *optional*, defaults to `True`): standardise each input dim with statistics stored
            in the adapter (robust to the outlier dims of LLM hidden states).
        hook_point (`str`, *optional*): where the states come from in the base model.
        base_model (`str`, *optional*): the base model id; `base_model_revision`, `base_model_type`,
            `base_hidden_size` and `base_num_layers` record what the adapter was trained on (a base of another depth
            reads another layer at `layers.-1`, and is warned about).
        context (`str`, *optional*, defaults to `"full"`): how the step states were extracted, `"full"` (whole
            texts) or `"isolated"` (each step alone, `extract_steps(..., context="isolated")`); `SpecialistModel`
            extracts the same way.
        step_rule (`str`, *optional*): how tokens became steps (`"token"` or a separator; `None` for per-text spans,
            which `SpecialistModel.encode_steps` then needs as `steps=`).
        pool (`str`, *optional*): how a step's tokens were pooled (`"mean"`, `"last"`, `"first"`).
        max_length (`int`, *optional*): the token truncation used at extraction.
        n_steps (`int`, *optional*): steps per text of the states `(n, T, d_in)` the adapter was trained on
            (recorded by training); `SpecialistModel` refuses texts with another step count unless asked to pad.
        step_tasks (`list[list[bool]]`, *optional*): the `(T, n_tasks)` step x task mask the sequence readout was
            trained with (recorded by training when every sequence had the same mask, e.g.
            `TaskStructure.step_tasks_`); `predict` reads each task from these steps unless given `step_mask`.
        trained_with_lora (`bool`, *optional*, defaults to `False`): whether training put a LoRA on the base
            (`train_specialist(..., lora=...)`, recorded by training); the adapter then reads the states of the base
            with that LoRA, which `save_pretrained` keeps in `lora/` and `SpecialistModel.from_pretrained` puts back.
    """

    d_in: int = 0
    d_latent: int = 16
    n_tasks: int = 1
    task_names: list[str] | None = None
    task_types: list[str] | None = None
    n_classes: list[int] | None = None
    task_dims: list[int] | None = None
    encoder_widths: list[int] = field(default_factory=lambda: [256, 256])
    decoder_widths: list[int] = field(default_factory=lambda: [256, 256])
    head_width: int = 64
    task_readout: str = "auto"
    variational: bool = True
    kl_weight: float = 1e-3
    task_weight: float = 1.0
    sparsity: float | str = "auto"
    sparsity_tolerance: float = 0.1
    sparsity_warmup: float = 0.3
    mask_threshold: float = 0.5
    normalize_inputs: bool = True
    hook_point: str | None = None
    base_model: str | None = None
    base_model_revision: str | None = None
    base_model_type: str | None = None
    base_hidden_size: int | None = None
    base_num_layers: int | None = None
    step_rule: str | None = None
    pool: str | None = None
    max_length: int | None = None
    context: str = "full"
    n_steps: int | None = None
    step_tasks: list[list[bool]] | None = None
    trained_with_lora: bool = False
    architecture: str = "specialist_vae"
    library_version: str = __version__

    def __new__(cls, *args: Any, **kwargs: Any) -> SpecialistConfig:
        """Refuse a misspelled keyword at once, naming the field it is close to (Python's own error names neither)."""
        unknown = set(kwargs) - {f.name for f in fields(cls)}
        if unknown:
            raise InputTypeError(_unknown_keys_message(cls, sorted(unknown)))
        return super().__new__(cls)

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"`{name}` must be a positive int, got {value!r}.")

        def non_negative_float(name: str, value: Any) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InputError(f"`{name}` must be a non-negative float, got {value!r}.")

        positive_int("d_in", self.d_in)
        positive_int("d_latent", self.d_latent)
        positive_int("n_tasks", self.n_tasks)
        positive_int("head_width", self.head_width)
        if self.max_length is not None:
            positive_int("max_length", self.max_length)
        if self.n_steps is not None:
            positive_int("n_steps", self.n_steps)
        if self.base_num_layers is not None:
            positive_int("base_num_layers", self.base_num_layers)
        if self.pool is not None and self.pool not in ("mean", "last", "first"):
            raise InputError(f"`pool` must be 'mean', 'last' or 'first', got {self.pool!r}.")
        if self.hook_point is not None:
            from ..hooks import check_hook_point_name

            check_hook_point_name(self.hook_point)
        if self.context not in ("full", "isolated"):
            raise InputError(f"`context` must be 'full' or 'isolated' (how the step states were extracted), got "
                             f"{self.context!r}.")
        if self.step_rule is not None and (not isinstance(self.step_rule, str) or not self.step_rule):
            raise InputError(f"`step_rule` must be 'token' or a non-empty separator string, got {self.step_rule!r}.")
        if not isinstance(self.trained_with_lora, bool):
            raise InputError(f"`trained_with_lora` must be True or False, got {self.trained_with_lora!r}.")
        if not isinstance(self.variational, bool):
            raise InputError(f"`variational` must be True or False, got {self.variational!r}.")
        for name in ("encoder_widths", "decoder_widths"):
            if not isinstance(getattr(self, name), (list, tuple)):
                raise InputError(f"`{name}` must be a list of positive ints (hidden widths), got "
                                 f"{getattr(self, name)!r}.")
            widths = list(getattr(self, name))
            for w in widths:
                positive_int(f"{name} entry", w)
            setattr(self, name, widths)
        if self.task_names is None:
            self.task_names = [f"task_{i}" for i in range(self.n_tasks)]  # see `named_tasks`
        if self.task_types is None:  # classes given alone name the classification tasks
            given = list(self.n_classes) if isinstance(self.n_classes, (list, tuple)) else []
            given = given if len(given) == self.n_tasks else [0] * self.n_tasks
            self.task_types = ["classification" if c not in (0, None) else "regression" for c in given]
        if self.n_classes is None:
            self.n_classes = [0] * self.n_tasks
        if self.task_dims is None:
            self.task_dims = [1] * self.n_tasks
        for name in ("task_names", "task_types", "n_classes", "task_dims"):
            if not isinstance(getattr(self, name), (list, tuple)):
                raise InputError(f"`{name}` must be a list with one entry per task (n_tasks={self.n_tasks}), got "
                                 f"{getattr(self, name)!r}.")
            value = list(getattr(self, name))
            if len(value) != self.n_tasks:
                raise InputError(f"`{name}` has {len(value)} entries but `n_tasks` is {self.n_tasks}.")
            setattr(self, name, value)
        for i, (kind, classes) in enumerate(zip(self.task_types, self.n_classes)):
            if kind not in TASK_TYPES:
                raise InputError(f"`task_types[{i}]` must be one of {TASK_TYPES}, got {kind!r}.")
            if kind == "classification" and (not isinstance(classes, int) or classes < 2):
                raise InputError(f"`n_classes[{i}]` must be an int >= 2 for a classification task, got {classes!r}.")
            if kind == "regression" and classes not in (0, None):  # a regression head has no classes
                if isinstance(classes, int) and classes >= 2:
                    warnings.warn(f"`n_classes[{i}]` is {classes} but `task_types[{i}]` is 'regression': the classes "
                                  "are ignored (set `task_types` to make it a classification task).", UserWarning,
                                  stacklevel=3)
                self.n_classes[i] = 0
            dims = self.task_dims[i]
            if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1 or (kind == "classification" and dims != 1):
                raise InputError(f"`task_dims[{i}]` must be a positive int (1 for classification), got {dims!r}.")
        if self.task_readout not in TASK_READOUTS:
            raise InputError(f"`task_readout` must be one of {TASK_READOUTS}, got {self.task_readout!r}.")
        if isinstance(self.sparsity, str):
            if self.sparsity != "auto":
                raise InputError(f"`sparsity` must be a non-negative float or 'auto', got {self.sparsity!r}.")
        elif isinstance(self.sparsity, bool) or not isinstance(self.sparsity, (int, float)) or self.sparsity < 0:
            raise InputError(f"`sparsity` must be non-negative, got {self.sparsity!r}.")
        for name in ("kl_weight", "task_weight", "sparsity_tolerance", "sparsity_warmup", "mask_threshold"):
            non_negative_float(name, getattr(self, name))
        if not 0 <= self.sparsity_warmup < 1:
            raise InputError(f"`sparsity_warmup` must be in [0, 1), got {self.sparsity_warmup!r}.")
        if not 0 < self.mask_threshold < 1:
            raise InputError(f"`mask_threshold` must be in (0, 1), got {self.mask_threshold!r}.")
        if self.step_tasks is not None:  # nested lists, or a bool array such as `TaskStructure.step_tasks_`
            rows = [[bool(v) if isinstance(v, np.bool_) else v for v in row] for row in self.step_tasks]
            if not rows or any(len(row) != self.n_tasks or not all(isinstance(v, bool) for v in row) for row in rows):
                shape = np.shape(self.step_tasks)
                raise InputError(f"`step_tasks` must be a (T, n_tasks={self.n_tasks}) array or nested list of bools, "
                                 f"got shape {shape} of {np.asarray(self.step_tasks).dtype}.")
            if self.n_steps is not None and len(rows) != self.n_steps:
                raise InputError(f"`step_tasks` has {len(rows)} steps but `n_steps` is {self.n_steps}.")
            self.step_tasks = rows

    def record_base(self, model: Any) -> None:
        """Record what the adapter is trained on: the base model's id, revision, type, hidden size and depth.

        Reads `model.config` (a `transformers` model, also inside a `peft.PeftModel`); leaves fields it cannot read.
        The revision is the one `models.load_model` stamped on the model (a packaged model's
        `"<package>==<version>@sha256:<weights digest>"`, a Hub model's commit), else `config._commit_hash`.
        """
        config = getattr(model, "config", None)
        if config is None:
            return
        model_id, revision = base_identity(model)
        self.base_model = model_id or self.base_model
        self.base_model_revision = revision or self.base_model_revision
        self.base_model_type = getattr(config, "model_type", None) or self.base_model_type
        from ..hooks import layer_count

        self.base_num_layers = layer_count(model) or self.base_num_layers
        for name in ("hidden_size", "n_embd", "d_model"):
            value = getattr(config, name, None)
            if isinstance(value, int):
                self.base_hidden_size = value
                break

    @property
    def target_columns(self) -> list[slice]:
        """Column slice of each task in the flattened target matrix."""
        starts = [0]
        for d in self.task_dims:
            starts.append(starts[-1] + d)
        return [slice(a, b) for a, b in zip(starts[:-1], starts[1:])]

    @property
    def named_tasks(self) -> bool:
        """Whether `task_names` were given (by the user, or recorded from the tasks' columns) rather than the
        defaults `task_0`, `task_1`, ..."""
        return list(self.task_names) != [f"task_{i}" for i in range(self.n_tasks)]

    @property
    def n_target_columns(self) -> int:
        """Total target columns, `sum(task_dims)`."""
        return sum(self.task_dims)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the library version stamped as the current one)."""
        payload = asdict(self)
        payload["library_version"] = __version__
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> SpecialistConfig:
        """Build from a dict; unknown keys (e.g. from a newer version) warn and are dropped, but a near-miss of a
        known key (`d_laten`) is an `InputError` naming both, unless the dict was written by a newer version of the
        library (whose new keys may resemble old ones), where it warns and is dropped too."""
        if not isinstance(payload, dict):
            raise InputTypeError(f"A SpecialistConfig needs a dict, got {type(payload).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - known)
        misspelled = [key for key in unknown if _near_miss(key, known)]
        if misspelled and not _written_by_newer_version(payload.get("library_version")):
            raise InputError(_unknown_keys_message(cls, misspelled))
        if unknown:
            warnings.warn(
                f"Ignoring unknown SpecialistConfig keys {unknown} (written by hf_specialist "
                f"{payload.get('library_version', '?')}; this is {__version__}).",
                UserWarning,
                stacklevel=2,
            )
        return cls(**{k: v for k, v in payload.items() if k in known})

    def to_json_string(self) -> str:
        """The config as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# `inspect.signature` and IDEs read the dataclass's fields, not the keyword guard of `__new__`
SpecialistConfig.__signature__ = inspect.signature(SpecialistConfig.__init__).replace(
    parameters=list(inspect.signature(SpecialistConfig.__init__).parameters.values())[1:])


def _written_by_newer_version(written: Any) -> bool:
    """Whether `written` (a config's `library_version`) is a later release than this library."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(str(written)) > Version(__version__)
    except InvalidVersion:
        return False


def _near_miss(key: str, known: set[str]) -> str | None:
    """The known key that `key` is probably a misspelling of (difflib), or `None`."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.8)
    return close[0] if close else None


def _unknown_keys_message(cls: type, keys: list[str]) -> str:
    known = {f.name for f in fields(cls)}
    parts = []
    for key in keys:
        near = _near_miss(key, known) or (difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.5) or [None])[0]
        parts.append(f"{key!r} (did you mean {near!r}?)" if near else repr(key))
    return f"Unknown {cls.__name__} key(s): {', '.join(parts)}."
