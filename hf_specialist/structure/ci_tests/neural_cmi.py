"""InfoNCE conditional mutual information with negatives shuffled within neighbourhoods of Z."""

from __future__ import annotations

import numpy as np

from ..._validation import Interval, validate_params
from ._base import CITest
from ._permutation import neighbourhood_cells, permute_within_cells


class NeuralCMI(CITest):
    """InfoNCE estimate of `I(X; Y | Z)` with negatives shuffled within neighbourhoods of Z.

    A critic `f(x, y, z)` (a small MLP, one per test, all tests of a batch trained together as one batched
    network) learns to tell the observed `y` from `y` values of rows with similar `z`. The statistic is the
    InfoNCE lower bound on held-out rows; the p-value compares it with the same statistic when the held-out `x`
    is shuffled within neighbourhoods of `z` (a draw from the null `X ⫫ Y | Z`) while `y` and its negatives stay
    as observed, so what the critic gains from the y-z relation (cells are never perfectly local in several
    dims) is in the null too. Shuffling `y` instead gave false positives in a 12-dim Z.

    Args:
        hidden (`int`, *optional*, defaults to 64): critic width.
        n_negatives (`int`, *optional*, defaults to 16): locally shuffled negatives per row.
        epochs (`int`, *optional*, defaults to 30): passes over the training rows.
        n_permutations (`int`, *optional*, defaults to 50): null draws on held-out rows.
        device (`str`, *optional*): "cuda" when available, else "cpu".
    """

    name = "neural_cmi"
    min_samples = 50

    def __init__(self, *, hidden: int = 64, n_negatives: int = 16, epochs: int = 30, lr: float = 3e-3,
                 batch_size: int = 512, n_permutations: int = 50, holdout: float = 0.3, batch_tests: int = 64,
                 device: str | None = None, **kwargs):
        super().__init__(n_permutations=n_permutations, **kwargs)
        validate_params("NeuralCMI", {"hidden": hidden, "n_negatives": n_negatives, "epochs": epochs, "lr": lr,
                                      "holdout": holdout},
                        {"hidden": [Interval(int, 1, None)], "n_negatives": [Interval(int, 1, None)],
                         "epochs": [Interval(int, 1, None)], "lr": [Interval(float, 0, None, "neither")],
                         "holdout": [Interval(float, 0, 1, "neither")]})
        self.hidden, self.n_negatives, self.epochs, self.lr = hidden, n_negatives, epochs, lr
        self.batch_size, self.holdout, self.batch_tests, self.device = batch_size, holdout, batch_tests, device

    def statistic(self, data: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Per test, the critic's held-out estimate of the conditional mutual information I(x; y | z)."""
        return self._statistic_and_null(data, x, y, z)[0]

    def statistic_and_null(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The held-out InfoNCE bound and its null draws from one trained critic per test."""
        return self._statistic_and_null(self.data_, x, y, z)

    def _statistic_and_null(self, data, x, y, z) -> tuple[np.ndarray, np.ndarray]:
        stats_out, nulls = [], []
        for start in range(0, len(x), self.batch_tests):
            sl = slice(start, start + self.batch_tests)
            s, null = self._run_batch(data, x[sl], y[sl], z[sl])
            stats_out.append(s)
            nulls.append(null)
        return np.concatenate(stats_out), np.concatenate(nulls)

    def _run_batch(self, data, x, y, z):
        import torch

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        gen = torch.Generator().manual_seed(int(self.rng_.integers(2**31)))
        n = data.shape[0]
        n_test = max(int(n * self.holdout), 10)
        order = self.rng_.permutation(n)
        train_rows, test_rows = order[n_test:], order[:n_test]
        B = len(x)

        def gather(rows, cols):
            return torch.as_tensor(data[rows][:, cols].transpose(1, 0, 2), dtype=torch.float32, device=device)

        leaf = max(self.leaf_size, 2 * self.n_negatives)
        cells = {
            name: [neighbourhood_cells(data[rows][:, z[b]], leaf) for b in range(B)]
            for name, rows in (("train", train_rows), ("test", test_rows))
        }

        def neg_index(split, count):
            """(B, count, rows) indices into the split's rows, shuffled within z-neighbourhoods of each test."""
            out = np.stack([permute_within_cells(cells[split][b], self.rng_, size=count) for b in range(B)])
            return torch.as_tensor(out, device=device)

        xs = {name: gather(rows, x) for name, rows in (("train", train_rows), ("test", test_rows))}
        ys = {name: gather(rows, y) for name, rows in (("train", train_rows), ("test", test_rows))}
        zs = {name: gather(rows, z) for name, rows in (("train", train_rows), ("test", test_rows))}
        d_in = x.shape[1] + y.shape[1] + z.shape[1]
        h = self.hidden
        w1 = (torch.randn(B, d_in, h, generator=gen) / d_in**0.5).to(device).requires_grad_()
        b1 = torch.zeros(B, 1, h, device=device, requires_grad=True)
        w2 = (torch.randn(B, h, h, generator=gen) / h**0.5).to(device).requires_grad_()
        b2 = torch.zeros(B, 1, h, device=device, requires_grad=True)
        w3 = (torch.randn(B, h, 1, generator=gen) / h**0.5).to(device).requires_grad_()
        params = [w1, b1, w2, b2, w3]

        def critic(xv, yv, zv):  # (B, m, *) -> (B, m)
            inp = torch.cat([xv, yv, zv], -1)
            hid = torch.nn.functional.silu(torch.baddbmm(b1, inp, w1))
            hid = torch.nn.functional.silu(torch.baddbmm(b2, hid, w2))
            return torch.bmm(hid, w3).squeeze(-1)

        def infonce(xv, yv, zv, y_pool, neg):
            """Mean InfoNCE bound: `neg` (B, K, m) indexes rows of `y_pool` (B, N, ky) used as negatives."""
            pos = critic(xv, yv, zv)
            negs = [
                critic(xv, torch.gather(y_pool, 1, neg[:, k, :, None].expand(-1, -1, y_pool.shape[-1])), zv)
                for k in range(neg.shape[1])
            ]
            scores = torch.stack([pos] + negs, -1)  # (B, m, K+1)
            return (scores[..., 0] - torch.logsumexp(scores, -1) + np.log(scores.shape[-1])).mean(-1)

        optim = torch.optim.Adam(params, lr=self.lr)
        m = len(train_rows)
        for _ in range(self.epochs):
            negatives = neg_index("train", self.n_negatives)  # fresh local shuffles every epoch
            batch_order = torch.randperm(m, generator=gen).to(device)
            for start in range(0, m, self.batch_size):
                rows = batch_order[start : start + self.batch_size]
                bound = infonce(xs["train"][:, rows], ys["train"][:, rows], zs["train"][:, rows], ys["train"],
                                negatives[:, :, rows])
                loss = -bound.sum()
                optim.zero_grad()
                loss.backward()
                optim.step()
        with torch.no_grad():
            test_neg = neg_index("test", self.n_negatives)
            observed = infonce(xs["test"], ys["test"], zs["test"], ys["test"], test_neg).cpu().numpy()
            null = np.empty((B, self.n_permutations))
            for r in range(self.n_permutations):
                # x shuffled within z-cells, y and its negatives as observed: whatever the critic gains from the
                # y-z relation (cells are never perfectly local) is in the null draws too
                perm = neg_index("test", 1)[:, 0]
                x_null = torch.gather(xs["test"], 1, perm[:, :, None].expand(-1, -1, xs["test"].shape[-1]))
                null[:, r] = infonce(x_null, ys["test"], zs["test"], ys["test"], test_neg).cpu().numpy()
        return observed, null
