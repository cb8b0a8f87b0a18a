"""Family-wise calibration of the structure decision on data where no step serves any task.

`synthetic.unlinked_collider_sequences` keeps the generator (chain, weights, noise) and cuts every task link, so any
mark is false. At alpha = 0.05 with Bonferroni, the share of fits with at least one false mark must stay <= 0.05.
The bounds below are binomial: a calibrated method passes them with probability above 0.99 (each test says which
miscalibrated rate fails them), and an uncorrected decision on the same draws must fail them, so that the bound is
seen to bite. `recipes/benchmarks/calibration.py` measures
the rates on more draws.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist.structure.ci_tests import KnnCMI


def _draws_with_a_false_mark(make_structure, draws: int, **generator) -> int:
    marked = 0
    for seed in range(draws):
        states, tasks, truth = synthetic.unlinked_collider_sequences(seed=seed, **generator)
        assert not truth["step_tasks"].any()
        marked += bool(make_structure(seed).fit(states, tasks).step_tasks_.any())
    return marked


def _upper_bound(draws: int, alpha: float = 0.05) -> int:
    """Largest count a method with family-wise rate `alpha` exceeds with probability below 1%."""
    return int(stats.binom.isf(0.01, draws, alpha))


def test_unlinked_sequences_cut_every_task_link():
    states, tasks, truth = synthetic.unlinked_collider_sequences(seed=3, n=20_000, T=8, M=2)
    linked_states, linked_tasks, linked = synthetic.collider_sequences(seed=3, n=20_000, T=8, M=2)
    assert states.shape == linked_states.shape and tasks.shape == linked_tasks.shape
    assert linked["step_tasks"].any() and not truth["step_tasks"].any()
    correlation = np.corrcoef(np.hstack([states, tasks]).T)[:8, 8:]
    assert np.abs(correlation).max() < 0.04  # independent draws: |r| ~ 1/sqrt(n)
    linked_correlation = np.corrcoef(np.hstack([linked_states, linked_tasks]).T)[:8, 8:]
    assert np.abs(linked_correlation).max() > 0.2


@pytest.mark.parametrize("decision", ["chain", "representative"])
def test_fisher_z_family_wise_rate_stays_at_alpha(decision):
    draws = 400
    bound = _upper_bound(draws)  # 31 of 400: a true rate of 0.10 (mean 40) stays below it ~7% of the time
    calibrated = _draws_with_a_false_mark(lambda s: hfs.TaskStructure(decision=decision), draws, n=1000, T=8, M=2)
    uncorrected = _draws_with_a_false_mark(lambda s: hfs.TaskStructure(decision=decision, correction=None), draws,
                                           n=1000, T=8, M=2)
    assert calibrated <= bound < uncorrected


def test_knn_cmi_family_wise_rate_stays_at_alpha():
    draws = 120
    bound = _upper_bound(draws)  # 12 of 120: a true rate of 0.15 (mean 18) stays below it ~7% of the time
    make = lambda s, **kw: hfs.TaskStructure(test=KnnCMI(n_permutations=20, seed=s), progress=False, **kw)  # noqa: E731
    generator = dict(n=400, T=4, M=1, nonlinear=True)
    assert _draws_with_a_false_mark(make, draws, **generator) <= bound
    # two uncorrected tests at 0.2: a family-wise rate near 0.36
    assert _draws_with_a_false_mark(lambda s: make(s, correction=None, alpha=0.2), draws, **generator) > bound
