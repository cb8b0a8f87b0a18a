"""The artifact format behind `SpecialistAdapter`'s Hub-mixin hooks: what a save writes into a folder, how a load
reads it back strictly, and the one-commit upload of a saved folder.

Layout of an artifact folder or Hub repo (DESIGN §5):

    config.json         SpecialistConfig plus library/torch/transformers versions
    model.safetensors   the adapter weights
    structure.json      the fitted TaskStructure, when one is attached
    structure.png       its heatmap, embedded in the card
    lora/               a PEFT LoRA on the base, when one was trained
    README.md           the model card (a user's README is never overwritten)

Several hook points: one subfolder each, loadable one at a time.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from .._constants import (
    CONFIG_NAME,
    FORBIDDEN_NAMES,
    HEATMAP_NAME,
    LORA_DIR,
    README_NAME,
    STRUCTURE_NAME,
    TRAINING_ARGS_NAME,
    TRAINING_METRICS_NAME,
    WEIGHTS_NAME,
)
from .._files import read_config, resolve_file
from .._validation import InputError, MissingPathError
from .card import is_generated_card, render_card, versions

ADAPTER_ARCHITECTURES = {"specialist_vae"}


def readme_to_keep(target: Path) -> Path | None:
    """A user's README at `target` (kept through a save), or `None` when there is none or it is our card."""
    existing = target / README_NAME
    return existing if existing.exists() and not is_generated_card(existing) else None


def write_artifact(folder: Path, adapter: Any, *, structure: Any | None = None, metrics: dict[str, float] | None = None,
                   datasets: list[str] | None = None, lora_model: Any | None = None, repo_id: str | None = None,
                   card: bool = True, keep_readme: Path | None = None) -> None:
    """Write every file of the artifact into the (empty, temporary) `folder`."""
    from safetensors.torch import save_file

    config = adapter.config.to_dict()
    config["versions"] = versions()
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))
    tensors = {k: v.detach().cpu().contiguous() for k, v in adapter.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "library": "hf_specialist"})
    has_heatmap = False
    if structure is not None:
        (folder / STRUCTURE_NAME).write_text(structure.to_json())
        from ..structure.figures import step_task_heatmap

        step_task_heatmap(structure.step_tasks_, folder / HEATMAP_NAME, task_names=adapter.config.task_names,
                          pvalues=getattr(structure, "step_pvalues_", None))
        has_heatmap = True
    if lora_model is not None:
        lora_model.save_pretrained(str(folder / LORA_DIR))
    if keep_readme is not None:
        shutil.copy2(keep_readme, folder / README_NAME)
    elif card:
        (folder / README_NAME).write_text(render_card(adapter, structure, metrics, datasets, repo_id, has_heatmap))
    leaked = [name for name in FORBIDDEN_NAMES if (folder / name).exists()]
    if leaked:
        raise RuntimeError(f"Refusing to write {leaked} at the top of an artifact (transformers would read the "
                           "folder as a PEFT adapter).")


ARTIFACT_NAMES = (CONFIG_NAME, WEIGHTS_NAME, STRUCTURE_NAME, HEATMAP_NAME, README_NAME, TRAINING_ARGS_NAME,
                  TRAINING_METRICS_NAME, LORA_DIR)  # what a save writes at an artifact's top, and so replaces


def keep_other_contents(old: Path, new: Path) -> None:
    """Carry into the replacement `new` of folder `old` everything in `old` that a save does not write (the other
    hook points' subfolders, the user's own files): hard links where the file system allows, else copies. What a
    save writes (`ARTIFACT_NAMES`) is replaced, so an artifact saved without a structure or LoRA keeps none; a PEFT
    adapter's config at the top (`FORBIDDEN_NAMES`) and a killed save's temporary folders are not carried."""
    if not old.is_dir():
        return

    def link(source: str, destination: str) -> None:
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)

    for child in old.iterdir():
        if (child.name in ARTIFACT_NAMES or child.name in FORBIDDEN_NAMES or child.name.startswith(".tmp-")
                or (new / child.name).exists()):  # a killed save's temporary folder is not the user's
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.copytree(child, new / child.name, symlinks=True, copy_function=link)
        elif child.is_symlink():
            os.symlink(os.readlink(child), new / child.name)
        else:
            link(str(child), str(new / child.name))


