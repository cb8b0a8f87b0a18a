"""`SpecialistModel`: a base `transformers` model + a hook point + a specialist adapter."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.utils import ModelOutput

from ..hooks import HiddenStateExtractor, config_int, resolve_hook_points
from .model import SpecialistAdapter


@dataclass
class SpecialistOutput(ModelOutput):
    """Output of `SpecialistModel`.

    Args:
        specialist (`torch.Tensor` of shape `(batch, tokens, support size)`): the task's specialist representation.
        latents (`torch.Tensor` of shape `(batch, tokens, d_latent)`): the full latent.
        hidden_states (`torch.Tensor` of shape `(batch, tokens, d_in)`): the base model's states at the hook point.
        prediction (`torch.Tensor`): the task head's prediction per token (`None` for an adapter with the sequence
            readout, whose predictions need the steps of a sequence: use `adapter.predict` on step states).
    """

    specialist: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None
    prediction: torch.Tensor | None = None


def _base_hidden_size(model: nn.Module) -> int | None:
    return config_int(model, ("hidden_size", "n_embd", "d_model"))


class SpecialistModel(nn.Module):
    """A base model whose hidden states at `adapter.config.hook_point` go through the specialist adapter.

    Args:
        base_model (`nn.Module`): the `transformers` model (or a `peft.PeftModel`).
        adapter (`SpecialistAdapter`): a trained adapter.
        hook_point (`str`, *optional*): defaults to `adapter.config.hook_point`.

    Examples:
        >>> model = SpecialistModel.from_pretrained(base, "user/minilm-specialist")  # doctest: +SKIP
        >>> model(**tokenizer(texts, return_tensors="pt", padding=True), task=0).specialist.shape  # doctest: +SKIP
    """

    def __init__(self, base_model: nn.Module, adapter: SpecialistAdapter, hook_point: str | None = None) -> None:
        super().__init__()
        hook_point = hook_point or adapter.config.hook_point
        if hook_point is None:
            raise ValueError("The adapter records no hook point; pass `hook_point=`.")
        check_base_compatible(base_model, adapter)
        self.base_model = base_model
        self.adapter = adapter
        self.hook_point = resolve_hook_points(base_model, hook_point)[0]

    @classmethod
    def from_pretrained(
        cls,
        base_model: nn.Module,
        path_or_repo_id: str | os.PathLike,
        *,
        hook_point: str | None = None,
        **load_kwargs: Any,
    ) -> SpecialistModel:
        """Load an adapter (folder or Hub repo id) onto `base_model` in one line.

        Refuses, with a `ValueError`, a base whose hidden size or model type differs from what the adapter was
        trained on.
        """
        adapter = SpecialistAdapter.from_pretrained(path_or_repo_id, **load_kwargs)
        try:
            device = next(base_model.parameters()).device
            adapter.to(device)
        except StopIteration:
            pass
        return cls(base_model, adapter, hook_point=hook_point)

    def forward(self, task: int | str = 0, **inputs: Any) -> SpecialistOutput:
        """Run the base model up to the hook point (stopping early) and the adapter on every token."""
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
    expected = cfg.base_hidden_size or cfg.d_in
    if size is not None and size != expected:
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
