"""Development seeds only (0-9): the lambda and support kept in one process and in two (torchrun, CPU, gloo).

Runs `tests/distributed/lambda_choice_case.py` (the case of the torchrun test: within-step latents, 1,200 rows, 40
epochs, default lambda path) per seed in this process and under `torchrun --nproc_per_node 2`, and prints both
choices. Supports are compared as task x latent patterns up to a permutation of the latents (what Theorem 2
identifies); the lambda exactly. Every rule of `select_lambda` is applied to both trained paths.

A run whose supports had not settled warns (`unsettled_lambdas`); "same or warned" counts seeds where the two
choices agree or both runs warned that they cannot be trusted.

Usage: OMP_NUM_THREADS=1 python recipes/benchmarks/development/lambda_processes.py [SEEDS] [EPOCHS]
       DUMP_DIR=folder ... keeps both trained paths per seed; `--from-dumps folder` re-applies the rules to them.
"""

import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import copy

import numpy as np

from hf_specialist.adapter.lambda_path import select_lambda, unsettled_lambdas

CASE = Path(__file__).resolve().parents[3] / "tests" / "distributed" / "lambda_choice_case.py"


RULES = ("one_se_margin", "one_se_margin+smallest", "one_se", "tolerance")


def pattern(support):
    return sorted(map(tuple, np.asarray(support, dtype=int).T.tolist()))


def kept(path, rule):
    trial = copy.deepcopy(path)
    base, _, tie = rule.partition("+")
    best, _ = select_lambda(trial, 2, base, 0.1)
    if tie == "smallest":  # among the passing models of the kept support size, the smallest lambda
        tied = [k for k, r in enumerate(trial) if r.get("within_tolerance")
                and r["adapter/support_size"] == trial[best]["adapter/support_size"]]
        best = min(tied, key=lambda k: trial[k]["sparsity"]) if tied else best
    return (trial[best]["sparsity"], pattern(trial[best]["support"]), np.asarray(trial[best]["support"]).sum(1).tolist(),
            bool(unsettled_lambdas(trial, best)))


def compare(rows):
    same = {rule: 0 for rule in RULES}
    fine = {rule: 0 for rule in RULES}
    for seed, one_path, two_path in rows:
        line = [f"seed {seed}"]
        for rule in RULES:
            one, other = kept(one_path, rule), kept(two_path, rule)
            agree = one[:2] == other[:2]
            same[rule] += agree
            fine[rule] += agree or (one[3] and other[3])
            line.append(f"{rule}: 1 process lambda {one[0]:.3g} {one[2]}{' (warned)' if one[3] else ''}, "
                        f"2 processes lambda {other[0]:.3g} {other[2]}{' (warned)' if other[3] else ''}"
                        f"{' same' if agree else ' DIFFERENT'}")
        print(" | ".join(line), flush=True)
    print({rule: f"same on {same[rule]}/{len(rows)}, same or both warned on {fine[rule]}/{len(rows)}"
           for rule in RULES})


if sys.argv[1:2] == ["--from-dumps"]:
    compare([(int(f.stem.split("-")[1]), *json.loads(f.read_text())) for f in sorted(Path(sys.argv[2]).glob("seed-*.json"))])
    sys.exit(0)
sys.path.insert(0, str(CASE.parent))
from lambda_choice_case import train_lambda_choice  # noqa: E402


seeds = range(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
assert max(seeds) < 10, "development seeds only"
rows = []
for seed in seeds:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(CASE), out, str(seed), str(epochs)], env=env, check=True, capture_output=True)
        two = json.loads(Path(out, "rank0-choice.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter, history = train_lambda_choice(seed, epochs)
    rows.append((seed, history["path"], two["path"]))
    if os.environ.get("DUMP_DIR"):
        Path(os.environ["DUMP_DIR"]).mkdir(parents=True, exist_ok=True)
        Path(os.environ["DUMP_DIR"], f"seed-{seed}-{epochs}.json").write_text(json.dumps([history["path"], two["path"]]))
    compare(rows[-1:])
compare(rows)
