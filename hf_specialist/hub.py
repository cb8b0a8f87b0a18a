"""Hub plumbing around the adapter: function forms of its save / load / push, and pushing a folder saved earlier
(`hf-specialist push`). The format itself lives with the adapter (`adapter/artifact.py`, behind the
`ModelHubMixin` hooks of `SpecialistAdapter`); this module imports the adapter, never the reverse."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .adapter.artifact import upload_artifact
from .adapter.model import SpecialistAdapter


def save_adapter(adapter: SpecialistAdapter, save_directory: str | os.PathLike, **kwargs: Any) -> Path | str:
    """`adapter.save_pretrained(save_directory, **kwargs)`: the saved folder (the commit URL with
    `push_to_hub=True`)."""
    return adapter.save_pretrained(save_directory, **kwargs)


def load_adapter(path_or_repo_id: str | os.PathLike, **kwargs: Any) -> SpecialistAdapter:
    """`SpecialistAdapter.from_pretrained(path_or_repo_id, **kwargs)`."""
    return SpecialistAdapter.from_pretrained(path_or_repo_id, **kwargs)


def push_adapter(adapter: SpecialistAdapter, repo_id: str, **kwargs: Any) -> str:
    """`adapter.push_to_hub(repo_id, **kwargs)`; returns the commit URL."""
    return adapter.push_to_hub(repo_id, **kwargs)


def push_folder(folder: str | os.PathLike, repo_id: str, **kwargs: Any) -> str:
    """Upload an artifact folder saved earlier to a Hub repo in one commit (creating the repo and branch if needed;
    `private`, `branch`, `commit_message`, `token`, `subfolder`, `create_pr`); a README in the repo that this
    library did not generate is kept. Returns the commit URL."""
    return upload_artifact(folder, repo_id, **kwargs)
