"""Development seeds only (0-9): knn_cmi F1 and time per fit against `query_rows` (see README.md here)."""
import sys, time
import numpy as np
from hf_specialist import synthetic
from hf_specialist.metrics import structure_scores
from hf_specialist.structure.discovery import TaskStructure
from hf_specialist.structure.ci_tests import KnnCMI

n = int(sys.argv[1]); qs = [None if q == "all" else int(q) for q in sys.argv[2].split(",")]
seeds = range(int(sys.argv[3]) if len(sys.argv) > 3 else 10)
res = {q: [] for q in qs}
for seed in seeds:
    states, tasks, truth = synthetic.collider_sequences(n=n, T=8, M=2, nonlinear=True, seed=seed)
    line = []
    for q in qs:
        t = time.perf_counter()
        fitted = TaskStructure(test=KnnCMI(n_permutations=30, seed=seed, device="cpu", query_rows=q), progress=False).fit(states, tasks)
        f1 = structure_scores(fitted.step_tasks_, truth["step_tasks"])["f1"]
        res[q].append((time.perf_counter() - t, f1))
        line.append(f"q={q}: {res[q][-1][0]:5.1f}s F1 {f1:.3f}")
    print(f"seed {seed}: " + " | ".join(line), flush=True)
for q in qs:
    a = np.array(res[q]); print(f"q={q}: time {a[:,0].mean():.2f} s  F1 {a[:,1].mean():.3f} ± {a[:,1].std():.3f}")
