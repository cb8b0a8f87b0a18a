"""Finding an artifact's files in a local folder or a Hub repo, and reading its JSON (imports nothing of ours but
the leaves `_arrays`, `_constants` and `_validation`), so that the adapter, `SpecialistModel` and `hub` share one
resolver; telling a user's local path from a Hub repo id before any Hub call; and reading a user's data files."""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from ._arrays import data_columns
from ._constants import CONFIG_NAME
from ._validation import InputError, MissingPathError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def looks_like_path(name: str | os.PathLike) -> bool:
    """Whether `name` is written as a local path rather than a Hub repo id: a `PathLike`, or a string that starts
    with `./`, `../`, `/` or `~`, or has a path separator without being of the `owner/name` form."""
    if not isinstance(name, str):
        return True
    if name.startswith(("./", "../", "/", "~", ".\\", "..\\")) or name in (".", ".."):
        return True
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return any(sep in name for sep in separators) and not (name.count("/") == 1 and _REPO_ID.match(name))


def hub_unavailable() -> str | None:
    """Why the Hub cannot be asked right now (`None` when it can): offline mode, or an endpoint that does not
    answer one quick request (probed once per endpoint, with no retries)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "offline mode is on (HF_HUB_OFFLINE=1)"
    return _probe(constants.ENDPOINT)


@functools.lru_cache(maxsize=8)
def _probe(endpoint: str) -> str | None:
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=5)
    except Exception as err:  # noqa: BLE001 - any failure to connect means "unreachable"
        return f"the Hub at {endpoint} cannot be reached ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
    return None


def check_source(name: str | os.PathLike, what: str = "folder", namespace_required: bool = False) -> str:
    """Classify a user's `name` as `"local"` (an existing path) or `"hub"` (a Hub repo id to ask), at once.

    Raises `MissingPathError` ("no such folder: ...") for a path-like name that does not exist, or (with
    `namespace_required`, for artifacts this library pushes, always to `owner/name`) a bare name that is no folder;
    `InputError` for a name that is neither a path nor a valid repo id. No Hub call is made.
    """
    text = os.fspath(name)
    if Path(text).expanduser().exists():
        return "local"
    if looks_like_path(name):
        raise MissingPathError(f"no such {what}: {text}")
    if not _REPO_ID.match(text):
        raise InputError(f"{text!r} is neither an existing {what} nor a valid Hub repo id ('owner/name').")
    if namespace_required and "/" not in text:
        raise MissingPathError(f"no such {what}: {text} (and not a Hub repo id, which has the form 'owner/name')")
    return "hub"


def resolve_file(path_or_repo_id: str | os.PathLike, filename: str, subfolder: str | None, revision: str | None,
                  token: str | bool | None, required: bool = True, **kwargs: Any) -> Path | None:
    """Local path of `filename` (in `subfolder`) of a folder or Hub repo; `None` when absent and not `required`.

    Raises `FileNotFoundError` naming the file (and the subfolders to choose from) when it is required and missing.
    """
    local = Path(path_or_repo_id).expanduser()
    if local.is_dir():
        if revision is not None:
            from ._warnings import warn_user

            shadow = "" if looks_like_path(path_or_repo_id) else (" (a local folder of that name is read before the "
                                                                 "Hub repo; write './' before a folder's name)")
            warn_user(f"`revision={revision!r}` is ignored: {os.fspath(path_or_repo_id)!r} is a local folder, which "
                      f"has no revisions{shadow}.")
        candidate = local / subfolder / filename if subfolder else local / filename
        if candidate.is_file():
            return candidate
        if required:
            hint = ""
            if not subfolder and filename == CONFIG_NAME:
                subs = sorted(p.name for p in local.iterdir() if (p / CONFIG_NAME).is_file())
                if subs:
                    hint = f" It holds one artifact per hook point; pass subfolder= one of {subs}."
            raise MissingPathError(f"{filename} not found in {candidate.parent}.{hint}")
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if check_source(path_or_repo_id, "folder", namespace_required=True) == "local":
        raise MissingPathError(f"not a folder: {os.fspath(path_or_repo_id)} (an artifact is a folder or a Hub repo)")
    unavailable = hub_unavailable()
    if unavailable:  # the cache only: no request, no retries
        kwargs["local_files_only"] = True
    try:
        return Path(hf_hub_download(str(path_or_repo_id), filename, subfolder=subfolder, revision=revision, token=token, **kwargs))
    except LocalEntryNotFoundError as err:
        if not required:
            return None
        if unavailable or kwargs.get("local_files_only"):
            raise MissingPathError(f"{filename} of {str(path_or_repo_id)!r} is not in the local Hub cache, and "
                                   f"{unavailable or 'local_files_only=True'}.") from err
        raise
    except EntryNotFoundError as err:
        if required:
            raise MissingPathError(f"{filename} not found in repo {path_or_repo_id!r}"
                                    f"{f' (subfolder {subfolder!r})' if subfolder else ''} at revision {revision or 'main'}.") from err
        return None
    except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as err:
        raise MissingPathError(
            f"{filename} not found: {str(path_or_repo_id)!r} is neither a local folder nor a reachable Hub repo "
            f"({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err


def read_config(path: Path) -> dict[str, Any]:
    """Parse a JSON file of an artifact (`config.json`, `structure.json`), with a clear error when it is corrupt."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not valid JSON (corrupt artifact): {err}") from err
    if not isinstance(payload, dict):
        raise InputError(f"{path} must hold a JSON object, got {type(payload).__name__}.")
    payload.pop("versions", None)
    return payload


