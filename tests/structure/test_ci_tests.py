import numpy as np
import pytest
import torch

from hf_specialist.structure.ci_tests import (
    CI_TESTS,
    CITest,
    FisherZ,
    KnnCMI,
    NeuralCMI,
    RandomFourierZ,
    get_ci_test,
    local_permutation,
    nearest_neighbour_permutations,
    register_ci_test,
)


def _chain_data(n, rng, dependent):
    """z -> x, z -> y (x ⫫ y | z); with `dependent`, also x -> y."""
    z = rng.normal(size=(n, 1))
    x = np.tanh(z) + 0.6 * rng.normal(size=(n, 1))
    y = 0.8 * z + 0.6 * rng.normal(size=(n, 1)) + (0.8 * x if dependent else 0)
    return np.hstack([x, y, z])


FAST = {
    "fisher_z": lambda seed: FisherZ(seed=seed),
    "knn_cmi": lambda seed: KnnCMI(n_permutations=30, seed=seed),
    "neural_cmi": lambda seed: NeuralCMI(epochs=8, n_permutations=20, hidden=16, n_negatives=4, seed=seed),
    "rff_z": lambda seed: RandomFourierZ(seed=seed),  # on a data matrix it is fisher_z; TaskStructure featurises
}


@pytest.mark.parametrize("name", sorted(CI_TESTS))
def test_contract_every_registered_test(name):
    """Same result type and shapes, power on dependent data, no rejection on independent data."""
    rng = np.random.default_rng(0)
    n = 400 if name not in ("fisher_z", "rff_z") else 2000
    test = FAST[name](0)
    result = test.fit(_chain_data(n, rng, dependent=True)).test([([0], [1], [2]), ([0], [1], [2])])
    assert result.statistic.shape == result.pvalue.shape == (2,)
    assert result.pvalue[0] < 0.01 and result.pvalue[0] == result.pvalue[1]
    independent = test.fit(_chain_data(n, rng, dependent=False)).test([([0], [1], [2])])
    assert independent.pvalue[0] > 0.01


def test_fisher_z_type_one_error_is_calibrated(global_random_seed):
    """Across 400 independent tests of x ⫫ y | z at alpha 0.05, the rejection rate stays near 0.05."""
    rng = np.random.default_rng(global_random_seed)
    n, k = 300, 400
    z = rng.normal(size=(n, k))
    x = 0.7 * z + rng.normal(size=(n, k))
    y = -0.5 * z + rng.normal(size=(n, k))
    data = np.hstack([x, y, z])
    tests = [([i], [k + i], [2 * k + i]) for i in range(k)]
    p = FisherZ().fit(data).test(tests).pvalue
    rate = (p < 0.05).mean()
    assert 0.02 <= rate <= 0.09
    # and the p-values are uniform
    from scipy.stats import kstest

    assert kstest(p, "uniform").pvalue > 0.001


def test_fisher_z_permutation_agrees_with_analytic():
    rng = np.random.default_rng(3)
    data = _chain_data(600, rng, dependent=False)
    data[:, 1] += 0.12 * data[:, 0]  # weak dependence: p-values in the informative range
    analytic = FisherZ().fit(data).test([([0], [1], [2])]).pvalue[0]
    permuted = FisherZ(pvalue="permutation", n_permutations=300, null="empirical").fit(data).test([([0], [1], [2])]).pvalue[0]
    assert abs(np.log10(analytic) - np.log10(permuted)) < 0.6, (analytic, permuted)


