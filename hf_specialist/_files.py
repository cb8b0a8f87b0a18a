"""Finding an artifact's files in a local folder or a Hub repo, and reading its JSON (imports nothing of ours but
the file-name constants), so that the adapter, `SpecialistModel` and `hub` share one resolver."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ._constants import CONFIG_NAME


def resolve_file(path_or_repo_id: str | os.PathLike, filename: str, subfolder: str | None, revision: str | None,
                  token: str | bool | None, required: bool = True, **kwargs: Any) -> Path | None:
    """Local path of `filename` (in `subfolder`) of a folder or Hub repo; `None` when absent and not `required`.

    Raises `FileNotFoundError` naming the file (and the subfolders to choose from) when it is required and missing.
    """
    local = Path(path_or_repo_id)
    if local.is_dir():
        candidate = local / subfolder / filename if subfolder else local / filename
        if candidate.is_file():
            return candidate
        if required:
            hint = ""
            if not subfolder and filename == CONFIG_NAME:
                subs = sorted(p.name for p in local.iterdir() if (p / CONFIG_NAME).is_file())
                if subs:
                    hint = f" It holds one artifact per hook point; pass subfolder= one of {subs}."
            raise FileNotFoundError(f"{filename} not found in {candidate.parent}.{hint}")
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(hf_hub_download(str(path_or_repo_id), filename, subfolder=subfolder, revision=revision, token=token, **kwargs))
    except EntryNotFoundError as err:
        if required:
            raise FileNotFoundError(f"{filename} not found in repo {path_or_repo_id!r}"
                                    f"{f' (subfolder {subfolder!r})' if subfolder else ''} at revision {revision or 'main'}.") from err
        return None
    except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as err:
        raise FileNotFoundError(
            f"{filename} not found: {str(path_or_repo_id)!r} is neither a local folder nor a reachable Hub repo "
            f"({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err


def read_config(path: Path) -> dict[str, Any]:
    """Parse a JSON file of an artifact (`config.json`, `structure.json`), with a clear error when it is corrupt."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON (corrupt artifact): {err}") from err
    if not isinstance(payload, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(payload).__name__}.")
    payload.pop("versions", None)
    return payload