# --- a user's data files: texts and tasks, through `datasets` ------------------------------------------------

TABLE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet",
                  ".txt": "text"}


def load_table(source: str | os.PathLike, split: str = "train") -> Any:
    """A user's file as a `datasets.Dataset`: `.txt` (one row a line, column `text`), `.csv`/`.tsv` (header row =
    column names), `.json`/`.jsonl`, `.parquet`, a folder saved with `save_to_disk`, or a dataset id on the Hub.

    Raises `MissingPathError` for a path that does not exist, `InputError` for an unknown suffix or a file
    `datasets` cannot parse.
    """
    import datasets

    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        try:
            loaded = datasets.load_from_disk(str(path))
        except FileNotFoundError as err:
            raise InputError(f"{text} is a folder but not one saved with `Dataset.save_to_disk`: {err}") from err
        return _one_split(loaded, split, text)
    if path.is_file():
        builder = TABLE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise InputError(f"cannot read {text}: unknown file type {path.suffix!r}; use one of "
                             f"{sorted(TABLE_BUILDERS)} (or .npy for arrays), a save_to_disk folder or a Hub dataset.")
        _check_has_rows(path, builder)
        options = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
        if builder == "text":
            options["keep_linebreaks"] = False
        try:
            table = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
        except Exception as err:  # noqa: BLE001 - datasets raises many types for an unparsable file
            if "corresponds to no data" in str(err):  # a parquet or JSON file without rows
                raise _no_rows(text) from err
            raise InputError(f"cannot read {text} as {builder}: {type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}") from err
        if len(table) == 0:
            raise _no_rows(text)
        return table
    if path.suffix.lower() in TABLE_BUILDERS or path.suffix.lower() == ".npy":
        raise MissingPathError(f"no such file: {text}")
    if check_source(source, "file or folder") == "hub":
        unavailable = hub_unavailable()
        if unavailable:
            raise MissingPathError(f"no such file or folder: {text} (as a Hub dataset id it cannot be fetched: "
                                   f"{unavailable}).")
        return datasets.load_dataset(text, split=split)
    raise MissingPathError(f"no such file or folder: {text}")


def _one_split(loaded: Any, split: str, name: str) -> Any:
    if hasattr(loaded, "column_names") and not isinstance(loaded.column_names, dict):
        return loaded
    splits = sorted(loaded)
    if split in loaded:
        return loaded[split]
    if len(splits) == 1:
        return loaded[splits[0]]
    raise InputError(f"{name} holds the splits {splits}; none is {split!r}.")


