"""Why the entities demo kept a small lambda on some draws: the demo's data, states and structure per development
seed (cached), then `train_specialist` with `sparsity="auto"`, printing the whole lambda path: per task what the rule
compares (`selection_loss`: the standardised squared error or the normalised Brier score) ± its standard error, the
rule's thresholds, the support per task, whether it settled and whether it passed.

Usage:
    python recipes/benchmarks/development/entities_lambda.py --seeds 0 2 3 4 [--model minilm] [--epochs 20]
        [--max-steps N] [--selection one_se_margin] [--cache /tmp/entdev]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hf_specialist.adapter.config import SpecialistConfig
from hf_specialist.adapter.lambda_path import selection_loss, train_specialist
from hf_specialist.adapter.model import SpecialistAdapter
from hf_specialist.data import extract_steps
from hf_specialist.knowledge import entities_data
from hf_specialist.models import load_model
from hf_specialist.pipeline import DEFAULT_HOOK_POINTS, DEMO_D_LATENT
from hf_specialist.structure.discovery import TaskStructure


def states_for(seed: int, model: str, cache: Path, base=None):
    data = entities_data(n=2000, T=8, tasks=None, seed=seed)
    path = cache / f"{model}_{seed}.npz"
    if path.exists():
        saved = np.load(path)
        return data, saved["states"], saved["step_tasks"], base
    base = base or load_model(model)
    states = extract_steps(base[0], base[1], data.texts, hook_point=DEFAULT_HOOK_POINTS[model],
                           steps=data.truth["separator"], batch_size=32, progress=False)
    structure = TaskStructure(segment_length=data.truth["segment_length"], seed=seed, project=32)
    structure.fit(states, data.tasks)
    np.savez(path, states=states, step_tasks=structure.step_tasks_)
    return data, states, structure.step_tasks_, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--selection", default="one_se_margin")
    parser.add_argument("--settle-retries", type=int, default=0,
                        help="train the path again, twice as long, when supports had not settled (default 0: the "
                             "schedule as given; the library's default is 1)")
    parser.add_argument("--cache", default="/tmp/entdev")
    parser.add_argument("--save", default=None, help="folder for each seed's history (json)")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    base = None
    for seed in args.seeds:
        data, states, step_tasks, base = states_for(seed, args.model, cache, base)
        config = SpecialistConfig(d_in=states.shape[-1], d_latent=DEMO_D_LATENT, n_tasks=len(data.task_names),
                                  task_names=data.task_names, task_types=data.task_types, n_classes=data.n_classes)
        adapter = SpecialistAdapter(config)
        history = train_specialist(adapter, states, data.tasks, step_tasks, epochs=args.epochs,
                                   max_steps=args.max_steps, seed=seed, selection=args.selection, progress=False,
                                   settle_retries=args.settle_retries)
        print(f"seed {seed}: kept lambda {history['selected_sparsity']:.3g}, settled {history['settled']}, "
              f"thresholds {[None if t is None else round(t, 3) for t in history['selection'].get('thresholds', [])]}, "
              f"not voting {history['selection'].get('uninformative', [])}")
        for record in history["path"]:
            losses = " ".join("{:.3f}±{:.3f}".format(*selection_loss(record, i)[:2])
                              for i in range(len(data.task_names)))
            metric = " ".join(f"{record.get(f'task_{i}/accuracy', record.get(f'task_{i}/r2', float('nan'))):.3f}"
                              for i in range(len(data.task_names)))
            print(f"  lambda {record['sparsity']:<8.3g} loss {losses} | metric {metric} | support "
                  f"{[int(sum(r)) for r in record['support']]} settled {record['settled']} "
                  f"passed {record['within_tolerance']}")
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            keep = {k: history[k] for k in ("path", "selected_sparsity", "selection", "settled")}
            (Path(args.save) / f"{args.model}_{seed}.json").write_text(json.dumps(keep, default=float))


if __name__ == "__main__":
    main()
