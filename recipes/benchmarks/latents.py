"""Within-step latents (Theorem 2): ours with l1, ours without (the generalist), and baselines given the same
supervision on the same observations.

Usage:
    python recipes/benchmarks/latents.py [--seeds 5] [--first-seed 100] [--n 5000] [--epochs E]
    python recipes/benchmarks/latents.py --block-size 3 --overlap 1   # overlapping supports: each task reads two
        latents of its own and one that the other task also reads ("exact" = each task keeps 3)

Seeds: development draws 0-9 chose the adapter's defaults (the lambda grid and selection tolerance); the tables
report evaluation draws from `--first-seed` (100), never looked at while choosing.

Data: `synthetic.within_step_latents` (2 tasks, blocks of 2 relevant latent dims, 4 irrelevant dims, observed in
32 dims through a random invertible MLP; each task a random invertible nonlinear map of its block plus noise).
For each method and task, the block is: ours, the latents on the learned support; the generalist, all latents.
Every baseline sees the labels ours sees (the task values on the training rows) and gets ours' block size k for
that task: a supervised MLP probe with a k-dim bottleneck (the bottleneck is the block), a linear probe (the k
partial-least-squares directions), an L1 SAE and a TopK SAE (128 latents) with the block chosen by sparse probing
(lasso path on the latents, as SAE evaluation suites do), and PCA / a plain autoencoder with the k best-matching
components. Scores: `latents/r2_relevant` and `latents/r2_irrelevant` (`metrics.block_r2`, cross-validated kernel
ridge), averaged over tasks, mean ± std over seeds.
Also: the task readout on sequences whose tasks are colliders over steps (`synthetic.collider_step_latents`),
reading each task from all its steps together (`task_readout="sequence"`) against per step (`"step"`); and the
training-step throughput of the adapter against an L1 sparse autoencoder of the same latent width on
the same batch, as a ratio measured in one run (`--device cuda --dtype bfloat16` on a GPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from hf_specialist import SpecialistAdapter, SpecialistConfig, synthetic, train_specialist
from hf_specialist.metrics import block_r2


class SparseAutoencoder(nn.Module):
    """ReLU encoder, linear decoder with unit-norm columns, loss = MSE + l1 * ||f||_1 (SAELens' standard SAE)."""

    def __init__(self, d_in: int, d_sae: int) -> None:
        super().__init__()
        self.encoder = nn.Linear(d_in, d_sae)
        self.decoder = nn.Linear(d_sae, d_in)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.encoder(x))

    def loss(self, x: torch.Tensor, l1: float) -> torch.Tensor:
        f = self.encode(x)
        weight = self.decoder.weight / self.decoder.weight.norm(dim=0, keepdim=True).clamp(min=1e-8)
        recon = f @ weight.T + self.decoder.bias
        return ((recon - x) ** 2).sum(-1).mean() + l1 * (f * self.decoder.weight.norm(dim=0)).sum(-1).mean()


class TopKSparseAutoencoder(SparseAutoencoder):
    """ReLU encoder keeping the `k` largest activations per row, linear decoder, plain MSE (a TopK SAE)."""

    def __init__(self, d_in: int, d_sae: int, k: int) -> None:
        super().__init__(d_in, d_sae)
        self.k = k

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.encoder(x))
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values)

    def loss(self, x: torch.Tensor, _: float = 0.0) -> torch.Tensor:
        return ((self.decoder(self.encode(x)) - x) ** 2).sum(-1).mean()


