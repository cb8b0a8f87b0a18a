import json

import numpy as np
import pytest
import torch

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist.metrics import structure_scores
from hf_specialist.structure.baselines import BASELINES
from hf_specialist.structure.ci_tests import KnnCMI
from hf_specialist.structure.discovery import adjust_pvalues, band_markov_pvalues, chain_segments, critical_pvalue


def _exact_with_more_samples(make, ts_kwargs, n_values=(20_000, 100_000)):
    """Recovered exactly at one of the sample sizes (misses at small n come from weak path effects)."""
    for n in n_values:
        states, tasks, truth = make(n)
        ts = hfs.TaskStructure(**ts_kwargs).fit(states, tasks)
        if (ts.step_tasks_ == truth["step_tasks"]).all():
            return ts, truth
    raise AssertionError(structure_scores(ts.step_tasks_, truth["step_tasks"]))


@pytest.mark.parametrize("mode", ["pairwise", "direct", "both"])
def test_recovers_interleaved_linear_gaussian_structure(mode, global_random_seed):
    make = lambda n: synthetic.collider_sequences(n=n, T=12, M=3, seed=global_random_seed)  # noqa: E731
    ts, truth = _exact_with_more_samples(make, dict(segment_length=2, mode=mode))
    assert ts.segment_tasks_.shape == (6, 3) and ts.step_tasks_.shape == (12, 3)
    shape = (3, 6) if mode == "direct" else (3, 6, 6)
    assert ts.pvalues_.shape == ts.statistics_.shape == shape


def test_cuts_no_temporal_dependence_and_longer_segments():
    for kwargs in (dict(n_cuts=3), dict(temporal=False), dict(segment_length=3)):
        L = kwargs.get("segment_length", 2)
        make = lambda n: synthetic.collider_sequences(n=n, T=12, M=2, seed=1, **kwargs)  # noqa: E731
        _exact_with_more_samples(make, dict(segment_length=L))


def test_single_segment_task_needs_direct_mode():
    states, tasks, truth = synthetic.collider_sequences(n=50_000, T=8, M=2, min_segments_per_task=1, max_segments_per_task=1, seed=0)
    pairwise = hfs.TaskStructure(segment_length=2, mode="pairwise").fit(states, tasks)
    assert not pairwise.step_tasks_.any()  # pairs cannot see a task served by one segment
    direct = hfs.TaskStructure(segment_length=2, mode="direct").fit(states, tasks)
    np.testing.assert_array_equal(direct.step_tasks_, truth["step_tasks"])


def test_conditioning_on_all_steps_on_markov_and_on_mixed_steps():
    # Markov sequences: conditioning on every other step gives the same structure as the band
    make = lambda n: synthetic.collider_sequences(n=n, T=12, M=3, seed=1)  # noqa: E731
    ts, _ = _exact_with_more_samples(make, dict(segment_length=2, conditioning="all"))
    assert ts.conditioning_ == "all" and ts.pvalues_.shape == (3, 6)
    # steps that mix in each other's content: conditioning on the others opens colliders, the band stays exact
    step_tasks = np.repeat(np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool), 2, axis=0)
    states, tasks, _ = synthetic.collider_step_latents(n=5000, T=8, context=0.1, step_tasks=step_tasks, obs_dim=8,
                                                       n_irrelevant=2, seed=0)
    band = hfs.TaskStructure(segment_length=2, project=4, reduction="pca", conditioning="band").fit(states, tasks)
    np.testing.assert_array_equal(band.step_tasks_, step_tasks)
    assert (hfs.TaskStructure(segment_length=2, project=4, reduction="pca", conditioning="all").fit(states, tasks).step_tasks_ & ~step_tasks).any()
    with pytest.raises(ValueError, match="conditioning='all' conditions on 7 dims"):
        hfs.TaskStructure(segment_length=2, conditioning="all").fit(*synthetic.collider_sequences(n=15, T=8, M=2, seed=0)[:2])


