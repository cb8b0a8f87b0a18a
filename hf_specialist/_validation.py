"""Private input and parameter checks shared by every public entry point.

Every check raises before any work starts, with a message that names the argument, what was received and
what was expected.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import NotFittedError  # scikit-learn's own, so one `except NotFittedError` covers both

__all__ = ["InputError", "MissingPathError", "NotFittedError", "check_array", "check_consistent_length",
           "check_is_fitted", "to_numpy", "validate_params"]


class InputError(ValueError):
    """Bad input from the user (an argument, a file, a config key): raised at the doors before any work starts.

    A `ValueError`, so `except ValueError` keeps working; the `hf-specialist` command exits with code 2 for it only.
    """


class InputTypeError(InputError, TypeError):
    """An `InputError` about an argument's type (also a `TypeError`)."""


class MissingPathError(InputError, FileNotFoundError):
    """A local path the user named does not exist (also a `FileNotFoundError`); raised before any Hub call."""


def check_is_fitted(estimator: Any, attributes: Sequence[str]) -> None:
    """Raise `NotFittedError` unless every attribute in `attributes` is set on `estimator`."""
    if not all(hasattr(estimator, name) for name in attributes):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments "
            "before using this estimator."
        )


# --- declarative parameter constraints -------------------------------------------------------------


class Interval:
    """A numeric constraint `low <op> value <op> high`, with `closed` in {"both", "left", "right", "neither"}."""

    def __init__(self, kind: type, low: float | None, high: float | None, closed: str = "both") -> None:
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if self.kind is float and not isinstance(value, numbers.Real):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        name = "an int" if self.kind is int else "a float"
        if self.low is not None and self.high is not None:
            left = "[" if self.closed in ("both", "left") else "("
            right = "]" if self.closed in ("both", "right") else ")"
            return f"{name} in the range {left}{self.low}, {self.high}{right}"
        if self.low is not None:
            op = ">=" if self.closed in ("both", "left") else ">"
            return f"{name} {op} {self.low}"
        if self.high is not None:
            op = "<=" if self.closed in ("both", "right") else "<"
            return f"{name} {op} {self.high}"
        return name


class Options:
    """A constraint that the value is one of a fixed set."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def accepts(self, value: Any) -> bool:
        return any(value is v or (not isinstance(value, bool) and value == v) for v in self.values)

    def __str__(self) -> str:
        strings = [repr(v) for v in self.values if isinstance(v, str)]
        parts = [repr(v) for v in self.values if not isinstance(v, str)]
        return " or ".join(parts + (["a str among {" + ", ".join(strings) + "}"] if strings else []))


class InstanceOf:
    """A constraint that the value is an instance of one of `types` (`None` allowed by passing `type(None)`)."""

    def __init__(self, *types: type, description: str | None = None) -> None:
        self.types, self.description = types, description

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.types)

    def __str__(self) -> str:
        if self.description:
            return self.description
        return "an instance of " + " or ".join(t.__name__ for t in self.types)


def validate_params(owner: str, params: dict[str, Any], constraints: dict[str, list[Any]]) -> None:
    """Check every parameter against its list of constraints (any one may accept it).

    Raises:
        InputError: "The 'alpha' parameter of TaskStructure must be a float in the range (0, 1). Got 1.5 instead."
    """
    for name, options in constraints.items():
        value = params[name]
        if any(option.accepts(value) for option in options):
            continue
        described = [str(o) for o in options]
        expected = described[0] if len(described) == 1 else ", ".join(described[:-1]) + " or " + described[-1]
        raise InputError(f"The {name!r} parameter of {owner} must be {expected}. Got {value!r} instead.")


# --- arrays -----------------------------------------------------------------------------------------


def to_numpy(value: Any, name: str, dtype: type = np.float64) -> np.ndarray:
    """Convert a numpy array, torch tensor or nested sequence to a numpy array of `dtype`."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().float().numpy()
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        dtype_note = f" of dtype {value.dtype}" if hasattr(value, "dtype") else ""
        raise InputTypeError(f"`{name}` must be a numpy array or torch tensor of numbers, got {type(value).__name__}"
                             f"{dtype_note} ({str(err).splitlines()[0][:80]})"
                             + ("; encode text labels as numbers (classes as 0..C-1)." if "task" in name else ".")
                             ) from err
    return array


def check_array(
    value: Any,
    name: str,
    ndims: Sequence[int],
    expected: str,
    min_samples: int = 1,
    allow_nan: bool = False,
    dtype: type = np.float64,
) -> np.ndarray:
    """Validate an array argument and return it as numpy.

    Args:
        value: the array (numpy, torch or sequence).
        name (`str`): the argument name used in messages.
        ndims (`Sequence[int]`): accepted numbers of dimensions.
        expected (`str`): human description of the expected shape, e.g. "(n_sequences, T, d)".
        min_samples (`int`, *optional*, defaults to 1): the least number of rows accepted.
        allow_nan (`bool`, *optional*, defaults to `False`): whether NaN/inf are accepted.
    """
    array = to_numpy(value, name, dtype=dtype)
    if array.ndim not in ndims:
        raise InputError(f"`{name}` must have shape {expected}; got shape {tuple(array.shape)}.")
    if array.shape[0] < min_samples:
        raise InputError(
            f"`{name}` has {array.shape[0]} samples but at least {min_samples} are needed; got shape "
            f"{tuple(array.shape)}, expected {expected}."
        )
    if not allow_nan and array.size and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(f"`{name}` contains {bad} NaN or infinite values; every entry must be finite.")
    return array


def check_consistent_length(**arrays: np.ndarray) -> None:
    """Raise when the arrays do not share their first dimension."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"`{k}` has {v}" for k, v in lengths.items())
        raise InputError(f"Inconsistent numbers of samples: {listed}; they must be equal.")
