"""Development seeds only: how many optimizer steps the default lambda path needs before its supports are exact.

For each row count `n` and step budget `B`, trains the default `sparsity="auto"` call with `DEFAULT_MAX_STEPS = B`
(`default_schedule`: B optimizer steps, at most 100 and at least one pass) on
`synthetic.within_step_latents(n, obs_dim=24, seed)` and prints the support per task against the truth, the kept
lambda, whether the supports settled, and the seconds. `--epochs E` trains E epochs instead (the old default: 100).

    OMP_NUM_THREADS=1 python recipes/benchmarks/development/epoch_budget.py --n 10000 50000 --budgets 400 800 1600 --seeds 0 1 2
"""
import argparse
import time
import warnings

from hf_specialist import SpecialistAdapter, SpecialistConfig, synthetic, train_specialist
from hf_specialist.adapter import training_args

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, nargs="+", default=[10_000])
parser.add_argument("--budgets", type=int, nargs="+", default=[400, 800, 1600])
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
parser.add_argument("--obs-dim", type=int, default=24)
parser.add_argument("--overlap", type=int, default=0)
parser.add_argument("--block-size", type=int, default=2)
parser.add_argument("--epochs", type=int, default=None)
args = parser.parse_args()
assert all(s < 100 for s in args.seeds), "development seeds only"
for n in args.n:
    for budget in args.budgets:
        training_args.DEFAULT_MAX_STEPS = budget
        exact = 0
        for seed in args.seeds:
            states, tasks, truth = synthetic.within_step_latents(n=n, obs_dim=args.obs_dim, seed=seed,
                                                                 block_size=args.block_size, overlap=args.overlap)
            adapter = SpecialistAdapter(SpecialistConfig(d_in=args.obs_dim, n_tasks=2, task_dims=truth["task_dims"]))
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                history = train_specialist(adapter, states, tasks, epochs=args.epochs, progress=False, seed=seed,
                                           settle_retries=0)  # the schedule asked for, no retry
            run = history["args"]
            schedule = f"epochs={run['epochs']}" if run["max_steps"] is None else f"max_steps={run['max_steps']}"
            size = adapter.task_support_.sum(1).tolist()
            true = truth["relevant"].sum(1).tolist()
            exact += size == true
            print(f"n={n} budget={budget} {schedule} seed={seed}: support {size} (true {true}) lambda "
                  f"{history['selected_sparsity']:.3g} settled={history['settled']} "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        print(f"n={n} budget={budget}: exact {exact}/{len(args.seeds)}", flush=True)