class BottleneckProbe(nn.Module):
    """A supervised MLP probe from the hidden state to one task through a `k`-dim bottleneck: the bottleneck is
    the task's subspace a practitioner would read with the same labels."""

    def __init__(self, d_in: int, k: int, d_out: int, widths: list[int]) -> None:
        super().__init__()
        from hf_specialist.adapter.model import _mlp

        self.encoder = _mlp(d_in, widths, k)
        self.head = _mlp(k, [64], d_out)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class PlainAutoencoder(nn.Module):
    """A deterministic MLP autoencoder with the adapter's widths."""

    def __init__(self, d_in: int, d_latent: int, widths: list[int]) -> None:
        super().__init__()
        from hf_specialist.adapter.model import _mlp

        self.encoder = _mlp(d_in, widths, d_latent)
        self.decoder = _mlp(d_latent, widths, d_in)

    def loss(self, x: torch.Tensor, _: float = 0.0) -> torch.Tensor:
        return ((self.decoder(self.encoder(x)) - x) ** 2).mean()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def fit_unsupervised(model: nn.Module, x: np.ndarray, epochs: int, seed: int, l1: float = 0.0) -> np.ndarray:
    torch.manual_seed(seed)
    data = torch.as_tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for start in range(0, len(data), 256):
            loss = model.loss(data[perm[start : start + 256]], l1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return model.encode(data).numpy()


def fit_probe(x: np.ndarray, target: np.ndarray, k: int, train_rows: np.ndarray, epochs: int, seed: int,
              widths: list[int]) -> np.ndarray:
    """The `k`-dim bottleneck of an MLP probe trained (MSE, training rows only) to predict the task from `x`."""
    torch.manual_seed(seed)
    data = torch.as_tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    y = torch.as_tensor((target - target[train_rows].mean(0)) / target[train_rows].std(0), dtype=torch.float32)
    probe = BottleneckProbe(x.shape[1], k, y.shape[1], widths)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-3)
    rows = torch.as_tensor(train_rows)
    for epoch in range(epochs):
        perm = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed * 1000 + epoch))]
        for start in range(0, len(perm), 256):
            batch = perm[start : start + 256]
            loss = ((probe.head(probe.encode(data[batch])) - y[batch]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return probe.encode(data).numpy()


def linear_probe(x: np.ndarray, target: np.ndarray, k: int, train_rows: np.ndarray) -> np.ndarray:
    """The `k` directions of partial least squares from `x` to the task (training rows): a linear probe subspace."""
    from sklearn.cross_decomposition import PLSRegression

    pls = PLSRegression(n_components=k).fit(x[train_rows], target[train_rows])
    return pls.transform(x)


def sparse_probe(latents: np.ndarray, target: np.ndarray, k: int, train_rows: np.ndarray) -> np.ndarray:
    """Sparse probing of SAE latents: along the (multi-task) lasso path on the training rows, the first penalty
    that keeps at least `k` latents, and of those the `k` with the largest coefficients."""
    from sklearn.linear_model import lasso_path

    active = latents[train_rows].std(0) > 0
    x = latents[train_rows][:, active]
    x = (x - x.mean(0)) / x.std(0)
    y = target[train_rows] - target[train_rows].mean(0)
    _, coefs, _ = lasso_path(x, y, alphas=60)  # coefs (n_targets, n_features, n_alphas)
    weight = np.linalg.norm(coefs.reshape(-1, x.shape[1], coefs.shape[-1]), axis=0)  # (n_features, n_alphas)
    enough = np.nonzero((weight > 0).sum(0) >= k)[0]
    column = weight[:, enough[0] if len(enough) else -1]
    chosen = np.nonzero(active)[0][np.argsort(column)[::-1][: max(1, k)]]
    return latents[:, chosen]


def best_matching(latents: np.ndarray, target: np.ndarray, k: int, train_rows: np.ndarray) -> np.ndarray:
    """The k latent columns whose linear fit to the task (on training rows) is best, by R²."""
    from sklearn.linear_model import LinearRegression

    scores = []
    for j in range(latents.shape[1]):
        column = latents[train_rows, j : j + 1]
        if column.std() == 0:
            scores.append(-np.inf)
            continue
        scores.append(LinearRegression().fit(column, target[train_rows]).score(column, target[train_rows]))
    return latents[:, np.argsort(scores)[::-1][: max(1, k)]]


def run_seed(seed: int, n: int, epochs: int | None, block_size: int = 2, overlap: int = 0) -> dict[str, dict[str, float]]:
    """Every method on one seed. `epochs=None`: ours on the default schedule, the baselines 100 epochs."""
    obs, tasks, truth = synthetic.within_step_latents(n=n, n_tasks=2, block_size=block_size, overlap=overlap,
                                                      n_irrelevant=4, obs_dim=32, seed=seed)
    d_latent, widths = 10, [128, 128]
    latents, relevant, irrelevant = truth["latents"], truth["relevant"], truth["irrelevant"]
    edges = np.cumsum([0] + list(truth["task_dims"]))
    cols = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    out: dict[str, dict[str, float]] = {}
    supports = {}
    baseline_epochs = epochs if epochs is not None else 100
    h = torch.as_tensor(obs, dtype=torch.float32)
    for name, sparsity in (("ours (l1, auto)", "auto"), ("generalist (no l1)", 0.0)):
        cfg = SpecialistConfig(d_in=32, d_latent=d_latent, n_tasks=2, task_dims=truth["task_dims"],
                               encoder_widths=widths, decoder_widths=widths, sparsity=sparsity)
        adapter = SpecialistAdapter(cfg)
        start = time.perf_counter()
        train_specialist(adapter, obs, tasks, epochs=epochs, seed=seed, progress=False)
        seconds = time.perf_counter() - start
        scores = [block_r2(adapter.task_latents(h, task=i).detach().numpy(), latents[:, relevant[i]], latents[:, irrelevant], seed=seed)
                  for i in range(2)]
        size = adapter.task_support_.sum(1)
        supports[name] = size
        out[name] = {
            "r2_relevant": float(np.mean([s["r2_relevant"] for s in scores])),
            "r2_irrelevant": float(np.mean([s["r2_irrelevant"] for s in scores])),
            "support": float(size.mean()),
            "exact": float(all(size[i] == relevant[i].sum() for i in range(2))),
            "seconds": seconds,
        }
    train_rows = np.random.default_rng(seed).permutation(n)[: int(0.8 * n)]
    from sklearn.decomposition import PCA

    unsupervised = {
        "PCA": PCA(n_components=d_latent, random_state=seed).fit_transform((obs - obs.mean(0)) / obs.std(0)),
        "autoencoder": fit_unsupervised(PlainAutoencoder(32, d_latent, widths), obs, baseline_epochs, seed),
    }
    saes = {
        "L1 SAE": fit_unsupervised(SparseAutoencoder(32, 4 * 32), obs, baseline_epochs, seed, l1=0.05),
        "TopK SAE": fit_unsupervised(TopKSparseAutoencoder(32, 4 * 32, k=8), obs, baseline_epochs, seed),
    }
    k = [int(max(1, s)) for s in supports["ours (l1, auto)"]]
    # every baseline gets the labels ours gets (the task values on the training rows) and ours' block size k
    blocks = {
        "PCA (best-matching)": lambda i: best_matching(unsupervised["PCA"], tasks[:, cols[i]], k[i], train_rows),
        "AE (best-matching)": lambda i: best_matching(unsupervised["autoencoder"], tasks[:, cols[i]], k[i], train_rows),
        "L1 SAE + sparse probe": lambda i: sparse_probe(saes["L1 SAE"], tasks[:, cols[i]], k[i], train_rows),
        "TopK SAE + sparse probe": lambda i: sparse_probe(saes["TopK SAE"], tasks[:, cols[i]], k[i], train_rows),
        "linear probe (PLS)": lambda i: linear_probe(obs, tasks[:, cols[i]], k[i], train_rows),
        "MLP probe bottleneck": lambda i: fit_probe(obs, tasks[:, cols[i]], k[i], train_rows, baseline_epochs, seed, widths),
    }
    for name, block in blocks.items():
        scores = [block_r2(block(i), latents[:, relevant[i]], latents[:, irrelevant], seed=seed) for i in range(2)]
        out[name] = {"r2_relevant": float(np.mean([s["r2_relevant"] for s in scores])),
                     "r2_irrelevant": float(np.mean([s["r2_irrelevant"] for s in scores])),
                     "support": float(np.mean(k)), "exact": float("nan"), "seconds": float("nan")}
    return out


def _schedule(run: dict) -> str:
    return f"{run['max_steps']} steps" if run.get("max_steps") else f"{run['epochs']} epochs"


def default_call(seed: int, n: int, epochs: int | None, block_size: int, overlap: int) -> tuple[Any, dict, dict]:
    """The default `train_specialist` call of the supports table on one seed: `(adapter, history, truth)`. Also run
    under `torchrun` by `latents_processes.py`."""
    obs, tasks, truth = synthetic.within_step_latents(n=n, n_tasks=2, block_size=block_size, overlap=overlap,
                                                      n_irrelevant=4, obs_dim=32, seed=seed)
    torch.manual_seed(seed)
    cfg = SpecialistConfig(d_in=32, d_latent=10, n_tasks=2, task_dims=truth["task_dims"],
                           encoder_widths=[128, 128], decoder_widths=[128, 128])
    adapter = SpecialistAdapter(cfg)
    history = train_specialist(adapter, obs, tasks, epochs=epochs, seed=seed, progress=False)
    return adapter, history, truth


def supports_table(seeds: range, n: int, epochs: int | None, block_size: int, overlap: int) -> None:
    """The default `train_specialist` call per seed: the support per task against the true one, and the lambda."""
    print(f"Supports of the default call (sparsity='auto'), n={n}, "
          f"{'default schedule' if epochs is None else f'epochs={epochs}'}, block {block_size}, overlap "
          f"{overlap}, seeds {seeds.start}..{seeds.stop - 1}")
    exact = 0
    for seed in seeds:
        start = time.perf_counter()
        adapter, history, truth = default_call(seed, n, epochs, block_size, overlap)
        size = adapter.task_support_.sum(1)
        ok = all(size[i] == truth["relevant"][i].sum() for i in range(2))
        exact += ok
        print(f"  seed {seed}: support {size.tolist()} (true {truth['relevant'].sum(1).tolist()}), lambda "
              f"{history.get('selected_sparsity'):.3g}, {'exact' if ok else 'NOT exact'}"
              f"{', trained again (supports had not settled)' if history.get('settle_retries') else ''}"
              f"{'' if history['settled'] else ', NOT settled'}, "
              f"{time.perf_counter() - start:.0f} s, schedule {_schedule(history['args'])}")
    print(f"  exact on {exact}/{len(seeds)} seeds")


def readout_seed(seed: int, n: int, epochs: int) -> dict[str, dict[str, float]]:
    """Sequence vs step readout on `synthetic.collider_step_latents`: 6 steps, 2 tasks that each sum a nonlinear
    function of one latent over the steps serving them, every step seeing the others faintly (context 0.1)."""
    obs, tasks, truth = synthetic.collider_step_latents(n=n, T=6, context=0.1, seed=seed)
    widths = [128, 128]
    out = {}
    for readout in ("sequence", "step"):
        adapter = SpecialistAdapter(SpecialistConfig(d_in=obs.shape[-1], d_latent=8, n_tasks=2, encoder_widths=widths,
                                                     decoder_widths=widths, task_readout=readout))
        history = train_specialist(adapter, obs, tasks, truth["step_tasks"], epochs=epochs, seed=seed, progress=False)
        scores = []
        for i in range(2):
            rows = truth["step_tasks"][:, i]
            h = torch.as_tensor(obs[:, rows].reshape(-1, obs.shape[-1]), dtype=torch.float32)
            latents = truth["latents"][:, rows].reshape(-1, truth["latents"].shape[-1])
            scores.append(block_r2(adapter.task_latents(h, task=i).detach().numpy(), latents[:, truth["relevant"][i]],
                                   latents[:, truth["irrelevant"]], seed=seed))
        out[readout] = {"r2_relevant": float(np.mean([s["r2_relevant"] for s in scores])),
                        "r2_irrelevant": float(np.mean([s["r2_irrelevant"] for s in scores])),
                        "task_loss": float(np.mean([history["final"][f"task_{i}"] for i in range(2)])),
                        "support": float(adapter.task_support_.sum(1).mean())}
    return out


def throughput(device: str, dtype: torch.dtype, d_in: int, d_latent: int, batch: int, rounds: int,
               widths: list[int] | None = None) -> tuple[float, float]:
    """Training steps/s of the adapter and of an L1 SAE of the same latent width, interleaved, same batch."""
    torch.manual_seed(0)
    shape = {} if widths is None else {"encoder_widths": widths, "decoder_widths": widths}
    adapter = SpecialistAdapter(SpecialistConfig(d_in=d_in, d_latent=d_latent, n_tasks=2, sparsity=0.01, **shape)).to(device)
    sae = SparseAutoencoder(d_in, d_latent).to(device)
    x = torch.randn(batch, d_in, device=device)
    y = torch.randn(batch, 2, device=device)
    m = torch.ones(batch, 2, dtype=torch.bool, device=device)
    opt_a = torch.optim.Adam(adapter.parameters(), lr=1e-3, fused=True)  # as `train_specialist` runs it
    opt_s = torch.optim.Adam(sae.parameters(), lr=1e-3, fused=True)
    autocast = torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32)

    def step_adapter():
        with autocast:
            loss = adapter.loss_terms(x, y, m, 0.01)["loss"]
        opt_a.zero_grad()
        loss.backward()
        opt_a.step()

    def step_sae():
        with autocast:
            loss = sae.loss(x, 0.05)
        opt_s.zero_grad()
        loss.backward()
        opt_s.step()

    timings = {"adapter": [], "sae": []}
    for _ in range(3):
        step_adapter()
        step_sae()
    for _ in range(rounds):
        for name, fn in (("adapter", step_adapter), ("sae", step_sae)):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(10):
                fn()
            if device == "cuda":
                torch.cuda.synchronize()
            timings[name].append((time.perf_counter() - start) / 10)
    return 1 / statistics.median(timings["adapter"]), 1 / statistics.median(timings["sae"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of every model; default: ours on train_specialist's default schedule "
                             "(800 steps, 1-100 passes), the baselines 100")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--skip-quality", action="store_true", help="only the throughput part")
    parser.add_argument("--first-seed", type=int, default=100, help="first evaluation seed (0-9 are development)")
    parser.add_argument("--readout-seeds", type=int, default=3, help="seeds of the sequence-vs-step readout table")
    parser.add_argument("--block-size", type=int, default=2, help="relevant latents per task")
    parser.add_argument("--overlap", type=int, default=0,
                        help="overlapping supports: latents each task shares with the next task's block (e.g. "
                             "--block-size 3 --overlap 1: each task reads two latents of its own and one it shares)")
    parser.add_argument("--supports-only", action="store_true",
                        help="only ours (the default train_specialist call): the support per task and seed, exact or not")
    args = parser.parse_args()
    if args.supports_only:
        supports_table(range(args.first_seed, args.first_seed + args.seeds), args.n, args.epochs, args.block_size,
                       args.overlap)
        return
    if not args.skip_quality:
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        results = [run_seed(seed, args.n, args.epochs, args.block_size, args.overlap) for seed in seeds]
        methods = list(results[0])
        print(f"\nWithin-step latents, n={args.n}, evaluation seeds {seeds.start}..{seeds.stop - 1}, true block size "
              f"{args.block_size} per task" + (f", {args.overlap} latent(s) shared by the two tasks" if args.overlap else ""))
        header = f"{'method':24s} | {'latents/r2_relevant':>20s} | {'latents/r2_irrelevant':>22s} | {'support/task':>12s} | exact support"
        print(header)
        print("-" * len(header))
        for m in methods:
            rel = [r[m]["r2_relevant"] for r in results]
            irr = [r[m]["r2_irrelevant"] for r in results]
            sup = [r[m]["support"] for r in results]
            exact = [r[m]["exact"] for r in results]
            exact_text = "-" if np.isnan(exact[0]) else f"{int(np.nansum(exact))}/{len(exact)} seeds"
            print(f"{m:24s} | {np.mean(rel):11.3f} ± {np.std(rel):.3f} | {np.mean(irr):13.3f} ± {np.std(irr):.3f} | "
                  f"{np.mean(sup):12.2f} | {exact_text}")
        ours = [r["ours (l1, auto)"]["seconds"] for r in results]
        print(f"ours: {np.mean(ours):.1f} s per fit (auto lambda: 6 models); generalist: "
              f"{np.mean([r['generalist (no l1)']['seconds'] for r in results]):.1f} s")
    if not args.skip_quality and args.readout_seeds:
        results = [readout_seed(seed, 2000, 40) for seed in range(args.first_seed, args.first_seed + args.readout_seeds)]
        print(f"\nTasks as colliders over steps (collider_step_latents, n=2000 sequences of 6 steps, context 0.1, "
              f"{args.readout_seeds} seeds): the task readout")
        header = f"{'readout':10s} | {'latents/r2_relevant':>20s} | {'latents/r2_irrelevant':>22s} | {'held-out task loss':>18s} | support/task"
        print(header)
        print("-" * len(header))
        for readout in ("sequence", "step"):
            rel, irr, loss, sup = ([r[readout][key] for r in results] for key in ("r2_relevant", "r2_irrelevant", "task_loss", "support"))
            print(f"{readout:10s} | {np.mean(rel):11.3f} ± {np.std(rel):.3f} | {np.mean(irr):13.3f} ± {np.std(irr):.3f} | "
                  f"{np.mean(loss):9.3f} ± {np.std(loss):.3f} | {np.mean(sup):.2f}")
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device == "cuda" else "float32"))
    print(f"\nTraining-step throughput ({args.device}, {dtype}, batch 4096, median of interleaved rounds)")
    sizes = ((576, 64), (4096, 256)) if args.device == "cuda" else ((576, 64),)
    for d_in, d_latent in sizes:
        for label, widths in (("default widths [256, 256]", None), ("linear encoder/decoder", [])):
            a, s = throughput(args.device, dtype, d_in, d_latent, 4096, rounds=5, widths=widths)
            print(f"  d_in={d_in:5d} d_latent={d_latent:4d}, adapter with {label:26s}: {a:8.1f} steps/s | "
                  f"L1 SAE (width {d_latent}) {s:8.1f} steps/s | adapter cost = {s / a:.2f}x the SAE")


if __name__ == "__main__":
    main()
