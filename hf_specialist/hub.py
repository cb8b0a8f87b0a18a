"""Save, load and push specialist adapters (and their structures) with model cards.

Layout of an artifact folder or Hub repo (DESIGN §5):

    config.json         SpecialistConfig plus library/torch/transformers versions
    model.safetensors   the adapter weights
    structure.json      the fitted TaskStructure, when one is attached
    structure.png       its heatmap, embedded in the card
    lora/               a PEFT LoRA on the base, when one was trained
    README.md           the model card (a user's README is never overwritten)

Several hook points: one subfolder each (`save_adapter(..., subfolder="layers.3")`), loadable one at a time.
Saves are atomic: everything is written to a temporary folder that is then swapped into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ._atomic import atomic_folder
from ._constants import (
    CARD_MARKER,
    CONFIG_NAME,
    FORBIDDEN_NAMES,
    HEATMAP_NAME,
    LORA_DIR,
    README_NAME,
    STRUCTURE_NAME,
    WEIGHTS_NAME,
)
from ._distributed import is_main_process
from ._files import read_config, resolve_file
from ._version import __version__

TEMPLATE_PATH = Path(__file__).parent / "model_cards" / "specialist_card.md"


def _is_generated_card(path: Path) -> bool:
    return path.is_file() and CARD_MARKER in path.read_text(encoding="utf-8", errors="replace")


# --- card --------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {"hf_specialist": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def render_card(adapter: Any, structure: Any | None = None, metrics: dict[str, float] | None = None,
                datasets: list[str] | None = None, repo_id: str | None = None, has_heatmap: bool = False) -> str:
    """Render the model card from `model_cards/specialist_card.md` with `huggingface_hub.ModelCard`."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    cfg = adapter.config
    metrics = dict(metrics or {})
    name = repo_id or f"specialist-{cfg.hook_point or 'adapter'}"
    eval_results = [
        EvalResult(task_type="feature-extraction", dataset_type=(datasets or ["custom"])[0],
                   dataset_name=(datasets or ["custom"])[0], metric_type=key, metric_name=key, metric_value=float(value))
        for key, value in metrics.items()
        if isinstance(value, (int, float))
    ]
    data = ModelCardData(
        library_name="hf_specialist",
        base_model=cfg.base_model,
        tags=["hf_specialist", "specialist-representation", "identifiability", "sparse-adapter"],
        datasets=datasets,
        model_name=name,
        eval_results=eval_results or None,
    )
    support = adapter.task_support_
    support_rows = "\n".join(
        f"| {task} | {cfg.task_types[i]} | {int(support[i].sum())} | {', '.join(str(j) for j in support[i].nonzero()[0]) or '-'} |"
        for i, task in enumerate(cfg.task_names)
    )
    metrics_rows = "\n".join(f"| `{k}` | {v:.4g} |" for k, v in metrics.items() if isinstance(v, (int, float))) or "| - | - |"
    if structure is not None:
        steps = structure.step_tasks_
        lines = ["| step | " + " | ".join(cfg.task_names[: steps.shape[1]]) + " |",
                 "|---|" + "---|" * steps.shape[1]]
        lines += [f"| {t + 1} | " + " | ".join("x" if v else "" for v in row) + " |" for t, row in enumerate(steps)]
        structure_text = (
            f"Discovered with `TaskStructure` (segment length {structure.segment_length}, test "
            f"`{structure.to_dict()['params']['test']}`, mode `{structure.mode}`, conditioning "
            f"`{getattr(structure, 'conditioning_', None) or structure.conditioning}`, decision "
            f"`{getattr(structure, 'decision_', None) or structure.decision}`, {structure.n_tests_} CI tests).\n\n"
            + (f"![step x task structure]({HEATMAP_NAME})\n\n" if has_heatmap else "")
            + "\n".join(lines)
        )
    else:
        structure_text = "No step x task structure was attached to this adapter."
    versions = _versions()
    return ModelCard.from_template(
        data,
        template_path=str(TEMPLATE_PATH),
        marker=CARD_MARKER,
        model_name=name,
        hook_point=cfg.hook_point or "unknown",
        base_model=cfg.base_model or "unknown",
        d_in=cfg.d_in,
        d_latent=cfg.d_latent,
        n_tasks=cfg.n_tasks,
        task_readout={"sequence": "from all the steps that serve it together (sequence readout)",
                      "step": "from each step alone (step readout)"}.get(cfg.task_readout, "not trained yet"),
        support_rows=support_rows,
        structure_text=structure_text,
        metrics_rows=metrics_rows,
        repo_or_path=repo_id or "path/to/this/folder",
        step_text=(f"steps split by {cfg.step_rule!r}, {cfg.pool or 'mean'}-pooled at `{cfg.hook_point}`"
                   + (f", truncated to {cfg.max_length} tokens" if cfg.max_length else "")
                   if cfg.step_rule else "pass `steps=` (trained on per-text spans)"),
        revision_text=f" (revision `{cfg.base_model_revision}`)" if cfg.base_model_revision else "",
        versions="\n".join(f"- {k} {v}" for k, v in versions.items()),
    ).content


