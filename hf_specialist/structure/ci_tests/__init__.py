"""Conditional-independence tests, each evaluating many tests `X ⫫ Y | Z` in one call.

A test is three lists of column indices into one data matrix `(n_samples, n_columns)`. The base class `CITest`
owns validation, standardisation, grouping tests of equal shape into batches, the local-permutation null, the
random generator and a cache keyed by `(x, y, frozenset(z))`; a subclass adds `name`, a batched `statistic` and,
where one exists, an `analytic_pvalue`.

Registered tests (`get_ci_test(name)`):

- ``"fisher_z"``: partial correlation (Fisher's z) for scalar x, y; Wilks' lambda of the partial canonical
  correlations with Bartlett's chi-square for vector-valued x, y. Everything comes from one covariance matrix.
- ``"rff_z"``: the same Gaussian test on random Fourier features of steps and tasks (nonlinear dependence, still
  from sufficient statistics: streams and sums across processes).
- ``"knn_cmi"``: the Frenzel-Pompe k-nearest-neighbour CMI estimate with a local-permutation null.
- ``"neural_cmi"``: an InfoNCE critic whose negatives are shuffled within neighbourhoods of Z, trained for all
  tests of a batch at once; the p-value comes from the same statistic with held-out x shuffled within Z-cells.

References:
    Frenzel & Pompe (2007), Partial mutual information for coupling analysis of multivariate time series.
    Runge (2018), Conditional independence testing based on a nearest-neighbor estimator of CMI.
"""

from __future__ import annotations

from ..._validation import InputError, InputTypeError
from ._base import CIResult, CITest, Columns, TestSpec
from ._permutation import local_permutation, nearest_neighbour_permutations, neighbourhood_cells, permute_within_cells
from .fisher_z import FisherZ, bartlett_statistic, fisher_z_statistic
from .knn_cmi import KnnCMI
from .neural_cmi import NeuralCMI
from .rff_z import FourierFeatures, RandomFourierZ

__all__ = ["CIResult", "CITest", "CI_TESTS", "Columns", "FisherZ", "FourierFeatures", "KnnCMI", "NeuralCMI", "RandomFourierZ", "TestSpec",
           "bartlett_statistic", "fisher_z_statistic", "get_ci_test", "local_permutation",
           "nearest_neighbour_permutations", "neighbourhood_cells", "permute_within_cells", "register_ci_test"]


CI_TESTS: dict[str, type[CITest]] = {}


def register_ci_test(cls: type[CITest]) -> type[CITest]:
    """Register a `CITest` subclass under its `name`; a duplicate name raises."""
    if cls.name in CI_TESTS:
        raise ValueError(f"A CI test named {cls.name!r} is already registered ({CI_TESTS[cls.name].__name__}).")
    CI_TESTS[cls.name] = cls
    return cls


# every registration in one visible place
for _cls in (FisherZ, RandomFourierZ, KnnCMI, NeuralCMI):
    register_ci_test(_cls)


def get_ci_test(test: str | CITest, seed: int | None = None) -> CITest:
    """A configured test from a registered name, or the instance itself."""
    if isinstance(test, CITest):
        return test
    if isinstance(test, type):
        raise InputTypeError(
            f"`test` must be a registered name or a CITest instance, got the class {test.__name__}. "
            f"Pass an instance instead, e.g. test={test.__name__}()."
        )
    if not isinstance(test, str) or test not in CI_TESTS:
        raise InputError(f"Unknown CI test {test!r}. Valid names: {sorted(CI_TESTS)}.")
    return CI_TESTS[test](seed=seed)
