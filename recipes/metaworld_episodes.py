"""Meta-World: episodes made of interleaved segments of scripted expert policies; discover which steps serve which
task from the episodes alone and score it against the planted schedule.

Usage:
    pip install metaworld packaging          # MuJoCo comes inside; no download at run time
    python recipes/metaworld_episodes.py --recipe recipes/metaworld.yaml

Each task is one Meta-World environment (e.g. reach, push, drawer-close). An episode is `N` segments of
`segment_length` steps; each segment acts in the environment of the task it serves (its scripted expert policy
with Gaussian action noise), or, when it serves none, in a distractor environment. One step is `env_steps` simulator
steps and its observation is that environment's 39-dim state afterwards. Every environment starts from a random
task variation each episode. A task's outcome is its environment's final hand and object position (a vector), so it
depends only on that task's own segments. The schedule is the same for all episodes (the steps are aligned across
sequences, as Algorithm 1 needs), drawn at random with every task touching at least two segments.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def one_task_schedule(n_segments: int, n_tasks: int, rng: np.random.Generator, per_task: int = 2) -> np.ndarray:
    """`(N, M)` bool: each segment serves at most one task (a robot acts in one environment at a time)."""
    if n_tasks * per_task > n_segments:
        raise ValueError(f"{n_tasks} tasks x {per_task} segments do not fit in {n_segments} segments.")
    order = rng.permutation(n_segments)
    schedule = np.zeros((n_segments, n_tasks), dtype=bool)
    for i in range(n_tasks):
        schedule[order[i * per_task : (i + 1) * per_task], i] = True
    return schedule


def build_episodes(tasks: list[str], distractor: str, n: int, n_segments: int, segment_length: int, env_steps: int,
                   action_noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Roll out `n` episodes; returns states `(n, T, 39)`, outcomes `(n, M, 7)` and the truth."""
    import metaworld
    from metaworld.policies import ENV_POLICY_MAP

    rng = np.random.default_rng(seed)
    schedule = one_task_schedule(n_segments, len(tasks), rng)
    envs = {}
    for name in tasks + [distractor]:
        benchmark = metaworld.MT1(name, seed=seed)
        env = benchmark.train_classes[name]()
        envs[name] = (env, benchmark.train_tasks, ENV_POLICY_MAP[name]())
    T = n_segments * segment_length
    states = np.zeros((n, T, 39), dtype=np.float32)
    outcomes = np.zeros((n, len(tasks), 7), dtype=np.float32)
    successes = np.zeros((n, len(tasks)), dtype=bool)
    for episode in range(n):
        observations = {}
        for name, (env, variations, _) in envs.items():
            env.set_task(variations[int(rng.integers(len(variations)))])
            observations[name], _ = env.reset(seed=int(rng.integers(2**31)))
        for k in range(n_segments):
            served = np.flatnonzero(schedule[k])
            name = tasks[served[0]] if len(served) else distractor
            env, _, policy = envs[name]
            for s in range(segment_length):
                for _ in range(env_steps):
                    action = policy.get_action(observations[name])
                    action = np.clip(action + action_noise * rng.normal(size=action.shape), -1, 1)
                    observations[name], _, _, _, info = env.step(action)
                    if name in tasks and info.get("success"):
                        successes[episode, tasks.index(name)] = True
                states[episode, k * segment_length + s] = observations[name]
        for i, name in enumerate(tasks):
            outcomes[episode, i] = observations[name][:7]  # hand xyz, gripper, object xyz
    truth = {"step_tasks": np.repeat(schedule, segment_length, axis=0), "segment_tasks": schedule,
             "success_rate": successes.mean(0).tolist()}
    return states, outcomes, truth


def main() -> None:
    import yaml

    from hf_specialist import TaskStructure
    from hf_specialist.metrics import structure_scores
    from hf_specialist.plots import step_task_heatmap

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes/metaworld.yaml")
    parser.add_argument("--seeds", type=int, default=None, help="override the recipe's number of schedules")
    args = parser.parse_args()
    recipe = yaml.safe_load(Path(args.recipe).read_text())
    data, discover = recipe["episodes"], recipe["discover"]
    seeds = args.seeds or recipe.get("seeds", 3)
    out = Path(recipe.get("output", "outputs/metaworld"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in range(seeds):
        start = time.perf_counter()
        states, outcomes, truth = build_episodes(seed=seed, **data)
        rollout_s = time.perf_counter() - start
        start = time.perf_counter()
        structure = TaskStructure(segment_length=data["segment_length"], seed=seed, **discover).fit(states, outcomes)
        fit_s = time.perf_counter() - start
        scores = structure_scores(structure.step_tasks_, truth["step_tasks"])
        rows.append({**scores, "rollout_s": rollout_s, "fit_s": fit_s, "success_rate": truth["success_rate"]})
        step_task_heatmap(structure.step_tasks_, out / f"structure_seed{seed}.png", truth=truth["step_tasks"],
                          task_names=data["tasks"], title=f"Meta-World, schedule {seed}")
        print(f"schedule {seed}: F1 {scores['f1']:.3f}  accuracy {scores['accuracy']:.3f}  MCC {scores['mcc']:.3f}  "
              f"({data['n']} episodes in {rollout_s:.0f} s, structure fit {fit_s:.1f} s; expert success per task "
              f"{np.round(truth['success_rate'], 2).tolist()})")
    f1 = [r["f1"] for r in rows]
    print(f"\nMeta-World structure F1 over {seeds} schedules: {np.mean(f1):.3f} ± {np.std(f1):.3f}")
    (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
