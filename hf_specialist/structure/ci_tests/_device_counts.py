"""Frenzel-Pompe neighbour counts by brute force in torch, for an accelerator.

On a GPU the `n x n` max-norm distances of a few columns are cheap, so the k-th neighbour radius in the joint space
and the counts in the `(x, z)`, `(y, z)` and `z` spaces come from one pass over row chunks of the distance matrix,
in float64 so that they equal the CPU paths (k-d tree radius, bitset or k-d tree counts).
"""

from __future__ import annotations

import numpy as np

CHUNK_BYTES = 1 << 28


def neighbour_counts(x: np.ndarray, y: np.ndarray, z: np.ndarray, k: int, device: str,
                     rows: np.ndarray | None = None) -> list[np.ndarray]:
    """`[n_xz, n_yz, n_z]` (or `[n_x, n_y]` without z): per row (of `rows`, by default every row), the other rows
    strictly closer than its k-th neighbour in the joint space `(x, y, z)`, counted in each subspace (max norm).
    Arrays are `(n, columns)`."""
    import torch

    values = torch.as_tensor(np.concatenate([x, y, z], axis=1), dtype=torch.float64, device=device)
    queries = values if rows is None else values[torch.as_tensor(rows, device=device)]
    n, width = values.shape
    kx, ky = x.shape[1], y.shape[1]
    parts = {"x": slice(0, kx), "y": slice(kx, kx + ky), "z": slice(kx + ky, width)}
    spaces = [("x", "z"), ("y", "z"), ("z",)] if z.shape[1] else [("x",), ("y",)]
    counts = [torch.empty(len(queries), dtype=torch.int64, device=device) for _ in spaces]
    chunk = max(1, CHUNK_BYTES // (8 * n * width))
    for start in range(0, len(queries), chunk):
        centres = queries[start : start + chunk]
        gaps = (centres[:, None, :] - values[None, :, :]).abs()  # (chunk, n, width)
        by_part = {name: gaps[..., s].amax(-1) for name, s in parts.items() if s.stop > s.start}
        joint = torch.stack(list(by_part.values())).amax(0)
        # the row itself is at distance 0, so its k-th neighbour is the (k + 1)-th smallest distance
        radius = joint.kthvalue(k + 1, dim=1).values * (1 - 1e-10)
        for out, space in zip(counts, spaces):
            distance = torch.stack([by_part[name] for name in space]).amax(0)
            out[start : start + chunk] = (distance < radius[:, None]).sum(1) - 1
    return [c.cpu().numpy().astype(np.float64) for c in counts]
