"""Scale of structure discovery: streaming sufficient statistics against the in-memory fit, side by side.

Usage:
    python recipes/benchmarks/scale.py [--sizes 10000 100000 1000000 4000000] [--skip-token] [--skip-processes]

Each measurement runs in a fresh Python process (so peak memory is its own), prints one JSON line, and the parent
prints the table. Rows of one configuration come from one stream: `synthetic.collider_sequences(seed=100,
sample_seed=b)` for batch b (evaluation seed 100, not used to choose anything), so the streaming and in-memory fits
see exactly the same rows and must agree.

Columns: time of the fit (data generation excluded), rows per second, peak resident memory of the process (psutil's
max RSS, MiB; the interpreter with torch and transformers imported is most of it at small n), and whether the
streaming result equals the in-memory one (same step x task marks, p-values within 1e-6 relative).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

SEED = 100
BATCH = 50_000


def _batches(n: int, T: int, M: int, d: int, batch: int):
    from hf_specialist import synthetic

    for b, start in enumerate(range(0, n, batch)):
        rows = min(batch, n - start)
        states, tasks, truth = synthetic.collider_sequences(n=rows, T=T, M=M, state_dim=d, mixing="linear" if d > 1
                                                            else "nonlinear", seed=SEED, sample_seed=b)
        yield states, tasks, truth


def worker(kind: str, n: int, T: int, M: int, d: int) -> dict:
    """One measurement: `kind` is "stream" or "memory"."""
    import hf_specialist as hfs

    batch = min(BATCH, n)
    fit_seconds, generate_seconds = 0.0, 0.0
    warm_states, warm_tasks, _ = next(_batches(2000, T, M, d, 2000))
    hfs.TaskStructure(segment_length=2).fit(warm_states, warm_tasks)  # one-time costs (lazy imports, BLAS threads) out of the timing
    if kind == "stream":
        structure = hfs.TaskStructure(segment_length=2)
        start = time.perf_counter()
        for states, tasks, truth in _batches(n, T, M, d, batch):
            generated = time.perf_counter()
            generate_seconds += generated - start
            structure.partial_fit(states, tasks)
            start = time.perf_counter()
            fit_seconds += start - generated
    else:
        parts = list(_batches(n, T, M, d, batch))
        states = np.concatenate([p[0] for p in parts])
        tasks = np.concatenate([p[1] for p in parts])
        truth = parts[0][2]
        del parts
        start = time.perf_counter()
        structure = hfs.TaskStructure(segment_length=2).fit(states, tasks)
        fit_seconds = time.perf_counter() - start
    f1 = hfs.metrics.structure_scores(structure.step_tasks_, truth["step_tasks"])["f1"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "n": n, "T": T, "M": M, "d": d, "seconds": fit_seconds, "peak_mib": peak, "f1": f1,
            "pvalues": np.nan_to_num(structure.pvalues_, nan=-1.0).ravel().tolist(),
            "marks": structure.step_tasks_.astype(int).ravel().tolist(), "tests": structure.n_tests_,
            "conditioning": structure.conditioning_}


def two_process_worker(n: int, T: int, M: int, d: int) -> None:
    """Under torchrun: each process streams its half of the batches into one fit."""
    import torch.distributed as dist

    import hf_specialist as hfs
    from hf_specialist._distributed import launch_state

    state = launch_state()
    batch = min(BATCH, n)
    warm_states, warm_tasks, _ = next(_batches(2000, T, M, d, 2000))
    hfs.TaskStructure(segment_length=2).fit(warm_states, warm_tasks)
    generating = [0.0]

    def mine():
        start = time.perf_counter()
        for b, (s, t, _) in enumerate(_batches(n, T, M, d, batch)):
            generating[0] += time.perf_counter() - start  # every batch is generated, the other process's skipped
            if b % state.num_processes == state.process_index:
                yield s, t
            start = time.perf_counter()

    start = time.perf_counter()
    structure = hfs.TaskStructure(segment_length=2).fit(mine())
    seconds = time.perf_counter() - start - generating[0]  # fit time (generation of this process's rows excluded)
    dist.barrier()
    if state.is_main_process:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"kind": "2 processes", "n": n, "T": T, "M": M, "d": d, "seconds": seconds, "peak_mib": peak,
                          "pvalues": np.nan_to_num(structure.pvalues_, nan=-1.0).ravel().tolist(),
                          "marks": structure.step_tasks_.astype(int).ravel().tolist(), "tests": structure.n_tests_}),
              flush=True)


def run(args: list[str], torchrun: bool = False) -> dict | None:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    if torchrun:
        env.update(ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__]
    else:
        command = [sys.executable, __file__]
    done = subprocess.run(command + args, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"  failed: {' '.join(args)}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
        return None
    return json.loads(lines[-1])


def same(a: dict, b: dict) -> str:
    pa, pb = np.array(a["pvalues"]), np.array(b["pvalues"])
    ok = a["marks"] == b["marks"] and np.allclose(pa, pb, rtol=1e-6, atol=1e-300)
    return "yes" if ok else f"NO (max p diff {np.abs(pa - pb).max():.2g})"


def main() -> None:
    parser = argparse.ArgumentParser(description="streaming vs in-memory structure discovery")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 4_000_000])
    parser.add_argument("--memory-limit", type=int, default=4_000_000, help="largest n also fitted in memory")
    parser.add_argument("--skip-token", action="store_true")
    parser.add_argument("--skip-processes", action="store_true")
    parser.add_argument("--worker", nargs=5, metavar=("KIND", "N", "T", "M", "D"))
    parser.add_argument("--two-process-worker", nargs=4, type=int, metavar=("N", "T", "M", "D"))
    args = parser.parse_args()
    if args.worker:
        kind, *sizes = args.worker
        print(json.dumps(worker(kind, *map(int, sizes))), flush=True)
        return
    if args.two_process_worker:
        two_process_worker(*args.two_process_worker)
        return

    configs = [(n, 20, 4, 1) for n in args.sizes]
    if not args.skip_token:
        configs.append((100_000, 512, 8, 8))
    print(f"{'config':>28s} | {'mode':>11s} | {'fit s':>8s} | {'rows/s':>10s} | {'peak MiB':>8s} | {'tests':>5s} | "
          f"{'F1':>5s} | equals in-memory")
    print("-" * 105)
    base_peak = None
    for n, T, M, d in configs:
        label = f"n={n:,} T={T} M={M} d={d}"
        stream = run(["--worker", "stream", str(n), str(T), str(M), str(d)])
        memory = run(["--worker", "memory", str(n), str(T), str(M), str(d)]) if n <= args.memory_limit else None
        rows = [("streaming", stream), ("in-memory", memory)]
        if not args.skip_processes and (n, T) == (1_000_000, 20):
            rows.append(("2 processes", run(["--two-process-worker", str(n), str(T), str(M), str(d)], torchrun=True)))
        for mode, result in rows:
            if result is None:
                continue
            equal = "-" if mode == "in-memory" or memory is None else same(result, memory)
            f1 = f"{result['f1']:.3f}" if "f1" in result else "  -  "
            print(f"{label:>28s} | {mode:>11s} | {result['seconds']:8.2f} | {n / result['seconds']:10.3g} | "
                  f"{result['peak_mib']:8.0f} | {result['tests']:5d} | {f1} | {equal}", flush=True)
        if stream and stream["T"] == 20:
            base_peak = base_peak or stream["peak_mib"]
            print(f"{'':>28s}   streaming peak over the first size: {stream['peak_mib'] - base_peak:+.0f} MiB;"
                  + (f" throughput streaming / in-memory: {memory['seconds'] / stream['seconds']:.2f}x" if memory else ""))


if __name__ == "__main__":
    main()
