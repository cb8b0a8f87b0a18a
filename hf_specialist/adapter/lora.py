"""Joint training of the adapter with a LoRA on the base model (PEFT).

`JointLoraModel` is one `nn.Module` holding the PEFT-wrapped base and the adapter, so that the accelerate loop
(and DDP across processes) trains both: its forward tokenises nothing, it runs the base up to the hook point with
gradients, pools tokens into steps and returns the adapter's loss terms. `prepare_text_training` turns the text
inputs of `train_specialist(texts=...)` into it (or, without a LoRA, into states of the frozen base).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._validation import InputError, InputTypeError
from ..hooks import HiddenStateExtractor
from ..steps import pool_steps, tokenize_steps
from .batches import TextBatches, prepare_training_data
from .model import SpecialistAdapter


def lora_parameters(peft_model: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable (LoRA) parameters of a PEFT model, by name."""
    return {name: p for name, p in peft_model.named_parameters() if p.requires_grad}


class JointLoraModel(nn.Module):
    """A PEFT-wrapped base and a `SpecialistAdapter` trained together.

    Args:
        peft_model (`peft.PeftModel`): the base with its LoRA.
        adapter (`SpecialistAdapter`): reads the base at `hook_point`.
        hook_point (`str`): a resolved hook point of the base.
        pool (`str`): how tokens are pooled into steps.
    """

    def __init__(self, peft_model: nn.Module, adapter: SpecialistAdapter, hook_point: str, pool: str) -> None:
        super().__init__()
        self.peft_model, self.adapter, self.hook_point, self.pool = peft_model, adapter, hook_point, pool

    def step_hidden(self, inputs: dict[str, torch.Tensor], assign: torch.Tensor) -> torch.Tensor:
        """`(batch, T, d_in)` pooled step states through the base and its LoRA (with gradients when enabled)."""
        with HiddenStateExtractor(self.peft_model, self.hook_point, detach=False) as extractor:
            hidden = extractor(**inputs)[self.hook_point]
        return pool_steps(hidden, assign, self.pool)

    def forward(self, inputs: dict[str, torch.Tensor], assign: torch.Tensor, tasks: torch.Tensor,
                task_mask: torch.Tensor, sparsity: float = 0.0) -> dict[str, torch.Tensor]:
        """The adapter's loss terms on the batch's step states (sequence or step readout as configured)."""
        pooled = self.step_hidden(inputs, assign)
        if tasks.ndim == 3:  # step readout: one row per step
            d, c, m = pooled.shape[-1], tasks.shape[-1], task_mask.shape[-1]
            return self.adapter(pooled.reshape(-1, d), tasks.reshape(-1, c), task_mask.reshape(-1, m), sparsity)
        return self.adapter(pooled, tasks, task_mask, sparsity)

    @torch.no_grad()
    def step_states(self, source: Any, batch_size: int = 32) -> torch.Tensor:
        """`(n, T, d_in)` step states of every text of a `TextBatches` source, in eval mode."""
        was_training = self.peft_model.training
        self.peft_model.eval()
        device = next(self.adapter.parameters()).device
        parts = []
        try:
            for start in range(0, len(source), batch_size):
                texts = source.texts[start : start + batch_size]
                spans = None if source.spans is None else source.spans[start : start + batch_size]
                inputs, assign, _ = tokenize_steps(source.tokenizer, texts, spans, source.max_length, start)
                parts.append(self.step_hidden({k: v.to(device) for k, v in inputs.items()}, assign.to(device)).cpu())
        finally:
            self.peft_model.train(was_training)
        return torch.cat(parts)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """What training changes: the adapter's state and the LoRA weights (the frozen base is left out)."""
        state = {f"adapter.{k}": v for k, v in self.adapter.state_dict().items()}
        state.update({f"lora.{k}": p for k, p in lora_parameters(self.peft_model).items()})
        return state

    @torch.no_grad()
    def load_checkpoint_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore `checkpoint_state()` output (strict)."""
        adapter = {k[len("adapter."):]: v for k, v in tensors.items() if k.startswith("adapter.")}
        self.adapter.load_state_dict(adapter, strict=True)
        params = lora_parameters(self.peft_model)
        lora = {k[len("lora."):]: v for k, v in tensors.items() if k.startswith("lora.")}
        if set(lora) != set(params):
            raise InputError(f"LoRA weights in the checkpoint do not match the model: missing "
                             f"{sorted(set(params) - set(lora))[:3]}, unexpected {sorted(set(lora) - set(params))[:3]}.")
        for name, p in params.items():
            p.copy_(lora[name])


def prepare_text_training(adapter: SpecialistAdapter, texts: Any, tasks: Any, task_mask: Any, base_model: torch.nn.Module,
                 tokenizer: Any, lora: Any, steps: Any, pool: str, max_length: int | None, batch_size: int,
                 seed: int) -> tuple[JointLoraModel | None, torch.nn.Module, TextBatches, tuple[torch.Tensor, ...]]:
    """Check the text inputs of `train_specialist(texts=...)`, wrap the base with PEFT when `lora` is given, record
    the pipeline in the config, and return `(joint module or None, the model the texts go through, a `TextBatches`
    source, the prepared `(h, tasks, mask)` of the initial states)`."""
    from ..data import extract_steps
    from ..hooks import resolve_hook_points
    from ..steps import step_spans

    if tokenizer is None:
        raise InputError("Training from `texts` needs `tokenizer=` (the base model's tokenizer).")
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise InputTypeError("`texts` must be a list of strings.")
    cfg = adapter.config
    if cfg.hook_point is None:
        raise InputError("Set `SpecialistConfig(hook_point=...)`: it says where the adapter reads the base model.")
    if cfg.context != "full":  # the joint module and the text batches run whole texts through the base
        raise InputError(f"`train_specialist(texts=...)` encodes whole texts (context='full'), but the adapter's "
                         f"config says context={cfg.context!r}: `SpecialistModel` would then extract the steps "
                         "another way than training saw. Extract the states with `extract_steps(..., "
                         "context='isolated')` and pass them as `states=`, or set `SpecialistConfig(context='full')`.")
    hook_point = resolve_hook_points(base_model, cfg.hook_point)[0]
    texts = list(texts)
    spans = step_spans(texts, steps)
    if lora is not None:
        from peft import PeftModel, get_peft_model

        torch.manual_seed(seed)  # the LoRA's initial weights follow the seed too
        peft_model = base_model if isinstance(base_model, PeftModel) else get_peft_model(base_model, lora)
    else:
        peft_model = base_model
    states = extract_steps(peft_model, tokenizer, texts, hook_point=hook_point, steps=steps, pool=pool,
                           max_length=max_length, batch_size=max(1, min(batch_size, 64)), progress=False,
                           process_index=0, num_processes=1)
    prepared = prepare_training_data(adapter, states, tasks, task_mask)
    _, t, m = prepared
    n, n_steps = states.shape[:2]
    if prepared[0].ndim == 2:  # step readout: keep the per-sequence layout; the module flattens after pooling
        t, m = t.reshape(n, n_steps, -1), m.reshape(n, n_steps, -1)
    cfg.record_base(base_model)
    cfg.hook_point, cfg.pool, cfg.max_length = hook_point, pool, max_length
    cfg.step_rule = steps if isinstance(steps, str) else None
    module = JointLoraModel(peft_model, adapter, hook_point, pool) if lora is not None else None
    source = TextBatches(texts, spans, tokenizer, t, m, max_length)
    return module, peft_model, source, prepared