def _no_rows(name: str | os.PathLike) -> InputError:
    return InputError(f"{os.fspath(name)} holds no rows; it must hold one row per sequence.")


def _check_has_rows(path: Path, builder: str) -> None:
    """Refuse an empty file (or a CSV with a header only) by name, before `datasets` fails on it with its own words.
    Reads at most the first two non-blank lines (of a parquet file, its row count)."""
    if builder == "parquet":
        import pyarrow.parquet

        try:
            rows = pyarrow.parquet.ParquetFile(path).metadata.num_rows
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a file that is not parquet
            raise InputError(f"cannot read {path} as parquet: {type(err).__name__}: {err}") from err
        if rows == 0:
            raise _no_rows(path)
        return
    lines = []
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                lines.append(line)
                if len(lines) == 2:
                    return
    if not lines:
        raise _no_rows(path)
    if builder == "csv":
        raise InputError(f"{path} holds one line, read as its header "
                         f"({lines[0].strip()[:60].decode(errors='replace')!r}), and no rows; its first line names "
                         "its columns.")


def _header_is_data(names: list[str], kind: str) -> str | None:
    """Why a CSV's header (its column names) looks like a first row of data, or `None`: numbers where names belong
    (tasks), or a sentence (texts)."""
    def number(name: str) -> bool:
        try:
            float(name)
        except ValueError:
            return False
        return True

    # `DataFrame(array).to_csv(...)` names two or more columns 0, 1, ...; one column named 0 reads as a label
    pandas_default = len(names) > 1 and list(map(str, names)) == [str(i) for i in range(len(names))]
    if kind == "tasks" and names and all(number(str(n)) for n in names) and not pandas_default:
        return f"its header {names[:4]} is numbers"
    text = str(names[0]).strip() if names else ""
    if kind == "texts" and len(names) == 1 and len(text.split()) >= 4 and (text[-1:] in ".!?" or ". " in text):
        return f"its header {text[:60]!r} is a sentence"
    return None


def read_texts(source: str | os.PathLike, column: str | None = None) -> list[str]:
    """The texts of a user's file or dataset (see `load_table`): the `column` given, else `text`, else the only
    column. A CSV's header names columns and is never read as a text.

    Raises `InputError` naming the row for a blank or non-text value (the same rule as the Python API: no text is
    skipped silently), and for a missing column (listing the columns there are).
    """
    text = os.fspath(source)
    table = load_table(source)
    names = list(table.column_names)
    if column is None:
        named = data_columns(names)  # an index column (pandas') never holds the texts
        if "text" in names:
            column = "text"
        elif len(named) == 1:
            headed = Path(text).suffix.lower() in (".csv", ".tsv")
            why = _header_is_data(named, "texts") if headed else None
            if why:
                raise InputError(f"{text}: {why}: a CSV's first line names its column, so that text would be lost. "
                                 "Add a first line `text`, or write the texts one per line in a .txt file (or pass "
                                 "that line as --text-column / `column` to read it as the column's name).")
            column = named[0]
        else:
            raise InputError(f"{text} has the columns {names}; name the one holding the texts (--text-column).")
    if column not in names:
        raise InputError(f"{text} has no column {column!r}; its columns are {names}.")
    texts = list(table[column])
    row_offset = 2 if Path(text).suffix.lower() in (".csv", ".tsv") else 1  # a CSV's line 1 is its header
    for i, value in enumerate(texts):
        if not isinstance(value, str):
            raise InputError(f"{text}: text {i} (line {i + row_offset}) is {type(value).__name__} "
                             f"{value!r}, not a string.")
        if not value.strip():
            raise InputError(f"{text}: text {i} (line {i + row_offset}) is blank; every row must hold a text "
                             "(remove blank lines).")
    if not texts:
        raise InputError(f"{text} holds no texts.")
    return texts