# --- save --------------------------------------------------------------------------------------------


def _write_artifact(folder: Path, adapter: Any, structure: Any | None, metrics: dict[str, float] | None,
                    datasets: list[str] | None, lora_model: Any | None, repo_id: str | None, card: bool,
                    keep_readme: Path | None) -> None:
    from safetensors.torch import save_file

    config = adapter.config.to_dict()
    config["versions"] = _versions()
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))
    tensors = {k: v.detach().cpu().contiguous() for k, v in adapter.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "library": "hf_specialist"})
    has_heatmap = False
    if structure is not None:
        (folder / STRUCTURE_NAME).write_text(structure.to_json())
        from .plots import step_task_heatmap

        step_task_heatmap(structure.step_tasks_, folder / HEATMAP_NAME, task_names=adapter.config.task_names)
        has_heatmap = True
    if lora_model is not None:
        lora_model.save_pretrained(str(folder / LORA_DIR))
    if keep_readme is not None:
        shutil.copy2(keep_readme, folder / README_NAME)
    elif card:
        (folder / README_NAME).write_text(render_card(adapter, structure, metrics, datasets, repo_id, has_heatmap))


def save_adapter(
    adapter: Any,
    save_directory: str | os.PathLike,
    *,
    structure: Any | None = None,
    metrics: dict[str, float] | None = None,
    datasets: list[str] | None = None,
    lora_model: Any | None = None,
    subfolder: str | None = None,
    card: bool = True,
    repo_id: str | None = None,
) -> Path:
    """Save an adapter artifact atomically.

    Args:
        adapter (`SpecialistAdapter`): the adapter.
        save_directory (`str`): the artifact folder (created if needed).
        structure (`TaskStructure`, *optional*): a fitted structure to store as `structure.json` (defaults to
            `adapter.structure_` when set).
        metrics (`dict`, *optional*): metrics for the card's `eval_results` and table.
        datasets (`list[str]`, *optional*): dataset ids for the card.
        lora_model (`peft.PeftModel`, *optional*): a LoRA trained with the adapter, saved by PEFT in `lora/`.
        subfolder (`str`, *optional*): save into this subfolder (one per hook point).
        card (`bool`, *optional*, defaults to `True`): write a model card unless a user's README is there.

    Returns:
        `Path` of the saved folder.
    """
    root = Path(save_directory)
    target = root / subfolder if subfolder else root
    structure = structure if structure is not None else getattr(adapter, "structure_", None)
    if structure is not None and not hasattr(structure, "step_tasks_"):
        raise ValueError("`structure` must be a fitted TaskStructure.")
    if not is_main_process():  # under several processes only the main one writes (no wait here: call it from
        return target          # every process or only the main one; synchronise before other processes read it)
    existing_readme = target / README_NAME
    keep = existing_readme if existing_readme.exists() and not _is_generated_card(existing_readme) else None
    with atomic_folder(target) as tmp:
        _write_artifact(tmp, adapter, structure, metrics, datasets, lora_model, repo_id, card, keep)
        if target.exists():  # keep sibling subfolders (other hook points) of a root artifact
            for child in target.iterdir():
                if child.is_dir() and (child / CONFIG_NAME).exists() and not (tmp / child.name).exists():
                    shutil.copytree(child, tmp / child.name)
        leaked = [name for name in FORBIDDEN_NAMES if (tmp / name).exists()]
        if leaked:
            raise RuntimeError(f"Refusing to write {leaked} at the top of an artifact (transformers would read "
                               "the folder as a PEFT adapter).")
    return target


# --- load --------------------------------------------------------------------------------------------


