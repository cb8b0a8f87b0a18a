"""One process against two: the lambda and support that the default `train_specialist` call keeps on the latents
benchmark's data (`latents.py --supports-only`), in this process and under `torchrun --nproc_per_node 2` (CPU, gloo).

Usage:
    python recipes/benchmarks/latents_processes.py [--seeds 10] [--first-seed 100] [--n 5000] [--block-size 2]
        [--overlap 0] [--dump FOLDER]

`--dump FOLDER` keeps both trained lambda paths per seed (`seed-<seed>.json`: [one process's, two processes'])
so that `development/lambda_processes.py --from-dumps FOLDER` can apply other rules to them (development seeds).

Per evaluation seed: the kept lambda and the support per task in each layout, whether they are the same (the lambda and
the task x latent support exactly: the same seed gives the same initialisation), and whether the support is exact. `batch_size` is the global batch
and the split and batch order depend on the seed only, so the two layouts take the same optimizer steps, and every
process trains its share with the global batch's noise, batch-norm statistics and loss weights
(`hf_specialist/adapter/batch_share.py`); they differ only by floating-point reduction order (DDP averages the two
processes' rescaled half-batch gradients).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latents import default_call  # noqa: E402


def _choice(adapter, history, truth) -> dict:
    support = adapter.task_support_.astype(int)
    return {"lambda": history["selected_sparsity"], "support": support.tolist(),
            "exact": bool((support.sum(1) == truth["relevant"].sum(1)).all()), "settled": history["settled"],
            "path": history["path"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--block-size", type=int, default=2)
    parser.add_argument("--overlap", type=int, default=0)
    parser.add_argument("--dump", default=None, help="keep both trained lambda paths per seed in this folder")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # under torchrun: write rank 0's choice here
    parser.add_argument("child_case", nargs="?", help=argparse.SUPPRESS)  # with --child: the seed and case, JSON
    args = parser.parse_args()
    case = dict(n=args.n, epochs=None, block_size=args.block_size, overlap=args.overlap)
    if args.child is not None:
        from accelerate import PartialState

        if PartialState(cpu=True).num_processes != 2:
            raise RuntimeError("--child runs under `torchrun --nproc_per_node 2`.")
        child = json.loads(args.child_case)  # torchrun reads "--n" as its own option: the case comes as one JSON
        choice = _choice(*default_call(**child))
        if os.environ.get("RANK") == "0":
            Path(args.child).write_text(json.dumps(choice))
        import torch.distributed as dist

        dist.barrier()  # a clean teardown: exiting with the gloo group alive can abort at interpreter exit
        dist.destroy_process_group()
        return
    kind = "evaluation" if args.first_seed >= 100 else "development"
    print(f"One process against two (torchrun), default call, n={args.n}, block {args.block_size}, overlap "
          f"{args.overlap}, {kind} seeds {args.first_seed}..{args.first_seed + args.seeds - 1}")
    same = exact = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        with tempfile.TemporaryDirectory() as out:
            target = Path(out, "choice.json")
            env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
            done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                   "2", __file__, "--child", str(target), json.dumps({"seed": seed, **case})],
                                  env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"the two-process run of seed {seed} failed:\n{done.stderr[-3000:]}")
            two = json.loads(target.read_text())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one = _choice(*default_call(seed, **case))
        # the same initialisation and seed: the same latents, not only the same pattern up to a permutation
        if args.dump:
            Path(args.dump).mkdir(parents=True, exist_ok=True)
            Path(args.dump, f"seed-{seed}.json").write_text(json.dumps([one["path"], two["path"]]))
        agree = np.isclose(one["lambda"], two["lambda"]) and one["support"] == two["support"]
        same += agree
        exact += one["exact"] and two["exact"]
        print(f"  seed {seed}: 1 process lambda {one['lambda']:.3g} support {np.sum(one['support'], 1).tolist()} | "
              f"2 processes lambda {two['lambda']:.3g} support {np.sum(two['support'], 1).tolist()} | "
              f"{'same' if agree else 'DIFFERENT'}, {'both exact' if one['exact'] and two['exact'] else 'NOT both exact'}",
              flush=True)
    print(f"  same lambda and support on {same}/{args.seeds} seeds; exact in both layouts on {exact}/{args.seeds}")


if __name__ == "__main__":
    main()
