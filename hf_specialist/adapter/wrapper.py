"""`SpecialistModel`: a base `transformers` model (with its saved LoRA) + the hook point + a specialist adapter.

It reproduces the pipeline the adapter was trained in: `encode_steps` and `predict` tokenise the texts, read the
base at the saved hook point, pool tokens into steps with the saved step rule, pooling and `max_length`, and run
the adapter on those step states (with the saved structure for per-sequence predictions). `forward` is the
token-level view: the adapter on every token's state.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.utils import ModelOutput

from .._constants import LORA_DIR
from .._files import resolve_file
from ..hooks import HiddenStateExtractor, config_int, resolve_hook_points
from .model import SpecialistAdapter


@dataclass
class SpecialistOutput(ModelOutput):
    """Token-level output of `SpecialistModel`.

    Args:
        specialist (`torch.Tensor` of shape `(batch, tokens, support size)`): the task's specialist representation.
        latents (`torch.Tensor` of shape `(batch, tokens, d_latent)`): the full latent.
        hidden_states (`torch.Tensor` of shape `(batch, tokens, d_in)`): the base model's states at the hook point.
        prediction (`torch.Tensor`): the task head's prediction per token (`None` for an adapter with the sequence
            readout, whose predictions need a sequence's steps: use `SpecialistModel.predict`).
    """

    specialist: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None
    prediction: torch.Tensor | None = None


def _base_hidden_size(model: nn.Module) -> int | None:
    return config_int(model, ("hidden_size", "n_embd", "d_model"))


def _load_lora(base_model: nn.Module, path_or_repo_id: str | os.PathLike, subfolder: str | None,
               revision: str | None, token: Any, **download: Any) -> nn.Module:
    """Wrap `base_model` with the PEFT LoRA saved beside the adapter in `lora/`, when there is one (`download`:
    `cache_dir`, `force_download`, `local_files_only`, as for the adapter)."""
    inner = f"{subfolder}/{LORA_DIR}" if subfolder else LORA_DIR
    config_file = resolve_file(path_or_repo_id, "adapter_config.json", inner, revision, token, required=False,
                               **download)
    if config_file is None:
        return base_model
    from peft import PeftModel

    if isinstance(base_model, PeftModel):
        raise ValueError("The adapter was saved with a LoRA (`lora/`), and `base_model` is already a PeftModel: "
                         "pass the plain base model; its LoRA is loaded from the artifact.")
    resolve_file(path_or_repo_id, "adapter_model.safetensors", inner, revision, token, **download)  # beside its config
    return PeftModel.from_pretrained(base_model, str(config_file.parent), is_trainable=False).eval()


class SpecialistModel(nn.Module):
    """A base model whose hidden states at `adapter.config.hook_point` go through the specialist adapter.

    Args:
        base_model (`nn.Module`): the `transformers` model (or a `peft.PeftModel` holding the trained LoRA).
        adapter (`SpecialistAdapter`): a trained adapter.
        tokenizer (*optional*): the base model's tokenizer; needed by `encode_steps` and `predict`.
        hook_point (`str`, *optional*): defaults to `adapter.config.hook_point`.

    Examples:
        >>> specialist = SpecialistModel.from_pretrained(base, "user/minilm-specialist", tokenizer=tok)  # doctest: +SKIP
        >>> specialist.encode_steps(texts, task=0).shape  # doctest: +SKIP
        (2, 8, 3)
        >>> specialist.predict(texts, task=0)  # doctest: +SKIP
    """

    def __init__(self, base_model: nn.Module, adapter: SpecialistAdapter, tokenizer: Any = None,
                 hook_point: str | None = None) -> None:
        super().__init__()
        hook_point = hook_point or adapter.config.hook_point
        if hook_point is None:
            raise ValueError("The adapter records no hook point; pass `hook_point=`.")
        check_base_compatible(base_model, adapter)
        self.base_model = base_model
        self.adapter = adapter
        self.tokenizer = tokenizer
        self.hook_point = resolve_hook_points(base_model, hook_point)[0]

    @classmethod
    def from_pretrained(
        cls,
        base_model: nn.Module,
        path_or_repo_id: str | os.PathLike,
        *,
        tokenizer: Any = None,
        hook_point: str | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        subfolder: str | None = None,
        **load_kwargs: Any,
    ) -> SpecialistModel:
        """Load an adapter (folder or Hub repo id) onto `base_model` in one line.

        When the artifact holds a LoRA trained with the adapter (`lora/`), `base_model` is wrapped with it (PEFT
        injects the LoRA layers into `base_model` in place). Refuses, with a `ValueError`, a base whose hidden size
        or model type differs from what the adapter was trained on.
        """
        adapter = SpecialistAdapter.from_pretrained(path_or_repo_id, revision=revision, token=token,
                                                    subfolder=subfolder, **load_kwargs)
        check_base_compatible(base_model, adapter)
        download = {k: load_kwargs[k] for k in ("cache_dir", "force_download", "local_files_only") if load_kwargs.get(k)}
        base = _load_lora(base_model, path_or_repo_id, subfolder, revision, token, **download)
        try:
            adapter.to(next(base.parameters()).device)
        except StopIteration:
            pass
        return cls(base, adapter, tokenizer=tokenizer, hook_point=hook_point)

    # -- the trained pipeline ----------------------------------------------------------------------
    def step_states(self, texts: Sequence[str] | Any, *, steps: Any = None, batch_size: int = 16,
                    progress: bool | None = None, column: str | None = None) -> np.ndarray:
        """`(n, T, d_in)` step states of `texts` exactly as at training: the saved hook point, step rule
        (`steps` overrides it; required when the adapter was trained on per-text spans), pooling and `max_length`."""
        from ..data import extract_steps

        if self.tokenizer is None:
            raise ValueError("Pass `tokenizer=` to `SpecialistModel.from_pretrained` to run on texts.")
        cfg = self.adapter.config
        rule = steps if steps is not None else cfg.step_rule
        if rule is None:
            raise ValueError("The adapter records no step rule (it was trained on per-text spans or states without "
                             "`SpecialistConfig(step_rule=...)`); pass `steps=` ('token', a separator, or spans).")
        return extract_steps(self.base_model, self.tokenizer, texts, hook_point=self.hook_point, steps=rule,
                             pool=cfg.pool or "mean", batch_size=batch_size, max_length=cfg.max_length,
                             column=column, progress=progress, process_index=0, num_processes=1)

    @torch.no_grad()
    def encode_steps(self, texts: Sequence[str] | Any, task: int | str = 0, **kwargs: Any) -> np.ndarray:
        """The task's specialist representation of every step: numpy `(n, T, |support_task|)`.

        Equals `adapter.task_latents(extract_steps(base, tokenizer, texts, <saved hook point, step rule, pooling,
        max_length>), task)`. Keyword arguments go to `step_states`.
        """
        states = self.step_states(texts, **kwargs)
        return self.adapter.task_latents(torch.from_numpy(states), task=task).cpu().numpy()

    @torch.no_grad()
    def predict(self, texts: Sequence[str] | Any, task: int | str = 0, **kwargs: Any) -> np.ndarray:
        """The task's prediction per text (sequence readout, from the steps the saved structure assigns to the
        task) or per step (step readout): regression values in the original units, or class logits."""
        states = self.step_states(texts, **kwargs)
        return self.adapter.predict(torch.from_numpy(states), task=task).cpu().numpy()

    # -- token level --------------------------------------------------------------------------------
    def forward(self, task: int | str = 0, **inputs: Any) -> SpecialistOutput:
        """Token level: run the base up to the hook point (stopping early) and the adapter on every token.

        The adapter was trained on pooled steps; for step-level outputs use `encode_steps` / `predict`.
        """
        with HiddenStateExtractor(self.base_model, self.hook_point) as extractor:
            hidden = extractor(**inputs)[self.hook_point]
        latents = self.adapter.encode(hidden)
        index = self.adapter._check_task(task)
        support = torch.as_tensor(self.adapter.task_support_[index], device=latents.device)
        return SpecialistOutput(
            specialist=latents[..., support],
            latents=latents,
            hidden_states=hidden,
            prediction=None if self.adapter.config.task_readout == "sequence" else self.adapter.predict(hidden, task=index),
        )


def check_base_compatible(base_model: nn.Module, adapter: SpecialistAdapter) -> None:
    """Raise `ValueError` when the base's hidden size or model type differs from the adapter's record."""
    cfg = adapter.config
    size = _base_hidden_size(base_model)
    residual = cfg.hook_point is None or cfg.hook_point in ("embed", "final_norm") or cfg.hook_point.startswith("layers.")
    expected = cfg.base_hidden_size or (cfg.d_in if residual else None)  # a raw module path may have another width
    if size is not None and expected is not None and size != expected:
        raise ValueError(
            f"The base model's hidden size is {size}, but the adapter was trained on hidden size {expected} "
            f"(base model {cfg.base_model or 'unknown'}); load it onto the matching base model."
        )
    model_type = getattr(getattr(base_model, "config", None), "model_type", None)
    if cfg.base_model_type and model_type and model_type != cfg.base_model_type:
        raise ValueError(
            f"The base model's type is {model_type!r}, but the adapter was trained on a {cfg.base_model_type!r} model "
            f"({cfg.base_model or 'unknown'})."
        )