def read_array(source: str | os.PathLike, name: str, columns: list[str] | None = None) -> Any:
    """A numeric array from a `.npy` file (never unpickled), or task columns from any file `load_table` reads
    (`columns`: which, in order; default every column)."""
    from ._arrays import as_task_array

    text = os.fspath(source)
    path = Path(text).expanduser()
    if columns and len(set(columns)) != len(columns):
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        raise InputError(f"{name} columns {repeated} are named more than once; name each column once.")
    if path.suffix.lower() == ".npy":
        if columns:
            raise InputError(f"{name} file {text} is a .npy array, which has no column names, so the columns "
                             f"{columns} cannot be chosen; pass a table (.csv, .jsonl, .parquet, ...) or drop the "
                             "column names.")
        if not path.is_file():
            raise MissingPathError(f"{name} file not found: {text}")
        import numpy as np

        try:
            values = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise InputError(f"{name} file {text} is not a numeric .npy array: {err}") from err
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            first = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
            raise InputError(f"{name} file {text} holds {int((~np.isfinite(values)).sum())} NaN or infinite "
                             f"value(s), the first at index {first}; every {name} value must be a finite number.")
        return values
    table = load_table(source)
    if path.suffix.lower() == ".txt":
        if columns:
            raise InputError(f"{name} file {text} is a .txt of numbers, which has no column names, so the columns "
                             f"{columns} cannot be chosen; pass a table (.csv, .jsonl, .parquet, ...) or drop the "
                             "column names.")
        return _numbers_per_line(table, text, name)
    headed = path.suffix.lower() in (".csv", ".tsv") and not columns  # named columns confirm the header
    why = _header_is_data(data_columns(list(table.column_names)), "tasks") if headed else None
    if why:
        raise InputError(f"{name} file {text}: {why}: its first line names its columns, so the first row would be "
                         "lost. Add a header line of column names (or name the task columns, which confirms the "
                         "header).")
    values = as_task_array(table, columns)
    _check_finite(values, text, name, columns or data_columns(list(table.column_names)),
                  header=path.suffix.lower() in (".csv", ".tsv"))
    return values


def _numbers_per_line(table: Any, text: str, name: str) -> Any:
    """A `.txt` of numbers: one row a line, columns split by whitespace or commas; a non-number names its line."""
    import numpy as np

    rows = []
    for i, line in enumerate(table["text"]):
        if not line.strip():
            raise InputError(f"{name} file {text}: line {i + 1} is blank; a .txt of {name} holds one row of numbers "
                             "a line, so a blank line would shift the rows after it (remove it).")
        try:
            rows.append([float(v) for v in line.replace(",", " ").split()])
        except ValueError:
            raise InputError(f"{name} file {text}: line {i + 1} ({line[:60]!r}) is not numbers; a .txt of {name} "
                             "holds one row of numbers a line (use a table with named columns otherwise).") from None
        if not rows[-1] or len(rows[-1]) != len(rows[0]):
            raise InputError(f"{name} file {text}: line {i + 1} has {len(rows[-1])} numbers but line 1 has "
                             f"{len(rows[0])}; every line must hold one value per task.")
    values = np.asarray(rows, dtype=np.float64)
    _check_finite(values, text, name, [f"column {j + 1}" for j in range(values.shape[1])], header=False)
    return values


def _check_finite(values: Any, text: str, name: str, columns: list[str], header: bool) -> None:
    """Refuse a NaN (an empty cell) or an infinity in a file of task values, naming its column and line: the
    command line has no absent labels."""
    import numpy as np

    if values.dtype.kind != "f" or np.isfinite(values).all():
        return
    bad = ~np.isfinite(values.reshape(len(values), len(columns), -1)).all(-1)
    row, col = (int(v) for v in np.argwhere(bad)[0])
    where = f"data row {row + 1} (after the header)" if header else f"row {row + 1}"
    raise InputError(f"{name} file {text}: {int(bad.sum())} empty, NaN or infinite value(s), the first in column "
                     f"{columns[col]!r}, {where}; every {name} value must be a finite number (drop those rows, or "
                     "train in Python with `task_mask` marking absent labels).")
