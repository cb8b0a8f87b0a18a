"""Real knowledge: structure and specialists on `entities.entity_sequences`, scored by what each block keeps.

For each task, on the steps that truly serve it, linear probes (5 entity-disjoint folds: scored on occupations or
cities the probe never saw, so memorising names does not count) read from a block:
- the task's own attribute of the step's entity (what the model must know: is this occupation in health care?);
- another attribute of the same entity that the task does not use;
- the surface (the person's name, the time phrase, the template), which no task uses.
Each accuracy is normalised against the same probe on the full hidden state, `(acc_block - chance) /
(acc_full - chance)`: 1 means the block keeps everything the model's state has about it, 0 nothing.

Blocks compared: the specialist (`task_latents`), the generalist ablation (lambda = 0, every latent), and a
supervised probe with the same supervision as ours (sequence outcomes and the structure): a linear map from the
serving steps' states to the outcome, whose per-step projection is the block.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .entities import entity_sequences, load_entities

OTHER_ATTRIBUTE = {"occupation": "Work Location", "city": "Timezone"}
SURFACE = ("name", "time", "template")
DEFAULT_HOOK_POINTS = {"minilm": "layers.3", "smollm2": "layers.15"}


def _labels(values: np.ndarray, top: int = 4) -> np.ndarray:
    """Class codes of the `top` most frequent values (others -1, left out of the probe)."""
    kinds, counts = np.unique(values.astype(str), return_counts=True)
    keep = kinds[np.argsort(-counts)[:top]]
    return np.array([list(keep).index(v) if v in keep else -1 for v in values.astype(str)])


def probe_accuracy(features: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None, seed: int = 0,
                   max_rows: int = 3000) -> float:
    """5-fold accuracy of a standardised multinomial logistic regression (rows with label -1 dropped).

    With `groups` (the entity of each row) the folds are entity-disjoint (`GroupKFold`): the probe is scored on
    entities it never saw, so it cannot just memorise which name has which attribute; only a representation that
    carries the attribute itself generalises.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = np.flatnonzero(labels >= 0)
    rng = np.random.default_rng(seed)
    keep = rng.permutation(keep)[:max_rows]
    x, y = features[keep], labels[keep]
    if x.shape[1] == 0:
        return float(np.bincount(y).max() / len(y))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=1.0))
    if groups is None:
        return float(cross_val_score(model, x, y, cv=5).mean())
    return float(cross_val_score(model, x, y, groups=groups[keep].astype(str), cv=GroupKFold(n_splits=5)).mean())


def step_labels(truth: dict[str, Any], task_index: int) -> dict[str, np.ndarray]:
    """Labels of every (sequence, serving step) row of a task: own attribute, another attribute, surface."""
    task = truth["tasks"][task_index]
    steps = np.flatnonzero(truth["step_tasks"][:, task_index])
    table = load_entities(task.kind)
    names = truth["entities"][:, steps].reshape(-1)
    own = np.array([table[e][task.attribute] for e in names], dtype=object)
    if task.aggregate == "count":
        own_codes = (own == task.value).astype(int)
    elif task.aggregate == "majority":
        own_codes = np.array([task.classes.index(v) if v in task.classes else -1 for v in own])
    else:  # a numeric attribute: probe its sign-split halves (above / below the median)
        numeric = own.astype(float)
        own_codes = (numeric > np.median(numeric)).astype(int)
    out = {"own": own_codes, "other": _labels(np.array([table[e][OTHER_ATTRIBUTE[task.kind]] for e in names])),
           "entity": names}
    for factor in SURFACE:
        out[factor] = truth["surface"][factor][:, steps].reshape(-1)
    return out


