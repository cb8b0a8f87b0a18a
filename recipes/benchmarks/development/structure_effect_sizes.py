"""Development seeds only (0-2; texts of seeds 0 and 1): how large is a leaked step's dependence on a task, against
a serving step's?

Per case, the default `TaskStructure` fit and, per task and step, the effect behind each direct test: the partial
R^2 that the test's statistic implies (Bartlett: `1 - exp(-statistic / m)`, `m = n - 1 - |Z| - (p + q + 1) / 2`),
i.e. the share of the task's variance left by the conditioning set that the step's (reduced) state explains.
Printed: the smallest effect among the steps that truly serve a task, the largest among those that do not, and the
marks. A minimum-effect test (`s_t` explains at most `delta` of the task: not a serving step) could separate the two
only where the first is above the second.

Usage: OMP_NUM_THREADS=1 python recipes/benchmarks/development/structure_effect_sizes.py [CASE ...]
       cases: colliders, nonlinear, offsets, conversations, planted
States of text cases are cached in /tmp/effect_dev.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist.structure import planning

# the effects in docs/structure.md were measured before `conditioning="band+all"`: where the band check fails, the
# band alone (`effects` reads |Z| from the band or from every other step, not from both)
planning.BAND_AND_ALL_ROWS = float("inf")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from structure_user_data import offset_texts, support_conversations  # noqa: E402

CACHE = Path("/tmp/effect_dev")
DEV_SEEDS = (0, 1, 2)


def effects(ts: hfs.TaskStructure) -> np.ndarray:
    """`(T, M)` partial R^2 implied by each direct test's statistic (Bartlett's or Fisher's)."""
    d, d_g = ts._layout.tested_width(), ts._layout.widths()[1]
    T, n = ts.n_steps_, ts.n_samples_seen_
    out = np.full((T, ts.n_tasks_), np.nan)
    for t in range(T):
        if ts.conditioning_ == "all":
            kz = (T - 1) * d
        else:
            kz = d * sum(0 <= u < T for u in (t - 1, t + 1))
        stat = ts.step_statistics_[:, t]
        if d == 1 and d_g == 1:
            r = np.tanh(stat / np.sqrt(max(n - kz - 3, 1)))
            out[t] = r ** 2
        else:
            m = n - 1 - kz - (d + d_g + 1) / 2
            out[t] = 1 - np.exp(-stat / m)
    return out


def show(label: str, ts: hfs.TaskStructure, truth: np.ndarray) -> None:
    effect = effects(ts)
    serving, other = effect[truth], effect[~truth]
    marked_other = effect[~truth & ts.step_tasks_]
    missed = effect[truth & ~ts.step_tasks_]
    print(f"  {label:<44} n={ts.n_samples_seen_:>6} cond={ts.conditioning_:<4} serving min {serving.min():.4f} "
          f"median {np.median(serving):.4f} | not serving max {other.max():.4f} | false marks "
          f"{len(marked_other)} (effects {np.round(np.sort(marked_other)[::-1][:4], 4).tolist()}) | misses "
          f"{len(missed)} (effects {np.round(np.sort(missed)[:4], 4).tolist()})", flush=True)


def colliders() -> None:
    for seed in DEV_SEEDS:
        assignment = synthetic.random_runs(20, 4, seed)
        states, tasks, truth = synthetic.collider_sequences(n=5000, T=20, M=4, segment_length=1,
                                                            assignment=assignment, carry_actions=False, seed=seed)
        show(f"colliders runs seed {seed}", hfs.TaskStructure().fit(states, tasks), truth["step_tasks"])


def nonlinear() -> None:
    for outcome in ("sum", "max", "threshold", "all_above"):
        for seed in DEV_SEEDS:
            states, tasks, truth = synthetic.collider_sequences(n=3000, T=12, M=3, outcome=outcome, seed=seed)
            show(f"{outcome} seed {seed}", hfs.TaskStructure(segment_length=2).fit(states, tasks), truth["step_tasks"])


def _states(name: str, texts: list[str], layer: str, context: str, model_name: str = "minilm") -> np.ndarray:
    from hf_specialist.models import load_model

    path = CACHE / f"{name}-{model_name}-{layer}-{context}.npy"
    if not path.exists():
        model, tokenizer = load_model(model_name)
        CACHE.mkdir(exist_ok=True)
        np.save(path, hfs.extract_steps(model, tokenizer, texts, hook_point=layer, steps=". ", batch_size=64,
                                        context=context))
    return np.load(path)


def offsets() -> None:
    for seed in (0, 1):
        texts, tasks, truth = offset_texts(2000, seed)
        for layer in ("layers.1", "layers.4"):
            for context in ("full", "isolated"):
                states = _states(f"offsets{seed}", texts, layer, context)
                show(f"offsets seed {seed} {layer} {context}", hfs.TaskStructure().fit(states, tasks), truth)


def conversations() -> None:
    texts, tasks = support_conversations(1500, 0)
    truth = np.zeros((6, 2), dtype=bool)
    truth[1:3, 0] = truth[4:6, 1] = True
    for layer in ("layers.3", "layers.-1"):
        for context in ("full", "isolated"):
            states = _states("conversations0", texts, layer, context)
            show(f"conversations {layer} {context}", hfs.TaskStructure().fit(states, tasks), truth)


def planted() -> None:
    for n in (2000, 8000):
        texts, tasks, truth = synthetic.planted_text(n=n, T=8, M=2, seed=0)
        states = _states(f"planted{n}", texts, "layers.3", "full")
        show(f"planted n={n} layers.3 full", hfs.TaskStructure().fit(states, tasks), truth["step_tasks"])


CASES = {"colliders": colliders, "nonlinear": nonlinear, "offsets": offsets, "conversations": conversations,
         "planted": planted}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(CASES):
        print(name, flush=True)
        CASES[name]()
