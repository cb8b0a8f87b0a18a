"""Development seeds only: where a knn_cmi fit spends its time with (y, z) candidates, and how many rows they miss.

    python recipes/benchmarks/development/knn_candidates.py SEED [FACTOR]
"""

import sys
import time

import numpy as np

import hf_specialist.structure.ci_tests.knn_cmi as knn_module
from hf_specialist import synthetic
from hf_specialist.structure.ci_tests import KnnCMI
from hf_specialist.structure.ci_tests import _joint_radii
from hf_specialist.structure.discovery import TaskStructure

seed = int(sys.argv[1])
factor = int(sys.argv[2]) if len(sys.argv) > 2 else 3
KnnCMI.CANDIDATES_PER_NEIGHBOUR = factor
spent = {"build": 0.0, "radii": 0.0, "builds": 0, "missed": []}
build, radii = _joint_radii.FixedNeighbours.build.__func__, _joint_radii.joint_radii


def timed_build(cls, *args):
    start = time.perf_counter()
    out = build(cls, *args)
    spent["build"] += time.perf_counter() - start
    spent["builds"] += 1
    return out


def timed_radii(neighbours, x, fixed, rows, k, workers=-1):
    start = time.perf_counter()
    out = radii(neighbours, x, fixed, rows, k, workers)
    spent["radii"] += time.perf_counter() - start
    spent["missed"].append(float((out > neighbours.distance[:, -1]).mean()))  # rows left to the k-d tree
    return out


_joint_radii.FixedNeighbours.build = classmethod(timed_build)
knn_module.joint_radii = timed_radii
states, tasks, truth = synthetic.collider_sequences(n=5000, T=8, M=2, nonlinear=True, seed=seed)
start = time.perf_counter()
TaskStructure(test=KnnCMI(n_permutations=30, seed=seed, device="cpu"), progress=False).fit(states, tasks)
missed = np.array(spent["missed"])
print(f"seed {seed} factor {factor}: total {time.perf_counter() - start:.2f}s, (y, z) searches {spent['build']:.2f}s "
      f"({spent['builds']}), radii {spent['radii']:.2f}s over {len(missed)} estimates (thread time); rows missed: "
      f"mean {missed.mean():.3f}, max {missed.max():.3f}")