def load_adapter(
    path_or_repo_id: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    subfolder: str | None = None,
    device: str | None = None,
    **download_kwargs: Any,
) -> Any:
    """Load a `SpecialistAdapter` (with its `structure_` when saved) from a folder or a Hub repo id.

    Loading is strict: missing or unexpected tensors and wrong shapes raise `ValueError`; a corrupt or truncated
    weight file raises `ValueError` naming it; a missing file raises `FileNotFoundError` naming it; unknown config
    keys (from a newer version) warn and are dropped.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .adapter.config import SpecialistConfig
    from .adapter.model import SpecialistAdapter

    config_path = resolve_file(path_or_repo_id, CONFIG_NAME, subfolder, revision, token, **download_kwargs)
    payload = read_config(config_path)
    architecture = payload.get("architecture", "specialist_vae")
    if architecture not in ADAPTER_ARCHITECTURES:
        raise ValueError(f"Unknown adapter architecture {architecture!r} in {config_path}; known: {sorted(ADAPTER_ARCHITECTURES)}.")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        config = SpecialistConfig.from_dict(payload)
    adapter = SpecialistAdapter(config)
    weights_path = resolve_file(path_or_repo_id, WEIGHTS_NAME, subfolder, revision, token, **download_kwargs)
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{weights_path} is corrupt or truncated and cannot be read: {err}") from err
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
            details.append("wrong shapes " + ", ".join(f"{k} {tuple(tensors[k].shape)} != {tuple(expected[k].shape)}" for k in wrong[:5]))
        raise ValueError(f"{weights_path} does not match config.json: " + "; ".join(details) + ".")
    adapter.load_state_dict(tensors, strict=True)
    structure_path = resolve_file(path_or_repo_id, STRUCTURE_NAME, subfolder, revision, token, required=False, **download_kwargs)
    if structure_path is not None:
        from .structure.discovery import TaskStructure

        with warnings.catch_warnings():
            warnings.simplefilter("always")
            adapter.structure_ = TaskStructure.from_dict(read_config(structure_path))
    adapter.source_ = {"path_or_repo_id": str(path_or_repo_id), "revision": revision, "subfolder": subfolder}
    if device is not None:
        adapter.to(torch.device(device))
    return adapter.eval()


# --- push --------------------------------------------------------------------------------------------


def push_adapter(
    adapter: Any,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    branch: str | None = None,
    commit_message: str | None = None,
    token: str | bool | None = None,
    subfolder: str | None = None,
    create_pr: bool = False,
    **save_kwargs: Any,
) -> str:
    """Push an adapter to the Hub in one commit; returns the commit URL.

    A README already in the repo that this library did not generate is kept (not uploaded over).
    """
    branch = branch or revision
    if not is_main_process():  # one push per run, from the main process
        return ""
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_adapter(adapter, Path(tmp) / "artifact", repo_id=repo_id, **save_kwargs)
        return push_folder(folder, repo_id, private=private, branch=branch, commit_message=commit_message,
                           token=token, subfolder=subfolder, create_pr=create_pr)


def push_folder(folder: str | os.PathLike, repo_id: str, *, private: bool | None = None, branch: str | None = None,
                commit_message: str | None = None, token: str | bool | None = None, subfolder: str | None = None,
                create_pr: bool = False) -> str:
    """Upload a saved artifact folder to a Hub repo in one commit (creating the repo and branch if needed)."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file() and not any((p / CONFIG_NAME).is_file() for p in folder.iterdir() if p.is_dir()):
        raise FileNotFoundError(f"{folder} holds no {CONFIG_NAME}: not a saved hf_specialist artifact.")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if branch and branch != "main":
        api.create_branch(repo_id, branch=branch, exist_ok=True)
    ignore = []
    readme_in_repo = f"{subfolder}/{README_NAME}" if subfolder else README_NAME
    if api.file_exists(repo_id, readme_in_repo, revision=branch):
        from huggingface_hub import hf_hub_download

        existing = Path(hf_hub_download(repo_id, readme_in_repo, revision=branch, token=token))
        if not _is_generated_card(existing):
            ignore.append(README_NAME)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        path_in_repo=subfolder,
        revision=branch,
        commit_message=commit_message or f"Upload hf_specialist adapter{f' ({subfolder})' if subfolder else ''}",
        ignore_patterns=ignore or None,
        create_pr=create_pr,
    )
    return str(info)


ADAPTER_ARCHITECTURES = {"specialist_vae"}