def test_fisher_z_statistics_equal_an_independent_computation():
    """Fisher's z (scalar) and Bartlett's Wilks chi-square (vector x) against residuals computed with numpy."""
    from scipy import stats

    rng = np.random.default_rng(0)
    n = 3000
    z = rng.normal(size=(n, 1))
    x0 = z[:, 0] + rng.normal(size=n)
    x1 = rng.normal(size=n)
    y = 0.5 * z[:, 0] + 0.04 * x0 + rng.normal(size=n)  # weak: p-values in the informative range
    data = np.column_stack([x0, y, z[:, 0], x1])

    def residual(v):
        design = np.column_stack([np.ones(n), z])
        return v - design @ np.linalg.lstsq(design, v, rcond=None)[0]

    rx, ry, rx1 = residual(x0), residual(y), residual(x1)
    r = np.corrcoef(rx, ry)[0, 1]
    expected_scalar = 2 * stats.norm.sf(np.sqrt(n - 1 - 3) * np.arctanh(abs(r)))
    scalar = FisherZ().fit(data).test([([0], [1], [2])]).pvalue[0]
    assert 1e-6 < scalar < 0.5
    np.testing.assert_allclose(scalar, expected_scalar, rtol=1e-6)
    # Wilks' lambda of x = (x0, x1) against y given z: 1 - R^2 of the residual regression; chi-square with 2 dof
    design = np.column_stack([rx, rx1])
    fitted = design @ np.linalg.lstsq(design, ry, rcond=None)[0]
    wilks = 1 - np.sum(fitted**2) / np.sum(ry**2)
    expected_vector = stats.chi2.sf(-(n - 1 - 1 - (2 + 1 + 1) / 2) * np.log(wilks), df=2)
    vector = FisherZ().fit(data).test([([0, 3], [1], [2])]).pvalue[0]
    np.testing.assert_allclose(vector, expected_vector, rtol=1e-6)
    assert vector > scalar  # the independent column adds a degree of freedom and no signal


def test_knn_cmi_null_calibration(global_random_seed):
    """The local-permutation null keeps the false-rejection rate near alpha on conditionally independent data."""
    rng = np.random.default_rng(global_random_seed)
    columns, tests = [], []
    for j in range(100):
        z = rng.normal(size=(300, 1))
        columns += [np.sin(z) + 0.5 * rng.normal(size=(300, 1)), z**2 + 0.5 * rng.normal(size=(300, 1)), z]
        tests.append(([3 * j], [3 * j + 1], [3 * j + 2]))
    p = KnnCMI(n_permutations=40, seed=global_random_seed).fit(np.hstack(columns)).test(tests).pvalue
    # 100 independent tests: at a true rate of 0.05, more than 10 rejections has probability ~0.01; a test whose
    # real type-I error were 0.10 would fail about half the time, one at 0.15 nearly always
    assert (p < 0.05).mean() <= 0.10


def test_local_permutation_stays_local():
    rng = np.random.default_rng(0)
    z = np.sort(rng.normal(size=(200, 1)), axis=0)
    perm = local_permutation(z, rng, leaf_size=5)
    assert sorted(perm) == list(range(200))
    assert np.abs(z[perm] - z).max() < 0.6
    assert (perm != np.arange(200)).mean() > 0.5


def test_nearest_neighbour_permutation_stays_local_and_nearly_one_to_one():
    rng = np.random.default_rng(0)
    z = rng.normal(size=300)
    neighbours = np.argsort(np.abs(z[:, None] - z[None, :]), axis=1)[:, :5]
    perms = nearest_neighbour_permutations(neighbours, rng, size=4)
    assert perms.shape == (4, 300)
    assert all(perms[r, i] in neighbours[i] for r in range(4) for i in range(300))
    assert min(len(set(p)) for p in perms) > 0.85 * 300  # few repeats: the marginal is nearly kept


def test_knn_cmi_nearest_neighbour_null_has_power_and_keeps_independence():
    rng = np.random.default_rng(1)
    test = KnnCMI(n_permutations=30, k_perm=5, seed=0)
    assert test.fit(_chain_data(400, rng, dependent=True)).test([([0], [1], [2])]).pvalue[0] < 0.01
    assert test.fit(_chain_data(400, rng, dependent=False)).test([([0], [1], [2])]).pvalue[0] > 0.01
    assert test.k_ == 20  # "auto": 5% of n, at least 10


def test_knn_cmi_tree_counts_match_bitset_counts_and_scale_past_n_squared_memory():
    rng = np.random.default_rng(2)
    data = np.hstack([_chain_data(600, rng, dependent=True), _chain_data(600, rng, dependent=False)])
    tests = [([0], [1], [2]), ([3], [4], [5]), ([0], [1], []), ([0, 3], [1], [2, 5])]
    bitsets = KnnCMI(n_permutations=20, seed=0, device="cpu").fit(data)
    tree = KnnCMI(n_permutations=20, seed=0, bitset_max=0, device="cpu").fit(data)
    assert bitsets.bitsets_ and not tree.bitsets_
    bitset_result, tree_result = bitsets.test(tests), tree.test(tests)
    np.testing.assert_allclose(tree_result.statistic, bitset_result.statistic, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tree_result.pvalue, bitset_result.pvalue, rtol=1e-9)  # same draws, same counts
    assert tree_result.pvalue[0] < 1e-3 and tree_result.pvalue[1] > 0.01
    big = KnnCMI(n_permutations=10, seed=0).fit(_chain_data(20_000, rng, dependent=True))  # bitsets: 3 x 50 MB
    assert not big.bitsets_ and big.k_ == 200  # "auto" above 2,000 samples: 1% of n, at least 100
    assert big.test([([0], [1], [2])]).pvalue[0] < 1e-3