def supervised_probe_blocks(states: np.ndarray, outcomes: np.ndarray, truth: dict[str, Any]) -> list[np.ndarray]:
    """Per task, the supervised probe's block on its serving steps: a linear model from the concatenated serving
    states to the outcome (ridge, or logistic for classes), projected back on each step's state."""
    from sklearn.linear_model import LogisticRegression, RidgeCV

    blocks = []
    for i, task in enumerate(truth["tasks"]):
        steps = np.flatnonzero(truth["step_tasks"][:, i])
        x = states[:, steps]  # (n, S, d)
        mean, std = x.mean((0, 1)), x.std((0, 1)) + 1e-6
        x = (x - mean) / std
        flat = x.reshape(len(x), -1)
        if task.task_type == "classification":
            model = LogisticRegression(max_iter=500, C=0.1).fit(flat, outcomes[:, i].astype(int))
            weights = model.coef_.reshape(model.coef_.shape[0], len(steps), -1)  # (C, S, d)
            block = np.einsum("nsd,csd->nsc", x, weights)
        else:
            model = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(flat, outcomes[:, i])
            block = np.einsum("nsd,sd->ns", x, model.coef_.reshape(len(steps), -1))[..., None]
        blocks.append(block.reshape(-1, block.shape[-1]))
    return blocks


