"""Development draws only (seeds 0-4; texts of seeds 0 and 1): `conditioning="auto"` where the band check ran and
failed (from n >= 10 (T d + d_g)), the band alone (before) against the band and every other step together
(`"band+all"`, a step marked only where both tests reject).

    OMP_NUM_THREADS=1 python recipes/benchmarks/development/structure_band_and_all.py [CASE ...]
    cases: texts, mixing, colliders, outcomes, linear

Per case and rule: F1 (mean and min over draws), false marks and misses per fit, and which set "auto" ran.
`texts` uses MiniLM states cached by `structure_effect_sizes.py` (/tmp/effect_dev; extracted there when missing).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist.metrics import structure_scores
from hf_specialist.structure import planning

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from structure_effect_sizes import _states  # noqa: E402
from structure_user_data import offset_texts, support_conversations  # noqa: E402

warnings.simplefilter("ignore")
SEEDS = range(5)
Case = tuple[str, np.ndarray, np.ndarray, np.ndarray, dict]


def texts() -> Iterator[Case]:
    for seed in (0, 1):
        texts_, tasks, truth = offset_texts(2000, seed)
        for layer in ("layers.1", "layers.4"):
            for context in ("full", "isolated"):
                yield (f"offsets {seed} {layer} {context}", _states(f"offsets{seed}", texts_, layer, context),
                       tasks, truth, {})
    texts_, tasks = support_conversations(1500, 0)
    truth = np.zeros((6, 2), dtype=bool)
    truth[1:3, 0] = truth[4:6, 1] = True
    for layer in ("layers.3", "layers.-1"):
        for context in ("full", "isolated"):
            yield (f"conversations {layer} {context}", _states("conversations0", texts_, layer, context), tasks,
                   truth, {})
    for n in (2000, 8000):
        texts_, tasks, truth = synthetic.planted_text(n=n, T=8, M=2, seed=0)
        yield f"planted n={n} full", _states(f"planted{n}", texts_, "layers.3", "full"), tasks, truth["step_tasks"], {}


def mixing() -> Iterator[Case]:
    step_tasks = np.repeat(np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool), 2, axis=0)
    for context in (0.0, 0.1, 0.2):
        for seed in SEEDS:
            states, tasks, _ = synthetic.collider_step_latents(n=5000, T=8, context=context, step_tasks=step_tasks,
                                                               obs_dim=8, n_irrelevant=2, seed=seed)
            yield f"collider_step_latents context {context}", states, tasks, step_tasks, {"project": 4}


def colliders() -> Iterator[Case]:
    for carry in (False, True):
        for seed in SEEDS:
            assignment = synthetic.random_runs(20, 4, seed)
            states, tasks, truth = synthetic.collider_sequences(n=5000, T=20, M=4, segment_length=1,
                                                                assignment=assignment, carry_actions=carry, seed=seed)
            yield f"runs, carry_actions={carry}", states, tasks, truth["step_tasks"], {}


def outcomes() -> Iterator[Case]:
    for outcome in ("sum", "max", "threshold", "all_above"):
        for seed in SEEDS:
            states, tasks, truth = synthetic.collider_sequences(n=3000, T=12, M=3, outcome=outcome, seed=seed)
            yield f"outcome {outcome}", states, tasks, truth["step_tasks"], {"segment_length": 2}


def linear() -> Iterator[Case]:
    for T, M in ((8, 2), (20, 4)):
        for seed in SEEDS:
            states, tasks, truth = synthetic.collider_sequences(n=10_000, T=T, M=M, seed=seed)
            yield f"paper's sequences T={T} M={M}", states, tasks, truth["step_tasks"], {"segment_length": 2}
    for T, M in ((8, 2), (20, 4)):
        for seed in SEEDS:
            states, tasks, truth = synthetic.collider_sequences(n=3000, T=T, M=M, nonlinear=True, seed=seed)
            yield f"nonlinear sequences n=3000 T={T} M={M}", states, tasks, truth["step_tasks"], {"segment_length": 2}


def run(cases: Callable[[], Iterator[Case]]) -> None:
    rows: dict[str, dict[str, list]] = {}
    for label, states, tasks, truth, kwargs in cases():
        for rule, rows_per_column in (("band (before)", np.inf), ("band+all", 10)):
            planning.BAND_AND_ALL_ROWS = rows_per_column
            fitted = hfs.TaskStructure(**kwargs).fit(states, tasks)
            row = rows.setdefault(label, {}).setdefault(rule, [])
            row.append((structure_scores(fitted.step_tasks_, truth)["f1"], int((fitted.step_tasks_ & ~truth).sum()),
                        int((~fitted.step_tasks_ & truth).sum()), fitted.conditioning_))
    for label, by_rule in rows.items():
        for rule, values in by_rule.items():
            f1 = [v[0] for v in values]
            ran = sorted({v[3] for v in values})
            print(f"  {label:<44} {rule:<14} F1 {np.mean(f1):.3f} (min {np.min(f1):.3f}) false/fit "
                  f"{np.mean([v[1] for v in values]):.2f} misses/fit {np.mean([v[2] for v in values]):.2f} "
                  f"ran {','.join(ran)}", flush=True)


CASES = {"texts": texts, "mixing": mixing, "colliders": colliders, "outcomes": outcomes, "linear": linear}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(CASES):
        print(name, flush=True)
        run(CASES[name])
