"""Development seeds (0-4) behind rff_z's defaults and the choice to keep fisher_z as the default test: F1, false
marks and seconds per fit on collider sequences with sum / max / threshold / all-above outcomes (n = 3,000, T = 12,
M = 3, segments of 2), for fisher_z and rff_z with 0 step features and 2, 4 or 8 task features, and with 4 step
features (which left dependence through the conditioning set: false marks on linear sums).

    python recipes/benchmarks/development/structure_nonlinear_choices.py 0,1,2,3,4
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist.metrics import structure_scores
from hf_specialist.structure.ci_tests import RandomFourierZ

warnings.simplefilter("ignore")
VARIANTS = {
    "fisher_z": lambda: "fisher_z",
    "rff 0/2": lambda: RandomFourierZ(n_features=0, n_task_features=2),
    "rff 0/4": lambda: RandomFourierZ(n_features=0, n_task_features=4),
    "rff 0/8": lambda: RandomFourierZ(n_features=0, n_task_features=8),
    "rff 4/4": lambda: RandomFourierZ(n_features=4, n_task_features=4),
}


def main() -> None:
    seeds = [int(x) for x in sys.argv[1].split(",")]
    for outcome in ("sum", "max", "threshold", "all_above"):
        for name, make in VARIANTS.items():
            f1, false, seconds = [], [], []
            for seed in seeds:
                states, tasks, truth = synthetic.collider_sequences(n=3000, T=12, M=3, outcome=outcome, seed=seed)
                start = time.perf_counter()
                ts = hfs.TaskStructure(segment_length=2, test=make()).fit(states, tasks)
                seconds.append(time.perf_counter() - start)
                f1.append(structure_scores(ts.step_tasks_, truth["step_tasks"])["f1"])
                false.append(int((ts.step_tasks_ & ~truth["step_tasks"]).sum()))
            print(f"{outcome:10s} {name:9s} F1 mean {np.mean(f1):.3f} min {np.min(f1):.3f} "
                  f"false marks/fit {np.mean(false):.2f} {np.mean(seconds):.2f}s")


if __name__ == "__main__":
    main()
