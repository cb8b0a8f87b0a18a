"""The model card of an adapter artifact, rendered from `model_cards/specialist_card.md` with
`huggingface_hub.ModelCard` at every save (the adapter writes it, so it sits beside the adapter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
        repo_or_path=repo_id or "path/to/this/folder",
        step_text=(f"steps split by {cfg.step_rule!r}, {cfg.pool or 'mean'}-pooled at `{cfg.hook_point}`"
                   + (f", truncated to {cfg.max_length} tokens" if cfg.max_length else "")
                   if cfg.step_rule else "pass `steps=` (trained on per-text spans)"),
        revision_text=f" (revision `{cfg.base_model_revision}`)" if cfg.base_model_revision else "",
        versions="\n".join(f"- {k} {v}" for k, v in versions_now.items()),
    ).content
