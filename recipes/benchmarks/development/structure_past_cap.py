"""Development draws only (synthetic seeds 0-2): does a fixed cap on the past's dims let more data turn the echo of
earlier steps into marks? Causal states whose content spreads over 96 dims (variance ~ 1/j, plus 24 noise dims);
each step adds 0.4^lag of every earlier step's content (rotated); task 0 reads step 3's content, task 1 step 5's.
`TaskStructure(causal=True)` (the default reduction) with the past capped at 4 and at 16 times `project`.

    OMP_NUM_THREADS=2 python recipes/benchmarks/development/structure_past_cap.py [N ...]   (default: 4000 16000 64000)
    FACTORS=8 ... runs other caps (comma-separated multiples of `project`)
    ... --null: the past test's rejection rate under a null (20 draws of 16,000 sequences, tasks independent of
    every step) with each cap

Prints per seed, n and cap: F1, the conditioning, the past's dims per tested step and the marks (1-based steps).
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np

import hf_specialist as hfs
from hf_specialist.metrics import structure_scores
from hf_specialist.structure import discovery

warnings.simplefilter("ignore")


def causal_echo(n: int, seed: int, T: int = 6, content_dims: int = 96, noise_dims: int = 24):
    """`(states (n, T, content_dims + noise_dims), tasks (n, 2), truth (T, 2))` as described above."""
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(n, T, content_dims)) / np.sqrt(np.arange(1, content_dims + 1))
    rotations = [np.linalg.qr(rng.normal(size=(content_dims, content_dims)))[0] for _ in range(T)]
    states = content.copy()
    for t in range(1, T):
        for s in range(t):
            states[:, t] += 0.4 ** (t - s) * content[:, s] @ rotations[s]
    states = np.concatenate([states, 0.3 * rng.normal(size=(n, T, noise_dims))], axis=2)
    weights = rng.normal(size=content_dims) / np.sqrt(content_dims)
    tasks = np.stack([content[:, 2] @ weights, content[:, 4] @ weights], 1)
    tasks = tasks / tasks.std(0) + 0.5 * rng.normal(size=(n, 2))
    truth = np.zeros((T, 2), dtype=bool)
    truth[2, 0] = truth[4, 1] = True
    return states.astype(np.float32), tasks, truth


def null_rejections(factors: list[int], draws: int = 20, n: int = 16000, T: int = 6) -> None:
    """Share of the past test's p-values below 0.05 and 0.01 where the tasks are independent of every step."""
    saved = discovery.PAST_WIDTH_FACTOR
    for factor in factors:
        discovery.PAST_WIDTH_FACTOR = factor
        pvalues = []
        try:
            for draw in range(draws):
                rng = np.random.default_rng(100 + draw)
                content = rng.normal(size=(n, T, 120)) / np.sqrt(np.arange(1, 121))
                states = content.copy()
                states[:, 1:] += 0.4 * content[:, :-1]
                fitted = hfs.TaskStructure(causal=True, conditioning="past").fit(states.astype(np.float32),
                                                                                 rng.normal(size=(n, 2)))
                pvalues.append(fitted.step_pvalues_[:, 1:].ravel())  # the first step has no past
        finally:
            discovery.PAST_WIDTH_FACTOR = saved
        pvalues = np.concatenate(pvalues)
        print(f"null, cap x{factor}: {len(pvalues)} tests, p < 0.05: {(pvalues < 0.05).mean():.3f}, "
              f"p < 0.01: {(pvalues < 0.01).mean():.3f}, past {fitted.conditioning_dims_['past']}", flush=True)


def main() -> None:
    factors = [int(f) for f in os.environ.get("FACTORS", "4,16").split(",")]
    if "--null" in sys.argv:
        null_rejections(factors)
        return
    sizes = [int(a) for a in sys.argv[1:]] or [4000, 16000, 64000]
    saved = discovery.PAST_WIDTH_FACTOR
    for seed in (0, 1, 2):
        for n in sizes:
            states, tasks, truth = causal_echo(n, seed)
            for factor in factors:
                discovery.PAST_WIDTH_FACTOR = factor
                start = time.perf_counter()
                try:
                    fitted = hfs.TaskStructure(causal=True).fit(states, tasks)
                finally:
                    discovery.PAST_WIDTH_FACTOR = saved
                marks = " | ".join(",".join(str(t + 1) for t in np.flatnonzero(c)) or "-" for c in fitted.step_tasks_.T)
                print(f"seed {seed} n {n:>7,} x{factor:<2} F1 {structure_scores(fitted.step_tasks_, truth)['f1']:.3f} "
                      f"{fitted.conditioning_} past {fitted.conditioning_dims_.get('past')} {marks} "
                      f"{time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