def test_band_markov_check_is_calibrated_on_markov_chains_and_rejects_mixed_steps():
    rng = np.random.default_rng(0)
    rep = np.arange(1, 8, 2)
    pvalues = []
    for _ in range(200):  # Gaussian AR(1) chains, vector states: the band screens every step from the far ones
        steps = [rng.normal(size=(300, 2))]
        for _ in range(7):
            steps.append(0.7 * steps[-1] @ np.array([[1.0, 0.3], [-0.2, 0.8]]) + rng.normal(size=(300, 2)))
        pvalues.append(band_markov_pvalues(np.stack(steps, 1), rep))
    pvalues = np.concatenate(pvalues)
    assert 0.03 <= (pvalues < 0.05).mean() <= 0.08
    assert 0.4 <= np.median(pvalues) <= 0.6
    # every step also carries 0.2 of the sequence mean (as attention mixes content): the check rejects
    latent = rng.normal(size=(2000, 8, 2))
    mixed = latent + 0.2 * latent.mean(1, keepdims=True)
    assert band_markov_pvalues(mixed, rep).max() < 1e-3


def test_auto_conditioning_uses_all_steps_only_where_the_band_check_passes():
    states, tasks, truth = synthetic.collider_sequences(n=10_000, T=12, M=3, seed=1)
    auto = hfs.TaskStructure(segment_length=2).fit(states, tasks)
    assert auto.conditioning_ == "all" and auto.markov_pvalue_ >= 0.05
    np.testing.assert_array_equal(auto.step_tasks_, hfs.TaskStructure(segment_length=2, conditioning="all").fit(states, tasks).step_tasks_)
    step_tasks = np.repeat(np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool), 2, axis=0)
    states, tasks, _ = synthetic.collider_step_latents(n=5000, T=8, context=0.1, step_tasks=step_tasks, obs_dim=8,
                                                       n_irrelevant=2, seed=0)
    mixed = hfs.TaskStructure(segment_length=2, project=4, reduction="pca").fit(states, tasks)
    assert mixed.conditioning_ == "band+all" and mixed.markov_pvalue_ < 0.05
    np.testing.assert_array_equal(mixed.step_tasks_, step_tasks)
    # no check where it cannot help: the paper's pairwise test, a nonlinear test, too few sequences for all steps
    small = synthetic.collider_sequences(n=60, T=8, M=2, seed=0)[:2]
    for kwargs, data in ((dict(mode="pairwise"), (states, tasks)), (dict(test=KnnCMI(n_permutations=5)), small),
                         ({}, small)):
        ts = hfs.TaskStructure(segment_length=2, project=4, reduction="pca", **kwargs).fit(*data)
        assert ts.conditioning_ == "band"
    # the check needs n >= 100 (T d + d_g): below it mild mixing goes unseen (the same data with 32-dim steps
    # projected to 8 passes the check, p = 0.09, at n = 2,000, and conditioning on all steps adds 3 false marks)
    states, tasks, _ = synthetic.collider_step_latents(n=2000, T=8, context=0.1, step_tasks=step_tasks, obs_dim=32,
                                                       n_irrelevant=2, seed=0)
    ts = hfs.TaskStructure(segment_length=2, project=8, reduction="pca").fit(states, tasks)
    assert ts.conditioning_ == "band"
    np.testing.assert_array_equal(ts.step_tasks_, step_tasks)


