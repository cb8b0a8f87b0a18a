"""Development draws only (texts of seed 0; synthetic seeds 0-4): the past set of causal states (`causal=True`, as
`discover` sets it for a decoder) reading each earlier step at the tested step's dims (x1, before) against up to
`discovery.PAST_WIDTH_FACTOR` times as many as each test's rows allow (`planning.conditioning_widths`; the factor was
4 when docs/structure.md's first rows were measured, 16 since `structure_past_cap.py`). Encoder and synthetic cases
run with `causal=None`, where nothing widens: they check that nothing else moved.

    OMP_NUM_THREADS=1 python recipes/benchmarks/development/structure_conditioning_dims.py [CASE ...]
    cases: causal, planted, texts, mixing, outcomes, colliders, linear

`planted` is SmolLM2 `layers.15`, full context, on the offset templates (2,000 texts of seed 0) and on
`synthetic.planted_text(n=16000, T=8, M=2, seed=0)` at 2,000 and 16,000 texts. Text cases use the states cached by `structure_effect_sizes._states` (/tmp/effect_dev; extracted
when missing: the 16,000 SmolLM2 texts take about half an hour on 2 cores).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist.metrics import structure_scores
from hf_specialist.structure import discovery

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structure_band_and_all import Case, colliders, linear, mixing, outcomes, texts  # noqa: E402
from structure_effect_sizes import _states  # noqa: E402
from structure_past import causal  # noqa: E402
from structure_user_data import offset_texts  # noqa: E402

warnings.simplefilter("ignore")


def planted() -> Iterator[Case]:
    texts_, tasks, truth = offset_texts(2000, 0)
    yield ("SmolLM2 offsets n=2000 full", _states("offsets0", texts_, "layers.15", "full", "smollm2"), tasks, truth,
           {})
    texts_, tasks, truth = synthetic.planted_text(n=16000, T=8, M=2, seed=0)
    states = _states("planted16000", texts_, "layers.15", "full", "smollm2")
    for n in (2000, 16000):
        yield f"SmolLM2 planted n={n} full", states[:n], tasks[:n], truth["step_tasks"], {}


def run(cases, is_causal: bool | None) -> None:
    for label, states, tasks, truth, kwargs in cases():
        for factor in (1, discovery.PAST_WIDTH_FACTOR):
            saved = discovery.PAST_WIDTH_FACTOR
            discovery.PAST_WIDTH_FACTOR = factor
            try:
                fitted = hfs.TaskStructure(causal=is_causal, **kwargs).fit(states, tasks)
            finally:
                discovery.PAST_WIDTH_FACTOR = saved
            marks = " | ".join(",".join(str(t + 1) for t in np.flatnonzero(c)) or "-" for c in fitted.step_tasks_.T)
            widths = ",".join(f"{k}:{v}" for k, v in fitted.conditioning_dims_.items())
            print(f"  {label:<36} x{factor} F1 {structure_scores(fitted.step_tasks_, truth)['f1']:.3f} "
                  f"false {int((fitted.step_tasks_ & ~truth).sum())} misses {int((~fitted.step_tasks_ & truth).sum())} "
                  f"ran {fitted.conditioning_:<14} {widths:<26} {marks}", flush=True)


CASES = {"causal": causal, "planted": planted, "texts": texts, "mixing": mixing, "outcomes": outcomes,
         "colliders": colliders, "linear": linear}

if __name__ == "__main__":
    for name in [a for a in sys.argv[1:] if not a.startswith("--")] or list(CASES):
        print(name, flush=True)
        run(CASES[name], True if name in ("causal", "planted") else None)
