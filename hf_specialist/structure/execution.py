"""Running a fit's planned CI tests (`planning.plan_tests`) on a fitted test, with a progress bar, and joining
their results: per kind of test the `(where, statistic, pvalue)` rows, and per direct test the weakest result over
the conditioning sets it ran under."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from .ci_tests import CITest
from .planning import PlannedBatch

TestResults = tuple[np.ndarray, np.ndarray, np.ndarray]  # where (B, 3), statistic (B,), pvalue (B,)


def run_tests(ci: CITest, batches: list[PlannedBatch], progress: bool | None) -> dict[str, TestResults]:
    """Run every planned batch on the fitted `ci`.

    Permutation and critic tests run in chunks of `ci.batch_tests` (default 8) so that the bar moves; a
    sufficient-statistic test runs each batch at once.

    Args:
        ci (`CITest`): a fitted test.
        batches (`list[PlannedBatch]`): the plan.
        progress (`bool`, *optional*): show the bar (`None`: when stderr is a terminal).

    Returns:
        Per kind (`PlannedBatch.kind`), the joined `(where, statistic, pvalue)` of its tests (empty arrays for a
        kind that ran none).
    """
    chunk = None if getattr(ci, "supports_statistics", False) else max(1, getattr(ci, "batch_tests", 8))
    collected: dict[str, list[list[np.ndarray]]] = {}
    disable = None if progress is None else not progress
    with tqdm(total=sum(len(b.where) for b in batches), desc=f"CI tests ({ci.name})", unit="test",
              disable=disable) as bar:
        for batch in batches:
            store = collected.setdefault(batch.kind, [[], [], []])
            step = chunk or len(batch.x)
            for start in range(0, len(batch.x), step):
                part = slice(start, start + step)
                result = ci.test_batch(batch.x[part], batch.y[part], batch.z[part])
                for values, value in zip(store, (batch.where[part], result.statistic, result.pvalue)):
                    values.append(value)
                bar.update(len(result.pvalue))
    return {kind: _joined(parts) for kind, parts in collected.items()}


def _joined(parts: list[list[np.ndarray]]) -> TestResults:
    """Concatenate the collected `(where, statistic, pvalue)` chunks of one kind of test (empty when none ran)."""
    where, statistic, pvalue = parts
    if not where:
        return np.zeros((0, 3), dtype=np.int64), np.zeros(0), np.zeros(0)
    return np.concatenate(where).astype(np.int64), np.concatenate(statistic), np.concatenate(pvalue)


def no_tests() -> TestResults:
    """The results of a kind of test that did not run."""
    return _joined([[], [], []])


def weakest_direct_tests(results: list[TestResults], M: int, S: int) -> tuple[np.ndarray, np.ndarray]:
    """`(pvalues, statistics)`, each `(M, S)`, of the direct tests run under one or more conditioning sets: per test
    the largest p-value and its statistic (an intersection-union test: it rejects only where every set rejects, and
    keeps its level whenever one of the sets makes the null true). A test that did not run is NaN."""
    pvalues = np.full((len(results), M, S), np.nan)
    statistics = np.full((len(results), M, S), np.nan)
    for k, (where, statistic, pvalue) in enumerate(results):
        pvalues[k, where[:, 0], where[:, 1]] = pvalue
        statistics[k, where[:, 0], where[:, 1]] = statistic
    pick = np.argmax(np.where(np.isnan(pvalues), -np.inf, pvalues), axis=0)[None]
    return np.take_along_axis(pvalues, pick, 0)[0], np.take_along_axis(statistics, pick, 0)[0]
