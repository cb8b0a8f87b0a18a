"""The end-to-end demo: planted-structure texts -> extract -> discover -> train -> evaluate -> save, through the one
pipeline (`pipeline.run_pipeline`) that the entities demo and the CLI's `demo` share; this module adds only the data
(`planted_data`) and the scoring (`score_planted`).

Runs on a real pretrained model shipped in a PyPI package (MiniLM by default, SmolLM2 with `model="smollm2"`),
with no download at run time. The texts carry a known step x task structure (`synthetic.planted_text`), so every
stage is scored against the truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# DEFAULT_HOOK_POINTS is re-exported: it was defined here before the pipeline had its own module
from .pipeline import DEFAULT_HOOK_POINTS, DEMO_D_LATENT, DEMO_EPOCHS, DemoData, DemoScores, PipelineRun  # noqa: F401


def evaluate_latents(adapter: Any, states: np.ndarray, truth: dict[str, Any]) -> dict[str, dict[str, float]]:
    """`block_r2` per task on the steps that truly serve it: relevant = the step's quantity, irrelevant = its other
    facts (hour, colour, name, object)."""
    import torch

    from .metrics import block_r2

    d = states.shape[-1]
    scores = {}
    for i in range(truth["step_tasks"].shape[1]):
        rows = truth["step_tasks"][:, i]
        h = torch.as_tensor(states[:, rows].reshape(-1, d), dtype=torch.float32)
        with torch.no_grad():
            block = adapter.task_latents(h, task=i).cpu().numpy()
        relevant = truth["quantities"][:, rows].reshape(-1, 1)
        irrelevant = truth["irrelevant"][:, rows].reshape(-1, truth["irrelevant"].shape[-1])
        scores[adapter.config.task_names[i]] = {**block_r2(block, relevant, irrelevant), "support": int(block.shape[1])}
    return scores


def run_demo(
    model: str = "minilm",
    *,
    n: int = 2000,
    T: int = 8,
    M: int = 2,
    hook_point: str | None = None,
    d_latent: int = DEMO_D_LATENT,
    epochs: int = DEMO_EPOCHS,
    output_dir: str = "outputs",
    seed: int = 0,
    quiet: bool = False,
    base: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline (`pipeline.run_pipeline`) on planted-structure texts and write the adapter, its card
    and PNG plots into `output_dir`.

    Args:
        model (`str`, *optional*, defaults to `"minilm"`): `"minilm"`, `"smollm2"` or a local model folder.
        n, T, M (`int`): sequences, sentences per sequence, tasks.
        hook_point (`str`, *optional*): where to read hidden states (default: a middle layer).
        d_latent, epochs (`int`): adapter size and training epochs per model.
        output_dir (`str`, *optional*, defaults to `"outputs"`): where everything is written.
        seed (`int`, *optional*, defaults to 0): the seed of the texts, the structure and training.
        quiet (`bool`, *optional*, defaults to `False`): no progress lines and no results table.
        base (`tuple`, *optional*): an already loaded `(model, tokenizer)` (used by tests with tiny models).

    Returns:
        `dict` with the results table's numbers and the paths written.
    """
    from .pipeline import run_pipeline

    summary = run_pipeline(lambda: planted_data(n=n, T=T, M=M, seed=seed), score_planted, model,
                           hook_point=hook_point, d_latent=d_latent, epochs=epochs, output_dir=output_dir, seed=seed,
                           quiet=quiet, base=base)
    if not quiet:
        print_results(summary)
    return summary


def planted_data(*, n: int, T: int, M: int, seed: int) -> DemoData:
    """The planted demo's data: `synthetic.planted_text` (each task sums numbers stated in its sentences)."""
    from . import synthetic

    texts, tasks, truth = synthetic.planted_text(n=n, T=T, M=M, seed=seed)
    return DemoData(texts=texts, tasks=tasks, truth=truth, task_names=[f"sum_{i}" for i in range(M)],
                    dataset="hf_specialist/planted_text",
                    description=f"{n} texts of {T} sentences with {M} planted tasks (segment length "
                                f"{truth['segment_length']})")


def score_planted(run: PipelineRun) -> DemoScores:
    """Scores of the planted demo: the structure against the truth, and per task the R² of the specialist's (and
    the generalist's) block for the step's own quantity (relevant) and its other facts (irrelevant)."""
    from . import plots

    latent_scores = {"specialist": evaluate_latents(run.specialist, run.states, run.data.truth),
                     "generalist": evaluate_latents(run.generalist, run.states, run.data.truth)}

    def mean(method: str, key: str) -> float:
        return float(np.mean([s[key] for s in latent_scores[method].values()]))

    structure = run.structure_scores
    summary = {
        "structure/accuracy": structure["accuracy"],
        "structure/mcc": structure["mcc"],
        "structure/f1": structure["f1"],
        "latents/r2_relevant": mean("specialist", "r2_relevant"),
        "latents/r2_irrelevant": mean("specialist", "r2_irrelevant"),
        "generalist/latents/r2_relevant": mean("generalist", "r2_relevant"),
        "generalist/latents/r2_irrelevant": mean("generalist", "r2_irrelevant"),
        "adapter/support_size": int(run.specialist.task_support_.sum()),
        "adapter/explained_variance": float(run.history["final"]["adapter/explained_variance"]),
    }
    card_metrics = {k: v for k, v in summary.items() if k.startswith(("structure/", "latents/", "adapter/"))}
    bars = {method: {"r2_relevant": mean(method, "r2_relevant"), "r2_irrelevant": mean(method, "r2_irrelevant")}
            for method in latent_scores}
    summary["per_task"] = latent_scores
    summary["lambda_path"] = [{k: v for k, v in r.items() if k != "support"} for r in run.history["path"]]
    return DemoScores(summary=summary, card_metrics=card_metrics, plots={
        "latents_r2.png": lambda path: plots.r2_bars(bars, path, title=f"{run.model}: specialist vs generalist"),
        "training.png": lambda path: plots.training_curves(run.history, path),
    })


def print_results(summary: dict[str, Any]) -> None:
    """Print the demo's results table."""
    rows = [
        ("structure/f1", summary["structure/f1"], "-"),
        ("structure/mcc", summary["structure/mcc"], "-"),
        ("latents/r2_relevant", summary["latents/r2_relevant"], summary["generalist/latents/r2_relevant"]),
        ("latents/r2_irrelevant", summary["latents/r2_irrelevant"], summary["generalist/latents/r2_irrelevant"]),
        ("adapter/support_size", summary["adapter/support_size"], "-"),
        ("adapter/explained_variance", summary["adapter/explained_variance"], "-"),
    ]
    print(f"\nResults ({summary['model']}, {summary['hook_point']}, {summary['seconds']:.0f} s)")
    print(f"{'metric':28s} | {'specialist':>10s} | {'generalist (no l1)':>18s}")
    print("-" * 62)
    for name, ours, other in rows:
        ours_text = f"{ours:10.3f}" if isinstance(ours, float) else f"{ours:10d}"
        other_text = f"{other:18.3f}" if isinstance(other, float) else f"{other:>18s}"
        print(f"{name:28s} | {ours_text} | {other_text}")