class _TorchOnCPU(KnnCMI):
    """The brute-force torch path (`_device_counts`) that KnnCMI takes on a GPU, run on the CPU."""

    def _brute_force_device(self, n):
        return "cpu"


def test_knn_cmi_device_path_matches_the_cpu_paths():
    rng = np.random.default_rng(3)
    data = np.hstack([_chain_data(300, rng, dependent=True), _chain_data(300, rng, dependent=False)])
    tests = [([0], [1], [2]), ([3], [4], [5]), ([0], [1], []), ([0, 3], [1], [2, 5])]
    torch_path = _TorchOnCPU(n_permutations=10, seed=0).fit(data)
    bitsets = KnnCMI(n_permutations=10, seed=0, device="cpu").fit(data)  # "cpu": the bitset path, also on a GPU host
    assert torch_path.device_ == "cpu" and not torch_path.bitsets_
    assert bitsets.device_ is None and bitsets.bitsets_
    expected, got = bitsets.test(tests), torch_path.test(tests)
    np.testing.assert_allclose(got.statistic, expected.statistic, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.pvalue, expected.pvalue, rtol=1e-9)
    with pytest.raises(ValueError, match="'device' parameter of KnnCMI must be None, a torch device string or a "
                                         "torch.device. Got 0"):
        KnnCMI(device=0)
    with pytest.raises(ValueError, match="must name a torch device .* Got 'gpu'"):
        KnnCMI(device="gpu")
    assert KnnCMI(device=torch.device("cpu")).device == "cpu"


def _frenzel_pompe_by_brute_force(values, x, y, z, k, rows):
    """The estimate averaged over `rows`, each row's k-th joint neighbour and subspace counts over all rows."""
    from scipy.special import digamma

    def distances(columns):
        return np.abs(values[rows][:, None, columns] - values[None, :, columns]).max(-1)

    radius = np.sort(distances(x + y + z), axis=1)[:, k]  # column 0 is the row itself
    counts = [(distances(columns) < radius[:, None]).sum(1) - 1 for columns in (x + z, y + z, z)]
    return digamma(k) - (digamma(counts[0] + 1) + digamma(counts[1] + 1) - digamma(counts[2] + 1)).mean()


def test_knn_cmi_query_rows_average_the_estimate_over_a_subsample_on_every_path():
    rng = np.random.default_rng(6)
    data = np.hstack([_chain_data(600, rng, dependent=True), _chain_data(600, rng, dependent=False)])
    tests = [([0], [1], [2]), ([3], [4], [5]), ([0, 3], [1], [2, 5])]
    paths = {"bitsets": (KnnCMI, dict(device="cpu")), "tree": (KnnCMI, dict(device="cpu", bitset_max=0)),
             "torch": (_TorchOnCPU, {})}
    results = {}
    for name, (cls, options) in paths.items():
        test = cls(n_permutations=20, seed=0, query_rows=150, **options).fit(data)
        assert test.query_.shape == (150,) and len(np.unique(test.query_)) == 150
        results[name] = test.test(tests)
        for (x, y, z), statistic in zip(tests, results[name].statistic):
            expected = _frenzel_pompe_by_brute_force(test.values_, x, y, z, test.k_, test.query_)
            np.testing.assert_allclose(statistic, expected, rtol=0, atol=1e-12)
    for name in ("tree", "torch"):
        np.testing.assert_allclose(results[name].pvalue, results["bitsets"].pvalue, rtol=1e-9)
    assert results["bitsets"].pvalue[0] < 1e-3 and results["bitsets"].pvalue[1] > 0.01
    # as many query rows as samples is the full estimate, with the same random draws
    full, covering = KnnCMI(n_permutations=20, seed=0), KnnCMI(n_permutations=20, seed=0, query_rows=600)
    np.testing.assert_array_equal(covering.fit(data).test(tests).pvalue, full.fit(data).test(tests).pvalue)
    assert covering.query_ is None
    with pytest.raises(ValueError, match="'query_rows' parameter of KnnCMI must be None or an int >= 1. Got 0"):
        KnnCMI(query_rows=0)


