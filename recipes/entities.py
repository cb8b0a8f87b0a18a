"""Real knowledge on a real model: layer sweep and measured limits for `entity_sequences` (RAVEL attributes).

Usage:
    python recipes/entities.py [--model minilm] [--sweep-n 2000] [--sizes 250 500 1000 2000 4000]

Prints two tables (evaluation seed 1; the demo's defaults, such as `project=32`, were chosen on seed 0):
  1. layer sweep: 5-fold (entity-disjoint) linear-probe accuracy of each task's own attribute from the full step state at every
     layer (the steps that serve the task), and whether the structure test finds the task's steps there;
  2. limits: per task, F1 of its column of the discovered structure and its false marks as n grows, including
     `mean_latitude`, which MiniLM barely knows (DESIGN §6: latitude probe R² 0.08).
With `--specialist-sweep`: the specialist trained at every layer, and what its blocks keep. The full specialist
table is `hf-specialist demo --data entities` (`--model smollm2` for SmolLM2).
"""

from __future__ import annotations

import argparse

import numpy as np

import hf_specialist as hfs
from hf_specialist.knowledge import probe_accuracy, step_labels
from hf_specialist.models import load_model

SEED = 1
TASKS = ("health_workers", "european_cities", "main_industry", "mean_latitude")


def n_layers(model) -> int:
    return len(hfs.hooks.find_layer_list(model)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--sweep-n", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000])
    parser.add_argument("--hook-point", default=None)
    parser.add_argument("--project", type=int, default=32)
    parser.add_argument("--specialist-sweep", action="store_true",
                        help="only: train the specialist at every layer and report what its blocks keep")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per model in the specialist sweep")
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    hook_point = args.hook_point or {"minilm": "layers.3", "smollm2": "layers.15"}.get(args.model, "layers.-1")

    layers = ["embed"] + [f"layers.{i}" for i in range(n_layers(model))]
    if args.specialist_sweep:
        specialist_sweep(model, tokenizer, layers, args)
        return
    texts, outcomes, truth = hfs.synthetic.entity_sequences(n=args.sweep_n, T=8, tasks=TASKS, seed=SEED)
    print(f"Layer sweep ({args.model}, n={args.sweep_n}): own-attribute probe accuracy from the full step state, "
          "entity-disjoint folds (structure F1 of the task's column in brackets)")
    print(f"{'layer':>10s} | " + " | ".join(f"{t:>22s}" for t in TASKS))
    for layer in layers:
        states = hfs.extract_steps(model, tokenizer, texts, hook_point=layer, steps=". ", batch_size=64)
        structure = hfs.TaskStructure(project=args.project).fit(states, outcomes)
        cells = []
        for i in range(len(TASKS)):
            steps = np.flatnonzero(truth["step_tasks"][:, i])
            labels = step_labels(truth, i)
            acc = probe_accuracy(states[:, steps].reshape(-1, states.shape[-1]), labels["own"], labels["entity"])
            f1 = hfs.metrics.structure_scores(structure.step_tasks_[:, i:i + 1], truth["step_tasks"][:, i:i + 1])["f1"]
            cells.append(f"{acc:.3f} (F1 {f1:.2f})")
        print(f"{layer:>10s} | " + " | ".join(f"{c:>22s}" for c in cells), flush=True)

    print(f"\nLimits ({args.model}, {hook_point}, project={args.project}): per-task F1 of the discovered structure and "
          "false marks (steps marked for a task they do not serve), by number of sequences")
    print(f"{'n':>6s} | " + " | ".join(f"{t:>22s}" for t in TASKS))
    texts, outcomes, truth = hfs.synthetic.entity_sequences(n=max(args.sizes), T=8, tasks=TASKS, seed=SEED)
    states = hfs.extract_steps(model, tokenizer, texts, hook_point=hook_point, steps=". ", batch_size=64)
    for n in args.sizes:
        structure = hfs.TaskStructure(project=args.project).fit(states[:n], outcomes[:n])
        cells = []
        for i in range(len(TASKS)):
            pred, true = structure.step_tasks_[:, i], truth["step_tasks"][:, i]
            f1 = hfs.metrics.structure_scores(pred[:, None], true[:, None])["f1"]
            cells.append(f"F1 {f1:.2f}, false {int((pred & ~true).sum())}")
        print(f"{n:6d} | " + " | ".join(f"{c:>22s}" for c in cells), flush=True)


def specialist_sweep(model, tokenizer, layers: list[str], args: argparse.Namespace) -> None:
    """The specialist trained at every layer (on the true structure, `sparsity="auto"`, `--epochs`): normalised
    probe accuracy of its block for the task's own attribute and the mean over the surface (name, time, template)."""
    import torch

    from hf_specialist.knowledge import kept_and_dropped

    tasks = ("health_workers", "european_cities")
    texts, outcomes, truth = hfs.synthetic.entity_sequences(n=args.sweep_n, T=8, tasks=tasks, seed=SEED)
    print(f"Specialist per layer ({args.model}, n={args.sweep_n}, epochs={args.epochs}): own attribute kept / surface "
          "kept (normalised probe accuracy) / support size")
    print(f"{'layer':>10s} | " + " | ".join(f"{t:>28s}" for t in tasks))
    for layer in layers:
        states = hfs.extract_steps(model, tokenizer, texts, hook_point=layer, steps=". ", batch_size=64)
        config = hfs.SpecialistConfig(d_in=states.shape[-1], d_latent=32, n_tasks=len(tasks), task_names=list(tasks))
        adapter = hfs.SpecialistAdapter(config)
        hfs.train_specialist(adapter, states, outcomes, truth["step_tasks"], epochs=args.epochs, seed=SEED,
                             progress=False)
        blocks = []
        for i in range(len(tasks)):
            steps = np.flatnonzero(truth["step_tasks"][:, i])
            with torch.no_grad():
                blocks.append(adapter.task_latents(torch.as_tensor(states[:, steps].reshape(-1, states.shape[-1])),
                                                   task=i).numpy())
        table = kept_and_dropped({"specialist": blocks}, states, truth)["specialist"]
        cells = [f"{table[t]['own']:.2f} / {np.mean([table[t][f] for f in ('name', 'time', 'template')]):.2f} / "
                 f"{table[t]['dims']:2d}" for t in tasks]
        print(f"{layer:>10s} | " + " | ".join(f"{c:>28s}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