def check_adapter_payload(payload: dict[str, Any], config_path: str | os.PathLike) -> None:
    """Refuse a `config.json` that no `SpecialistConfig` wrote (a `transformers` model's, or any other), naming it."""
    if "architecture" in payload or "d_in" in payload:
        return
    what = (f" (it describes a transformers {payload['model_type']!r} model)" if "model_type" in payload else "")
    raise InputError(f"{config_path} is not an hf_specialist adapter config{what}: no 'architecture' or 'd_in' key. "
                     "Pass a folder written by `SpecialistAdapter.save_pretrained`.")


def read_config_file(path_or_repo_id: str | os.PathLike, subfolder: str | None, revision: str | None,
                     token: str | bool | None, **download_kwargs: Any) -> tuple[dict[str, Any], Path]:
    """The artifact's `config.json` as a dict (and its local path), with clear errors when missing or corrupt."""
    config_path = resolve_file(path_or_repo_id, CONFIG_NAME, subfolder, revision, token, **download_kwargs)
    payload = read_config(config_path)
    check_adapter_payload(payload, config_path)
    architecture = payload.get("architecture", "specialist_vae")
    if architecture not in ADAPTER_ARCHITECTURES:
        raise InputError(f"Unknown adapter architecture {architecture!r} in {config_path}; known: "
                         f"{sorted(ADAPTER_ARCHITECTURES)}.")
    return payload, config_path