def _echoed_steps(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scalar steps whose states also carry the content of the step three before (as attention copies content):
    task 0 reads steps 2 and 3, task 1 step 7; steps 5, 6 and 10 echo them."""
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(n, 10))
    states = content.copy()
    states[:, 3:] += 0.6 * content[:, :-3]
    tasks = np.stack([content[:, 1] + content[:, 2], content[:, 6]], 1) + 0.5 * rng.normal(size=(n, 2))
    truth = np.zeros((10, 2), dtype=bool)
    truth[[1, 2], 0] = truth[6, 1] = True
    return states, tasks, truth


def test_band_and_all_marks_a_step_only_where_both_sets_reject():
    states, tasks, truth = _echoed_steps(5000, 0)
    band = hfs.TaskStructure(conditioning="band").fit(states, tasks)
    every = hfs.TaskStructure(conditioning="all").fit(states, tasks)
    both = hfs.TaskStructure(conditioning="band+all").fit(states, tasks)
    # an intersection-union test: each p-value is the larger of the two sets'
    np.testing.assert_allclose(both.step_pvalues_, np.maximum(band.step_pvalues_, every.step_pvalues_))
    assert (band.step_tasks_ & ~truth).any()  # the neighbours do not block the echo of a far step
    np.testing.assert_array_equal(both.step_tasks_, truth)
    auto = hfs.TaskStructure().fit(states, tasks)  # the band check sees the echo
    assert auto.conditioning_ == "band+all" and auto.markov_pvalue_ < 0.05
    np.testing.assert_array_equal(auto.step_tasks_, truth)


def test_no_false_positives_when_tasks_are_unrelated(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    states, _, _ = synthetic.collider_sequences(n=5000, T=16, M=2, seed=global_random_seed)
    tasks = rng.normal(size=(5000, 3))
    ts = hfs.TaskStructure(segment_length=2).fit(states, tasks)
    assert not ts.step_tasks_.any()


def test_vector_states_with_projection_and_torch_input():
    """Vector states under a linear invertible observation map: the multivariate Gaussian test is exact."""
    make = lambda n: tuple(  # noqa: E731
        torch.as_tensor(a) if i < 2 else a
        for i, a in enumerate(synthetic.collider_sequences(n=n, T=8, M=2, state_dim=2, obs_dim=6, mixing="linear", seed=2))
    )
    states, _, _ = make(100)
    assert states.shape == (100, 8, 6)
    _exact_with_more_samples(make, dict(segment_length=2, project=2, reduction="pca"))


def test_knn_cmi_on_nonlinear_sequences():
    states, tasks, truth = synthetic.collider_sequences(n=1500, T=6, M=1, nonlinear=True, seed=0)
    ts = hfs.TaskStructure(segment_length=2, test=KnnCMI(n_permutations=20, seed=0), mode="direct").fit(states, tasks)
    assert structure_scores(ts.step_tasks_, truth["step_tasks"])["f1"] >= 0.8
    assert ts.decision_ == "representative" and ts.n_tests_ == 3  # auto: the end-step rule for permutation tests


def test_neural_cmi_on_vector_states_behind_a_nonlinear_map():
    """12-dim conditioning sets: every true mark is found and false marks stay rare (the x-shuffled null)."""
    from hf_specialist.structure.ci_tests import NeuralCMI

    states, tasks, truth = synthetic.collider_sequences(n=3000, T=6, M=2, nonlinear=True, state_dim=3, obs_dim=6, seed=1)
    ts = hfs.TaskStructure(segment_length=2, test=NeuralCMI(epochs=20, n_permutations=30, seed=0)).fit(states, tasks)
    assert not (~ts.step_tasks_ & truth["step_tasks"]).any()
    assert structure_scores(ts.step_tasks_, truth["step_tasks"])["f1"] >= 0.8


def test_drop_last_and_json_round_trip():
    states, tasks, truth = synthetic.collider_sequences(n=20_000, T=8, M=2, seed=0)
    padded = np.concatenate([states, states[:, :1]], axis=1)
    with pytest.raises(ValueError, match="not a multiple of segment_length=2"):
        hfs.TaskStructure(segment_length=2).fit(padded, tasks)
    ts = hfs.TaskStructure(segment_length=2, drop_last=True).fit(padded, tasks)
    assert ts.step_tasks_.shape == (9, 2) and not ts.step_tasks_[-1].any()
    again = hfs.TaskStructure.from_dict(__import__("json").loads(ts.to_json()))
    np.testing.assert_array_equal(again.step_tasks_, ts.step_tasks_)
    np.testing.assert_array_equal(again.pvalues_, ts.pvalues_)
    assert (again.conditioning_, again.markov_pvalue_, again.decision_) == (ts.conditioning_, ts.markov_pvalue_, "chain")
    np.testing.assert_array_equal(again.step_pvalues_, ts.step_pvalues_)
    assert ts.step_pvalues_.shape == (2, 9) and again.critical_pvalue_ == ts.critical_pvalue_
    assert ts.task_mask(3).shape == (27, 2)


@pytest.mark.parametrize(
    "kwargs, args, match",
    [
        (dict(segment_length=0), None, "'segment_length' parameter of TaskStructure must be an int >= 1. Got 0"),
        (dict(mode="pairwise"), None, "at step level"),
        (dict(alpha=1.5), None, r"'alpha' parameter of TaskStructure must be a float in the range \(0, 1\). Got 1.5"),
        (dict(mode="all"), None, "'mode' parameter"),
        (dict(test="pearson"), None, "Valid names"),
        ({}, "nan", "NaN"),
        ({}, "mismatch", "Inconsistent numbers of samples"),
        ({}, "few", "needs at least"),
        ({}, "shape", r"`states` must have shape \(n_sequences, T\)"),
    ],
)
def test_bad_input(kwargs, args, match):
    states, tasks, _ = synthetic.collider_sequences(n=200, T=8, M=2, seed=0)
    if args == "nan":
        states[3, 2] = np.nan
    elif args == "mismatch":
        tasks = tasks[:-1]
    elif args == "few":
        states, tasks = states[:8], tasks[:8]
    elif args == "shape":
        states = states[:, :, None, None]
    with pytest.raises(ValueError, match=match):
        hfs.TaskStructure(**kwargs).fit(states, tasks)


def test_not_fitted():
    with pytest.raises(hfs.NotFittedError, match="not fitted yet"):
        hfs.TaskStructure().task_mask()


def test_adjust_pvalues():
    p = np.array([0.01, 0.02, 0.03, np.nan, 0.5])
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni")[:3], [0.04, 0.08, 0.12])
    bh = adjust_pvalues(p, "fdr_bh")
    assert np.isnan(bh[3]) and np.allclose(bh[:3], 0.04)


@pytest.mark.parametrize("seed", [0, 1, 6])
def test_chain_decision_finds_segments_whose_end_step_effects_cancel(seed):
    # draws (T=12, n=10,000) where one serving segment's end-step test does not reject: the representative rule
    # misses it; its first step and the next segment's first step still light up, and the chain rule uses them
    states, tasks, truth = synthetic.paper_linear_gaussian(n=10_000, T=12, seed=seed)
    representative = hfs.TaskStructure(segment_length=2, decision="representative").fit(states, tasks)
    chain = hfs.TaskStructure(segment_length=2).fit(states, tasks)
    assert chain.decision_ == "chain" and (chain.n_tests_, representative.n_tests_) == (24, 12)
    np.testing.assert_array_equal(chain.segment_tasks_, truth["segment_tasks"])
    missed = truth["segment_tasks"] & ~representative.segment_tasks_
    assert missed.any()
    k, i = np.argwhere(missed)[0]
    assert chain.step_pvalues_[i, 2 * k + 1] > chain.critical_pvalue_  # the end step alone does not reject
    np.testing.assert_allclose(chain.pvalues_, representative.pvalues_)  # same representative tests, same family


def test_chain_segments_on_known_step_evidence():
    critical = 1e-3
    lit, quiet, faint = 1e-30, 0.5, 0.2
    # one task, L=2, 4 segments; segment 1 serves with its end step cancelled; first steps 2 and 3 lit
    p = np.array([[quiet, quiet, lit, faint, lit, quiet, quiet, quiet]])
    np.testing.assert_array_equal(chain_segments(p, 2, critical)[:, 0], [False, True, False, False])
    # the same lit first step with segment 0 serving (end step lit) is explained by segment 0: nothing else marked
    p = np.array([[lit, lit, lit, faint, quiet, quiet, quiet, quiet]])
    np.testing.assert_array_equal(chain_segments(p, 2, critical)[:, 0], [True, False, False, False])
    # a segment flanked by marked segments is marked exactly when its end step rejects at `critical`
    for end, marked in ((critical / 2, True), (critical * 2, False)):
        p = np.array([[lit, lit, lit, end, lit, lit]])
        np.testing.assert_array_equal(chain_segments(p, 2, critical)[:, 0], [True, marked, True])
    # longer segments: interior steps count for their own segment only; NaN counts as quiet
    p = np.array([[quiet, quiet, quiet, lit, lit, lit, lit, quiet, np.nan]])
    np.testing.assert_array_equal(chain_segments(p, 3, critical)[:, 0], [False, True, False])
    with pytest.raises(ValueError, match="`segment_length` must be a positive int dividing T=9"):
        chain_segments(p, 2, critical)
    with pytest.raises(ValueError, match=r"`step_pvalues` must have shape \(M, T\)"):
        chain_segments(p[0], 3, critical)
    with pytest.raises(ValueError, match="`critical` must be a p-value"):
        chain_segments(p, 3, 0.0)


def test_critical_pvalue_matches_adjusted_rejections():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = np.concatenate([rng.uniform(size=30), rng.uniform(0, 1e-3, size=rng.integers(0, 6))])
        for correction in (None, "bonferroni", "fdr_bh"):
            critical = critical_pvalue(p, 0.05, correction)
            np.testing.assert_array_equal(p <= critical if correction == "fdr_bh" else p < critical,
                                          adjust_pvalues(p, correction) <= 0.05 if correction == "fdr_bh"
                                          else adjust_pvalues(p, correction) < 0.05)
    with pytest.raises(ValueError, match="`correction` must be"):
        critical_pvalue(p, 0.05, "holm")
    underflow = np.array([0.0, 0.0, 0.4, 0.9])  # huge statistics give p = 0.0 in float64
    critical = critical_pvalue(underflow, 0.05, "fdr_bh")
    assert critical == pytest.approx(0.05 * 2 / 4)
    chain_segments(np.array([[0.0, 0.0, 0.4, 0.9]]), 2, critical)  # a usable critical value, never 0


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_share_the_contract_and_do_worse(name):
    states, tasks, truth = synthetic.collider_sequences(n=10_000, T=20, M=4, seed=0)
    baseline = BASELINES[name]().fit(states, tasks)
    assert baseline.step_tasks_.shape == (20, 4) and baseline.step_tasks_.dtype == bool
    ours = hfs.TaskStructure(segment_length=2).fit(states, tasks)
    assert structure_scores(ours.step_tasks_, truth["step_tasks"])["mcc"] > structure_scores(
        baseline.step_tasks_, truth["step_tasks"]
    )["mcc"]


def test_step_level_marks_runs_at_any_offset_when_states_read_their_own_step():
    # runs of 1, 3 and 2 steps at odd offsets; each step's state is its own content (no carried actions)
    step_tasks = np.zeros((9, 2), dtype=bool)
    step_tasks[[1], 0] = step_tasks[4:7, 0] = True
    step_tasks[2:4, 1] = True
    states, tasks, _ = synthetic.collider_step_latents(n=4000, T=9, context=0.0, step_tasks=step_tasks, obs_dim=6,
                                                       n_irrelevant=2, seed=3)
    ts = hfs.TaskStructure().fit(states, tasks)
    assert ts.segment_length == 1 and ts.carryover_ is False
    np.testing.assert_array_equal(ts.step_tasks_, step_tasks)
    assert ts.step_pvalues_.shape == (2, 9) and ts.pvalues_.shape == (2, 9)
    text = ts.report(warn=False)
    assert "task 0" in text and "*" in text and "-log10" in text
    rows = ts.report_rows()
    assert len(rows) == 18 and rows[1] == {**rows[1], "task": 0, "step": 2, "marked": True}


def test_step_level_with_carryover_reads_each_run_as_run_plus_next_step():
    # the paper's action model: a run serving a task also lights the step after it
    critical = 1e-3
    lit, quiet = 1e-30, 0.5
    p = np.array([[quiet, lit, lit, lit, quiet, quiet, lit, lit, quiet]])
    np.testing.assert_array_equal(chain_segments(p, 1, critical, carryover=True)[:, 0],
                                  [False, True, True, False, False, False, True, False, False])
    np.testing.assert_array_equal(chain_segments(p, 1, critical, carryover=False)[:, 0], p[0] < critical)


def test_report_warns_when_a_task_lights_every_step():
    rng = np.random.default_rng(0)
    content = rng.normal(size=(3000, 6))
    states = content[:, :, None] + 3.0 * content.mean(1)[:, None, None] * np.ones((1, 6, 1))  # each step sees all
    tasks = content[:, :2].sum(1) + 0.1 * rng.normal(size=3000)
    ts = hfs.TaskStructure(conditioning="band").fit(states, tasks)
    assert ts.step_tasks_[:, 0].all()
    with pytest.warns(UserWarning, match="marked on every step: content may leak"):
        ts.report()


def test_tasks_from_a_dataset_and_errors():
    datasets = pytest.importorskip("datasets")
    states, tasks, truth = synthetic.collider_sequences(n=5000, T=6, M=2, seed=0)
    table = datasets.Dataset.from_dict({"a": tasks[:, 0], "b": tasks[:, 1]})
    ts = hfs.TaskStructure(segment_length=2).fit(states, table)
    np.testing.assert_array_equal(ts.step_tasks_, hfs.TaskStructure(segment_length=2).fit(states, tasks).step_tasks_)
    with pytest.raises(hfs.InputError, match="tasks column 'text' holds text"):
        hfs.TaskStructure().fit(states, table.add_column("text", ["x"] * 5000))


def test_causal_states_are_also_tested_given_the_past_where_the_later_neighbour_is_a_collider():
    """Causal states (each step's state adds a share of every earlier step's content, as a decoder's do): the later
    neighbour mixes the tested step's content with its own, so given it (the band, every other step) a step before
    a serving step depends on the task. Given every earlier step it does not; `causal=True` requires that test too."""
    rng = np.random.default_rng(0)
    n, T = 20_000, 5
    content = rng.normal(size=(n, T))
    earlier = np.concatenate([np.zeros((n, 1)), np.cumsum(content, 1)[:, :-1]], 1)
    states = content + 0.6 * earlier + 0.1 * rng.normal(size=(n, T))
    tasks = np.stack([content[:, 3], content[:, 1]], 1) + 0.5 * rng.normal(size=(n, 2))
    truth = np.zeros((T, 2), dtype=bool)
    truth[3, 0] = truth[1, 1] = True
    unknown = hfs.TaskStructure().fit(states, tasks)
    assert unknown.conditioning_ == "band+all"  # the band check fails: content leaks to every later step
    assert (unknown.step_tasks_ & ~truth).sum() == 2  # the step before each serving step
    causal = hfs.TaskStructure(causal=True).fit(states, tasks)
    assert causal.conditioning_ == "band+all+past"
    np.testing.assert_array_equal(causal.step_tasks_, truth)
    assert causal.n_tests_ == 3 * T * 2
    past = hfs.TaskStructure(conditioning="past").fit(states, tasks)  # the past alone: the first step given nothing
    assert past.step_tasks_[3, 0] and past.step_tasks_[1, 1] and np.isfinite(past.step_pvalues_).all()


def test_the_past_of_causal_states_reads_more_dims_of_each_earlier_step(monkeypatch):
    """Each step echoes the previous step's 16-dim content into its own dims (a decoder's leak); the task reads all
    of step 3's content. Reduced to 8 PCA dims, step 3 keeps only part of its content, so step 4's echo of the rest
    still depends on the task given the 8-dim past; given all 40 dims of each earlier step it does not."""
    from hf_specialist.structure import discovery

    rng = np.random.default_rng(0)
    n, T, k = 6000, 5, 16
    content = rng.normal(size=(n, T, k)) * np.linspace(2.0, 1.0, k)
    mixed = content.copy()
    mixed[:, 1:] += 0.5 * content[:, :-1] @ np.linalg.qr(rng.normal(size=(k, k)))[0]
    states = np.concatenate([mixed, 0.3 * rng.normal(size=(n, T, 24))], axis=2)
    tasks = content[:, 2].sum(1, keepdims=True) / np.sqrt(k) + 0.5 * rng.normal(size=(n, 1))
    truth = np.zeros((T, 1), dtype=bool)
    truth[2] = True
    wide = hfs.TaskStructure(causal=True, reduction="pca").fit(states, tasks)
    assert wide.conditioning_ == "band+all+past"
    # every test affords all 40 dims of each earlier step: n >= 10 * (4 * 40 + 8 + 1); the first step has none
    assert wide.conditioning_dims_ == {"tested": 8, "band": 8, "all": 8, "past": [0, 40, 40, 40, 40]}
    np.testing.assert_array_equal(wide.step_tasks_, truth)
    assert "past: 40 dims of each earlier step" in wide.report(warn=False)
    again = hfs.TaskStructure.from_dict(json.loads(json.dumps(wide.to_dict())))
    assert again.conditioning_dims_ == wide.conditioning_dims_ and again.report(warn=False) == wide.report(warn=False)
    few = hfs.TaskStructure(causal=True, reduction="pca").fit(states[:700], tasks[:700])
    # 10 rows per column: step t's test affords (70 - 8 - 1) // t columns of each of its t earlier steps
    assert few.conditioning_dims_["past"] == [0, 40, 30, 20, 15]
    assert "past: 15-40 dims of each earlier step" in few.report(warn=False)
    segments = hfs.TaskStructure(causal=True, reduction="pca", segment_length=2, decision="representative")
    segments.fit(states[:, :4], tasks)
    assert segments.conditioning_dims_["past"] == [0, 40, 0, 40]  # only the segments' end steps have direct tests
    streamed = hfs.TaskStructure(causal=True, reduction="pca")
    assert streamed.partial_fit(states[:700], tasks[:700]).conditioning_dims_["past"] == [0, 40, 30, 20, 15]
    assert streamed.partial_fit(states[700:], tasks[700:]).conditioning_dims_["past"] == [0, 40, 40, 40, 40]
    monkeypatch.setattr(discovery, "PAST_WIDTH_FACTOR", 2)  # 2 x 8 tested dims: the factor binds below 40
    assert hfs.TaskStructure(causal=True, reduction="pca").fit(states, tasks).conditioning_dims_["past"] == [0] + [16] * 4
    monkeypatch.setattr(discovery, "PAST_WIDTH_FACTOR", 16)
    monkeypatch.setattr(discovery, "PAST_COLUMNS", 100)  # the stored columns of the 5 steps stay within 100
    budget = hfs.TaskStructure(causal=True, reduction="pca").fit(states, tasks)
    assert budget.conditioning_dims_["past"] == [0, 20, 20, 20, 20] and budget._layout.widths()[0] == 20
    monkeypatch.setattr(discovery, "PAST_WIDTH_FACTOR", 1)
    narrow = hfs.TaskStructure(causal=True, reduction="pca").fit(states, tasks)
    assert narrow.conditioning_dims_["past"] == [0, 8, 8, 8, 8] and narrow.step_tasks_[3, 0]  # the echo is marked
    unknown = hfs.TaskStructure(reduction="pca").fit(states, tasks)  # not known to be causal: nothing widens
    assert set(unknown.conditioning_dims_.values()) == {8}


@pytest.mark.parametrize("mode", ["direct", "both"])
def test_every_set_of_a_joined_conditioning_tests_every_step_once(mode):
    states, tasks, truth = synthetic.collider_sequences(n=4000, T=6, M=2, seed=0)
    kwargs = dict(segment_length=2, mode=mode, decision="representative", carryover=False)
    one = {c: hfs.TaskStructure(conditioning=c, **kwargs).fit(states, tasks) for c in ("band", "all", "past")}
    joined = hfs.TaskStructure(conditioning="band+all+past", **kwargs).fit(states, tasks)
    pairs = 2 * 3 if mode == "both" else 0  # 3 segments: 3 pairs per task, tested under the band only
    assert joined.n_tests_ == 3 * 2 * 3 + pairs
    largest = np.fmax.reduce([fit.step_pvalues_ for fit in one.values()])  # NaN where a step was not tested
    np.testing.assert_allclose(joined.step_pvalues_, largest, rtol=1e-12)
    assert joined.pvalues_.shape == ((2, 3) if mode == "direct" else (2, 3, 3))
