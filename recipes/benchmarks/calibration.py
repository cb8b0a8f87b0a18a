"""Calibration of the structure decision: how often a method marks at least one step on data where no step serves
any task (`synthetic.unlinked_collider_sequences`: the states of one draw, the tasks of an independent draw of the
same generator). With alpha = 0.05 and Bonferroni over a fit's tests, that family-wise rate should be <= 0.05.

Usage:
    python recipes/benchmarks/calibration.py [--first-seed 100] [--draws 1000] [--knn-draws 200] [--neural-draws 200]

Each row: draws (one fit each, evaluation seeds from `--first-seed`), the share with at least one false mark and its
95% Clopper-Pearson interval, and the mean number of tests per fit. At 200 draws the interval's half-width is about
0.03, enough to tell 0.05 from 0.10; the fisher_z rows use more draws because they cost milliseconds.
"""

from __future__ import annotations

import argparse
import time

from scipy import stats

from hf_specialist import TaskStructure, synthetic
from hf_specialist.structure.ci_tests import KnnCMI, NeuralCMI


def family_wise_rate(make_structure, draws: int, first_seed: int, **generator) -> tuple[int, float, float]:
    """(draws with at least one mark, mean tests per fit, seconds per fit) over `draws` unlinked draws."""
    marked, tests, start = 0, 0, time.perf_counter()
    for seed in range(first_seed, first_seed + draws):
        states, tasks, _ = synthetic.unlinked_collider_sequences(seed=seed, **generator)
        fitted = make_structure(seed).fit(states, tasks)
        marked += bool(fitted.step_tasks_.any())
        tests += fitted.n_tests_
    return marked, tests / draws, (time.perf_counter() - start) / draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first-seed", type=int, default=100, help="first evaluation seed (0-99 are development)")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--knn-draws", type=int, default=200)
    parser.add_argument("--neural-draws", type=int, default=200)
    args = parser.parse_args()
    linear = dict(n=2000, T=8, M=2)
    rows = [
        ("fisher_z, chain (default)", args.draws, lambda s: TaskStructure(segment_length=2), linear),
        ("fisher_z, end step", args.draws, lambda s: TaskStructure(segment_length=2, decision="representative"), linear),
        ("fisher_z, chain, T=20 M=4", args.draws, lambda s: TaskStructure(segment_length=2), dict(n=2000, T=20, M=4)),
        ("fisher_z, chain, 2 cuts", args.draws, lambda s: TaskStructure(segment_length=2), dict(n=2000, T=8, M=2, n_cuts=2)),
        ("knn_cmi (nonlinear)", args.knn_draws,
         lambda s: TaskStructure(segment_length=2, test=KnnCMI(n_permutations=30, seed=s), progress=False),
         dict(n=1500, T=8, M=2, nonlinear=True)),
        ("neural_cmi (nonlinear)", args.neural_draws,
         lambda s: TaskStructure(segment_length=2, test=NeuralCMI(epochs=10, n_permutations=30, seed=s), progress=False),
         dict(n=2000, T=8, M=2, nonlinear=True)),
    ]
    print("Family-wise false-mark rate on unlinked data (alpha 0.05, Bonferroni; evaluation seeds "
          f"{args.first_seed}..)")
    header = f"{'method':28s} | {'data':32s} | draws | marked | rate  | 95% interval  | tests/fit | s/fit"
    print(header)
    print("-" * len(header))
    for label, draws, make, generator in rows:
        if draws == 0:
            continue
        marked, tests, seconds = family_wise_rate(make, draws, args.first_seed, **generator)
        ci = stats.binomtest(marked, draws).proportion_ci(0.95)
        data = " ".join(f"{k}={v}" for k, v in generator.items())
        print(f"{label:28s} | {data:32s} | {draws:5d} | {marked:6d} | {marked / draws:.3f} | "
              f"[{ci.low:.3f}, {ci.high:.3f}] | {tests:9.1f} | {seconds:.2f}", flush=True)


if __name__ == "__main__":
    main()
