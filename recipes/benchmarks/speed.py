"""Speed of the default paths, the old path beside the new one in one run (ratios; absolute seconds are noisy here).

Usage:
    python recipes/benchmarks/speed.py [--seeds 2] [--first-seed 100] [--skip-train] [--skip-knn]

Rows:
  1. one adapter training step (default widths, batch 256, d_in 24 and 576) with Adam's `foreach` path (the old
     optimizer setting) and its fused kernel (the new one), against an L1 SAE of the same latent width (fused Adam);
  2. the default `train_specialist` call (`sparsity="auto"`: a dense model and five lambdas, 100 epochs each) on
     10,000 rows of 24-dim states (`synthetic.within_step_latents`, evaluation seeds), old optimizer against new;
  3. one `knn_cmi` structure fit at n = 5,000, T = 8, M = 2 (nonlinear collider sequences, 30 permutations, as in
     the README's nonlinear row): the old path (k-d tree range counts, every null draw) against the new default
     (bitset box counts, null drawn in rounds that stop once the test is decided), with F1 for both.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hf_specialist import SpecialistAdapter, SpecialistConfig, TaskStructure, synthetic, train_specialist
from hf_specialist.metrics import structure_scores
from hf_specialist.structure.ci_tests import KnnCMI

_ADAM = torch.optim.Adam


def _adam_foreach(params, **kwargs):
    """The old optimizer setting, swapped in for the "old" rows only."""
    kwargs.pop("fused", None)
    return _ADAM(params, foreach=True, **kwargs)


def _step_seconds(d_in: int, fused: bool, rounds: int) -> tuple[float, float]:
    torch.manual_seed(0)
    adapter = SpecialistAdapter(SpecialistConfig(d_in=d_in, n_tasks=2, sparsity=0.01))
    sae = _L1SAE(d_in, adapter.config.d_latent)
    x, y = torch.randn(256, d_in), torch.randn(256, 2)
    m = torch.ones(256, 2, dtype=torch.bool)
    setting = {"fused": True} if fused else {"foreach": True}
    opt_a = _ADAM(adapter.parameters(), lr=1e-3, **setting)
    opt_s = _ADAM(sae.parameters(), lr=1e-3, fused=True)

    def step(loss_fn, opt):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()

    fns = {"adapter": lambda: step(lambda: adapter.loss_terms(x, y, m, 0.01)["loss"], opt_a),
           "sae": lambda: step(lambda: sae.loss(x, 0.05), opt_s)}
    times: dict[str, list[float]] = {"adapter": [], "sae": []}
    for fn in fns.values():
        for _ in range(5):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(20):
                fn()
            times[name].append((time.perf_counter() - start) / 20)
    return statistics.median(times["adapter"]), statistics.median(times["sae"])


class _L1SAE(torch.nn.Module):
    """ReLU encoder, linear decoder, MSE + l1 * ||f||_1 (as in `latents.py`)."""

    def __init__(self, d_in: int, d_sae: int) -> None:
        super().__init__()
        self.enc = torch.nn.Linear(d_in, d_sae)
        self.dec = torch.nn.Linear(d_sae, d_in)

    def loss(self, x: torch.Tensor, l1: float) -> torch.Tensor:
        f = torch.relu(self.enc(x))
        return ((self.dec(f) - x) ** 2).sum(-1).mean() + l1 * f.abs().sum(-1).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=100, help="first evaluation seed (0-9 are development)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-knn", action="store_true")
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)

    print("1. Adapter training step (batch 256, default widths), median of interleaved rounds")
    for d_in in (24, 576):
        old, sae = _step_seconds(d_in, fused=False, rounds=7)
        new, sae2 = _step_seconds(d_in, fused=True, rounds=7)
        print(f"  d_in={d_in:4d}: foreach Adam {old * 1e3:6.2f} ms ({old / sae:.2f}x the SAE) | fused Adam "
              f"{new * 1e3:6.2f} ms ({new / sae2:.2f}x the SAE) | new / old {new / old:.2f}")

    if not args.skip_train:
        print("\n2. Default train_specialist (sparsity='auto', 6 models x 100 epochs), 10,000 rows x 24 dims")
        for seed in seeds:
            states, tasks, truth = synthetic.within_step_latents(n=10_000, obs_dim=24, seed=seed)
            row = {}
            for label in ("old", "new"):
                torch.optim.Adam = _adam_foreach if label == "old" else _ADAM
                try:
                    adapter = SpecialistAdapter(SpecialistConfig(d_in=24, n_tasks=2, task_dims=truth["task_dims"]))
                    start = time.perf_counter()
                    history = train_specialist(adapter, states, tasks, progress=False, seed=seed)
                    seconds = time.perf_counter() - start
                finally:
                    torch.optim.Adam = _ADAM
                row[label] = (seconds, history["selected_sparsity"], adapter.task_support_.sum(1))
            print(f"  seed {seed}: old {row['old'][0]:6.1f} s (lambda {row['old'][1]:.3g}, support {row['old'][2]}) | "
                  f"new {row['new'][0]:6.1f} s (lambda {row['new'][1]:.3g}, support {row['new'][2]}) | "
                  f"new / old {row['new'][0] / row['old'][0]:.2f}")

    if not args.skip_knn:
        print("\n3. knn_cmi structure fit, n=5,000 T=8 M=2 nonlinear, 30 permutations")
        for seed in seeds:
            states, tasks, truth = synthetic.collider_sequences(n=5000, T=8, M=2, nonlinear=True, seed=seed)
            row = {}
            for label, test in (("old", KnnCMI(n_permutations=30, bitset_max=0, early_stop=False, seed=seed)),
                                ("new", KnnCMI(n_permutations=30, seed=seed))):
                start = time.perf_counter()
                fitted = TaskStructure(test=test, progress=False).fit(states, tasks)
                f1 = structure_scores(fitted.step_tasks_, truth["step_tasks"])["f1"]
                row[label] = (time.perf_counter() - start, f1)
            print(f"  seed {seed}: old {row['old'][0]:6.1f} s, F1 {row['old'][1]:.3f} | new {row['new'][0]:6.1f} s, "
                  f"F1 {row['new'][1]:.3f} | new / old {row['new'][0] / row['old'][0]:.2f}")


if __name__ == "__main__":
    main()
