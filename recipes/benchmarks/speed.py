"""Speed of the default paths, the old path beside the new one in one run (ratios; absolute seconds are noisy here).

Usage:
    python recipes/benchmarks/speed.py [--seeds 2] [--first-seed 100] [--large-seeds 2] [--skip-train] [--skip-knn]
        [--skip-query] [--profile] [--rows 100000] [--old]

Rows:
  1. one adapter training step per model (default widths, batch 256, d_in 24 and 576): one model alone (the old
     path, run once per lambda) and the six models of the default lambda path stacked (`StackedAdapters`, one
     vmapped step, divided by 6), against an L1 SAE of the same latent width (fused Adam everywhere);
  2. the default `train_specialist` call (`sparsity="auto"`: a dense model and five lambdas trained at once, on the
     default schedule: 800 optimizer steps, at most 100 and at least one pass) against a plain L1 SAE of the same
     latent width trained for 100 epochs with the same batch on the same training rows, side by side, on
     `synthetic.within_step_latents` (evaluation seeds) at 24 dims with 10,000 and `--rows` (100,000) rows and at
     SmolLM2's 576 dims with `--rows`; `--old` adds the old default (100 epochs) at 10,000 rows;
  3. one `knn_cmi` structure fit at n = 5,000, T = 8, M = 2 (nonlinear collider sequences, 30 permutations, as in
     the README's nonlinear row): the old path (k-d tree range counts, every null draw), the previous default
     (bitset box counts, null drawn in rounds that stop once the test is decided, the joint space searched with a
     k-d tree at every estimate), both in one thread as they were, and the new CPU default (joint radii from each
     row's (y, z) neighbours, searched once per test, `_joint_radii`; a batch's estimates over every core), with
     F1 for each, and the same fit with its radii and counts on the GPU when torch sees one
     (`KnnCMI(device="cuda")`);
     3b. the same fit at n = 20,000 (k-d tree counts; `--large-seeds` evaluation seeds): the estimate averaged over
     every row (the default) against 5,000 query rows (`query_rows=5000`; development seeds 0-2 gave F1 1.000 for
     both at a third of the time, and it was the default until this row lost F1 on evaluation seeds);
  4. the query that was knn_cmi's main cost, every row's k-th max-norm neighbour (n = 5,000, 4 columns, k = 100):
     scipy's k-d tree (used) against torch brute force and scikit-learn, on this machine's CPU;
  5. with `--profile`, where the time goes: `torch.profiler` over 20 stacked training steps (batch 256, d_in 24),
     and cProfile of one new-path knn_cmi fit in one thread (development seed 3, so no evaluation draw is looked
     at).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hf_specialist import SpecialistAdapter, SpecialistConfig, TaskStructure, synthetic, train_specialist
from hf_specialist.adapter import lambda_path
from hf_specialist.adapter.loop import parameter_groups
from hf_specialist.adapter.stacked import StackedAdapters
from hf_specialist.metrics import structure_scores
from hf_specialist.structure.ci_tests import KnnCMI

_ADAM = torch.optim.Adam


def _step_seconds(d_in: int, rounds: int) -> dict[str, float]:
    """Median seconds of one training step: a single adapter, the stacked lambda path per model, the SAE."""
    torch.manual_seed(0)
    adapter = SpecialistAdapter(SpecialistConfig(d_in=d_in, n_tasks=2, sparsity=0.01))
    stack = StackedAdapters(adapter, auto_path())
    sae = _L1SAE(d_in, adapter.config.d_latent)
    x, y = torch.randn(256, d_in), torch.randn(256, 2)
    m = torch.ones(256, 2, dtype=torch.bool)
    groups = dict(lr=1e-3, mask_lr=3e-2, rotation_lr=1e-2, weight_decay=0.0)
    opt_a = _ADAM(parameter_groups(adapter, **groups), fused=True)
    opt_k = _ADAM(parameter_groups(stack, **groups), fused=True)
    opt_s = _ADAM(sae.parameters(), lr=1e-3, fused=True)

    def step(loss_fn, opt):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()

    fns = {"single": lambda: step(lambda: adapter.loss_terms(x, y, m, 0.01)["loss"], opt_a),
           "stacked": lambda: step(lambda: stack(x, y, m, stack.sparsities)["loss"].sum(), opt_k),
           "sae": lambda: step(lambda: sae.loss(x, 0.05), opt_s)}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(5):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(20):
                fn()
            times[name].append((time.perf_counter() - start) / 20)
    out = {name: statistics.median(t) for name, t in times.items()}
    out["stacked"] /= stack.n_models
    return out


def auto_path() -> list[float]:
    """The models of the default `sparsity="auto"`: the dense one and the default grid."""
    return [0.0, *lambda_path.auto_lambda_path()]


class _L1SAE(torch.nn.Module):
    """ReLU encoder, linear decoder, MSE + l1 * ||f||_1 (as in `latents.py`)."""

    def __init__(self, d_in: int, d_sae: int) -> None:
        super().__init__()
        self.enc = torch.nn.Linear(d_in, d_sae)
        self.dec = torch.nn.Linear(d_sae, d_in)

    def loss(self, x: torch.Tensor, l1: float) -> torch.Tensor:
        f = torch.relu(self.enc(x))
        return ((self.dec(f) - x) ** 2).sum(-1).mean() + l1 * f.abs().sum(-1).mean()


def _train_sae(x: torch.Tensor, d_latent: int, epochs: int, batch_size: int, seed: int) -> float:
    """Seconds of a plain L1 SAE trained for `epochs` passes over `x` in shuffled batches (fused Adam)."""
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    sae = _L1SAE(x.shape[1], d_latent)
    opt = _ADAM(sae.parameters(), lr=1e-3, fused=True)
    start = time.perf_counter()
    for _ in range(epochs):
        for rows in torch.randperm(len(x)).split(batch_size):
            loss = sae.loss((x[rows] - mean) / std, 0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def _default_call_against_sae(d_in: int, n: int, seed: int, old: bool = False) -> dict:
    """Row 2: the default `train_specialist` call on `within_step_latents(n, obs_dim=d_in)` and a 100-epoch SAE of the
    adapter's latent width on its training rows (the 80% the call trains on), in this order, in one process."""
    import warnings

    states, tasks, truth = synthetic.within_step_latents(n=n, obs_dim=d_in, seed=seed)
    config = SpecialistConfig(d_in=d_in, n_tasks=2, task_dims=truth["task_dims"])
    out: dict = {}
    runs = [("new", {})] + ([("old", {"epochs": 100})] if old else [])
    for label, extra in runs:
        adapter = SpecialistAdapter(config)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            history = train_specialist(adapter, states, tasks, progress=False, seed=seed, **extra)
        out[label] = time.perf_counter() - start
        if label == "new":
            run = history["args"]
            out.update(schedule=f"{run['max_steps']} steps" if run["max_steps"] else f"{run['epochs']} epochs",
                       support=adapter.task_support_.sum(1).tolist(), true=truth["relevant"].sum(1).tolist(),
                       **{"lambda": history["selected_sparsity"]})
    train_rows = torch.as_tensor(states[: int(0.8 * n)], dtype=torch.float32)
    out["sae"] = _train_sae(train_rows, config.d_latent, 100, 256, seed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=100, help="first evaluation seed (0-9 are development)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-knn", action="store_true")
    parser.add_argument("--large-seeds", type=int, default=2, help="evaluation seeds of row 3b (n = 20,000)")
    parser.add_argument("--skip-query", action="store_true")
    parser.add_argument("--profile", action="store_true", help="also print row 5, the profiles")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the large cases of row 2")
    parser.add_argument("--old", action="store_true", help="row 2: also the old default (100 epochs) at 10,000 rows")
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)

    print("1. Adapter training step per model (batch 256, default widths), median of interleaved rounds")
    for d_in in (24, 576):
        t = _step_seconds(d_in, rounds=7)
        print(f"  d_in={d_in:4d}: one model {t['single'] * 1e3:6.2f} ms ({t['single'] / t['sae']:.2f}x the SAE) | "
              f"stacked, per model {t['stacked'] * 1e3:6.2f} ms ({t['stacked'] / t['sae']:.2f}x the SAE) | "
              f"new / old {t['stacked'] / t['single']:.2f}")

    if not args.skip_train:
        print("\n2. The default train_specialist call against a plain L1 SAE of the same latent width, 100 epochs, same "
              "batch (256) and training rows, side by side (the default call's schedule: `default_schedule`)")
        sizes = [(24, 10_000), (24, args.rows), (576, args.rows)]
        for seed in seeds:
            for d_in, n in sizes:
                row = _default_call_against_sae(d_in, n, seed, old=args.old and n <= 10_000)
                old = (f" | old default (100 epochs) {row['old']:6.1f} s ({row['old'] / row['sae']:5.1f}x)"
                       if "old" in row else "")
                print(f"  seed {seed}, d_in {d_in:3d}, {n:7,d} rows: SAE {row['sae']:6.1f} s | default call "
                      f"{row['new']:6.1f} s ({row['schedule']}) = {row['new'] / row['sae']:5.2f}x the SAE, lambda "
                      f"{row['lambda']:.3g}, support {row['support']} (true {row['true']}){old}", flush=True)

    if not args.skip_knn:
        print("\n3. knn_cmi structure fit, n=5,000 T=8 M=2 nonlinear, 30 permutations")
        for seed in seeds:
            # "cpu": the CPU paths also on a GPU host; the earlier paths as they were, in one thread
            searched = KnnCMI(n_permutations=30, seed=seed, device="cpu", n_jobs=1)
            searched.CANDIDATES_PER_NEIGHBOUR = 0  # the joint space searched at every estimate
            runs = [("old", KnnCMI(n_permutations=30, bitset_max=0, early_stop=False, seed=seed, device="cpu",
                                   n_jobs=1)),
                    ("searched", searched), ("new", KnnCMI(n_permutations=30, seed=seed, device="cpu"))]
            if torch.cuda.is_available():  # the same fit with radii and counts on the GPU (`_device_counts`)
                runs.append(("gpu", KnnCMI(n_permutations=30, seed=seed, device="cuda")))
            row = _knn_fits(5000, seed, runs)
            gpu = (f" | GPU {row['gpu'][0]:6.1f} s, F1 {row['gpu'][1]:.3f}, GPU / old {row['gpu'][0] / row['old'][0]:.3f}"
                   if "gpu" in row else "")
            print(f"  seed {seed}: old {row['old'][0]:5.1f} s, F1 {row['old'][1]:.3f} | joint search per draw "
                  f"{row['searched'][0]:5.1f} s, F1 {row['searched'][1]:.3f} | new {row['new'][0]:5.1f} s, F1 "
                  f"{row['new'][1]:.3f} | new / old {row['new'][0] / row['old'][0]:.2f}, new / joint search "
                  f"{row['new'][0] / row['searched'][0]:.2f}{gpu}")
        print("\n3b. knn_cmi structure fit, n=20,000 T=8 M=2 nonlinear, 30 permutations: the estimate averaged over "
              "every row (default) vs over 5,000 query rows (query_rows=5000)")
        for seed in range(args.first_seed, args.first_seed + args.large_seeds):
            row = _knn_fits(20_000, seed, [("all", KnnCMI(n_permutations=30, seed=seed, device="cpu")),
                                           ("sub", KnnCMI(n_permutations=30, query_rows=5000, seed=seed, device="cpu"))])
            print(f"  seed {seed}: all rows {row['all'][0]:6.1f} s, F1 {row['all'][1]:.3f} | 5,000 query rows "
                  f"{row['sub'][0]:6.1f} s, F1 {row['sub'][1]:.3f} | time ratio {row['sub'][0] / row['all'][0]:.2f}")

    if not args.skip_query:
        print("\n4. Every row's k-th max-norm neighbour, n=5,000, 4 columns, k=100 (best of 3)")
        seconds = _neighbour_query_seconds()
        print("  " + " | ".join(f"{name} {t * 1e3:6.1f} ms ({t / seconds['scipy cKDTree'] :.2f}x)"
                                for name, t in seconds.items()))

    if args.profile:
        print("\n5a. torch.profiler, 20 stacked training steps (6 lambdas, batch 256, d_in 24), share of self CPU time")
        for name, share in _stacked_step_profile():
            print(f"  {name:40s} {share:5.1%}")
        print("\n5b. cProfile, one knn_cmi fit (new path), n=5,000 T=8 M=2 nonlinear, development seed 3")
        print("  " + _knn_fit_profile())


