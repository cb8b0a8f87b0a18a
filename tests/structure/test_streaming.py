"""Streaming and sufficient statistics: partial_fit and fit of batches equal fit on the same rows."""

from pathlib import Path

import numpy as np
import pytest
import torch

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist.structure.statistics import SufficientStatistics


def _assert_same_fit(a, b):
    np.testing.assert_array_equal(a.step_tasks_, b.step_tasks_)
    assert a.conditioning_ == b.conditioning_ and a.decision_ == b.decision_ and a.n_tests_ == b.n_tests_
    for name in ("pvalues_", "raw_pvalues_", "statistics_"):
        x, y = getattr(a, name), getattr(b, name)
        finite = np.isfinite(x)
        np.testing.assert_array_equal(finite, np.isfinite(y))
        np.testing.assert_allclose(x[finite], y[finite], rtol=1e-5, atol=1e-300)
    if a.markov_pvalue_ is None:
        assert b.markov_pvalue_ is None
    else:
        assert b.markov_pvalue_ == pytest.approx(a.markov_pvalue_, rel=1e-6, abs=1e-12)


def test_statistics_merge_in_any_order_equal_the_batch():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(3000, 6)) * [1, 10, 100, 1e3, 1e4, 1e5] + 1e6  # large means: no cancellation
    whole = SufficientStatistics(6).update(rows)
    parts = [SufficientStatistics(6).update(c) for c in np.array_split(rows, 7)]
    merged = SufficientStatistics(6)
    for part in reversed(parts):
        merged.merge(part)
    standardised = (rows - rows.mean(0)) / rows.std(0)
    expected = standardised.T @ standardised / (len(rows) - 1)
    for stats in (whole, merged):
        assert stats.count == 3000
        np.testing.assert_allclose(stats.correlation(), expected, rtol=1e-9, atol=1e-12)
    on_torch = SufficientStatistics(6)
    for chunk in np.array_split(rows, 5):
        on_torch._update_torch(torch.from_numpy(chunk))  # the accelerator path, run on CPU tensors here
    assert on_torch.on_torch
    np.testing.assert_allclose(on_torch.correlation(), expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match=r"shape \(b, 6\)"):
        whole.update(rows[:, :5])


@pytest.mark.parametrize("conditioning", ["auto", "band"])
def test_partial_fit_equals_fit_on_the_rows_seen_so_far(conditioning):
    states, tasks, _ = synthetic.collider_sequences(n=4000, T=6, M=2, seed=3)
    streaming = hfs.TaskStructure(conditioning=conditioning)
    for end in (1000, 2500, 4000):
        start = {1000: 0, 2500: 1000, 4000: 2500}[end]
        streaming.partial_fit(states[start:end], tasks[start:end])
        _assert_same_fit(streaming, hfs.TaskStructure(conditioning=conditioning).fit(states[:end], tasks[:end]))
        assert streaming.n_samples_seen_ == end
    if conditioning == "auto":
        assert streaming.markov_pvalue_ is not None  # the band check ran on the streamed statistics


def test_fit_of_batches_equals_fit_of_the_array():
    states, tasks, truth = synthetic.collider_sequences(n=5000, T=8, M=3, seed=1)
    batches = ((states[i : i + 700], tasks[i : i + 700]) for i in range(0, 5000, 700))
    streamed = hfs.TaskStructure().fit(batches)
    _assert_same_fit(streamed, hfs.TaskStructure().fit(states, tasks))
    torch_batches = [(torch.from_numpy(states[i : i + 999]), torch.from_numpy(tasks[i : i + 999]))
                     for i in range(0, 5000, 999)]
    _assert_same_fit(hfs.TaskStructure().fit(torch_batches), streamed)


def test_supervised_reduction_learns_on_rows_the_tests_do_not_use(monkeypatch):
    # the task-relevant direction of each step has small variance: the top-variance (PCA) dims miss it
    rng = np.random.default_rng(0)
    n, T, d = 4000, 4, 20
    content = rng.normal(size=(n, T))
    loud = rng.normal(size=(n, T, d)) * np.linspace(3.0, 1.0, d)
    states = loud + 0.6 * content[:, :, None] * np.eye(d)[-1]
    tasks = content[:, [0, 2]].sum(1, keepdims=True) + 0.1 * rng.normal(size=(n, 1))
    truth = np.array([[True], [False], [True], [False]])
    with pytest.warns(UserWarning, match="carry only"):
        pca = hfs.TaskStructure(project=4, reduction="pca").fit(states, tasks)
    assert not pca.step_tasks_.any()
    supervised = hfs.TaskStructure(project=4).fit(states, tasks)
    np.testing.assert_array_equal(supervised.step_tasks_, truth)
    assert supervised.n_samples_seen_ == n - 1000  # a quarter of the rows learned the directions
    assert supervised.kept_share_[0] > 0.9
    from hf_specialist.structure.reduction import AUTO_CHECK_ROWS, StepReduction

    measured = []
    original = StepReduction.kept_share
    monkeypatch.setattr(StepReduction, "kept_share",
                        lambda self, x, *a, **k: measured.append(len(x)) or original(self, x, *a, **k))
    hfs.TaskStructure(project=4).fit(states, tasks)  # the task directions' share: every held-out row the check allows
    assert measured[-1] == min(n - 1000, AUTO_CHECK_ROWS)
    # no task at all: the held-out split keeps the test calibrated (no mark from directions fitted to noise)
    noise = rng.normal(size=(n, 2))
    assert not hfs.TaskStructure(project=4).fit(states, noise).step_tasks_.any()


