"""Development seed only: support size of each lambda of the default lambda path along training."""
import sys, time, numpy as np, collections
from hf_specialist import synthetic
from hf_specialist.adapter.config import SpecialistConfig
from hf_specialist.adapter.model import SpecialistAdapter
from hf_specialist.adapter.lambda_path import train_specialist
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
states, tasks, truth = synthetic.within_step_latents(n=10_000, obs_dim=24, seed=seed)
adapter = SpecialistAdapter(SpecialistConfig(d_in=24, n_tasks=2, task_dims=truth["task_dims"]))
t = time.perf_counter()
h = train_specialist(adapter, states, tasks, progress=False, seed=seed, settle_retries=0)  # the default schedule only
print("seconds", time.perf_counter() - t, "selected", h["selected_sparsity"])
by = collections.defaultdict(list)
for r in h["steps"]:
    by[r["sparsity"]].append((r["step"], r["loss"], r.get("adapter/support_size")))
keys = list(by)
print("keys", list(h["steps"][0].keys()))
for lam, rows in by.items():
    rows = np.array(rows, dtype=float)
    # steps per epoch 32: print every ~10 epochs
    sel = rows[::13]
    print(f"lambda {lam:.4f}: " + " ".join(f"{int(s)}:{l:.3f}/{int(sz)}" for s, l, sz in sel))
for p in h["path"]:
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items() if k.startswith("task_") or k in ("sparsity", "within_tolerance", "adapter/support_size")})