@pytest.mark.parametrize("x_columns", [1, 2])
def test_joint_radii_from_fixed_neighbours_equal_brute_force(x_columns):
    from hf_specialist.structure.ci_tests._joint_radii import FixedNeighbours, joint_radii

    rng = np.random.default_rng(7)
    fixed = rng.normal(size=(400, 3))
    x = np.tanh(fixed[:, :1]) + rng.normal(scale=0.5, size=(400, x_columns))
    rows, k = np.sort(rng.choice(400, 120, replace=False)), 12
    brute = np.sort(np.abs(np.hstack([x, fixed])[rows][:, None] - np.hstack([x, fixed])[None]).max(-1), axis=1)[:, k]
    for n_candidates in (400, 3 * (k + 1), k + 2):  # all rows; the default share; nearly every row left to the tree
        neighbours = FixedNeighbours.build(fixed, rows, n_candidates)
        assert neighbours.index.shape == (120, n_candidates)
        np.testing.assert_array_equal(joint_radii(neighbours, x, fixed, rows, k), brute)
    shuffled = x[rng.permutation(400)]  # a null draw: new x, the same fixed neighbours
    brute = np.sort(np.abs(np.hstack([shuffled, fixed])[:, None] - np.hstack([shuffled, fixed])[None]).max(-1), 1)[:, k]
    neighbours = FixedNeighbours.build(fixed, slice(None), 3 * (k + 1))
    np.testing.assert_array_equal(joint_radii(neighbours, shuffled, fixed, slice(None), k), brute)


def test_knn_cmi_null_draws_from_fixed_neighbours_equal_the_joint_search(monkeypatch):
    from hf_specialist.structure.ci_tests import knn_cmi

    rng = np.random.default_rng(8)
    data = np.hstack([_chain_data(700, rng, dependent=True), _chain_data(700, rng, dependent=False)])
    tests = [([0], [1], [2]), ([3], [4], [5]), ([0], [1], []), ([0, 3], [1], [2, 5])]
    searched = KnnCMI(n_permutations=20, seed=0, device="cpu")
    searched.CANDIDATES_PER_NEIGHBOUR = 0
    candidates = KnnCMI(n_permutations=20, seed=0, device="cpu")
    expected, got = searched.fit(data).test(tests), candidates.fit(data).test(tests)
    assert candidates._fixed_neighbours and not searched._fixed_neighbours
    np.testing.assert_array_equal(got.statistic, expected.statistic)
    np.testing.assert_array_equal(got.pvalue, expected.pvalue)
    x, y, z = np.array([[0], [3]]), np.array([[1], [4]]), np.array([[2], [5]])
    draws = [test.fit(data).null_statistics(np.zeros(2), x, y, z, 10) for test in (searched, candidates)]
    np.testing.assert_array_equal(draws[1], draws[0])
    monkeypatch.setattr(knn_cmi, "NEIGHBOURS_CACHE_BYTES", 1024)  # candidates too large: the joint search
    assert candidates.fit(data)._neighbours_in(y[0], z[0]) is None
    np.testing.assert_array_equal(candidates.test(tests).pvalue, expected.pvalue)


def test_knn_cmi_threads_give_the_same_result_as_one():
    rng = np.random.default_rng(9)
    data = np.hstack([_chain_data(500, rng, dependent=True), _chain_data(500, rng, dependent=False)])
    tests = [([0], [1], [2]), ([3], [4], [5]), ([0, 3], [1], [2, 5])]
    for bitset_max in (10_000, 0):  # the bitset path and the k-d tree path
        one = KnnCMI(n_permutations=20, seed=0, device="cpu", n_jobs=1, bitset_max=bitset_max).fit(data).test(tests)
        for n_jobs in (2, -1):
            threaded = KnnCMI(n_permutations=20, seed=0, device="cpu", n_jobs=n_jobs, bitset_max=bitset_max)
            result = threaded.fit(data).test(tests)
            np.testing.assert_array_equal(result.statistic, one.statistic)
            np.testing.assert_array_equal(result.pvalue, one.pvalue)
    with pytest.raises(ValueError, match="'n_jobs' parameter of KnnCMI must be -1 or an int >= 1. Got 0"):
        KnnCMI(n_jobs=0)


