"""`StackedAdapters`: every model of the lambda path trained at once, as one module.

The models of `sparsity="auto"` share their architecture, their initial weights (one seed), their data, their
schedule and their noise draws (`randomness="same"`: the draws a model would make alone from the same seed); only
lambda differs. Their parameters are stacked on a leading axis and `SpecialistAdapter.forward` runs for all of
them in one call with `torch.func.vmap`, so each optimizer step is a few large kernels instead of many small ones
per model. Adam is element-wise, so one optimizer over the stacked tensors is one optimizer per model (with fp16
loss scaling one overflow would skip every model's step, so `train_specialist` stacks only without it).
`unstack` hands back one ordinary `SpecialistAdapter` per lambda.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .model import SpecialistAdapter

_UNSTACKED_BUFFERS = ("support_frozen",)  # one flag for every model: the support is frozen at the same epoch


def _attribute(name: str) -> str:
    """The stack's attribute for the adapter's tensor `name` (attribute names cannot hold dots)."""
    return "stacked__" + name.replace(".", "__")


def _standard_strides(grad: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(grad, memory_format=torch.contiguous_format).copy_(grad)


class StackedAdapters(nn.Module):
    """`n_models` copies of `adapter` (same weights, buffers and config) trained side by side, one lambda each.

    Args:
        adapter (`SpecialistAdapter`): the starting point of every model (weights and fitted normaliser).
        sparsities (`Sequence[float]`): one lambda per model.

    `forward(h, tasks, task_mask, sparsity)` takes the batch once and `sparsity` as a `(n_models,)` tensor (each
    model's weight at this step) and returns every loss term with a leading `(n_models,)` axis.
    """

    def __init__(self, adapter: SpecialistAdapter, sparsities: Sequence[float]) -> None:
        super().__init__()
        if not len(sparsities):
            raise ValueError("`sparsities` must hold at least one lambda.")
        self.config = adapter.config
        self.register_buffer("sparsities", torch.tensor([float(s) for s in sparsities], dtype=torch.float64))
        copies = [adapter] * len(sparsities)
        params, buffers = stack_module_state(copies)
        self._parameter_names = list(params)
        self._buffer_names = [n for n in buffers if n not in _UNSTACKED_BUFFERS]
        for name, value in params.items():
            param = nn.Parameter(value.detach())  # `stack_module_state` made new tensors
            if 1 in param.shape[1:]:  # vmap hands back such gradients with other strides than DDP's buckets expect
                param.register_hook(_standard_strides)
            self.register_parameter(_attribute(name), param)
        for name in self._buffer_names:
            self.register_buffer(_attribute(name), buffers[name])
        self.register_buffer("support_frozen", adapter.support_frozen.clone())
        # the module whose forward is vmapped; kept out of `_modules` so that its own tensors are never trained
        object.__setattr__(self, "_template", copy.deepcopy(adapter))

    @property
    def n_models(self) -> int:
        """How many models (lambdas) are stacked."""
        return len(self.sparsities)

    @property
    def input_mean(self) -> torch.Tensor:
        """Every model's input mean, `(n_models, d_in)` (its device is the stack's device)."""
        return getattr(self, _attribute("input_mean"))

    @property
    def mask_logits(self) -> nn.Parameter:
        """Stacked task x latent mask logits, `(n_models, n_tasks, d_latent)`."""
        return getattr(self, _attribute("mask_logits"))

    def adapter_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """`(name in SpecialistAdapter, stacked parameter)` pairs, so that parameter groups select by the same names."""
        for name in self._parameter_names:
            yield name, getattr(self, _attribute(name))

    def train(self, mode: bool = True) -> StackedAdapters:
        super().train(mode)
        self._template.train(mode)
        return self

    def _stacked(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        params = {n: getattr(self, _attribute(n)) for n in self._parameter_names}
        buffers = {n: getattr(self, _attribute(n)) for n in self._buffer_names}
        return params, buffers

    def forward(self, h: torch.Tensor, tasks: torch.Tensor, task_mask: torch.Tensor,
                sparsity: torch.Tensor | float = 0.0) -> dict[str, torch.Tensor]:
        """Every model's `SpecialistAdapter.loss_terms` on the same batch; each term has shape `(n_models,)`."""
        sparsity = torch.as_tensor(sparsity, dtype=torch.float32, device=h.device).expand(self.n_models)
        params, buffers = self._stacked()
        shared = {n: getattr(self, n) for n in _UNSTACKED_BUFFERS}

        def one_model(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], lam: torch.Tensor):
            return functional_call(self._template, (p, {**b, **shared}), (h, tasks, task_mask), {"sparsity": lam})

        return vmap(one_model, in_dims=(0, 0, 0), randomness="same")(params, buffers, sparsity)

    @property
    def task_support_(self) -> np.ndarray:
        """`(n_models, n_tasks, d_latent)` bool: each model's task support."""
        if bool(self.support_frozen):
            return getattr(self, _attribute("support")).bool().cpu().numpy()
        return (torch.sigmoid(self.mask_logits) > self.config.mask_threshold).detach().cpu().numpy()

    @torch.no_grad()
    def freeze_support(self) -> None:
        """Fix every model's support at its current `mask > mask_threshold`."""
        support = getattr(self, _attribute("support"))
        support.copy_(torch.as_tensor(self.task_support_, dtype=support.dtype, device=support.device))
        self.support_frozen.fill_(True)

    @torch.no_grad()
    def unstack(self) -> list[SpecialistAdapter]:
        """One `SpecialistAdapter` per lambda holding that model's weights and buffers (in eval mode)."""
        params, buffers = self._stacked()
        models = []
        for j in range(self.n_models):
            model = copy.deepcopy(self._template).to(self.input_mean.device)
            state = {n: v[j] for n, v in {**params, **buffers}.items()}
            state.update({n: getattr(self, n) for n in _UNSTACKED_BUFFERS})
            model.load_state_dict(state, strict=True)
            models.append(model.eval())
        return models