def test_reduction_warning_names_the_users_line_on_every_path():
    rng = np.random.default_rng(0)
    n, T, d = 1200, 4, 20
    content = rng.normal(size=(n, T))
    states = rng.normal(size=(n, T, d)) * np.linspace(3.0, 1.0, d) + 0.6 * content[:, :, None] * np.eye(d)[-1]
    tasks = content[:, :1]
    fits = {"fit(array)": lambda ts: ts.fit(states, tasks),
            "fit(iterable)": lambda ts: ts.fit([(states[:600], tasks[:600]), (states[600:], tasks[600:])]),
            "partial_fit": lambda ts: ts.partial_fit(states, tasks)}
    for name, fit in fits.items():
        with pytest.warns(UserWarning, match="carry only") as caught:
            fit(hfs.TaskStructure(project=4, reduction="pca"))
        assert {Path(w.filename).name for w in caught if "carry only" in str(w.message)} == {Path(__file__).name}, name


def test_projection_is_learned_from_the_first_batch():
    rng = np.random.default_rng(0)
    states, tasks, _ = synthetic.collider_sequences(n=3000, T=4, M=2, seed=0)
    wide = np.einsum("ntk,kd->ntd", np.repeat(states[:, :, None], 3, axis=2) + 0.1 * rng.normal(size=(3000, 4, 3)),
                     rng.normal(size=(3, 12)))
    streaming = hfs.TaskStructure(project=2, reduction="pca")
    streaming.partial_fit(wide[:1200], tasks[:1200]).partial_fit(wide[1200:], tasks[1200:])
    # the same as projecting every row with the first batch's per-step PCA, then fitting unprojected
    from sklearn.decomposition import PCA

    projected = np.stack([PCA(2, random_state=0).fit(wide[:1200, t]).transform(wide[:, t]) for t in range(4)], axis=1)
    _assert_same_fit(streaming, hfs.TaskStructure().fit(projected, tasks))
    # fit of one array learns it from all rows, as before
    one = hfs.TaskStructure(project=2, reduction="pca").fit(wide, tasks)
    all_rows = np.stack([PCA(2, random_state=0).fit_transform(wide[:, t]) for t in range(4)], axis=1)
    _assert_same_fit(one, hfs.TaskStructure().fit(all_rows, tasks))


def test_streaming_refuses_tests_that_need_every_sample_and_mismatched_batches():
    states, tasks, _ = synthetic.collider_sequences(n=600, T=4, M=2, seed=0)
    with pytest.raises(ValueError, match="'knn_cmi' needs every sample at once"):
        hfs.TaskStructure(test="knn_cmi").partial_fit(states, tasks)
    with pytest.raises(ValueError, match="needs every sample at once"):
        hfs.TaskStructure(test="neural_cmi").fit([(states, tasks)])
    structure = hfs.TaskStructure().partial_fit(states[:300], tasks[:300])
    with pytest.raises(ValueError, match="every batch needs the same steps"):
        structure.partial_fit(states[300:, :2], tasks[300:])
    bad = states[300:].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="`states` contains 1 NaN"):
        structure.partial_fit(bad, tasks[300:])
    with pytest.raises(ValueError, match="empty iterable"):
        hfs.TaskStructure().fit(iter([]))


def test_too_few_rows_so_far_leaves_it_unfitted():
    states, tasks, _ = synthetic.collider_sequences(n=400, T=4, M=2, seed=0)
    structure = hfs.TaskStructure().partial_fit(states[:5], tasks[:5])
    with pytest.raises(hfs.NotFittedError):
        structure.task_mask()
    structure.partial_fit(states[5:], tasks[5:])
    np.testing.assert_array_equal(structure.step_tasks_, hfs.TaskStructure().fit(states, tasks).step_tasks_)


@pytest.mark.parametrize("state_dim", [1, 3])
def test_torch_backend_equals_numpy(state_dim):
    """The accelerator path (statistics and batched tests in float64 torch) run here on CPU tensors."""
    from hf_specialist.structure.ci_tests import FisherZ

    states, tasks, _ = synthetic.collider_sequences(n=3000, T=6, M=2, state_dim=state_dim, mixing="linear", seed=5)
    numpy_fit = hfs.TaskStructure(test=FisherZ(backend="numpy")).fit(states, tasks)
    torch_fit = hfs.TaskStructure(test=FisherZ(backend="torch")).fit(states, tasks)
    _assert_same_fit(torch_fit, numpy_fit)
    with pytest.raises(ValueError, match="`backend` must be"):
        FisherZ(backend="jax")


def test_causal_streaming_from_a_small_first_batch():
    """The past's wider columns are capped at what the first batch can learn (20 rows give 20 directions)."""
    rng = np.random.default_rng(0)
    states = rng.normal(size=(400, 4, 64)) * np.linspace(4.0, 1.0, 64)
    tasks = states[:, 1, :1] + rng.normal(size=(400, 1))
    streaming = hfs.TaskStructure(causal=True, reduction="pca")
    streaming.partial_fit(states[:20], tasks[:20])
    for start in range(20, 400, 95):
        streaming.partial_fit(states[start:start + 95], tasks[start:start + 95])
    assert streaming._layout.widths()[0] == 20 and streaming.conditioning_dims_["tested"] == 8
    assert streaming.step_tasks_[1, 0]
