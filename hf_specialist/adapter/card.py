"""The model card of an adapter artifact, rendered from `model_cards/specialist_card.md` with
`huggingface_hub.ModelCard` at every save (the adapter writes it, so it sits beside the adapter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._constants import CARD_MARKER, HEATMAP_NAME
from .._version import __version__

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "model_cards" / "specialist_card.md"
CARD_TAGS = ("hf_specialist", "specialist-representation", "identifiability", "sparse-adapter")


def is_generated_card(path: Path) -> bool:
    """Whether `path` is a card this library wrote (a user's README is never overwritten)."""
    return path.is_file() and CARD_MARKER in path.read_text(encoding="utf-8", errors="replace")


def versions() -> dict[str, str]:
    """Library versions recorded in `config.json` and the card."""
    import torch
    import transformers

    return {"hf_specialist": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def named_metrics(config: Any, metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics under readable names: `task_i...` becomes `<task name>/loss`, `/loss_se`, `/r2`, `/accuracy`,
    `/brier`, `/brier_se`, `/null`, `/rows`; other names (`adapter/...`, `latents/...`) stay."""
    renamed = {}
    for key, value in metrics.items():
        head, _, tail = key.partition("/")
        if head.startswith("task_") and head[5:].isdigit() and int(head[5:]) < len(config.task_names):
            name = config.task_names[int(head[5:])]
            renamed[f"{name}/" + {"": "loss", "se": "loss_se", "n": "rows"}.get(tail, tail)] = value
        else:
            renamed[key] = value
    return renamed


def metric_meaning(config: Any, key: str, held_out: bool = True) -> str:
    """One line saying what the metric `key` (a `named_metrics` name) measures and on what scale; `held_out=False`
    for metrics on rows the caller chose (`hf-specialist evaluate`), which may include training rows."""
    import math

    where = "held-out " if held_out else ""

    fixed = {
        "adapter/explained_variance": "share of the input variance the reconstruction keeps (1 = all)",
        "adapter/support_size": "task x latent mask entries on, summed over tasks (the specialist blocks' total size)",
        "adapter/l0": "latents per task, on average",
        "adapter/sparsity": "the lambda of the l1 penalty on the task x latent mask that training kept",
        "latents/r2_relevant": "R^2 of the true relevant latents from task 0's block (high = kept)",
        "latents/r2_irrelevant": "R^2 of the true irrelevant latents from task 0's block (low = left out)",
    }
    if key in fixed:
        return fixed[key]
    name, _, part = key.rpartition("/")
    if name in config.task_names:
        i = config.task_names.index(name)
        if config.task_types[i] == "regression":
            unit = "mean squared error on standardised targets (0 = perfect, 1 = predicting the mean)"
        else:
            unit = f"cross-entropy in nats (0 = perfect, {math.log(config.n_classes[i]):.2f} = uniform guess)"
        return {"loss": f"{where}loss of {name}: {unit}",
                "loss_se": f"standard error of {name}'s loss (how much it would move with another sample)",
                "r2": f"R^2 of {name} (1 = perfect, 0 = no better than the training mean)",
                "accuracy": f"share of {name}'s labels predicted right",
                "brier": f"Brier score of {name} over that of predicting the held-out class shares (0 = perfect, "
                         "1 = no better than the shares; what the lambda choice compares)",
                "brier_se": f"standard error of {name}'s normalised Brier score",
                "null": f"loss of predicting the training mean of {name} (the loss's no-information level; a "
                        "classification task's is 1 on its Brier score)",
                "rows": f"{where}rows (or sequences) that count for {name}"}.get(part, "")
    return ""


def render_card(adapter: Any, structure: Any | None = None, metrics: dict[str, float] | None = None,
                datasets: list[str] | None = None, repo_id: str | None = None, has_heatmap: bool = False) -> str:
    """Render the model card from `model_cards/specialist_card.md` with `huggingface_hub.ModelCard`."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    cfg = adapter.config
    trained = getattr(adapter, "training_metrics_", None)
    held_out = bool(trained)
    if held_out:  # the held-out metrics of the run that trained the adapter, and any passed beside them
        metrics, source = {**named_metrics(cfg, trained), **named_metrics(cfg, dict(metrics or {}))}, (
            "Held-out metrics of the training run (`train_specialist`, on the held-out share of the sequences; "
            "`training_args.json` holds the run's arguments)"
            + (", with the metrics passed to `save_pretrained`." if metrics else "."))
    else:
        metrics = named_metrics(cfg, dict(metrics or {}))
        source = "Metrics passed to `save_pretrained`." if metrics else "No metrics were recorded for this adapter."
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
        tags=list(CARD_TAGS),
        datasets=datasets,
        model_name=name,
        eval_results=eval_results or None,
    )
    support = adapter.task_support_
    support_rows = "\n".join(
        f"| {task} | {cfg.task_types[i]} | {int(support[i].sum())} | {', '.join(str(j) for j in support[i].nonzero()[0]) or '-'} |"
        for i, task in enumerate(cfg.task_names)
    )
    metrics_rows = "\n".join(f"| `{k}` | {v:.4g} | {metric_meaning(cfg, k, held_out)} |"
                             for k, v in metrics.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)) or "| - | - | - |"
    if structure is not None:
        steps = structure.step_tasks_
        lines = ["| step | " + " | ".join(cfg.task_names[: steps.shape[1]]) + " |",
                 "|---|" + "---|" * steps.shape[1]]
        pvalues = getattr(structure, "step_pvalues_", None)

        def cell(t: int, i: int) -> str:
            mark = "**x**" if steps[t, i] else ""
            if pvalues is None or not np.isfinite(pvalues[i, t]):
                return mark
            return f"{mark} p={pvalues[i, t]:.1e}".strip()

        lines += [f"| {t + 1} | " + " | ".join(cell(t, i) for i in range(steps.shape[1])) + " |"
                  for t in range(steps.shape[0])]
        lines += ["", f"x = marked; p = the step's raw direct-test p-value (a step is marked below "
                      f"{getattr(structure, 'critical_pvalue_', float('nan')):.2g}, the level after "
                      f"{structure.correction} correction at alpha {structure.alpha}). The evidence per step is also in "
                      "`structure.json` (`report`)."]
        from ..structure.report import structure_warnings

        lines += [f"\n> Warning: {w}" for w in structure_warnings(structure)]
        structure_text = (
            f"Discovered with `TaskStructure` (segment length {structure.segment_length}, test "
            f"`{structure.to_dict()['params']['test']}`, mode `{structure.mode}`, conditioning "
            f"`{getattr(structure, 'conditioning_', None) or structure.conditioning}`, decision "
            f"`{getattr(structure, 'decision_', None) or structure.decision}`, {structure.n_tests_} CI tests"
            + (f", states in `{structure.context_}` context" if getattr(structure, "context_", None) else "")
            + ").\n\n"
            + (f"![step x task structure]({HEATMAP_NAME})\n\n" if has_heatmap else "")
            + "\n".join(lines)
        )
    elif cfg.step_tasks is not None:
        def steps_of(column: tuple[bool, ...]) -> str:
            return "every step" if all(column) else "steps " + ", ".join(str(t + 1) for t, on in enumerate(column) if on)

        read = "; ".join(f"{name}: {steps_of(col)}" for name, col in zip(cfg.task_names, zip(*cfg.step_tasks)))
        structure_text = (f"No `TaskStructure` was attached to this adapter. Its sequence readout was trained on, and "
                          f"reads, these steps per task (`config.step_tasks`): {read}.")
    else:
        structure_text = "No step x task structure was attached to this adapter."
    versions_now = versions()
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
        metrics_source=source,
        repo_or_path=repo_id or "path/to/this/folder",
        step_text=(f"steps split by {cfg.step_rule!r}, {cfg.pool or 'mean'}-pooled at `{cfg.hook_point}`"
                   + (f", truncated to {cfg.max_length} tokens" if cfg.max_length else "")
                   if cfg.step_rule else "pass `steps=` (trained on per-text spans)"),
        revision_text=f" (revision `{cfg.base_model_revision}`)" if cfg.base_model_revision else "",
        versions="\n".join(f"- {k} {v}" for k, v in versions_now.items()),
    ).content
