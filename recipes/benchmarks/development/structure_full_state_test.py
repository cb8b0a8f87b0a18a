"""The regularised full-state test tried against leaking context and not shipped: for each step t and task g, on
a split of the rows, ridge g on the other steps' full states and ridge the step's own contribution on them too, then
the correlation of the two residuals on the held-out half (a generalised-covariance test). Prints -log10 p per task
and step on the support conversations (development texts seed 0, n = 1,500, MiniLM `layers.0`, full context).

    python recipes/benchmarks/development/structure_full_state_test.py
"""

from __future__ import annotations

import os
import sys

import numpy as np
from scipy import stats
from sklearn.linear_model import RidgeCV

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import hf_specialist as hfs  # noqa: E402
from hf_specialist.models import load_model  # noqa: E402
from structure_user_data import support_conversations  # noqa: E402


def main(layer: str = "layers.0") -> None:
    model, tokenizer = load_model("minilm")
    texts, tasks = support_conversations(1500, 0)
    states = hfs.extract_steps(model, tokenizer, texts, hook_point=layer, steps=". ", batch_size=64).astype(np.float64)
    n, T, d = states.shape
    states = (states - states.mean(0)) / (states.std(0) + 1e-8)
    order = np.random.default_rng(0).permutation(n)
    learn, test = order[: n // 2], order[n // 2 :]
    alphas = np.logspace(0, 5, 11)
    out = np.zeros((tasks.shape[1], T))
    for i in range(tasks.shape[1]):
        g = tasks[:, i]
        for t in range(T):
            others, own = np.delete(states, t, axis=1).reshape(n, -1), states[:, t]
            given_others = RidgeCV(alphas=alphas).fit(others[learn], g[learn])
            full = RidgeCV(alphas=alphas).fit(np.concatenate([own, others], 1)[learn], g[learn])
            contribution = own @ full.coef_[:d]
            contribution_given_others = RidgeCV(alphas=alphas).fit(others[learn], contribution[learn])
            r_g = g[test] - given_others.predict(others[test])
            r_u = contribution[test] - contribution_given_others.predict(others[test])
            z = np.sqrt(len(test) - 3) * np.arctanh(abs(np.corrcoef(r_g, r_u)[0, 1]))
            out[i, t] = -np.log10(max(2 * stats.norm.sf(z), 1e-300))
    print(layer, "-log10 p per task (rows) and step:", np.round(out, 1).tolist(),
          "critical", round(-np.log10(0.05 / out.size), 2))


if __name__ == "__main__":
    main(*sys.argv[1:])
