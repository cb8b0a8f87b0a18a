"""Development texts (seed 0) behind the structure defaults for text: what each step's state predicts on its own,
and which reduction finds the structure, in full context and with isolated steps.

    python recipes/benchmarks/development/structure_text_choices.py support LAYERS   # e.g. embed,layers.0,layers.3
    python recipes/benchmarks/development/structure_text_choices.py planted            # MiniLM layers.3, n = 2,000
    python recipes/benchmarks/development/structure_text_choices.py smollm2            # SmolLM2 layers.15, n = 1,000

`support`: the support conversations of `structure_user_data.py` (n = 1,500) at each layer, full context: marks,
`-log10 p` and `step_r2_` (the share of each task each step's reduced state predicts alone) for the default, PCA and
supervised reductions and band conditioning. `planted` / `smollm2`: marks, `reduction_` and `kept_share_` per
reduction, full and isolated context. Development draws only: texts seed 0.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import hf_specialist as hfs  # noqa: E402
from hf_specialist.metrics import structure_scores  # noqa: E402
from hf_specialist.models import load_model  # noqa: E402
from structure_user_data import distractor_texts, support_conversations  # noqa: E402

warnings.simplefilter("ignore")
np.set_printoptions(precision=3, suppress=True)
VARIANTS = (dict(), dict(reduction="pca"), dict(reduction="supervised"), dict(conditioning="band"))


def show(label: str, states: np.ndarray, tasks: np.ndarray, truth: np.ndarray | None) -> None:
    for kwargs in VARIANTS:
        ts = hfs.TaskStructure(**kwargs).fit(states, tasks)
        f1 = "" if truth is None else f" F1 {structure_scores(ts.step_tasks_, truth)['f1']:.3f}"
        share = None if ts.kept_share_ is None else np.round(ts.kept_share_, 2).tolist()
        print(f"{label} {kwargs}: reduction {ts.reduction_}, kept share {share}{f1}, marks "
              f"{[np.flatnonzero(c).tolist() for c in ts.step_tasks_.T]}")
        print("   -log10 p", np.round(-np.log10(np.clip(ts.step_pvalues_, 1e-300, 1)), 1).tolist())
        print("   step R^2 alone", ts.step_r2_.round(3).tolist())


def main() -> None:
    which = sys.argv[1]
    if which == "support":
        model, tokenizer = load_model("minilm")
        texts, tasks = support_conversations(1500, 0)
        truth = np.zeros((6, 2), dtype=bool)
        truth[1:3, 0] = truth[4:6, 1] = True
        for layer in sys.argv[2].split(","):
            states = hfs.extract_steps(model, tokenizer, texts, hook_point=layer, steps=". ", batch_size=64)
            show(layer, states, tasks, truth)
        return
    if which == "planted":
        model, tokenizer = load_model("minilm")
        texts, tasks, info = hfs.synthetic.planted_text(n=2000, T=8, M=2, seed=0)
        layer, truth = "layers.3", info["step_tasks"]
    else:
        model, tokenizer = load_model("smollm2")
        texts, tasks, truth = distractor_texts(1000, 0)
        layer = "layers.15"
    for context in ("full", "isolated"):
        states = hfs.extract_steps(model, tokenizer, texts, hook_point=layer, steps=". ", batch_size=32,
                                   context=context)
        show(f"{layer} {context}", states, tasks, truth)


if __name__ == "__main__":
    main()