def kept_and_dropped(blocks: dict[str, list[np.ndarray]], states: np.ndarray, truth: dict[str, Any],
                     seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """Normalised probe accuracies per method, task and factor (own, other, name, time, template)."""
    out: dict[str, dict[str, dict[str, float]]] = {m: {} for m in blocks}
    for i, task in enumerate(truth["tasks"]):
        steps = np.flatnonzero(truth["step_tasks"][:, i])
        full = states[:, steps].reshape(-1, states.shape[-1])
        labels = step_labels(truth, i)
        entities = labels.pop("entity")
        reference = {}
        for factor, y in labels.items():
            valid = y[y >= 0]
            chance = float(np.bincount(valid).max() / len(valid))
            reference[factor] = (probe_accuracy(full, y, entities, seed), chance)
        for method, per_task in blocks.items():
            scores = {}
            for factor, y in labels.items():
                acc_full, chance = reference[factor]
                acc = probe_accuracy(per_task[i], y, entities, seed)
                # undefined where the full state itself reads the factor at chance
                scores[factor] = float((acc - chance) / (acc_full - chance)) if acc_full - chance >= 0.02 else float("nan")
            scores["dims"] = int(per_task[i].shape[1])
            out[method][task.name] = scores
        out.setdefault("full state (accuracy)", {})[task.name] = {f: reference[f][0] for f in labels}
        out.setdefault("chance", {})[task.name] = {f: reference[f][1] for f in labels}
    return out


def run_entities_demo(
    model: str = "minilm",
    *,
    n: int = 2000,
    T: int = 8,
    tasks: tuple[str, ...] | None = None,
    hook_point: str | None = None,
    d_latent: int = 32,
    epochs: int = 20,
    project: int = 32,
    output_dir: str = "outputs/entities",
    seed: int = 0,
    quiet: bool = False,
    base: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Extract -> discover -> train -> evaluate on entity texts; prints and writes the kept/dropped table."""
    from . import plots
    from .data import extract_steps
    from .structure.discovery import TaskStructure
    from .adapter.config import SpecialistConfig
    from .adapter.lambda_path import train_specialist
    from .adapter.model import SpecialistAdapter
    from .entities import DEFAULT_TASKS
    from .metrics import structure_scores
    from .models import load_model

    started = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts, outcomes, truth = entity_sequences(n=n, T=T, tasks=tasks or DEFAULT_TASKS, seed=seed)
    base_model, tokenizer = base if base is not None else load_model(model)
    hook_point = hook_point or DEFAULT_HOOK_POINTS.get(model, "layers.-1")
    states = extract_steps(base_model, tokenizer, texts, hook_point=hook_point, steps=truth["separator"],
                           batch_size=32, progress=False if quiet else None)
    _say(quiet, f"[1/4] {n} texts of {T} sentences, tasks {truth['task_names']}; states {tuple(states.shape)} at "
                f"{hook_point}")
    # 32 dims per step: the attribute directions are not the largest-variance ones (with 8, European cities were
    # invisible on MiniLM layers 2-4; development seed 0)
    structure = TaskStructure(segment_length=truth["segment_length"], project=project, seed=seed).fit(states, outcomes)
    scores = structure_scores(structure.step_tasks_, truth["step_tasks"])
    _say(quiet, f"[2/4] structure F1 {scores['f1']:.3f} ({structure.n_tests_} tests)")
    unfound = [truth["task_names"][i] for i in np.flatnonzero(~structure.step_tasks_.any(0))]
    if unfound:
        raise RuntimeError(f"The structure test found no step for {unfound} at {hook_point} with n={n}: the model's "
                           "states there carry too little of the attribute for this many sequences (try more "
                           "sequences, another layer, or a larger `project`).")
    config = dict(d_in=states.shape[-1], d_latent=d_latent, n_tasks=len(truth["tasks"]), task_names=truth["task_names"],
                  task_types=truth["task_types"], n_classes=truth["n_classes"], hook_point=hook_point,
                  step_rule=truth["separator"], pool="mean")
    specialist = SpecialistAdapter(SpecialistConfig(**config, sparsity="auto"))
    specialist.config.record_base(base_model)
    history = train_specialist(specialist, states, outcomes, structure.step_tasks_, epochs=epochs, seed=seed,
                               progress=False)
    generalist = SpecialistAdapter(SpecialistConfig(**config, sparsity=0.0))
    train_specialist(generalist, states, outcomes, structure.step_tasks_, epochs=epochs, seed=seed, progress=False)
    _say(quiet, f"[3/4] trained the specialist (lambda {history['selected_sparsity']:.3g}, support "
                f"{specialist.task_support_.sum(1).tolist()}) and the generalist")
    blocks: dict[str, list[np.ndarray]] = {"specialist": [], "generalist (no l1)": []}
    for i in range(len(truth["tasks"])):
        steps = np.flatnonzero(truth["step_tasks"][:, i])
        h = torch.as_tensor(states[:, steps].reshape(-1, states.shape[-1]))
        with torch.no_grad():
            blocks["specialist"].append(specialist.task_latents(h, task=i).numpy())
            blocks["generalist (no l1)"].append(generalist.task_latents(h, task=i).numpy())
    blocks["supervised probe"] = supervised_probe_blocks(states, outcomes, truth)
    table = kept_and_dropped(blocks, states, truth, seed)
    summary = {"model": model, "hook_point": hook_point, "n": n, "structure": scores, "table": table,
               "selected_sparsity": history["selected_sparsity"], "seconds": time.perf_counter() - started}
    specialist.save_pretrained(out / "adapter", structure=structure, metrics={f"structure/{k}": v for k, v in scores.items()},
                               datasets=["hf_specialist/entity_sequences"])
    plots.step_task_heatmap(structure.step_tasks_, out / "structure.png", truth=truth["step_tasks"],
                            task_names=truth["task_names"], title=f"{model}: entity tasks")
    plots.kept_dropped_bars(table, out / "kept_dropped.png", title=f"{model} {hook_point}: what each block keeps")
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    _say(quiet, f"[4/4] evaluated; wrote {out}")
    if not quiet:
        print_table(summary)
    return summary


def print_table(summary: dict[str, Any]) -> None:
    """Print the kept/dropped table of `run_entities_demo`."""
    table = summary["table"]
    factors = ("own", "other", "name", "time", "template")
    print(f"\nEntities ({summary['model']}, {summary['hook_point']}, n={summary['n']}): structure F1 "
          f"{summary['structure']['f1']:.3f}; normalised probe accuracy (1 = all the full state has, 0 = chance)")
    print(f"{'task':16s} | {'block':20s} | {'dims':>4s} | " + " | ".join(f"{f:>8s}" for f in factors))
    print("-" * 92)
    for task in table["specialist"]:
        for method in ("specialist", "generalist (no l1)", "supervised probe"):
            row = table[method][task]
            print(f"{task:16s} | {method:20s} | {row['dims']:4d} | " + " | ".join(f"{row[f]:8.2f}" for f in factors))
        full = table["full state (accuracy)"][task]
        chance = table["chance"][task]
        print(f"{task:16s} | {'full state: accuracy':20s} | {'':4s} | " + " | ".join(f"{full[f]:8.2f}" for f in factors))
        print(f"{task:16s} | {'chance':20s} | {'':4s} | " + " | ".join(f"{chance[f]:8.2f}" for f in factors))


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, flush=True)
