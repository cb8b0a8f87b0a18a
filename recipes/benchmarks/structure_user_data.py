"""Structure on data shaped like a user's, not like the generators' segments (issue: step-level marks at any offset,
context that leaks between steps, the reduction, nonlinear outcomes). Evaluation seeds only (100+); the defaults were
chosen on seeds 0-4 (see docs/structure.md).

    python recipes/benchmarks/structure_user_data.py            # all three tables (about 6 minutes on 2 cores)
    python recipes/benchmarks/structure_user_data.py --skip-text

1. Linear colliders, tasks on 1-2 runs of 1-4 steps at random offsets (T = 20, M = 4, n = 5,000): states that read
   their own step (`carry_actions=False`) with the defaults, and the paper's action model (`carry_actions=True`) with
   `carryover=True`; beside them the old default (segments of 2).
2. Six-sentence support conversations of my own templates (refund = items x price from sentences 2 and 3, a product;
   satisfaction = the sum of the ratings in sentences 5 and 6), MiniLM `layers.3` and `layers.-1`, n = 1,500:
   full context vs `context="isolated"`, defaults; and the old route (segments of 2, `project=8` PCA).
3. Nonlinear outcomes (sum / max / threshold / all_above, n = 3,000, T = 12, M = 3, segments of 2): fisher_z vs rff_z.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist.metrics import structure_scores

EVAL_SEEDS = (100, 101, 102, 103, 104)
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def support_conversations(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    q = rng.integers(1, 10, size=(n, 6))
    names, products = ["Maria", "Tom", "Ana", "Li", "Omar", "Kate"], ["kettle", "lamp", "chair", "phone case", "jacket"]
    texts = []
    for r in range(n):
        sentences = [f"Hello, my name is {names[rng.integers(6)]} and I waited {WORDS[q[r, 0]]} minutes on hold",
                     f"I bought {WORDS[q[r, 1]]} {products[rng.integers(5)]}s last week",
                     f"Each one arrived broken and cost {WORDS[q[r, 2]]} pounds",
                     f"The courier came at {WORDS[q[r, 3]]} in the afternoon",
                     f"Your agent was helpful and I would rate the call {WORDS[q[r, 4]]}",
                     f"The app worked {WORDS[q[r, 5]]} times out of ten"]
        texts.append(". ".join(sentences) + ".")
    return texts, np.stack([q[:, 1] * q[:, 2], q[:, 4] + q[:, 5]], 1).astype(float)


def linear_runs() -> None:
    print("1. Linear colliders, runs of 1-4 steps at random offsets (T=20, M=4, n=5,000), seeds", EVAL_SEEDS)
    print(f"  {'states':<28} {'estimator':<36} {'accuracy':>8} {'MCC':>6} {'F1':>6}  (min over seeds)")
    for carry in (False, True):
        rows = {"default (step level)": {}, "carryover=True": {}, "old default: segment_length=2": {}}
        scores = {k: [] for k in rows}
        for seed in EVAL_SEEDS:
            assignment = synthetic.random_runs(20, 4, seed)
            states, tasks, truth = synthetic.collider_sequences(n=5000, T=20, M=4, segment_length=1,
                                                                assignment=assignment, carry_actions=carry, seed=seed)
            for name, kwargs in (("default (step level)", {}), ("carryover=True", {"carryover": True}),
                                 ("old default: segment_length=2", {"segment_length": 2})):
                ts = hfs.TaskStructure(**kwargs).fit(states, tasks)
                scores[name].append(structure_scores(ts.step_tasks_, truth["step_tasks"]))
        label = "carry the previous action" if carry else "read their own step"
        for name, values in scores.items():
            acc, mcc, f1 = (np.mean([v[k] for v in values]) for k in ("accuracy", "mcc", "f1"))
            low = min(v["accuracy"] for v in values)
            print(f"  {label:<28} {name:<36} {acc:8.3f} {mcc:6.3f} {f1:6.3f}  ({low:.3f})")


def conversations() -> None:
    from hf_specialist.models import load_model

    print("2. Support conversations (refund: steps 2,3; satisfaction: steps 5,6), MiniLM, n=1,500, texts seed 100")
    model, tokenizer = load_model("minilm")
    texts, tasks = support_conversations(1500, 100)
    truth = np.zeros((6, 2), dtype=bool)
    truth[1:3, 0] = truth[4:6, 1] = True
    print(f"  {'layer':<10} {'route':<44} {'refund':<14} {'satisfaction':<14} {'F1':>5} {'time':>6}")
    for layer in ("layers.3", "layers.-1"):
        for context in ("full", "isolated"):
            start = time.perf_counter()
            states = hfs.extract_steps(model, tokenizer, texts, hook_point=layer, steps=". ", batch_size=64,
                                       context=context)
            routes = [(f"context={context!r}, defaults", {})]
            if context == "full":
                routes.append(("context='full', old: segment_length=2, project=8 PCA",
                               {"segment_length": 2, "project": 8, "reduction": "pca"}))
            for name, kwargs in routes:
                ts = hfs.TaskStructure(**kwargs).fit(states, tasks)
                marks = [",".join(str(t + 1) for t in np.flatnonzero(c)) or "-" for c in ts.step_tasks_.T]
                f1 = structure_scores(ts.step_tasks_, truth)["f1"]
                print(f"  {layer:<10} {name:<44} {marks[0]:<14} {marks[1]:<14} {f1:5.3f} "
                      f"{time.perf_counter() - start:5.0f}s")


def nonlinear() -> None:
    print("3. Nonlinear outcomes (n=3,000, T=12, M=3, segments of 2), seeds", EVAL_SEEDS)
    print(f"  {'outcome':<10} {'test':<9} {'F1 mean':>7} {'F1 min':>7} {'false marks/fit':>15} {'s/fit':>6}")
    for outcome in ("sum", "max", "threshold", "all_above"):
        for test in ("fisher_z", "rff_z"):
            f1, false, seconds = [], [], []
            for seed in EVAL_SEEDS:
                states, tasks, truth = synthetic.collider_sequences(n=3000, T=12, M=3, outcome=outcome, seed=seed)
                start = time.perf_counter()
                ts = hfs.TaskStructure(segment_length=2, test=test).fit(states, tasks)
                seconds.append(time.perf_counter() - start)
                f1.append(structure_scores(ts.step_tasks_, truth["step_tasks"])["f1"])
                false.append(int((ts.step_tasks_ & ~truth["step_tasks"]).sum()))
            print(f"  {outcome:<10} {test:<9} {np.mean(f1):7.3f} {np.min(f1):7.3f} {np.mean(false):15.2f} "
                  f"{np.mean(seconds):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-text", action="store_true", help="skip table 2 (MiniLM)")
    args = parser.parse_args()
    linear_runs()
    if not args.skip_text:
        conversations()
    nonlinear()


if __name__ == "__main__":
    main()
