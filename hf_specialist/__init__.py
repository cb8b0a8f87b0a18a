"""hf_specialist: from generalist to specialist representations for Hugging Face models.

Nothing heavy is imported here: torch and transformers load on first use of a name that needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "HiddenStateExtractor": "hooks",
    "InputError": "_validation",
    "NotFittedError": "_validation",
    "SpecialistAdapter": "adapter.model",
    "SpecialistConfig": "adapter.config",
    "SpecialistModel": "adapter.wrapper",
    "SpecialistTrainingArguments": "adapter.training_args",
    "TaskStructure": "structure.discovery",
    "discover": "structure.from_model",
    "extract_padded_steps": "data",
    "extract_steps": "data",
    "extract_steps_dataset": "data",
    "resolve_hook_points": "hooks",
    "sweep_layers": "structure.layers",
    "train_specialist": "adapter.lambda_path",
}
_SUBMODULES = ("hooks", "steps", "data", "structure", "adapter", "hub", "synthetic", "metrics", "plots", "cli")

__all__ = [
    "HiddenStateExtractor",
    "InputError",
    "NotFittedError",
    "SpecialistAdapter",
    "SpecialistConfig",
    "SpecialistModel",
    "SpecialistTrainingArguments",
    "TaskStructure",
    "__version__",
    "discover",
    "extract_padded_steps",
    "extract_steps",
    "extract_steps_dataset",
    "metrics",
    "resolve_hook_points",
    "sweep_layers",
    "synthetic",
    "train_specialist",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(_SUBMODULES))


if TYPE_CHECKING:  # pragma: no cover
    from . import metrics, synthetic
    from ._validation import InputError, NotFittedError
    from .adapter.config import SpecialistConfig
    from .adapter.model import SpecialistAdapter
    from .adapter.lambda_path import train_specialist
    from .adapter.training_args import SpecialistTrainingArguments
    from .adapter.wrapper import SpecialistModel
    from .data import extract_padded_steps, extract_steps, extract_steps_dataset
    from .structure.from_model import discover
    from .hooks import HiddenStateExtractor, resolve_hook_points
    from .structure.discovery import TaskStructure
    from .structure.layers import sweep_layers
