"""Development seeds only (0-9): which lambda rule of `sparsity="auto"` keeps exact supports.

One default-path run per seed on `synthetic.within_step_latents` (2 tasks, blocks of 2 relevant latents, 4
irrelevant ones, observed in 24 dims; `OVERLAP` latents shared by consecutive blocks); every rule of
`select_lambda` is applied to the same trained path, so the rules differ only in the choice. Prints per seed and
rule the kept lambda, the support size per task and whether it is exact (each task keeps as many latents as it has
relevant ones), then the totals.

Usage:
    python recipes/benchmarks/development/lambda_rule.py [N] [EPOCHS] [SEEDS] [OVERLAP]
    (run as `2000 60 10` and `2000 60 10 1`, with OMP_NUM_THREADS=1 on a shared machine)
    DUMP_DIR=folder ... writes each trained path; `--from-dumps folder` re-applies the rules to them.
"""

import copy
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from hf_specialist.adapter.lambda_path import select_lambda, unsettled_lambdas

RULES = ("one_se_margin", "one_se", "tolerance")


def choose(path, want, tolerance=0.1):
    """Per rule: (kept lambda, support sizes, warned (supports not settled), exact)."""
    out = {}
    for rule in RULES:
        trial = copy.deepcopy(path)
        best, _ = select_lambda(trial, len(want), rule, tolerance)
        sizes = np.asarray(trial[best]["support"]).sum(1).tolist()
        out[rule] = (trial[best]["sparsity"], sizes, bool(unsettled_lambdas(trial, best)), sizes == want)
    return out


def report(rows):
    exact = {rule: 0 for rule in RULES}
    warned = {rule: 0 for rule in RULES}
    for label, want, chosen in rows:
        line = [f"{label} true {want}"]
        for rule, (lam, sizes, warn, ok) in chosen.items():
            exact[rule] += ok
            warned[rule] += warn
            line.append(f"{rule}: lambda {lam:.3g} support {sizes}{' exact' if ok else ''}{' WARNED' if warn else ''}")
        print(" | ".join(line), flush=True)
    print({rule: f"{exact[rule]}/{len(rows)} exact, {warned[rule]} warned (not settled)" for rule in RULES})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--from-dumps"]:
        rows = []
        for file in sorted(Path(sys.argv[2]).glob("path-*.json")):
            payload = json.loads(file.read_text())
            rows.append((file.stem, payload["want"], choose(payload["path"], payload["want"])))
        report(rows)
        sys.exit(0)
    import hf_specialist as hfs
    from hf_specialist import synthetic

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    seeds = range(int(sys.argv[3]) if len(sys.argv) > 3 else 10)
    overlap = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    assert max(seeds) < 10, "development seeds only"
    rows = []
    for seed in seeds:
        states, tasks, truth = synthetic.within_step_latents(n=n, obs_dim=24, overlap=overlap, seed=seed)
        adapter = hfs.SpecialistAdapter(hfs.SpecialistConfig(d_in=24, n_tasks=2, task_dims=truth["task_dims"]))
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            history = hfs.train_specialist(adapter, states, tasks, epochs=epochs, seed=seed, progress=False,
                                            settle_retries=0)  # EPOCHS as given (a retry doubles them)
        want = truth["relevant"].sum(1).tolist()
        if os.environ.get("DUMP_DIR"):  # the trained paths, to compare rules without training again
            Path(os.environ["DUMP_DIR"]).mkdir(parents=True, exist_ok=True)
            (Path(os.environ["DUMP_DIR"]) / f"path-{n}-{epochs}-{overlap}-{seed}.json").write_text(
                json.dumps({"path": history["path"], "want": want}))
        rows.append((f"seed {seed} ({time.perf_counter() - started:.0f} s)", want,
                     choose(history["path"], want, adapter.config.sparsity_tolerance)))
        report(rows[-1:])
    report(rows)
