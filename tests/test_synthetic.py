"""Generators with known answers: the outcome kinds of `collider_sequences`."""

from __future__ import annotations

import numpy as np
import pytest

from hf_specialist import synthetic


def test_outcomes_are_the_max_and_threshold_of_the_serving_steps():
    kwargs = dict(n=500, T=8, M=2, task_noise=0.0, seed=4)
    _, summed, truth = synthetic.collider_sequences(**kwargs)
    _, largest, _ = synthetic.collider_sequences(outcome="max", **kwargs)
    _, above, _ = synthetic.collider_sequences(outcome="threshold", **kwargs)
    actions = truth["actions"]  # linear: the noiseless sum is a weighted sum of the serving actions
    for m in range(2):
        serving = truth["step_tasks"][:, m]
        weights, *_ = np.linalg.lstsq(actions[:, serving], summed[:, m], rcond=None)
        np.testing.assert_allclose(actions[:, serving] @ weights, summed[:, m], atol=1e-8)
        np.testing.assert_allclose((actions[:, serving] * weights).max(1), largest[:, m], atol=1e-8)
        np.testing.assert_array_equal(above[:, m], (summed[:, m] > 0).astype(float))
    with pytest.raises(ValueError, match="outcome"):
        synthetic.collider_sequences(n=10, T=4, M=1, outcome="mean")