def test_box_counts_equal_brute_force_counts():
    from hf_specialist.structure.ci_tests._box_counts import SortedColumn, box_counts

    rng = np.random.default_rng(5)
    values = rng.normal(size=(130, 3))  # 130 rows: three 64-bit words, the last one partly used
    radius = rng.uniform(0.1, 1.5, size=130)
    columns = [SortedColumn.build(values[:, c]) for c in range(3)]
    brute = (np.abs(values[:, None, :] - values[None, :, :]).max(-1) < radius[:, None]).sum(1)
    np.testing.assert_array_equal(box_counts(columns, values, radius), brute)
    brute_01 = (np.abs(values[:, None, :2] - values[None, :, :2]).max(-1) < radius[:, None]).sum(1)
    np.testing.assert_array_equal(box_counts(columns[:2], values[:, :2], radius), brute_01)


def test_early_stop_draws_fewer_nulls_only_where_the_decision_is_clear():
    rng = np.random.default_rng(4)
    data = np.hstack([_chain_data(500, rng, dependent=True), _chain_data(500, rng, dependent=False)])
    tests = [([0], [1], [2]), ([3], [4], [5])]
    seen = []

    class Counting(KnnCMI):
        def null_statistics(self, statistic, x, y, z, n_draws):
            seen.append((len(statistic), n_draws))
            return super().null_statistics(statistic, x, y, z, n_draws)

    sequential = Counting(n_permutations=40, seed=0).fit(data).test(tests).pvalue
    assert seen[0] == (2, KnnCMI.FIRST_DRAWS) and sum(b * d for b, d in seen) < 2 * 40
    full = KnnCMI(n_permutations=40, seed=0, early_stop=False).fit(data).test(tests).pvalue
    assert sequential[0] < 1e-6 and full[0] < 1e-6 and sequential[1] > 0.01 and full[1] > 0.01


def test_registry_and_errors():
    assert {"fisher_z", "knn_cmi", "neural_cmi"} <= set(CI_TESTS)
    with pytest.raises(ValueError, match="Valid names"):
        get_ci_test("pearson")
    with pytest.raises(TypeError, match="Pass an instance instead"):
        get_ci_test(FisherZ)
    with pytest.raises(ValueError, match="already registered"):
        register_ci_test(FisherZ)
    with pytest.raises(ValueError, match="no analytic"):
        KnnCMI(pvalue="analytic")
    with pytest.raises(ValueError, match="NaN"):
        FisherZ().fit(np.full((50, 3), np.nan))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted yet"):
        FisherZ().test([([0], [1], [])])
    with pytest.raises(ValueError, match="outside"):
        FisherZ().fit(np.random.default_rng(0).normal(size=(50, 3))).test([([0], [7], [])])
    assert isinstance(get_ci_test(KnnCMI(k=5)), CITest)


def test_contract_user_test_objects_are_copied_and_subclasses_keep_no_state():
    """TaskStructure fits a copy of a test passed in; the base alone turns statistic + null into p-values."""
    import hf_specialist as hfs
    from hf_specialist import synthetic

    states, tasks, _ = synthetic.collider_sequences(n=600, T=4, M=1, seed=0)
    mine = FisherZ(pvalue="permutation", n_permutations=20, seed=3)
    structure = hfs.TaskStructure(test=mine).fit(states, tasks)
    assert mine.data_ is None and not hasattr(mine, "cov_")  # the user's object was not fitted or mutated
    assert structure.n_tests_ > 0
    analytic = hfs.TaskStructure().fit(states, tasks)
    np.testing.assert_array_equal(structure.step_tasks_, analytic.step_tasks_)
    for cls in (FisherZ, KnnCMI):
        assert "test_batch" not in vars(cls) and "pvalue_from_null" not in vars(cls)
    neural = get_ci_test("neural_cmi", seed=0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 1))
    neural.fit(np.concatenate([x, x + rng.normal(size=(300, 1)), rng.normal(size=(300, 1))], axis=1))
    before = set(vars(neural))
    neural.test_batch(np.array([[0]]), np.array([[1]]), np.array([[2]]))
    assert set(vars(neural)) == before  # no null stashed between calls
