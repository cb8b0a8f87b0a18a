"""The end-to-end demo: planted-structure texts -> extract -> discover -> train -> evaluate -> save.

Runs on a real pretrained model shipped in a PyPI package (MiniLM by default, SmolLM2 with `model="smollm2"`),
with no download at run time. The texts carry a known step x task structure (`synthetic.planted_text`), so every
stage is scored against the truth.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

DEFAULT_HOOK_POINTS = {"minilm": "layers.3", "smollm2": "layers.15"}


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


def evaluate_latents(adapter: Any, states: np.ndarray, truth: dict[str, Any]) -> dict[str, dict[str, float]]:
    """`block_r2` per task on the steps that truly serve it: relevant = the step's quantity, irrelevant = its other
    facts (hour, colour, name, object)."""
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
    d_latent: int = 32,
    epochs: int = 20,
    output_dir: str = "outputs",
    seed: int = 0,
    quiet: bool = False,
    base: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline and write the adapter, its card and PNG plots into `output_dir`.

    Args:
        model (`str`, *optional*, defaults to `"minilm"`): `"minilm"`, `"smollm2"` or a local model folder.
        n, T, M (`int`): sequences, sentences per sequence, tasks.
        hook_point (`str`, *optional*): where to read hidden states (default: a middle layer).
        d_latent, epochs (`int`): adapter size and training epochs per model.
        base (`tuple`, *optional*): an already loaded `(model, tokenizer)` (used by tests with tiny models).

    Returns:
        `dict` with the results table's numbers and the paths written.
    """
    from . import plots, synthetic
    from .data import extract_steps
    from .structure.discovery import TaskStructure
    from .adapter.config import SpecialistConfig
    from .adapter.model import SpecialistAdapter
    from .adapter.lambda_path import train_specialist
    from .metrics import structure_scores
    from .models import load_model

    started = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts, tasks, truth = synthetic.planted_text(n=n, T=T, M=M, seed=seed)
    _log(f"[1/5] built {n} texts of {T} sentences with {M} planted tasks (segment length {truth['segment_length']})", quiet)

    base_model, tokenizer = base if base is not None else load_model(model)
    hook_point = hook_point or DEFAULT_HOOK_POINTS.get(model, "layers.-1")
    t0 = time.perf_counter()
    states = extract_steps(base_model, tokenizer, texts, hook_point=hook_point, steps=truth["separator"], pool="mean",
                           batch_size=32, progress=False if quiet else None)
    extract_s = time.perf_counter() - t0
    _log(f"[2/5] extracted steps {tuple(states.shape)} at {hook_point} in {extract_s:.1f} s", quiet)

    t0 = time.perf_counter()
    structure = TaskStructure(segment_length=truth["segment_length"], project=8, seed=seed).fit(states, tasks)
    discover_s = time.perf_counter() - t0
    structure_metrics = structure_scores(structure.step_tasks_, truth["step_tasks"])
    _log(f"[3/5] discovered the step x task structure with {structure.n_tests_} CI tests in {discover_s:.2f} s: "
         f"F1 {structure_metrics['f1']:.3f} (conditioning: {structure.conditioning_}, decision: {structure.decision_}, band check p="
         f"{'not run' if structure.markov_pvalue_ is None else format(structure.markov_pvalue_, '.2g')})", quiet)

    config_kwargs = dict(
        d_in=states.shape[-1], d_latent=d_latent, n_tasks=M, task_names=[f"sum_{i}" for i in range(M)],
        hook_point=hook_point, base_model=getattr(base_model.config, "_name_or_path", model),
        base_model_type=getattr(base_model.config, "model_type", None), base_hidden_size=states.shape[-1],
        step_rule=truth["separator"], pool="mean",
    )
    t0 = time.perf_counter()
    specialist = SpecialistAdapter(SpecialistConfig(**config_kwargs, sparsity="auto"))
    history = train_specialist(specialist, states, tasks, structure.step_tasks_, epochs=epochs, seed=seed, progress=False if quiet else None)
    generalist = SpecialistAdapter(SpecialistConfig(**config_kwargs, sparsity=0.0))
    train_specialist(generalist, states, tasks, structure.step_tasks_, epochs=epochs, seed=seed, progress=False)
    train_s = time.perf_counter() - t0
    _log(f"[4/5] trained the specialist (lambda {history['selected_sparsity']:.3g} chosen on held-out data) and the "
         f"generalist ablation in {train_s:.1f} s", quiet)

    latent_scores = {"specialist": evaluate_latents(specialist, states, truth),
                     "generalist": evaluate_latents(generalist, states, truth)}
    summary = {
        "model": model,
        "hook_point": hook_point,
        "structure/accuracy": structure_metrics["accuracy"],
        "structure/mcc": structure_metrics["mcc"],
        "structure/f1": structure_metrics["f1"],
        "latents/r2_relevant": float(np.mean([s["r2_relevant"] for s in latent_scores["specialist"].values()])),
        "latents/r2_irrelevant": float(np.mean([s["r2_irrelevant"] for s in latent_scores["specialist"].values()])),
        "generalist/latents/r2_relevant": float(np.mean([s["r2_relevant"] for s in latent_scores["generalist"].values()])),
        "generalist/latents/r2_irrelevant": float(np.mean([s["r2_irrelevant"] for s in latent_scores["generalist"].values()])),
        "adapter/support_size": int(specialist.task_support_.sum()),
        "adapter/explained_variance": float(history["final"]["adapter/explained_variance"]),
    }
    card_metrics = {k: v for k, v in summary.items() if k.startswith(("structure/", "latents/", "adapter/"))}
    folder = specialist.save_pretrained(out / "adapter", structure=structure, metrics=card_metrics,
                                        datasets=["hf_specialist/planted_text"])
    plots.step_task_heatmap(structure.step_tasks_, out / "structure.png", truth=truth["step_tasks"],
                            task_names=config_kwargs["task_names"], title=f"{model}: step x task structure")
    plots.r2_bars({"specialist": {"r2_relevant": summary["latents/r2_relevant"], "r2_irrelevant": summary["latents/r2_irrelevant"]},
                   "generalist": {"r2_relevant": summary["generalist/latents/r2_relevant"],
                                  "r2_irrelevant": summary["generalist/latents/r2_irrelevant"]}},
                  out / "latents_r2.png", title=f"{model}: specialist vs generalist")
    plots.training_curves(history, out / "training.png")
    summary["seconds"] = time.perf_counter() - started
    summary["timings"] = {"extract": extract_s, "discover": discover_s, "train": train_s}
    summary["per_task"] = latent_scores
    summary["lambda_path"] = [{k: v for k, v in r.items() if k != "support"} for r in history["path"]]
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    _log(f"[5/5] saved the adapter, its card and plots to {folder} and {out}", quiet)
    if not quiet:
        print_results(summary)
    return summary


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