def load_weights(adapter: torch.nn.Module, path_or_repo_id: str | os.PathLike, subfolder: str | None,
                 revision: str | None, token: str | bool | None, **download_kwargs: Any) -> None:
    """Load `model.safetensors` into `adapter` strictly: missing, unexpected or mis-shaped tensors and corrupt
    files raise `ValueError` naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_path = resolve_file(path_or_repo_id, WEIGHTS_NAME, subfolder, revision, token, **download_kwargs)
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(f"{weights_path} is corrupt or truncated and cannot be read: {err}") from err
    expected = adapter.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tuple(expected[k].shape) != tuple(tensors[k].shape))
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}")
        if wrong:
            details.append("wrong shapes " + ", ".join(
                f"{k} {tuple(tensors[k].shape)} != {tuple(expected[k].shape)}" for k in wrong[:5]))
        raise InputError(f"{weights_path} does not match config.json: " + "; ".join(details) + ".")
    adapter.load_state_dict(tensors, strict=True)


def load_structure(path_or_repo_id: str | os.PathLike, subfolder: str | None, revision: str | None,
                   token: str | bool | None, **download_kwargs: Any) -> Any | None:
    """The `TaskStructure` saved in `structure.json`, or `None` when the artifact has none."""
    path = resolve_file(path_or_repo_id, STRUCTURE_NAME, subfolder, revision, token, required=False, **download_kwargs)
    if path is None:
        return None
    from ..structure.discovery import TaskStructure

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        return TaskStructure.from_dict(read_config(path))


def load_training_record(path_or_repo_id: str | os.PathLike, subfolder: str | None, revision: str | None,
                         token: str | bool | None, **download_kwargs: Any) -> tuple[Any | None, dict[str, float] | None]:
    """The `SpecialistTrainingArguments` of `training_args.json` and the held-out metrics of
    `training_metrics.json`, each `None` when the artifact has no such file (an adapter saved untrained)."""
    from .training_args import SpecialistTrainingArguments

    found = [resolve_file(path_or_repo_id, name, subfolder, revision, token, required=False, **download_kwargs)
             for name in (TRAINING_ARGS_NAME, TRAINING_METRICS_NAME)]
    args = metrics = None
    try:  # a record the weights do not need: one that does not parse warns and is left out
        if found[0] is not None:
            args = SpecialistTrainingArguments.from_dict(read_config(found[0]))
        if found[1] is not None:
            metrics = read_config(found[1])
    except (ValueError, TypeError) as err:
        warnings.warn(f"Could not read the training record of {path_or_repo_id} ({err}); the adapter loads "
                      "without `training_args_` / `training_metrics_`.", UserWarning, stacklevel=3)
    return args, metrics


def stale_repo_files(repo_files: list[str], folder: Path, subfolder: str | None, keep: list[str]) -> list[str]:
    """Files of the repo (relative to `subfolder`) that the artifact in `folder` does not have, to delete in the
    upload's commit: an earlier push's `structure.json`, `structure.png` or `lora/` must not outlive it.

    Kept: `keep` (a user's README), `.gitattributes`, files outside `subfolder`, and, for a root artifact, the other
    hook points' subfolders (a folder of the repo holding its own `config.json`, as a local save keeps them).
    """
    prefix = subfolder.strip("/") + "/" if subfolder else ""
    relative = [name[len(prefix):] for name in repo_files if name.startswith(prefix)]
    siblings = {name.split("/", 1)[0] for name in relative if name.count("/") == 1 and name.endswith("/" + CONFIG_NAME)}
    stale = []
    for name in relative:
        top = name.split("/", 1)[0]
        if name in keep or name == ".gitattributes" or (folder / name).is_file():
            continue
        if "/" in name and top in siblings and not (folder / top).exists():
            continue
        stale.append(name)
    return sorted(stale)


def artifact_files(folder: Path) -> tuple[list[str], list[str]]:
    """The upload patterns of the artifact in `folder` (its own files, and those of each hook point's subfolder
    holding a `config.json`), and the names of the other things there, which a push leaves out."""
    tops = ([""] if (folder / CONFIG_NAME).is_file() else []) + [
        child.name + "/" for child in sorted(folder.iterdir()) if child.is_dir() and (child / CONFIG_NAME).is_file()]
    patterns = [glob.escape(top) + (f"{name}/*" if name == LORA_DIR else glob.escape(name))
                for top in tops for name in ARTIFACT_NAMES]
    owned = {top + name for top in tops for name in ARTIFACT_NAMES}
    left_out = []
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.is_file() and not hidden and not any(name == own or name.startswith(own + "/") for own in owned):
            left_out.append(name)
    return patterns, left_out


def upload_artifact(folder: str | os.PathLike, repo_id: str, *, private: bool | None = None, branch: str | None = None,
                    commit_message: str | None = None, token: str | bool | None = None, subfolder: str | None = None,
                    create_pr: bool = False) -> str:
    """Upload a saved artifact folder to a Hub repo in one commit (creating the repo and branch if needed).

    The repo (or its `subfolder`) then holds exactly the artifact: files it does not have are deleted in the same
    commit (`stale_repo_files`), except a README in the repo that this library did not generate, which is kept.
    Returns the commit URL."""
    from huggingface_hub import HfApi, hf_hub_download

    from huggingface_hub.utils import HFValidationError, validate_repo_id

    folder = Path(folder)
    configs = [folder / CONFIG_NAME] if (folder / CONFIG_NAME).is_file() else [
        p / CONFIG_NAME for p in sorted(folder.iterdir()) if p.is_dir() and (p / CONFIG_NAME).is_file()]
    if not configs:
        raise MissingPathError(f"{folder} holds no {CONFIG_NAME}: not a saved hf_specialist artifact.")
    for config_path in configs:  # before any Hub call: the push replaces what the repo holds
        check_adapter_payload(read_config(config_path), config_path)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise InputError(f"`repo_id` {repo_id!r} is not a Hub repo id ('owner/name' or 'name'): {err}") from None
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if branch and branch != "main":
        api.create_branch(repo_id, branch=branch, exist_ok=True)
    ignore = []
    readme_in_repo = f"{subfolder}/{README_NAME}" if subfolder else README_NAME
    if api.file_exists(repo_id, readme_in_repo, revision=branch):
        existing = Path(hf_hub_download(repo_id, readme_in_repo, revision=branch, token=token))
        if not is_generated_card(existing):
            ignore.append(README_NAME)
    stale = stale_repo_files(api.list_repo_files(repo_id, revision=branch), folder, subfolder,
                             keep=[README_NAME] if ignore else [])
    allowed, left_out = artifact_files(folder)
    if left_out:
        warnings.warn(f"Not uploaded from {folder}: {left_out[:5]}{' ...' if len(left_out) > 5 else ''} (not part of "
                      "the artifact; a push uploads only what `save_pretrained` writes).", UserWarning, stacklevel=2)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        path_in_repo=subfolder,
        revision=branch,
        commit_message=commit_message or f"Upload hf_specialist adapter{f' ({subfolder})' if subfolder else ''}",
        allow_patterns=allowed,
        ignore_patterns=ignore or None,
        delete_patterns=[glob.escape(name) for name in stale] or None,  # same commit: the repo holds the artifact
        create_pr=create_pr,
    )
    return str(info)
