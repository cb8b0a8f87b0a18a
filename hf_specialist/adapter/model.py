"""`SpecialistAdapter`: a VAE on hidden states whose task heads read the latent through a sparse task x latent mask.

Theorem 2: a model that only fits the data recovers, per task, a superset of the relevant latent dims; adding the
sparsity constraint on the task x latent Jacobian makes the block exact up to an invertible map. Here each head
`i` reads `m_i * z + (1 - m_i) * noise` with `m = sigmoid(mask_logits)` and an l1 penalty on `m`: a head cannot
amplify a down-weighted latent without amplifying the noise, so the penalty counts the dims a task really uses.
After training the support `m > mask_threshold` is frozen and heads read `z` on the support only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import InputError, InputTypeError
from .batch_share import active_share, global_batch_norm, randn_rows, sum_over_processes
from .card import CARD_TAGS
from .config import SpecialistConfig
from .hub_mixin import AdapterHubMixin


def _mlp(d_in: int, widths: Sequence[int], d_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = d_in
    for w in widths:
        layers += [nn.Linear(width, w), nn.LayerNorm(w), nn.SiLU()]
        width = w
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


def _check_finite(x: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise InputError(f"`{name}` contains {bad} NaN or infinite values; every entry must be finite.")


class SpecialistAdapter(
    nn.Module,
    AdapterHubMixin,
    library_name="hf_specialist",
    tags=list(CARD_TAGS),  # the mixin appends to the list it is given
):
    """Encoder (hidden state -> latent), decoder (latent -> hidden state) and masked task heads.

    Args:
        config (`SpecialistConfig`): the configuration. The adapter keeps this object (not a copy), and training
            records what it was trained on into it (`task_readout`, `n_steps`, `step_tasks`): give each adapter its
            own config.

    Attributes:
        task_support_ (`np.ndarray` of shape `(n_tasks, d_latent)`, bool): the latent dims each task reads.

    Examples:
        >>> cfg = SpecialistConfig(d_in=384, d_latent=8, n_tasks=2)  # doctest: +SKIP
        >>> adapter = SpecialistAdapter(cfg)  # doctest: +SKIP
        >>> train_specialist(adapter, states, tasks)  # doctest: +SKIP
        >>> adapter.task_latents(states, task=0).shape  # doctest: +SKIP
    """

    config_class = SpecialistConfig

    def __init__(self, config: SpecialistConfig) -> None:
        super().__init__()
        if not isinstance(config, SpecialistConfig):
            raise InputTypeError(f"`config` must be a SpecialistConfig, got {type(config).__name__}.")
        self.config = config
        c = config
        self.encoder = _mlp(c.d_in, c.encoder_widths, 2 * c.d_latent if c.variational else c.d_latent)
        self.decoder = _mlp(c.d_latent, c.decoder_widths, c.d_in)
        self.latent_norm = nn.BatchNorm1d(c.d_latent, affine=False, momentum=0.01)
        # An orthogonal rotation of the latent. KL and reconstruction are invariant to it (the decoder reads the
        # un-rotated code), so it only serves the masked heads: it lets the optimiser line task information up
        # with few coordinates quickly, which is what the sparsity penalty rewards.
        self.rotation = nn.utils.parametrizations.orthogonal(nn.Linear(c.d_latent, c.d_latent, bias=False))
        self.mask_logits = nn.Parameter(torch.full((c.n_tasks, c.d_latent), 3.0))
        out_dims = [d if t == "regression" else k for t, k, d in zip(c.task_types, c.n_classes, c.task_dims)]
        # head_i maps one step's masked latent to features; readout_i maps features (of one step, or summed over
        # the steps that serve the task) to the outcome
        self.heads = nn.ModuleList(_mlp(c.d_latent, [c.head_width], c.head_width) for _ in out_dims)
        self.readouts = nn.ModuleList(_mlp(c.head_width, [c.head_width], d) for d in out_dims)
        self.register_buffer("input_mean", torch.zeros(c.d_in))
        self.register_buffer("input_std", torch.ones(c.d_in))
        self.register_buffer("task_mean", torch.zeros(c.n_target_columns))
        self.register_buffer("task_std", torch.ones(c.n_target_columns))
        self.register_buffer("support", torch.zeros(c.n_tasks, c.d_latent))
        self.register_buffer("support_frozen", torch.zeros((), dtype=torch.bool))

    # -- input checks -------------------------------------------------------------------------------
    def _check_states(self, h: Any, name: str = "h") -> torch.Tensor:
        if isinstance(h, np.ndarray):
            h = torch.from_numpy(h)
        if not isinstance(h, torch.Tensor):
            raise InputTypeError(f"`{name}` must be a torch tensor or numpy array, got {type(h).__name__}.")
        if h.ndim == 0 or h.shape[-1] != self.config.d_in:
            raise InputError(
                f"`{name}` has shape {tuple(h.shape)}, but the adapter expects (..., {self.config.d_in}) "
                f"(d_in={self.config.d_in}); the hidden size does not match."
            )
        h = h.to(device=self.input_mean.device, dtype=torch.float32)
        _check_finite(h, name)
        return h

    def _check_task(self, task: int | str) -> int:
        if isinstance(task, str):
            if task not in self.config.task_names:
                raise InputError(f"Unknown task {task!r}; tasks are {self.config.task_names}.")
            return self.config.task_names.index(task)
        if isinstance(task, bool) or not isinstance(task, (int, np.integer)) or not 0 <= task < self.config.n_tasks:
            raise InputError(f"`task` must be an int in 0..{self.config.n_tasks - 1} or a task name, got {task!r}.")
        return int(task)

    # -- normalisation ------------------------------------------------------------------------------
    @torch.no_grad()
    def fit_normalizer(self, states: torch.Tensor | None, tasks: torch.Tensor | None = None,
                       task_mask: torch.Tensor | None = None,
                       moments: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Store per-dim input statistics (and regression-target statistics) from training data.

        `moments` (per-dim mean and std) replaces `states` when they were computed in a streaming pass.
        """
        if self.config.normalize_inputs and (states is not None or moments is not None):
            if moments is None:
                flat = states.reshape(-1, self.config.d_in).float()
                moments = (flat.mean(0), flat.std(0))
            self.input_mean.copy_(moments[0])
            self.input_std.copy_(moments[1].clamp(min=1e-6))
        if tasks is not None:
            if task_mask is not None and task_mask.ndim == 3:  # per-step mask of sequences: rows are sequences
                task_mask = task_mask.any(1)
            for i, (kind, cols) in enumerate(zip(self.config.task_types, self.config.target_columns)):
                if kind != "regression":
                    continue
                rows = tasks[:, cols] if task_mask is None else tasks[task_mask[:, i]][:, cols]
                if len(rows) > 1:
                    self.task_mean[cols] = rows.float().mean(0)
                    self.task_std[cols] = rows.float().std(0).clamp(min=1e-6)

    def normalize(self, h: torch.Tensor) -> torch.Tensor:
        """Standardise raw hidden states with the stored statistics."""
        return (h - self.input_mean) / self.input_std

    # -- parts --------------------------------------------------------------------------------------
    @property
    def mask(self) -> torch.Tensor:
        """The soft task x latent mask `sigmoid(mask_logits)`, `(n_tasks, d_latent)`."""
        return torch.sigmoid(self.mask_logits)

    @property
    def task_support_(self) -> np.ndarray:
        """`(n_tasks, d_latent)` bool: the latent dims each task reads."""
        if bool(self.support_frozen):
            return self.support.bool().cpu().numpy()
        return (self.mask > self.config.mask_threshold).detach().cpu().numpy()

    def _posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.encoder(x)
        if self.config.variational:
            mean, logvar = out.chunk(2, dim=-1)
            return mean, logvar.clamp(-12, 8)
        return out, None

    def encode(self, h: Any) -> torch.Tensor:
        """Posterior mean of the latent, `(..., d_in)` -> `(..., d_latent)`."""
        h = self._check_states(h)
        lead = h.shape[:-1]
        mean, _ = self._posterior(self.normalize(h.reshape(-1, self.config.d_in)))
        return self.rotation(mean).reshape(*lead, self.config.d_latent)

    def decode(self, z: Any) -> torch.Tensor:
        """Reconstruct raw hidden states, `(..., d_latent)` -> `(..., d_in)`."""
        if isinstance(z, np.ndarray):
            z = torch.from_numpy(z)
        if not isinstance(z, torch.Tensor):
            raise InputTypeError(f"`z` must be a torch tensor or numpy array, got {type(z).__name__}.")
        if z.ndim == 0 or z.shape[-1] != self.config.d_latent:
            raise InputError(f"`z` has shape {tuple(z.shape)}, expected (..., {self.config.d_latent}) (d_latent).")
        z = z.to(self.input_mean.device, torch.float32)
        _check_finite(z, "z")
        unrotated = z @ self.rotation.weight  # the rotation is orthogonal: its inverse is its transpose
        return self.decoder(unrotated) * self.input_std + self.input_mean

    def task_latents(self, h: Any, task: int | str = 0) -> torch.Tensor:
        """The specialist representation of `task`: the latent dims on its support, `(..., |support_task|)`."""
        index = self._check_task(task)
        support = torch.as_tensor(self.task_support_[index], device=self.input_mean.device)
        return self.encode(h)[..., support]

    def _head_inputs(self, z: torch.Tensor) -> torch.Tensor:
        """`(n, d_latent)` -> `(n_tasks, n, d_latent)` masked, standardised latents."""
        zs = global_batch_norm(z, self.latent_norm)
        if bool(self.support_frozen):
            return self.support[:, None, :] * zs[None]
        if self.training:
            m = self.mask[:, None, :]
            return m * zs[None] + (1 - m) * randn_rows((m.shape[0], *zs.shape), 1, zs.device, zs.dtype)
        return (self.mask > self.config.mask_threshold).to(zs.dtype)[:, None, :] * zs[None]

    def _task_output(self, index: int, inputs: torch.Tensor, step_weights: torch.Tensor | None) -> torch.Tensor:
        """Head `index` on masked latents `(rows, d_latent)`; with `step_weights` `(n, T)` the rows are `n x T` steps
        and their features are summed over the weighted steps of each sequence before the readout."""
        features = self.heads[index](inputs)
        if step_weights is not None:
            features = (features.reshape(*step_weights.shape, -1) * step_weights[..., None]).sum(-2)
        return self.readouts[index](features)

    def serving_steps(self, task: int | str, n_steps: int) -> np.ndarray | None:
        """The steps a sequence readout reads task `task` from, for sequences of `n_steps` steps: the mask training
        recorded (`config.step_tasks`), else the attached structure's column (`structure_`), when either has
        `n_steps` steps; `None` (every step) otherwise."""
        index = self._check_task(task)
        if self.config.step_tasks is not None and len(self.config.step_tasks) == n_steps:
            return np.asarray(self.config.step_tasks, dtype=bool)[:, index]
        structure = getattr(self, "structure_", None)
        if structure is not None and structure.step_tasks_.shape[0] == n_steps:
            return np.asarray(structure.step_tasks_[:, index], dtype=bool)
        return None

    def predict(self, h: Any, task: int | str = 0, step_mask: Any = None) -> torch.Tensor:
        """Task predictions from raw hidden states: regression values in the original units, or class logits.

        With `config.task_readout == "sequence"`, `h` is `(..., T, d_in)` and the prediction is per sequence, from
        the steps in `step_mask` (`(T,)` or `(..., T)` bool), e.g. the task's column of `TaskStructure.step_tasks_`;
        by default the steps training used (`serving_steps`: `config.step_tasks`, else the saved `structure_`)
        when they have `T` steps, else all steps. Without `step_mask`, states of another `T` than training's
        (`config.n_steps`) are refused.
        Otherwise every row of `h` gets its own prediction.
        """
        index = self._check_task(task)
        h = self._check_states(h)
        weights = None
        if self.config.task_readout == "sequence":
            if h.ndim < 2:
                raise InputError(f"`h` has shape {tuple(h.shape)}; a sequence readout needs (..., T, {self.config.d_in}).")
            lead, n_steps = h.shape[:-2], h.shape[-2]
            trained = self.config.n_steps
            if step_mask is None and trained is not None and n_steps != trained:
                raise InputError(f"`h` has shape {tuple(h.shape)}: {n_steps} steps per sequence (the second-to-last "
                                 f"axis), but the adapter was trained on {trained} (`config.n_steps`); its sequence "
                                 f"readout sums the steps each task was trained on. Pass states of {trained} steps, "
                                 "or `step_mask=` to choose the steps.")
            if step_mask is None:
                step_mask = self.serving_steps(index, n_steps)
            if step_mask is None:
                weights = torch.ones(lead + (n_steps,), device=h.device)
            else:
                step_mask = torch.as_tensor(np.asarray(step_mask), device=h.device)
                if step_mask.shape[-1:] != (n_steps,) or step_mask.ndim > len(lead) + 1:
                    raise InputError(f"`step_mask` has shape {tuple(step_mask.shape)}; expected ({n_steps},) or "
                                     f"{tuple(lead) + (n_steps,)} for `h` of shape {tuple(h.shape)}.")
                weights = step_mask.to(torch.float32).expand(lead + (n_steps,))
            weights = weights.reshape(-1, n_steps)
        else:
            lead = h.shape[:-1]
        z = self.encode(h).reshape(-1, self.config.d_latent)
        out = self._task_output(index, self._head_inputs(z)[index], weights)
        if self.config.task_types[index] == "regression":
            cols = self.config.target_columns[index]
            value = out * self.task_std[cols] + self.task_mean[cols]
            return value.reshape(lead) if value.shape[-1] == 1 else value.reshape(*lead, -1)
        return out.reshape(*lead, -1)

    # -- training objective -------------------------------------------------------------------------
    def loss_terms(
        self,
        h: torch.Tensor,
        tasks: torch.Tensor,
        task_mask: torch.Tensor,
        sparsity: float,
        per_row: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Named loss terms on a batch of raw states `(n, d_in)`, targets `(n, sum(task_dims))`, row mask `(n, n_tasks)`.

        With the sequence readout the batch is `n` sequences: states `(n, T, d_in)`, targets `(n, sum(task_dims))`
        and a step mask `(n, T, n_tasks)` saying which steps serve which task.

        Returns `{"loss", "recon", "kl", "task", "sparsity"}` plus `"task_i"` per task (mean over its rows). With
        `per_row=True` (held-out evaluation) also, per task, `"task_i/per_row"` (each row's loss), `"task_i/rows"`
        (which rows count) and `"task_i/score"`: each row's squared standardised target deviation from 0 summed
        over its columns divided by their count (regression: for R^2) or whether the argmax is right
        (classification: for accuracy); for classification also `"task_i/brier"` (each row's Brier score, the
        squared distance of the predicted class probabilities from the one-hot label) and `"task_i/labels"` (the
        one-hot labels, for the Brier score of predicting the class frequencies).
        """
        sequence = h.ndim == 3
        if sequence:
            step_mask = task_mask.to(torch.float32)
            task_mask = task_mask.any(1)
            h = h.reshape(-1, h.shape[-1])
        x = self.normalize(h)
        mean, logvar = self._posterior(x)
        if self.config.variational and self.training:
            z = mean + randn_rows(tuple(mean.shape), 0, mean.device, mean.dtype) * torch.exp(0.5 * logvar)
        else:
            z = mean
        # a process's share of a global batch: means over the global batch's rows (`batch_share`)
        share = active_share() if self.training else None
        row_scale = share.row_scale() if share is not None else 1.0
        recon = ((self.decoder(z) - x) ** 2).mean() * row_scale
        # heads read the posterior mean: the task fit is not blurred by the reconstruction's sampling noise
        kl = (
            0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(-1).mean() * row_scale
            if self.config.variational
            else torch.zeros((), device=h.device)
        )
        task_rows = task_mask.to(torch.float32).sum(0)  # each task's rows: the denominators of its mean
        if share is None:
            task_rows = task_rows.clamp(min=1.0)
        else:  # the global batch's rows, over the process count (DDP averages the processes' gradients)
            task_rows = sum_over_processes(task_rows).clamp(min=1.0) / share.world
        inputs = self._head_inputs(self.rotation(mean))
        terms: dict[str, torch.Tensor] = {}
        per_row_terms: dict[str, torch.Tensor] | None = {} if per_row else None
        task_total = torch.zeros((), device=h.device)
        for i, cols in enumerate(self.config.target_columns):
            out = self._task_output(i, inputs[i], step_mask[..., i] if sequence else None)
            rows = task_mask[:, i]
            if self.config.task_types[i] == "regression":
                target = (tasks[:, cols] - self.task_mean[cols]) / self.task_std[cols]
                per_row = ((out - target) ** 2).mean(-1)
            else:
                per_row = nn.functional.cross_entropy(out, tasks[:, cols.start].long().clamp(min=0), reduction="none")
            weight = rows.to(per_row.dtype)
            value = (per_row * weight).sum() / task_rows[i]
            if per_row_terms is not None:
                if self.config.task_types[i] == "regression":
                    score = (target**2).mean(-1)
                else:
                    labels = tasks[:, cols.start].long().clamp(min=0)
                    score = (out.argmax(-1) == labels).to(per_row.dtype)
                    onehot = nn.functional.one_hot(labels, out.shape[-1]).to(out.dtype)
                    per_row_terms[f"task_{i}/brier"] = ((out.softmax(-1) - onehot) ** 2).sum(-1).detach()
                    per_row_terms[f"task_{i}/labels"] = onehot
                per_row_terms.update({f"task_{i}/per_row": per_row.detach(), f"task_{i}/rows": rows,
                                      f"task_{i}/score": score.detach()})
            terms[f"task_{i}"] = value.detach()
            task_total = task_total + value
        penalty = self.mask.sum() if not bool(self.support_frozen) else torch.zeros((), device=h.device)
        loss = recon + self.config.kl_weight * kl + self.config.task_weight * task_total + sparsity * penalty
        terms.update(loss=loss, recon=recon.detach(), kl=kl.detach(), task=task_total.detach(), sparsity=penalty.detach())
        if per_row_terms:
            terms.update(per_row_terms)
        return terms

    def forward(self, h: torch.Tensor, tasks: torch.Tensor, task_mask: torch.Tensor, sparsity: float = 0.0) -> dict[str, torch.Tensor]:
        """The training objective (`loss_terms`), so that wrappers such as DDP under `accelerate` see the forward."""
        return self.loss_terms(h, tasks, task_mask, sparsity)

    @torch.no_grad()
    def freeze_support(self, support: np.ndarray | torch.Tensor | None = None) -> None:
        """Fix the task support (default: the current `mask > mask_threshold`); heads then read only it."""
        value = self.task_support_ if support is None else support
        self.support.copy_(torch.as_tensor(np.asarray(value), dtype=self.support.dtype))
        self.support_frozen.fill_(True)
