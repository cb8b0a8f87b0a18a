"""Array helpers shared across modules (imports nothing of ours but the leaf `_validation`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._validation import InputError


def standardise(values: np.ndarray) -> np.ndarray:
    """Columns (axis 0) centred and scaled to unit population std; a constant column is only centred."""
    std = values.std(0)
    return (values - values.mean(0)) / np.where(std > 0, std, 1.0)


def _is_datasets_object(obj: Any, *names: str) -> bool:
    """Whether `obj` is one of the `datasets` library's classes `names` (checked without importing `datasets`)."""
    return type(obj).__module__.startswith("datasets") and type(obj).__name__ in names


_INDEX_COLUMN = re.compile(r"^__index_level_\d+__$")


def data_columns(names: Sequence[str]) -> list[str]:
    """A table's columns that hold data: every column but pandas' index, which is never a task or a text: a first
    column with no name (`Unnamed: 0` as `datasets` reads it, or ''; `to_csv` without `index=False` writes it), or
    `__index_level_0__` (its parquet files). A nameless column elsewhere is data (a header cell left empty)."""
    return [name for i, name in enumerate(names)
            if not (_INDEX_COLUMN.match(str(name)) or (i == 0 and str(name) in ("Unnamed: 0", "")))]


def _warn_index_dropped(dropped: list[str]) -> None:
    from ._warnings import warn_user

    warn_user(f"the tasks table's unnamed column(s) {dropped} are read as an index (as pandas writes with `to_csv` "
              "without `index=False`), not as tasks; name the task columns to choose otherwise.")


def _pandas_columns(obj: Any) -> Any:
    """A pandas `DataFrame` as a dict of its columns, a named `Series` as a dict of one; anything else unchanged."""
    kind = type(obj).__name__ if type(obj).__module__.startswith("pandas") else None
    if kind == "DataFrame":
        names = [str(name) for name in obj.columns]
        kept = data_columns(names)
        if len(kept) < len(names):
            _warn_index_dropped(sorted(set(names) - set(kept)))
        return {name: obj[column].tolist() for name, column in zip(names, obj.columns) if name in kept}
    if kind == "Series" and obj.name is not None:
        return {str(obj.name): obj.tolist()}
    return obj


def task_names_of(obj: Any, columns: Sequence[str] | None = None) -> list[str] | None:
    """The task names a tasks object carries: the columns read from a `datasets.Dataset`, a pandas `DataFrame` (or
    a named `Series`) or a dict of columns, as `as_task_array` reads them; `None` for an array, which has none."""
    kind = type(obj).__name__ if type(obj).__module__.startswith("pandas") else None  # names only, no values
    if _is_datasets_object(obj, "DatasetDict", "IterableDatasetDict") and len(obj) == 1:
        obj = next(iter(obj.values()))
    if columns is not None and (kind == "DataFrame" or _is_datasets_object(obj, "Dataset") or isinstance(obj, dict)):
        return [str(c) for c in columns]
    if kind == "DataFrame":
        return data_columns([str(c) for c in obj.columns])
    if kind == "Series":
        return None if obj.name is None else [str(obj.name)]
    if _is_datasets_object(obj, "Dataset"):
        return [str(c) for c in data_columns(list(obj.column_names))]
    if isinstance(obj, dict):
        return [str(c) for c in obj]
    return None


def names_differ(expected: Sequence[str] | None, given: Sequence[str] | None) -> str | None:
    """How two task-name lists differ: `None` where either is unknown or they are equal, `"order"` for the same
    names in another order, `"names"` otherwise (the one comparison behind every task-order check)."""
    if not expected or not given or list(expected) == list(given):
        return None
    return "order" if sorted(expected) == sorted(given) else "names"


def as_task_array(obj: Any, columns: Sequence[str] | None = None) -> Any:
    """Task outcomes as a numpy array, from a `datasets.Dataset` (or its columns); anything else unchanged.

    Args:
        obj: a `datasets.Dataset`, a `DatasetDict` with one split, a pandas `DataFrame` (or named `Series`), a dict
            of columns (`{"y": [...], ...}`), one column (`dataset["y"]`), or an array; arrays and tensors come back
            as they are, for the caller's checks.
        columns (`list[str]`, *optional*): the task columns, in order (default: every column of the dataset but an
            unnamed index column, see `data_columns`, dropped with a warning).

    Returns:
        `np.ndarray` of shape `(n, M)` for number columns, `(n, M, d_g)` for columns of equal-length vectors, or
        `(n, 1)` for a single column passed alone.

    Raises:
        InputError: (a `ValueError`) naming the column, for a missing column, text (or other non-number) values, or vectors of
            different lengths.
    """
    obj = _pandas_columns(obj)
    if _is_datasets_object(obj, "DatasetDict", "IterableDatasetDict"):
        if len(obj) != 1:
            raise InputError(f"the tasks dataset has the splits {sorted(obj)}; pass one split (e.g. dataset['train']).")
        obj = next(iter(obj.values()))
    if _is_datasets_object(obj, "Column"):
        return _column_values("tasks", list(obj))[:, None]
    if _is_datasets_object(obj, "Dataset"):
        names = list(obj.column_names)
        if columns is None and len(data_columns(names)) < len(names):
            _warn_index_dropped(sorted(set(names) - set(data_columns(names))))
            names = data_columns(names)
        table = {name: obj[name] for name in (columns if columns is not None else names) if name in names}
        missing = [name for name in (columns or []) if name not in names]
        if missing:
            raise InputError(f"tasks column(s) {missing} not in the dataset; its columns are {names}.")
    elif isinstance(obj, dict):
        table = {name: obj[name] for name in (columns if columns is not None else list(obj))}
    else:
        return obj
    if not table:
        raise InputError("the tasks dataset has no columns.")
    values = [_column_values(name, list(column)) for name, column in table.items()]
    return np.stack(values, axis=1)


def _column_values(name: str, column: list[Any]) -> np.ndarray:
    """One column as a float array `(n,)` or `(n, d)`, refusing text and ragged vectors with the column's name."""
    strings = [v for v in column if isinstance(v, (str, bytes))]
    if strings:
        raise InputError(f"tasks column {name!r} holds text (e.g. {strings[0]!r}); task outcomes must be numbers "
                         "(encode classes as integers 0..C-1); choose the task columns with "
                         "`dataset.select_columns([...])` (CLI: --task-columns).")
    try:
        return np.asarray([np.nan if v is None else v for v in column], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"tasks column {name!r} must hold numbers or vectors of one length: {err}") from err
