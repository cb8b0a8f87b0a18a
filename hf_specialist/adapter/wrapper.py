"""`SpecialistModel`: a base `transformers` model (with its saved LoRA) + the hook point + a specialist adapter.

It reproduces the pipeline the adapter was trained in: `encode_steps` and `predict` tokenise the texts, read the
base at the saved hook point, pool tokens into steps with the saved step rule, pooling and `max_length`, and run
the adapter on those step states (per-sequence predictions read each task's trained steps, `config.step_tasks`,
else the saved structure's). `forward` is the
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
from .._validation import InputError, InputTypeError
from .._warnings import warn_user
from ..hooks import HiddenStateExtractor, config_int, layer_count, resolve_hook_points
from .config import base_identity
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
        raise InputError("The adapter was saved with a LoRA (`lora/`), and `base_model` is already a PeftModel: "
                         "pass the plain base model; its LoRA is loaded from the artifact.")
    resolve_file(path_or_repo_id, "adapter_model.safetensors", inner, revision, token, **download)  # beside its config
    return PeftModel.from_pretrained(base_model, str(config_file.parent), is_trainable=False).eval()


def _has_lora(model: nn.Module) -> bool:
    """Whether `model` carries LoRA layers (a `peft.PeftModel`, or LoRA injected in place)."""
    return any("lora_" in name for name, _ in model.named_parameters())


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
            raise InputError("The adapter records no hook point; pass `hook_point=`.")
        check_base_compatible(base_model, adapter)
        if adapter.config.trained_with_lora and not _has_lora(base_model):
            warn_user("The adapter was trained with a LoRA on the base (`config.trained_with_lora`), but `base_model` "
                      "has none, so it reads other states than in training; load it with "
                      "`SpecialistModel.from_pretrained(base, folder)` (which puts the saved `lora/` back) or pass the "
                      "PeftModel (a base with the LoRA merged into its weights is fine: then ignore this).")
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
        injects the LoRA layers into `base_model` in place). Refuses, with an `InputError`, a base whose hidden size
        or model type differs from what the adapter was trained on, and warns when its id or revision differs.
        """
        adapter = SpecialistAdapter.from_pretrained(path_or_repo_id, revision=revision, token=token,
                                                    subfolder=subfolder, **load_kwargs)
        check_base_compatible(base_model, adapter, warn=False)  # before the LoRA is put on; `__init__` warns
        download = {k: load_kwargs[k] for k in ("cache_dir", "force_download", "local_files_only") if load_kwargs.get(k)}
        base = _load_lora(base_model, path_or_repo_id, subfolder, revision, token, **download)
        try:
            adapter.to(next(base.parameters()).device)
        except StopIteration:
            pass
        return cls(base, adapter, tokenizer=tokenizer, hook_point=hook_point)

    # -- the trained pipeline ----------------------------------------------------------------------
    @property
    def expected_steps(self) -> int | None:
        """Steps per text the adapter was trained on: the recorded `n_steps`, else the saved structure's `T`."""
        if self.adapter.config.n_steps is not None:
            return self.adapter.config.n_steps
        structure = getattr(self.adapter, "structure_", None)
        if structure is not None and getattr(structure, "step_tasks_", None) is not None:
            return int(structure.step_tasks_.shape[0])
        return None

    def check_texts(self, texts: Sequence[str], steps: Any = None, pad: bool = False) -> None:
        """Refuse, before any forward pass, texts that do not fit the adapter: another step count than it was
        trained on, a text without the saved separator, or a text longer than the saved `max_length` (its last
        steps would be cut). With `pad=True` texts with fewer steps pass (and get a mask).

        Raises:
            InputError: naming the text's index, what it has and what was expected.
        """
        from ..steps import separator_spans

        if isinstance(texts, str):
            raise InputTypeError("`texts` must be a list of strings, got a single str; wrap it in a list.")
        cfg = self.adapter.config
        rule = steps if steps is not None else cfg.step_rule
        expected = self.expected_steps
        counts: list[int] | None = None
        if isinstance(rule, str) and rule != "token":
            for i, text in enumerate(texts):
                if isinstance(text, str) and text.strip() and rule not in text.strip() and (expected or 1) > 1:
                    raise InputError(
                        f"texts[{i}] does not contain the step separator {rule!r} the adapter was trained with, so it "
                        f"would be one step (expected {expected}): {text[:60]!r}. Join its "
                        f"steps with {rule!r}, or pass the separator it uses as `steps=`.")
            counts = [len(separator_spans(text, rule)) if isinstance(text, str) else 0 for text in texts]
        elif rule is not None and not isinstance(rule, str):
            counts = [len(spans) for spans in rule]
        if expected is not None and counts is not None:
            bad = [i for i, count in enumerate(counts) if count > expected or (count < expected and not pad)]
            if bad:
                i = bad[0]
                hint = ("texts with more steps cannot be padded" if counts[i] > expected else
                        "or pass `pad=True` to pad shorter texts and get a step mask")
                raise InputError(
                    f"texts[{i}] has {counts[i]} steps under the step rule {rule!r}, but the adapter was trained on "
                    f"{expected} steps per text ({len(bad)} of {len(counts)} texts differ, e.g. indices {bad[:5]}); "
                    f"pass texts of {expected} steps, {hint}.")
        if cfg.max_length is not None and self.tokenizer is not None and not pad:
            lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]
            long = [i for i, n in enumerate(lengths) if n > cfg.max_length]
            if long:
                raise InputError(
                    f"texts[{long[0]}] has {lengths[long[0]]} tokens, more than the max_length {cfg.max_length} the "
                    f"adapter was trained with, so its last steps would be cut ({len(long)} texts, e.g. indices "
                    f"{long[:5]}); shorten them, or pass `pad=True` to keep the steps that fit and get a step mask.")

    def step_states(self, texts: Sequence[str] | Any, *, steps: Any = None, batch_size: int = 16,
                    progress: bool | None = None, column: str | None = None,
                    pad: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """`(n, T, d_in)` step states of `texts` exactly as at training: the saved hook point, step rule
        (`steps` overrides it; required when the adapter was trained on per-text spans), pooling and `max_length`.

        Texts that do not fit the adapter raise first (`check_texts`). With `pad=True`, texts with fewer steps are
        padded to the trained step count and `(states, step_mask)` is returned, `step_mask` `(n, T)` bool.
        """
        from ..data import _texts_from, extract_padded_steps, extract_steps

        if isinstance(texts, str):
            raise InputTypeError("`texts` must be a list of strings, got a single str; wrap it in a list.")
        if self.tokenizer is None:
            raise InputError("Pass `tokenizer=` to `SpecialistModel.from_pretrained` to run on texts.")
        cfg = self.adapter.config
        rule = steps if steps is not None else cfg.step_rule
        if rule is None:
            raise InputError("The adapter records no step rule (it was trained on per-text spans or states without "
                             "`SpecialistConfig(step_rule=...)`); pass `steps=` ('token', a separator, or spans).")
        listed = _texts_from(texts, column)  # a Dataset's one text column, as `extract_steps` picks it
        self.check_texts(listed, rule, pad=pad)
        options = dict(hook_point=self.hook_point, steps=rule, pool=cfg.pool or "mean", batch_size=batch_size,
                       max_length=cfg.max_length, column=column, progress=progress, process_index=0,
                       num_processes=1, context=cfg.context)
        if not pad:
            return extract_steps(self.base_model, self.tokenizer, texts, **options)
        states, mask = extract_padded_steps(self.base_model, self.tokenizer, texts, **options)
        expected = self.expected_steps
        if expected is not None and states.shape[1] < expected:
            extra = expected - states.shape[1]
            states = np.concatenate([states, np.zeros(states.shape[:1] + (extra,) + states.shape[2:], states.dtype)], 1)
            mask = np.concatenate([mask, np.zeros((mask.shape[0], extra), dtype=bool)], 1)
        return states, mask

    @torch.no_grad()
    def encode_steps(self, texts: Sequence[str] | Any, task: int | str = 0, *, pad: bool = False,
                     **kwargs: Any) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The task's specialist representation of every step: numpy `(n, T, |support_task|)`.

        Equals `adapter.task_latents(extract_steps(base, tokenizer, texts, <saved hook point, step rule, pooling,
        max_length>), task)`. Keyword arguments go to `step_states`. Texts with another step count than the adapter
        was trained on raise (naming the text) unless `pad=True`, which returns `(latents, step_mask)`.
        """
        if not pad:
            states = self.step_states(texts, **kwargs)
            return self.adapter.task_latents(torch.from_numpy(states), task=task).cpu().numpy()
        states, mask = self.step_states(texts, pad=True, **kwargs)
        return self.adapter.task_latents(torch.from_numpy(states), task=task).cpu().numpy(), mask

    @torch.no_grad()
    def predict(self, texts: Sequence[str] | Any, task: int | str = 0, *, pad: bool = False,
                **kwargs: Any) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The task's prediction per text (sequence readout, from the steps the task was trained on,
        `config.step_tasks`, else those the saved structure assigns it) or per step (step readout): regression values in the original units, or class logits.

        Texts that do not fit the adapter (another step count, no saved separator, cut by `max_length`) raise an
        `InputError` naming the text. With `pad=True` shorter texts are padded and `(predictions, step_mask)` is
        returned; the sequence readout then reads only each text's real steps among the task's, and a text that has
        none of them gets NaN (with a warning).
        """
        if not pad:
            states = self.step_states(texts, **kwargs)
            return self.adapter.predict(torch.from_numpy(states), task=task).cpu().numpy()
        states, mask = self.step_states(texts, pad=True, **kwargs)
        step_mask = None
        if self.adapter.config.task_readout == "sequence":
            step_mask = mask.copy()
            serving = self.adapter.serving_steps(task, mask.shape[1])
            if serving is not None:
                step_mask &= serving[None, :]
        prediction = self.adapter.predict(torch.from_numpy(states), task=task, step_mask=step_mask).cpu().numpy()
        if step_mask is not None and not step_mask.any(1).all():  # nothing to read the task from: no prediction
            empty = ~step_mask.any(1)
            prediction = prediction.astype(np.result_type(prediction.dtype, np.float32))  # floats hold NaN
            prediction[empty] = np.nan
            warn_user(f"{int(empty.sum())} of {len(empty)} texts (first: texts[{int(np.flatnonzero(empty)[0])}]) have "
                      f"none of the steps task {task!r} is read from (padding covers them); their predictions are NaN.")
        return prediction, mask

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


def check_base_compatible(base_model: nn.Module, adapter: SpecialistAdapter, warn: bool = True) -> None:
    """Raise an `InputError` when the base's hidden size or model type differs from the adapter's record, and (with
    `warn`) warn when its revision, or its Hub id, does (another checkpoint of the same architecture gives other
    states). Local folders are compared by revision only: one folder has many spellings."""
    cfg = adapter.config
    size = _base_hidden_size(base_model)
    residual = cfg.hook_point is None or cfg.hook_point in ("embed", "final_norm") or cfg.hook_point.startswith("layers.")
    expected = cfg.base_hidden_size or (cfg.d_in if residual else None)  # a raw module path may have another width
    if size is not None and expected is not None and size != expected:
        raise InputError(
            f"The base model's hidden size is {size}, but the adapter was trained on hidden size {expected} "
            f"(base model {cfg.base_model or 'unknown'}); load it onto the matching base model."
        )
    model_type = getattr(getattr(base_model, "config", None), "model_type", None)
    if cfg.base_model_type and model_type and model_type != cfg.base_model_type:
        raise InputError(
            f"The base model's type is {model_type!r}, but the adapter was trained on a {cfg.base_model_type!r} model "
            f"({cfg.base_model or 'unknown'})."
        )
    if not warn:
        return
    depth = layer_count(base_model)
    if cfg.base_num_layers and depth and depth != cfg.base_num_layers:
        warn_user(f"The base model has {depth} layers, but the adapter was trained on a base of {cfg.base_num_layers} "
                  f"({cfg.base_model or 'unknown'}): the same architecture at another depth gives other states"
                  + (f", and {cfg.hook_point!r} is another layer here" if cfg.hook_point and "-" in cfg.hook_point
                     else "") + ". Load the base the adapter records.")
        return
    model_id, revision = base_identity(base_model)
    other_revision = bool(revision and cfg.base_model_revision and revision != cfg.base_model_revision)
    hub_ids = bool(model_id and cfg.base_model) and not (_local_path(model_id) or _local_path(cfg.base_model))
    if other_revision or (hub_ids and model_id != cfg.base_model):
        warn_user(f"The base model is {model_id or 'unknown'} (revision {revision or 'unknown'}), but the adapter was "
                  f"trained on {cfg.base_model} (revision {cfg.base_model_revision or 'unknown'}): another checkpoint "
                  "of the same architecture gives other hidden states, so the adapter's latents and predictions may "
                  "not hold. Load the base the adapter records (its model card names it).")


def _local_path(name: str) -> bool:
    """Whether a recorded base id is a local folder rather than a Hub id (`owner/name` or `name`)."""
    return os.path.isabs(name) or name.startswith((".", "~")) or os.path.isdir(name) or name.count("/") > 1
