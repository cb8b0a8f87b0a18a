"""Development draws only (seeds 0-4; texts of seed 0): where the band check fails, `conditioning="auto"` running
the band and every other step (`"band+all"`, `causal=None`) against also every earlier step (`"band+all+past"`,
`causal=True`: a step marked only where all three tests reject), on every case: on a decoder's states (`causal`)
and, to see what the past would cost where it has no argument, on encoder states and synthetic draws.

    OMP_NUM_THREADS=1 python recipes/benchmarks/development/structure_past.py [CASE ...]
    cases: causal, texts, mixing, outcomes, colliders, linear

`causal` uses SmolLM2 `layers.15` states of the distractor and offset templates (development texts seed 0, the first
1,000), cached in /tmp/effect_dev by `structure_effect_sizes._states` (extracted there when missing); `texts` the
MiniLM states of `structure_band_and_all.py`.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import hf_specialist as hfs
from hf_specialist.metrics import structure_scores
from hf_specialist.structure import planning

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from structure_band_and_all import Case, colliders, linear, mixing, outcomes, texts  # noqa: E402
from structure_effect_sizes import _states  # noqa: E402
from structure_user_data import distractor_texts, offset_texts  # noqa: E402

warnings.simplefilter("ignore")
planning.BAND_AND_ALL_ROWS = 10  # structure_effect_sizes sets the band alone on import (its numbers came before)


def causal() -> Iterator[Case]:
    texts_, tasks, truth = distractor_texts(1000, 0)
    for context in ("full", "isolated"):
        yield (f"SmolLM2 distractors {context}", _states("distractors0", texts_, "layers.15", context, "smollm2"),
               tasks, truth, {})
    texts_, tasks, truth = offset_texts(2000, 0)
    if "--skip-offsets" in sys.argv:
        return
    yield ("SmolLM2 offsets full", _states("offsets0first1000", texts_[:1000], "layers.15", "full", "smollm2"),
           tasks[:1000], truth, {})


def run(cases) -> None:
    for label, states, tasks, truth, kwargs in cases():
        for rule, causal in (("band+all", None), ("band+all+past", True)):
            fitted = hfs.TaskStructure(causal=causal, **kwargs).fit(states, tasks)
            marks = " | ".join(",".join(str(t + 1) for t in np.flatnonzero(c)) or "-" for c in fitted.step_tasks_.T)
            print(f"  {label:<44} {rule:<14} F1 {structure_scores(fitted.step_tasks_, truth)['f1']:.3f} "
                  f"false {int((fitted.step_tasks_ & ~truth).sum())} misses {int((~fitted.step_tasks_ & truth).sum())} "
                  f"ran {fitted.conditioning_:<14} {marks}", flush=True)


CASES = {"causal": causal, "texts": texts, "mixing": mixing, "outcomes": outcomes, "colliders": colliders,
         "linear": linear}

if __name__ == "__main__":
    for name in [a for a in sys.argv[1:] if not a.startswith("--")] or list(CASES):
        print(name, flush=True)
        run(CASES[name])