def _knn_fits(n: int, seed: int, runs: list[tuple[str, KnnCMI]]) -> dict[str, tuple[float, float]]:
    """Seconds and F1 of one structure fit per `(label, test)` on the same nonlinear draw."""
    states, tasks, truth = synthetic.collider_sequences(n=n, T=8, M=2, nonlinear=True, seed=seed)
    row = {}
    for label, test in runs:
        start = time.perf_counter()
        fitted = TaskStructure(segment_length=2, test=test, progress=False).fit(states, tasks)
        row[label] = (time.perf_counter() - start, structure_scores(fitted.step_tasks_, truth["step_tasks"])["f1"])
    return row


def _stacked_step_profile(top: int = 8) -> list[tuple[str, float]]:
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    stack = StackedAdapters(SpecialistAdapter(SpecialistConfig(d_in=24, n_tasks=2)), auto_path())
    optimizer = _ADAM(parameter_groups(stack, lr=1e-3, mask_lr=3e-2, rotation_lr=1e-2, weight_decay=0.0), fused=True)
    x, y, m = torch.randn(256, 24), torch.randn(256, 2), torch.ones(256, 2, dtype=torch.bool)

    def step() -> None:
        stack(x, y, m, stack.sparsities)["loss"].sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(10):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(20):
            step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / total) for e in events[:top]]


