"""Which CI tests a fit runs: the decision rule, the conditioning sets (the band, every other step or every earlier
step; `"band+all"` and `"band+all+past"` run each set as its own batches, joined in `execution`), the band check
that chooses between them, and the batches of equal-shaped tests over the columns of
`[steps (T * d) | tasks (M * d_g)]`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .._arrays import standardise
from .ci_tests import CITest, bartlett_statistic
from .multitest import adjust_pvalues

BAND_AND_ALL_ROWS = 10  # `conditioning="auto"` tests under several sets from this many sequences per column
ALL_ROWS = 100  # ... and under every other step alone (where the band check passes) from this many
WIDE_ROWS = 10  # the past reads more than the tested dims of each earlier step while this many rows per column remain


def _columns(steps: np.ndarray, d: int, stride: int | None = None) -> np.ndarray:
    """Column indices `(..., k * d)` of the first `d` columns of step indices `(..., k)` in the flattened
    `(n, T * stride)` layout (`stride` defaults to `d`)."""
    stride = d if stride is None else stride
    return (steps[..., None] * stride + np.arange(d)).reshape(*steps.shape[:-1], -1)


def band_markov_pvalues(states: np.ndarray, rep: np.ndarray) -> np.ndarray:
    """Gaussian test that the band screens each representative step from all the others.

    For each `r` in `rep`, tests `s_r ⫫ {s_t : |t - r| >= 2} | {s_{r-1}, s_{r+1}}` on `states (n, T, d)`:
    Wilks' lambda is `det Var(s_r | every other step) / det Var(s_r | band)`, the share of what the band leaves
    of `s_r` that the far steps still explain, and Bartlett's chi-square gives the p-value. The property holds
    for Markov sequences (also cut ones, or ones without temporal dependence); it fails when steps mix in each
    other's content. Everything comes from one covariance matrix and its inverse.

    Returns:
        `(len(rep),)` raw p-values (1.0 where a step has no far steps).
    """
    n, T, d = states.shape
    flat = states.reshape(n, T * d)
    flat = standardise(flat)
    return _band_markov_pvalues(flat.T @ flat / (n - 1), n, d, rep)


def _band_markov_pvalues(cov: np.ndarray, n: int, d: int, rep: np.ndarray) -> np.ndarray:
    """`band_markov_pvalues` from the `(T * d, T * d)` correlation matrix of the steps."""
    from scipy import stats

    T = cov.shape[0] // d
    cov = cov + 1e-10 * np.eye(T * d)
    precision = np.linalg.inv(cov)
    pvalues = np.ones(len(rep))
    for j, r in enumerate(rep):
        band = [t for t in (r - 1, r + 1) if 0 <= t < T]
        n_far = T - 1 - len(band)
        if n_far == 0:
            continue
        x = _columns(np.array([r]), d)
        z = _columns(np.array(band), d)
        given_rest = np.linalg.inv(precision[np.ix_(x, x)])
        given_band = cov[np.ix_(x, x)] - cov[np.ix_(x, z)] @ np.linalg.solve(cov[np.ix_(z, z)], cov[np.ix_(z, x)])
        log_lambda = np.linalg.slogdet(given_rest)[1] - np.linalg.slogdet(given_band)[1]
        statistic = bartlett_statistic(np.array([log_lambda]), n, d, n_far * d, len(band) * d)[0]
        pvalues[j] = stats.chi2.sf(statistic, df=d * n_far * d)
    return pvalues


def build_test_batches(rep: np.ndarray, T: int, d: int, M: int, d_g: int, mode: str,
                       conditioning: str = "band",
                       direct_steps: np.ndarray | None = None, stride: int | None = None,
                       z_width: int | Sequence[int] | None = None) -> list[tuple[np.ndarray, ...]]:
    """All tests of Algorithm 1 as batches of equal shape: `(x, y, z, where, direct)`.

    Pairwise tests pair the representative steps `rep`: `where (B, 3)` holds `(task, segment k, segment v)`.
    Direct tests run on `direct_steps` (defaults to `rep`): `where` holds `(task, j, j)` with `j` the position in
    `direct_steps`; `direct` says which kind a batch is. Columns index the data matrix
    `[states (T * d) | tasks (M * d_g)]`. With `conditioning="all"` a direct test conditions on every other step
    instead of the two neighbours, with `"past"` on every earlier step (none for the first).

    A tested step contributes its first `d` columns; in the data matrix each step has `stride` columns (`d` by
    default), and a direct test conditions on the first `z_width` of each conditioning step's (`d` by default;
    pairwise tests read `d`); for the past `z_width` may hold one width per step, the test of step `r` reading
    `z_width[r]` (`conditioning_widths`).
    """
    stride = d if stride is None else stride
    past_widths = list(z_width) if isinstance(z_width, (Sequence, np.ndarray)) else None
    z_width = d if z_width is None or past_widths is not None else z_width
    N = len(rep)
    direct_steps = rep if direct_steps is None else np.asarray(direct_steps, dtype=np.int64)
    S = len(direct_steps)
    batches = []
    task_cols = T * stride + np.arange(M)[:, None] * d_g + np.arange(d_g)  # (M, d_g)

    def neighbour_sets(centres: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Group rows of neighbour candidates `(P, c)` by how many valid, distinct neighbours they have."""
        cand = np.concatenate([centres - 1, centres + 1], axis=1)
        cand = np.sort(cand, axis=1)
        valid = (cand >= 0) & (cand < T)
        for j in range(centres.shape[1]):
            valid &= cand != centres[:, j : j + 1]
        valid[:, 1:] &= cand[:, 1:] != cand[:, :-1]
        counts = valid.sum(1)
        out = []
        for count in np.unique(counts):
            rows = np.flatnonzero(counts == count)
            keep = np.where(valid[rows], cand[rows], np.iinfo(np.int64).max)
            out.append((rows, np.sort(keep, axis=1)[:, :count]))
        return out

    if mode in ("pairwise", "both") and N >= 2:
        k, v = np.triu_indices(N, 1)
        centres = np.stack([rep[k], rep[v]], axis=1)
        for rows, neighbours in neighbour_sets(centres):
            z_steps = _columns(neighbours, d, stride)  # (P, c * d)
            P = len(rows)
            x = np.tile(_columns(rep[k[rows]][:, None], d, stride), (M, 1))
            y = np.tile(_columns(rep[v[rows]][:, None], d, stride), (M, 1))
            z = np.concatenate([np.tile(z_steps, (M, 1)), np.repeat(task_cols, P, axis=0)], axis=1)
            where = np.stack([np.repeat(np.arange(M), P), np.tile(k[rows], M), np.tile(v[rows], M)], axis=1)
            batches.append((x, y, z, where, False))
    if mode in ("direct", "both") and conditioning == "past":
        for j, r in enumerate(direct_steps):
            x = np.tile(_columns(np.array([[r]]), d, stride), (M, 1))
            width = past_widths[r] if past_widths is not None else z_width
            z = np.tile(_columns(np.arange(r)[None], width, stride), (M, 1))
            where = np.stack([np.arange(M), np.full(M, j), np.full(M, j)], axis=1)
            batches.append((x, task_cols, z, where, True))
    elif mode in ("direct", "both") and conditioning == "all":
        others = np.array([[t for t in range(T) if t != r] for r in direct_steps], dtype=np.int64).reshape(S, T - 1)
        x = np.tile(_columns(direct_steps[:, None], d, stride), (M, 1))
        y = np.repeat(task_cols, S, axis=0)
        z = np.tile(_columns(others, z_width, stride), (M, 1))
        where = np.stack([np.repeat(np.arange(M), S), np.tile(np.arange(S), M), np.tile(np.arange(S), M)], axis=1)
        batches.append((x, y, z, where, True))
    elif mode in ("direct", "both"):
        for rows, neighbours in neighbour_sets(direct_steps[:, None]):
            P = len(rows)
            x = np.tile(_columns(direct_steps[rows][:, None], d, stride), (M, 1))
            y = np.repeat(task_cols, P, axis=0)
            z = np.tile(_columns(neighbours, z_width, stride), (M, 1))
            where = np.stack([np.repeat(np.arange(M), P), np.tile(rows, M), np.tile(rows, M)], axis=1)
            batches.append((x, y, z, where, True))
    return batches


