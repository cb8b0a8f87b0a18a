"""`AdapterHubMixin`: `SpecialistAdapter`'s Hub methods. `huggingface_hub.ModelHubMixin` gives `save_pretrained`,
`from_pretrained` and `push_to_hub`; our format (`artifact`: strict loading, atomic save, structure, card, LoRA
subfolder) goes in its hooks `_save_pretrained` / `_from_pretrained`."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import ModelHubMixin

from .._arrays import names_differ
from .._atomic import atomic_folder
from .._constants import LORA_DIR, README_NAME, TRAINING_ARGS_NAME, TRAINING_METRICS_NAME
from .._distributed import is_main_process, main_process_first_writes
from .._validation import InputError, InputTypeError
from .artifact import (
    keep_other_contents,
    load_structure,
    load_training_record,
    load_weights,
    read_config_file,
    readme_to_keep,
    upload_artifact,
    write_artifact,
)
from .config import SpecialistConfig


def save_target(save_directory: str | os.PathLike, subfolder: str | None) -> tuple[Path, Path]:
    """The folder a save writes (`~` expanded) and the artifact's place in it, refusing a `subfolder` that leaves
    the folder and a folder that holds the working directory (a save replaces the whole folder)."""
    root = Path(save_directory).expanduser()
    if subfolder:  # '' and None: the folder itself
        parts = Path(subfolder).parts
        if Path(subfolder).is_absolute() or ".." in parts:
            raise InputError(f"`subfolder` must be a relative path inside the folder (e.g. 'layers.3'), got "
                             f"{subfolder!r}.")
    target = root / subfolder if subfolder else root
    try:
        here = Path.cwd().resolve()
    except FileNotFoundError:  # the working directory was deleted: nothing there to replace
        return root, target
    resolved = target.resolve()
    if resolved == here or resolved in here.parents:
        raise InputError(f"`save_directory` {os.fspath(save_directory)!r} is (or holds) the working directory, which a "
                         "save would replace; save into a folder of its own, e.g. 'my-specialist'.")
    return root, target


def check_structure_fits(config: Any, structure: Any) -> None:
    """Refuse a structure that does not describe this adapter's tasks and steps: another task count, another step
    count than the adapter was trained on, or (where both are named) other tasks or another task order."""
    steps, tasks = structure.step_tasks_.shape
    if tasks != config.n_tasks:
        raise InputError(f"`structure` marks steps for {tasks} task(s) but the adapter has n_tasks={config.n_tasks}; "
                         "save it with the structure fitted on its tasks.")
    if config.n_steps is not None and steps != config.n_steps:
        raise InputError(f"`structure` has {steps} steps but the adapter was trained on {config.n_steps} steps per "
                         "sequence (`config.n_steps`); save it with the structure fitted on those states.")
    names, recorded = getattr(structure, "task_names_", None), list(config.task_names)
    differ = names_differ(recorded, names) if config.named_tasks else None
    if differ is not None:
        order = "in another order" if differ == "order" else "for other tasks"
        raise InputError(f"`structure` was fitted {order}: its tasks are {list(names)}, the adapter's are {recorded} "
                         "(`config.task_names`); fit the structure on the adapter's task columns, in its order.")
    trained = None if config.step_tasks is None else np.asarray(config.step_tasks, dtype=bool)
    marks = structure.step_tasks_
    if trained is not None and trained.shape == marks.shape and bool((trained != marks).any()):
        task = int(np.flatnonzero((trained != marks).any(0))[0])
        warnings.warn(f"`structure` marks other steps than the adapter was trained on (task "
                      f"{config.task_names[task]!r}: structure {_steps(marks[:, task])}, trained "
                      f"{_steps(trained[:, task])}); "
                      "`predict` reads the trained steps (`config.step_tasks`), and the saved structure and card show "
                      "the structure's.", UserWarning, stacklevel=3)


def _steps(column: Any) -> str:
    return ",".join(str(t + 1) for t in np.flatnonzero(column)) or "none"


class AdapterHubMixin(ModelHubMixin):
    """Save, load and push for a `torch.nn.Module` adapter built as `cls(config: SpecialistConfig)`."""

    def _save_pretrained(self, save_directory: Path) -> None:
        """The mixin's hook: write the artifact's files into `save_directory` (a fresh temporary folder)."""
        options = getattr(self, "_save_options", None) or {"structure": getattr(self, "structure_", None)}
        write_artifact(Path(save_directory), self, **options)
        training_args = getattr(self, "training_args_", None)  # set by train_specialist: how to reproduce the run
        if training_args is not None:
            training_args.to_json_file(Path(save_directory) / TRAINING_ARGS_NAME)
        training_metrics = getattr(self, "training_metrics_", None)  # the kept model's held-out metrics
        if training_metrics is not None:
            (Path(save_directory) / TRAINING_METRICS_NAME).write_text(
                json.dumps(training_metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def save_pretrained(  # type: ignore[override]
        self,
        save_directory: str | os.PathLike,
        *,
        structure: Any | None = None,
        metrics: dict[str, float] | None = None,
        datasets: list[str] | None = None,
        lora_model: Any | None = None,
        subfolder: str | None = None,
        card: bool = True,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        **push_to_hub_kwargs: Any,
    ) -> Path | str:
        """Save `config.json`, `model.safetensors` (and `structure.json`, `lora/`, `README.md`) atomically.

        `ModelHubMixin.save_pretrained` runs on a temporary folder that is then swapped into place, so a reader
        sees the whole old artifact or the whole new one. Under several processes only the main one writes, and every
        process returns only once the folder is complete (a barrier after the main process's swap).

        Args:
            save_directory (`str`): the artifact folder (created if needed).
            structure (`TaskStructure`, *optional*): a fitted structure to store as `structure.json` (defaults to
                `self.structure_` when set).
            metrics (`dict`, *optional*): metrics for the card's `eval_results` and table.
            datasets (`list[str]`, *optional*): dataset ids for the card.
            lora_model (`peft.PeftModel`, *optional*): a LoRA trained with the adapter, saved by PEFT in `lora/`.
            subfolder (`str`, *optional*): save into this subfolder (one per hook point); sibling subfolders stay.
            card (`bool`, *optional*, defaults to `True`): write a model card unless a user's README is there.
            repo_id (`str`, *optional*): the repo named in the card, and the one pushed to with `push_to_hub=True`
                (default: the folder's name).
            push_to_hub (`bool`, *optional*, defaults to `False`): also upload the saved folder in one commit (to
                `subfolder` of the repo when given).
            push_to_hub_kwargs: with `push_to_hub=True`, `private`, `branch`, `commit_message`, `token`,
                `create_pr` (see `push_to_hub`).

        Returns:
            `Path` of the saved folder, or the commit URL with `push_to_hub=True`.
        """
        if push_to_hub_kwargs and not push_to_hub:
            raise InputTypeError(f"save_pretrained() got unexpected keyword arguments {sorted(push_to_hub_kwargs)}; "
                                 "push options need push_to_hub=True.")
        unknown = set(push_to_hub_kwargs) - _PUSH_OPTIONS
        if unknown:
            raise InputTypeError(f"save_pretrained() got unexpected keyword arguments {sorted(unknown)}; push options "
                                 f"are {sorted(_PUSH_OPTIONS)}.")
        root, target = save_target(save_directory, subfolder)
        structure = structure if structure is not None else getattr(self, "structure_", None)
        if structure is not None and not hasattr(structure, "step_tasks_"):
            raise InputError(f"`structure` must be a fitted TaskStructure (with `step_tasks_`), got "
                             f"{type(structure).__name__}.")
        if structure is not None:
            check_structure_fits(self.config, structure)
        card_repo = repo_id or (root.name if push_to_hub else None)  # the card names the repo it is pushed to
        lora_model = self._lora_to_save(lora_model)
        options = dict(structure=structure, metrics=metrics, datasets=datasets, lora_model=lora_model,
                       repo_id=card_repo, card=card)
        with main_process_first_writes() as writes:  # every process leaves once the folder is complete
            if writes:
                self._write_folder(target, options)
        if not push_to_hub:
            return target
        if not is_main_process():
            return ""
        push = dict(push_to_hub_kwargs)
        branch, revision = push.pop("branch", None), push.pop("revision", None)
        branch = branch or revision
        return upload_artifact(target, repo_id or root.name, subfolder=subfolder, branch=branch, **push)

    def _lora_to_save(self, lora_model: Any | None) -> Any | None:
        """The LoRA a save writes: the one passed, else the one training put on the base (`lora_model_`); warns
        when the adapter was trained with a LoRA that this save would leave out."""
        lora_model = lora_model if lora_model is not None else getattr(self, "lora_model_", None)
        if lora_model is None and self.config.trained_with_lora:
            warnings.warn("This adapter was trained with a LoRA on the base (`config.trained_with_lora`), but none is "
                          "saved with it; pass `lora_model=` (the `\"lora_model\"` of train_specialist's result), or "
                          "the artifact will read states of the base without it.", UserWarning, stacklevel=3)
        return lora_model

    def _write_folder(self, target: Path, options: dict[str, Any]) -> None:
        """Write the artifact at `target` atomically (this process only: no barrier)."""
        options = dict(options, keep_readme=readme_to_keep(target))
        with atomic_folder(target) as tmp:
            self._save_options = options
            try:
                ModelHubMixin.save_pretrained(self, tmp)
            finally:
                del self._save_options
            if not options["card"] and options["keep_readme"] is None:  # the mixin writes its own card where none is
                (tmp / README_NAME).unlink(missing_ok=True)
            keep_other_contents(target, tmp)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | os.PathLike | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         subfolder: str | None = None, device: str | None = None,
                         config: Any = None) -> AdapterHubMixin:
        """The mixin's hook: build the adapter from the artifact's own `config.json` (in `subfolder` when given; a
        config parsed by the mixin is not used), load its weights strictly and attach its structure."""
        download = dict(cache_dir=cache_dir, force_download=force_download, local_files_only=local_files_only)
        download = {k: v for k, v in download.items() if v}
        payload, _ = read_config_file(model_id, subfolder, revision, token, **download)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            adapter = cls(SpecialistConfig.from_dict(payload))
        load_weights(adapter, model_id, subfolder, revision, token, **download)
        structure = load_structure(model_id, subfolder, revision, token, **download)
        if structure is not None:
            adapter.structure_ = structure
        training_args, training_metrics = load_training_record(model_id, subfolder, revision, token, **download)
        if training_args is not None:
            adapter.training_args_ = training_args
        if training_metrics is not None:
            adapter.training_metrics_ = training_metrics
        local_lora = Path(model_id).expanduser() / (subfolder or "") / LORA_DIR / "adapter_config.json"
        if local_lora.is_file():  # written before the config recorded it: a re-save must keep (or be told of) it
            adapter.config.trained_with_lora = True
        adapter.source_ = {"path_or_repo_id": str(model_id), "revision": revision, "subfolder": subfolder}
        if device is not None:
            adapter.to(torch.device(device))
        return adapter.eval()

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        path_or_repo_id: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        subfolder: str | None = None,
        device: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
    ) -> AdapterHubMixin:
        """Load an adapter (with its `structure_`, and the `training_args_` and `training_metrics_` of the run that
        trained it, when saved) from a local folder or a Hub repo id.

        The mixin's hook `_from_pretrained` does the work. It is called directly rather than through
        `ModelHubMixin.from_pretrained`, which first fetches a top-level `config.json`: an artifact of several
        hook points has none (one per subfolder), and offline that fetch fails even when the subfolder is cached.

        Args:
            path_or_repo_id (`str`): a folder saved by `save_pretrained` or a Hub repo id.
            revision (`str`, *optional*): branch, tag or commit on the Hub.
            token (`str` or `bool`, *optional*): Hub token.
            subfolder (`str`, *optional*): the hook point's subfolder of an artifact that holds several.
            device (`str`, *optional*): move the loaded adapter there.
            cache_dir, force_download, local_files_only: as in `huggingface_hub.hf_hub_download`.

        Loading is strict: missing or unexpected tensors and wrong shapes raise `ValueError`; a corrupt or truncated
        file raises `ValueError` naming it; a missing file raises `FileNotFoundError` naming it; unknown config keys
        (from a newer version) warn and are dropped.
        """
        return cls._from_pretrained(model_id=str(path_or_repo_id), revision=revision, cache_dir=cache_dir,
                                    force_download=force_download, local_files_only=local_files_only, token=token,
                                    subfolder=subfolder, device=device)

    def push_to_hub(  # type: ignore[override]
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        branch: str | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
        token: str | bool | None = None,
        subfolder: str | None = None,
        create_pr: bool = False,
        **save_kwargs: Any,
    ) -> str:
        """Save to a temporary folder (`save_pretrained`; `save_kwargs` are its `structure`, `metrics`,
        `datasets`, `lora_model`, `card`) and push it in one commit, to `subfolder` of the repo when given; a README
        in the repo that this library did not write is kept. Returns the commit URL (an empty string on processes
        other than the main one)."""
        unknown = set(save_kwargs) - _SAVE_OPTIONS
        if unknown:
            raise InputTypeError(f"push_to_hub() got unexpected keyword arguments {sorted(unknown)}; save options are "
                                 f"{sorted(_SAVE_OPTIONS)}.")
        if not is_main_process():
            return ""
        structure = save_kwargs.pop("structure", None)
        structure = structure if structure is not None else getattr(self, "structure_", None)
        if structure is not None and not hasattr(structure, "step_tasks_"):
            raise InputError(f"`structure` must be a fitted TaskStructure (with `step_tasks_`), got "
                             f"{type(structure).__name__}.")
        if structure is not None:
            check_structure_fits(self.config, structure)
        options = dict(structure=structure, metrics=None, datasets=None, lora_model=None, card=True, repo_id=repo_id)
        options.update(save_kwargs)
        options["lora_model"] = self._lora_to_save(options["lora_model"])
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "artifact"
            self._write_folder(folder, options)  # only this (main) process: no barrier
            return upload_artifact(folder, repo_id, private=private, branch=branch or revision,
                                   commit_message=commit_message, token=token, subfolder=subfolder,
                                   create_pr=create_pr)


_PUSH_OPTIONS = {"private", "branch", "revision", "commit_message", "token", "create_pr"}
_SAVE_OPTIONS = {"structure", "metrics", "datasets", "lora_model", "card"}