def _knn_fit_profile(seed: int = 3) -> str:
    import cProfile
    import pstats

    states, tasks, _ = synthetic.collider_sequences(n=5000, T=8, M=2, nonlinear=True, seed=seed)
    test = KnnCMI(n_permutations=30, seed=seed, device="cpu", n_jobs=1)  # one thread: cProfile sees every estimate
    estimates = [0]
    one_estimate = KnnCMI._cmi

    def counted(self, *args):
        estimates[0] += 1
        return one_estimate(self, *args)

    profiler = cProfile.Profile()
    KnnCMI._cmi = counted
    try:
        profiler.enable()
        TaskStructure(segment_length=2, test=test, progress=False).fit(states, tasks)
        profiler.disable()
    finally:
        KnnCMI._cmi = one_estimate
    stats = pstats.Stats(profiler).stats
    total = sum(row[2] for row in stats.values())  # own time of every function: the whole fit

    def cumulative(name: str, module: str = "") -> float:
        return sum(row[3] for (file, _, function), row in stats.items() if function == name and file.endswith(module))

    per = 1e3 / estimates[0]
    return (f"{total:.1f} s, {estimates[0]} estimates of {cumulative('counted') * per:.0f} ms each; per estimate: "
            f"{cumulative('joint_radii') * per:.0f} ms in the joint radii (from (y, z) candidates, with the "
            f"k-d tree for rows they miss), {cumulative('box_bitsets') * per:.0f} ms in the bitset box counts; and "
            f"{cumulative('build', '_joint_radii.py'):.1f} s in all searching each test's (y, z) neighbours")


def _neighbour_query_seconds(n: int = 5000, width: int = 4, k: int = 100) -> dict[str, float]:
    import numpy as np
    from scipy.spatial import cKDTree
    from sklearn.neighbors import NearestNeighbors

    values = np.random.default_rng(0).normal(size=(n, width))
    tensor = torch.from_numpy(values)

    def brute_force() -> torch.Tensor:
        return torch.cat([torch.cdist(tensor[i : i + 1000], tensor, p=float("inf")).kthvalue(k + 1, dim=1).values
                          for i in range(0, n, 1000)])

    queries = {
        "scipy cKDTree": lambda: cKDTree(values).query(values, k=[k + 1], p=np.inf, workers=-1),
        "torch brute force": brute_force,
        "scikit-learn": lambda: NearestNeighbors(n_neighbors=k + 1, metric="chebyshev", n_jobs=-1).fit(values)
        .kneighbors(values),
    }
    out = {}
    for name, query in queries.items():
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            query()
            best = min(best, time.perf_counter() - start)
        out[name] = best
    return out


if __name__ == "__main__":
    main()