class PlannedBatch(NamedTuple):
    """Equal-shaped tests `x ⫫ y | z` (column indices `(B, c)` each) and where each result goes: `where (B, 3)`
    holds `(task, k, v)`; `kind` is `"pair"` or `"direct <conditioning>"`."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    where: np.ndarray
    kind: str


def direct_conditionings(mode: str, conditioning: str) -> tuple[str, ...]:
    """The conditioning sets the direct tests run under (each of a `+`-joined `conditioning`, in order); pairwise
    tests use the band.

    Args:
        mode (`str`): `"pairwise"`, `"direct"` or `"both"`.
        conditioning (`str`): the fit's set, e.g. `"band"` or `"band+all+past"`.
    """
    if mode == "pairwise":
        return ("band",)
    return tuple(conditioning.split("+"))


def plan_tests(rep: np.ndarray, T: int, d: int, M: int, d_g: int, mode: str, conditioning: str,
               direct_steps: np.ndarray, stride: int | None = None,
               z_widths: dict[str, int | list[int]] | None = None) -> list[PlannedBatch]:
    """Every test of a fit: `mode`'s tests under the first conditioning set, and the direct tests again under each
    further one of a `+`-joined `conditioning`.

    Args:
        rep, T, d, M, d_g, mode, direct_steps, stride: as in `build_test_batches`.
        conditioning (`str`): the fit's set (`direct_conditionings`).
        z_widths (`dict[str, int | list[int]]`, *optional*): per conditioning set, the columns of each conditioning
            step its direct tests read (for the past one per tested step: `conditioning_widths`; `d` where missing).

    Returns:
        `list[PlannedBatch]`, each batch's `kind` naming its conditioning set (or `"pair"`).
    """
    sets = direct_conditionings(mode, conditioning)
    z_widths = z_widths or {}
    return [PlannedBatch(x, y, z, where, f"direct {c}" if direct else "pair")
            for c, mode_of_set in zip(sets, (mode,) + ("direct",) * (len(sets) - 1))
            for x, y, z, where, direct in build_test_batches(rep, T, d, M, d_g, mode_of_set, c, direct_steps,
                                                             stride, z_widths.get(c))]


def conditioning_widths(sets: tuple[str, ...], n: int, T: int, d: int, stored: int, d_g: int,
                        rows_per_column: int = WIDE_ROWS, *,
                        direct_steps: Sequence[int] | None = None) -> dict[str, int | list[int]]:
    """Per conditioning set, how many columns of each conditioning step its direct tests read: `d` (the tested
    step's), and for the past (`"past"`) one width per step: the test of step `t` (0-based, `t` earlier steps)
    reads the most columns of each earlier step, between `d` and `stored`, that leave `rows_per_column` sequences
    per column of that test (`n >= rows_per_column * (t * width + d + d_g)`); 0 for the first step, which has no
    earlier step, and for steps not in `direct_steps` (no direct test).

    An earlier step reduced to `d` dims holds only part of its content: in causal states the part it leaves out
    is still echoed in the tested (later) step, and with enough sequences the test reads that echo as dependence
    (more data, more false marks). More dims of each earlier step block more of the echo, and in causal states no
    earlier step holds the tested step's content, so they open no path through it; the cost is power, one degree
    of freedom per column, so the width grows with the rows, and a test with fewer earlier steps affords more of
    each. The band and every other step stay at `d`: they hold later steps, which mix the tested step's content
    with others' (colliders), and a wider collider opens that path wider (measured on encoder states:
    `docs/structure.md`).

    Args:
        sets (`tuple[str, ...]`): the direct tests' sets (`direct_conditionings`).
        n, T (`int`): sequences and tested steps.
        d, stored (`int`): the tested step's columns and the columns per step in the data matrix.
        d_g (`int`): columns per task.
        rows_per_column (`int`, *optional*): sequences needed per column.
        direct_steps (`Sequence[int]`, *optional*): the steps with a direct test (default: every step).
    """
    tested = set(range(T) if direct_steps is None else (int(t) for t in direct_steps))
    widths: dict[str, int | list[int]] = {}
    for name in sets:
        if name != "past":
            widths[name] = d
            continue
        spare = n // rows_per_column - d - d_g  # the columns a test can afford beyond the tested step and task
        widths[name] = [int(min(stored, max(d, spare // t))) if t and t in tested else 0 for t in range(T)]
    return widths


def choose_decision(mode: str, decision: str, ci: CITest) -> str:
    """`"chain"` or `"representative"`; `"auto"` is the chain for sufficient-statistic tests."""
    if mode == "pairwise":
        return "representative"
    if decision != "auto":
        return decision
    return "chain" if getattr(ci, "supports_statistics", False) else "representative"


def choose_conditioning(requested: str, mode: str, cov: np.ndarray | None, n: int, T: int, d: int, d_g: int,
                        rep: np.ndarray, alpha: float, causal: bool | None = None) -> tuple[str, float | None]:
    """The direct test's conditioning set, and the band-screening check's adjusted p-value (`None` where not run).

    For `"auto"`: `"all"` only where the check passes (a Markov sequence: no content leaks between non-adjacent
    steps) with enough sequences for it to see mild mixing (`n >= ALL_ROWS * (T * d + d_g)`; with fewer it missed
    mixing that conditioning on every step then turned into false marks); where the check fails (content leaks),
    both sets (`"band+all"`) when every other step leaves at least `BAND_AND_ALL_ROWS` sequences per column, and
    with `causal` states (each reads only its own and earlier steps) also every earlier step (`"band+all+past"`);
    else the band. The check runs whenever `n > 4 T d` (also for `report()`), from the Gaussian test's covariance.

    Args:
        requested (`str`): `TaskStructure(conditioning=...)`; anything but `"auto"` is returned as it is.
        mode (`str`): the fit's mode; pairwise fits use the band.
        cov (`np.ndarray`, *optional*): the Gaussian test's correlation matrix of `[steps (T * d) | tasks]` (the
            tested columns), which feeds the check; `None` for tests without one.
        n, T, d, d_g (`int`): sequences, tested steps, tested columns per step and columns per task.
        rep (`np.ndarray`): representative steps (the check runs on them).
        alpha (`float`): the level the check is read at.
        causal (`bool`, *optional*): whether the states read only their own and earlier steps.
    """
    markov = None
    if cov is not None and len(rep) >= 2 and n > 4 * T * d and mode != "pairwise":
        markov = float(adjust_pvalues(_band_markov_pvalues(cov[: T * d, : T * d], n, d, rep), "bonferroni").min())
    if requested != "auto":
        return requested, markov
    if mode == "pairwise" or markov is None:
        return "band", markov
    width = T * d + d_g
    if markov >= alpha:
        return ("all" if n >= ALL_ROWS * width else "band"), markov
    if n < BAND_AND_ALL_ROWS * width:
        return "band", markov
    return ("band+all+past" if causal else "band+all"), markov
