"""Development seeds (0-4) behind rff_z's defaults and the choice to keep fisher_z as the default test: F1, false
marks and seconds per fit on collider sequences with sum / max / threshold / all-above outcomes (n = 3,000, T = 12,
M = 3, segments of 2), for fisher_z and rff_z with 0 step features and 2, 4 or 8 task features, and with 4 step
features (which left dependence through the conditioning set: false marks on linear sums); and a generalised
covariance measure (`gcm`: the task regressed on the conditioning steps by gradient boosting, the step linearly, both
cross-fitted on two folds, Hotelling's statistic of the residual products against chi2), a test that uses the
conditioning steps nonlinearly, which is what a max or all-above outcome would need. It did not help (2026-12-08:
max 0.868 vs fisher_z 0.876, all-above 0.436 vs 0.407 with 0.40 false marks per fit, sum 0.936 vs 1.000, threshold
0.923 vs 0.988; 3.6 s per fit on a quiet machine against 0.01 s), so it is not in the package.

    python recipes/benchmarks/development/structure_nonlinear_choices.py 0,1,2,3,4
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from scipy import stats
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist.metrics import structure_scores
from hf_specialist.structure.ci_tests import RandomFourierZ
from hf_specialist.structure.ci_tests._base import CITest

warnings.simplefilter("ignore")
class GeneralisedCovariance(CITest):
    """The generalised covariance measure with cross-fitted regressions (development only, see the docstring)."""

    name = "gcm"
    has_analytic = True

    def statistic(self, data: np.ndarray | None, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        data = self.data_ if data is None else data
        out = []
        for xs, ys, zs in zip(x, y, z):
            steps, task, given = data[:, xs], data[:, ys], data[:, zs]
            step_residual = steps - _cross_fitted(given, steps, LinearRegression)
            task_residual = task - _cross_fitted(given, task, lambda: HistGradientBoostingRegressor(
                max_iter=150, max_leaf_nodes=15, min_samples_leaf=20, random_state=0))
            products = (step_residual[:, :, None] * task_residual[:, None, :]).reshape(len(data), -1)
            mean = products.mean(0)
            cov = np.atleast_2d(np.cov(products, rowvar=False))
            out.append(len(data) * mean @ np.linalg.pinv(cov) @ mean)
        return np.asarray(out)

    def analytic_pvalue(self, statistic: np.ndarray, kx: int, ky: int, kz: int) -> np.ndarray:
        return stats.chi2.sf(statistic, kx * ky)


def _cross_fitted(given: np.ndarray, targets: np.ndarray, make: type) -> np.ndarray:
    """Each target column predicted from `given` on two folds, each fold by a model fitted on the other."""
    if given.shape[1] == 0:
        return np.broadcast_to(targets.mean(0), targets.shape)
    folds = np.array_split(np.random.default_rng(0).permutation(len(given)), 2)
    out = np.zeros_like(targets)
    for held, fit in ((folds[0], folds[1]), (folds[1], folds[0])):
        for column in range(targets.shape[1]):
            out[held, column] = make().fit(given[fit], targets[fit, column]).predict(given[held])
    return out


VARIANTS = {
    "fisher_z": lambda: "fisher_z",
    "rff 0/2": lambda: RandomFourierZ(n_features=0, n_task_features=2),
    "rff 0/4": lambda: RandomFourierZ(n_features=0, n_task_features=4),
    "rff 0/8": lambda: RandomFourierZ(n_features=0, n_task_features=8),
    "rff 4/4": lambda: RandomFourierZ(n_features=4, n_task_features=4),
    "gcm": GeneralisedCovariance,
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
