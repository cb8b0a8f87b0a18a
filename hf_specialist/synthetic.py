"""Ground-truth generators. Each returns `(states, tasks, truth)`.

- `collider_sequences`: the paper's sequences. Per step a latent state `s_t`, an action `a_t = pi_t(s_t, noise)`,
  a transition `s_{t+1} = F_t(s_t, a_t, noise)` (or fresh noise at a cut), and tasks as colliders of the actions of
  the steps that serve them. Linear-Gaussian by default (the paper's synthetic study); `nonlinear=True` uses
  nonlinear policies, transitions and task maps; `state_dim > 1` gives vector states observed through a random
  invertible nonlinear map.
- `within_step_latents`: one step's latent with per-task blocks of relevant dims plus irrelevant dims, observed
  through a random invertible MLP, with nonlinear task outcomes (Theorem 2).
- `collider_step_latents`: sequences of such steps whose tasks are colliders over the steps that serve them
  (Theorems 1 and 2 together), optionally with context leaking between steps.
- `planted_text`: texts of sentences with a planted step x task structure, for real language models.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._validation import InputError, Interval, validate_params


def _signed_uniform(rng: np.random.Generator, size: Any, low: float = 0.5, high: float = 1.5) -> np.ndarray:
    return rng.uniform(low, high, size=size) * rng.choice([-1.0, 1.0], size=size)


def random_assignment(
    n_segments: int,
    n_tasks: int,
    rng: np.random.Generator,
    min_segments: int = 2,
    max_segments: int | None = None,
) -> np.ndarray:
    """A random interleaved `(n_segments, n_tasks)` bool assignment; each task touches `min..max` segments.

    Segments may serve several tasks or none.
    """
    if max_segments is None:
        max_segments = max(min_segments, min(n_segments, math.ceil(n_segments / max(n_tasks, 1)) + 1))
    if min_segments > n_segments:
        raise InputError(f"`min_segments_per_task`={min_segments} exceeds the number of segments {n_segments}.")
    assignment = np.zeros((n_segments, n_tasks), dtype=bool)
    for task in range(n_tasks):
        count = int(rng.integers(min_segments, min(max_segments, n_segments) + 1))
        assignment[rng.choice(n_segments, size=count, replace=False), task] = True
    return assignment


def _invertible_mlp(dim_in: int, dim_out: int, rng: np.random.Generator, layers: int = 2):
    """A random injective map R^dim_in -> R^dim_out: full-rank linear maps and leaky-ReLU, returned as a function."""
    weights = []
    width = dim_in
    for layer in range(layers):
        out = dim_out if layer == layers - 1 else max(dim_out, dim_in)
        rank = min(width, out)
        left, _ = np.linalg.qr(rng.normal(size=(width, rank)))
        right, _ = np.linalg.qr(rng.normal(size=(out, rank)))
        # well-conditioned: singular values in [0.5, 1.5], so the map is injective with a stable inverse
        weights.append(left @ np.diag(rng.uniform(0.5, 1.5, size=rank)) @ right.T)
        width = out

    def apply(x: np.ndarray) -> np.ndarray:
        for i, w in enumerate(weights):
            x = x @ w
            if i < len(weights) - 1:
                x = np.where(x > 0, x, 0.2 * x)
        return x

    return apply


def random_runs(T: int, M: int, rng: np.random.Generator | int | None = 0, min_run: int = 1, max_run: int = 4,
                runs_per_task: tuple[int, int] = (1, 2)) -> np.ndarray:
    """A `(T, M)` bool step x task assignment where each task is served by 1-2 runs of `min_run..max_run`
    consecutive steps at random offsets (runs of different tasks may overlap)."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    out = np.zeros((T, M), dtype=bool)
    for i in range(M):
        for _ in range(int(rng.integers(runs_per_task[0], runs_per_task[1] + 1))):
            length = int(rng.integers(min_run, min(max_run, T) + 1))
            start = int(rng.integers(0, T - length + 1))
            out[start : start + length, i] = True
    return out


def collider_sequences(
    n: int = 10_000,
    T: int = 20,
    M: int = 4,
    *,
    segment_length: int = 2,
    min_segments_per_task: int = 2,
    max_segments_per_task: int | None = None,
    n_cuts: int = 0,
    temporal: bool = True,
    nonlinear: bool = False,
    state_dim: int = 1,
    obs_dim: int | None = None,
    mixing: str = "nonlinear",
    task_noise: float = 0.5,
    outcome: str = "sum",
    assignment: np.ndarray | None = None,
    carry_actions: bool = True,
    seed: int | None = 0,
    sample_seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Sequences whose tasks are colliders of the actions of interleaved segments.

    Args:
        n (`int`): sequences (samples). T (`int`): steps. M (`int`): tasks.
        segment_length (`int`, *optional*, defaults to 2): steps per segment; `T` must be a multiple.
        min_segments_per_task, max_segments_per_task (`int`, *optional*): segments each task touches.
        n_cuts (`int`, *optional*, defaults to 0): places where the chain restarts from fresh noise.
        temporal (`bool`, *optional*, defaults to `True`): `False` makes every step fresh noise (no dependence
            along time).
        nonlinear (`bool`, *optional*, defaults to `False`): nonlinear policies, transitions and task maps.
        state_dim (`int`, *optional*, defaults to 1): latent state dims per step.
        obs_dim (`int`, *optional*): when set (or `state_dim > 1`), steps are observed through a random invertible
            nonlinear map into `obs_dim` dims (defaults to `state_dim`).
        task_noise (`float`, *optional*, defaults to 0.5): std of the noise added to each task's outcome.
        outcome (`str`, *optional*, defaults to `"sum"`): how a task combines the (weighted) actions of the steps
            serving it: `"sum"`, `"max"` (the largest, so each step matters only where it is the largest), or
            `"threshold"` (1 where the noisy sum is above 0, else 0: a binary outcome), or `"all_above"` (1 where
            every serving step's noisy contribution is above 0: an AND of the steps).
        mixing (`str`, *optional*, defaults to `"nonlinear"`): the observation map for vector states:
            `"nonlinear"` (random invertible leaky-ReLU MLP), `"linear"` (random full-rank matrix) or `"identity"`.
        assignment (`np.ndarray`, *optional*): a fixed `(T / segment_length, M)` bool segment x task assignment
            (e.g. `random_runs`) instead of a random one.
        carry_actions (`bool`, *optional*, defaults to `True`): whether step `t`'s action enters state `t+1` (the
            paper's model; a run serving a task then also lights the step after it). `False`: states follow their
            own chain and each step's action leaves only through the tasks.
        seed (`int`, *optional*, defaults to 0): random seed.
        sample_seed (`int`, *optional*): draw the sequences from this seed and everything else (structure,
            weights, observation map) from `seed`, so that calls with one `seed` and different `sample_seed`s are
            batches of one stream (each batch standardises its states with its own moments).

    Returns:
        states `(n, T)` (or `(n, T, obs_dim)`), tasks `(n, M)`, and `truth` with `step_tasks (T, M)`,
        `segment_tasks (N, M)`, `segment_length`, `cuts` (steps after which the chain restarts) and `actions`.
    """
    validate_params(
        "collider_sequences",
        {"n": n, "T": T, "M": M, "segment_length": segment_length, "state_dim": state_dim, "n_cuts": n_cuts},
        {"n": [Interval(int, 1, None)], "T": [Interval(int, 2, None)], "M": [Interval(int, 1, None)],
         "segment_length": [Interval(int, 1, None)], "state_dim": [Interval(int, 1, None)],
         "n_cuts": [Interval(int, 0, None)]},
    )
    if T % segment_length:
        raise InputError(f"`T`={T} must be a multiple of `segment_length`={segment_length}.")
    if outcome not in ("sum", "max", "threshold", "all_above"):
        raise InputError(f"`outcome` must be 'sum', 'max', 'threshold' or 'all_above', got {outcome!r}.")
    rng = np.random.default_rng(seed)
    n_segments = T // segment_length
    segment_tasks = random_assignment(n_segments, M, rng, min_segments_per_task, max_segments_per_task)
    if assignment is not None:
        segment_tasks = np.asarray(assignment, dtype=bool)
        if segment_tasks.shape != (n_segments, M):
            raise InputError(f"`assignment` must have shape {(n_segments, M)}, got {segment_tasks.shape}.")
    step_tasks = np.repeat(segment_tasks, segment_length, axis=0)
    cuts = sorted(rng.choice(np.arange(1, T), size=min(n_cuts, T - 1), replace=False).tolist()) if n_cuts else []
    d = state_dim
    policy = _signed_uniform(rng, (T, d)) / math.sqrt(d)
    carry = _signed_uniform(rng, (T, d, d)) / math.sqrt(d) * 0.8
    act_gain = _signed_uniform(rng, (T, d)) * (1.0 if carry_actions else 0.0)
    task_weights = _signed_uniform(rng, (T, M))
    mix_rng = np.random.default_rng(rng.integers(2**63)) if sample_seed is not None else None
    if sample_seed is not None:
        rng = np.random.default_rng(sample_seed)

    states = np.empty((n, T, d))
    actions = np.empty((n, T))
    s = rng.normal(size=(n, d))
    for t in range(T):
        states[:, t] = s
        drive = s @ policy[t]
        a = (np.tanh(1.5 * drive) if nonlinear else drive) + 0.5 * rng.normal(size=n)
        actions[:, t] = a
        if t == T - 1:
            break
        if not temporal or (t + 1) in cuts:
            s = rng.normal(size=(n, d))
            continue
        carried = np.einsum("nd,de->ne", s, carry[t])
        s = (np.tanh(carried) if nonlinear else carried) + act_gain[t] * a[:, None] + rng.normal(size=(n, d))
        s = (s - s.mean(0)) / s.std(0)
    shaped = np.tanh(1.5 * actions) if nonlinear else actions
    if outcome == "max":
        contributions = np.where(step_tasks[None], shaped[:, :, None] * task_weights[None], -np.inf)  # (n, T, M)
        largest = np.where(step_tasks.any(0), contributions.max(1), 0.0)  # a task no step serves is pure noise
        tasks = largest + task_noise * rng.normal(size=(n, M))
    elif outcome == "all_above":  # 1 where every serving step's (noisy) contribution is above 0
        noisy = shaped[:, :, None] * task_weights[None] + task_noise * rng.normal(size=(n, T, M))
        tasks = np.where(step_tasks[None], noisy > 0, True).all(1).astype(float)
        tasks[:, ~step_tasks.any(0)] = rng.integers(0, 2, size=(n, int((~step_tasks.any(0)).sum())))
    else:
        tasks = np.einsum("nt,tm,tm->nm", shaped, step_tasks, task_weights) + task_noise * rng.normal(size=(n, M))
        if outcome == "threshold":
            tasks = (tasks > 0).astype(float)
    if mixing not in ("nonlinear", "linear", "identity"):
        raise InputError(f"`mixing` must be 'nonlinear', 'linear' or 'identity', got {mixing!r}.")
    if (obs_dim is not None or d > 1) and mixing != "identity":
        mix = _invertible_mlp(d, obs_dim or d, mix_rng or rng, layers=2 if mixing == "nonlinear" else 1)
        states = mix(states.reshape(n * T, d)).reshape(n, T, -1)
    elif d == 1:
        states = states[..., 0]
    truth = {
        "step_tasks": step_tasks,
        "segment_tasks": segment_tasks,
        "segment_length": segment_length,
        "cuts": cuts,
        "actions": actions,
    }
    return states, tasks, truth


def unlinked_collider_sequences(seed: int | None = 0, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """`collider_sequences` with the task links cut: the states of one draw and the tasks of an independent draw
    of the same generator (same structure, weights and observation map), so no step serves any task and every
    mark a method makes is false. `truth["step_tasks"]` and `truth["segment_tasks"]` are all False.

    Args:
        seed (`int`, *optional*, defaults to 0): random seed (the structure and both draws follow it).
        **kwargs: any other argument of `collider_sequences` except `sample_seed`.
    """
    if "sample_seed" in kwargs:
        raise InputError("`sample_seed` is set here: the states and the tasks come from two draws of `seed`.")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])  # a fresh structure and fresh draws
    states, _, truth = collider_sequences(seed=seed, sample_seed=2 * int(seed) + 10**9, **kwargs)
    _, tasks, _ = collider_sequences(seed=seed, sample_seed=2 * int(seed) + 10**9 + 1, **kwargs)
    truth = {**truth, "step_tasks": np.zeros_like(truth["step_tasks"]),
             "segment_tasks": np.zeros_like(truth["segment_tasks"])}
    return states, tasks, truth


def paper_linear_gaussian(n: int = 10_000, T: int = 20, M: int | None = None,
                          seed: int | None = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The paper's synthetic setting: linear-Gaussian collider sequences, `L = 2`, `M = max(1, round(T / 5))`."""
    return collider_sequences(n=n, T=T, M=M if M is not None else max(1, round(T / 5)), segment_length=2, seed=seed)


def within_step_latents(
    n: int = 5_000,
    *,
    n_tasks: int = 2,
    block_size: int = 2,
    overlap: int = 0,
    n_irrelevant: int = 4,
    obs_dim: int = 32,
    task_dim: int | None = None,
    task_noise: float = 0.05,
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One step's latent with per-task relevant blocks, seen through a random invertible nonlinear MLP.

    The latent `s` has `n_tasks` blocks of `block_size` dims (consecutive blocks share `overlap` dims) followed by
    `n_irrelevant` dims that no task uses. Observations `x = f(s)` in `obs_dim` dims; task `i` is a nonlinear
    function of its block only: with `task_dim=1` a scalar (many-to-one, so a sparse model may keep only what the
    task needs), with `task_dim=block_size` (the default) a vector given by a random invertible nonlinear map of the
    block plus noise, so the task identifies its whole block (the setting of Theorem 2).

    Returns:
        observations `(n, obs_dim)`, tasks `(n, n_tasks * task_dim)` (task by task), and `truth` with
        `latents (n, d_s)`, `relevant (n_tasks, d_s)` bool, `irrelevant (d_s,)` bool, `task_dims`.
    """
    if overlap >= block_size:
        raise InputError(f"`overlap`={overlap} must be smaller than `block_size`={block_size}.")
    rng = np.random.default_rng(seed)
    stride = block_size - overlap
    n_relevant = stride * (n_tasks - 1) + block_size
    d_s = n_relevant + n_irrelevant
    if obs_dim < d_s:
        raise InputError(f"`obs_dim`={obs_dim} must be at least the latent size {d_s} for an invertible map.")
    task_dim = block_size if task_dim is None else task_dim
    latents = rng.uniform(-2, 2, size=(n, d_s))
    relevant = np.zeros((n_tasks, d_s), dtype=bool)
    tasks = np.empty((n, n_tasks, task_dim))
    for i in range(n_tasks):
        block = np.arange(i * stride, i * stride + block_size)
        relevant[i, block] = True
        u = latents[:, block]
        if task_dim == 1:
            w = _signed_uniform(rng, block_size)
            value = (np.tanh(u @ w) + 0.5 * np.sin(u).sum(1))[:, None]  # non-separable, many-to-one
        else:
            value = _invertible_mlp(block_size, task_dim, rng)(np.tanh(u))  # injective in the block
        tasks[:, i] = value + task_noise * rng.normal(size=(n, task_dim))
    tasks = tasks.reshape(n, n_tasks * task_dim)
    irrelevant = ~relevant.any(0)
    observations = _invertible_mlp(d_s, obs_dim, rng, layers=3)(latents)
    return observations, tasks, {"latents": latents, "relevant": relevant, "irrelevant": irrelevant,
                                 "task_dims": [task_dim] * n_tasks}


def collider_step_latents(
    n: int = 2_000,
    T: int = 6,
    *,
    n_tasks: int = 2,
    block_size: int = 1,
    n_irrelevant: int = 3,
    obs_dim: int = 32,
    step_tasks: np.ndarray | None = None,
    context: float = 0.1,
    task_noise: float = 0.05,
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Sequences whose steps each hold per-task relevant and irrelevant latents; tasks are colliders over steps.

    Step `t` has a latent `s_t` (`n_tasks` blocks of `block_size` dims, then `n_irrelevant` dims), drawn
    independently per step and seen through one random invertible MLP shared by all steps. Task `i`'s outcome is a
    collider of the steps that serve it (`step_tasks[:, i]`): the sum over those steps of a nonlinear, injective
    function of the step's block `i`, plus noise. With `context > 0` each step's observation is computed from
    `s_t + context * mean_{t' != t} s_t'`, so it also carries the other steps' latents faintly, as attention does in
    text: a model predicting the outcome from one step alone is tempted to use that context.

    Returns:
        observations `(n, T, obs_dim)`, tasks `(n, n_tasks)`, and `truth` with `latents (n, T, d_s)`,
        `relevant (n_tasks, d_s)` bool, `irrelevant (d_s,)` bool, `step_tasks (T, n_tasks)` bool.
    """
    rng = np.random.default_rng(seed)
    d_s = n_tasks * block_size + n_irrelevant
    if obs_dim < d_s:
        raise InputError(f"`obs_dim`={obs_dim} must be at least the latent size {d_s} for an invertible map.")
    if step_tasks is None:
        step_tasks = np.zeros((T, n_tasks), dtype=bool)
        for i in range(n_tasks):
            step_tasks[rng.choice(T, size=max(2, T // n_tasks), replace=False), i] = True
    step_tasks = np.asarray(step_tasks, dtype=bool)
    if step_tasks.shape != (T, n_tasks):
        raise InputError(f"`step_tasks` must have shape {(T, n_tasks)}, got {step_tasks.shape}.")
    latents = rng.uniform(-2, 2, size=(n, T, d_s))
    relevant = np.zeros((n_tasks, d_s), dtype=bool)
    tasks = np.empty((n, n_tasks))
    for i in range(n_tasks):
        block = np.arange(i * block_size, (i + 1) * block_size)
        relevant[i, block] = True
        w = _signed_uniform(rng, block_size)
        contribution = np.tanh(0.6 * latents[..., block] @ w) + 0.3 * (latents[..., block] @ w)  # injective
        tasks[:, i] = (contribution * step_tasks[:, i]).sum(1) + task_noise * rng.normal(size=n)
    others = (latents.sum(1, keepdims=True) - latents) / max(T - 1, 1)
    mixed = latents + context * others
    observations = _invertible_mlp(d_s, obs_dim, rng, layers=3)(mixed.reshape(n * T, d_s)).reshape(n, T, obs_dim)
    return observations, tasks, {"latents": latents, "relevant": relevant, "irrelevant": ~relevant.any(0),
                                 "step_tasks": step_tasks}


_NAMES = ("Anna", "Omar", "Lena", "Kofi", "Mei", "Ravi", "Sara", "Tom", "Ines", "Yuki", "Pablo", "Zoe")
_COLOURS = ("red", "blue", "green", "yellow", "purple", "orange")
_OBJECTS = ("apples", "pears", "stones", "coins", "shells", "cards")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def planted_text(
    n: int = 2000,
    T: int = 8,
    M: int = 2,
    *,
    segment_length: int = 2,
    min_segments_per_task: int = 2,
    max_segments_per_task: int | None = None,
    assignment: np.ndarray | None = None,
    seed: int | None = 0,
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Texts of `T` sentences with a planted step x task structure.

    Every sentence states a quantity (1..9, as a word), plus task-irrelevant facts: a person's name, a colour and
    an hour. Task `i`'s outcome is the sum of the quantities stated in the sentences that serve it (a collider of
    those sentences' facts). Tasks interleave over segments of `segment_length` sentences; some sentences serve no
    task. Sentences are separated by ". " so `steps=". "` gives one step per sentence.

    Returns:
        texts (`list[str]`, n), tasks `(n, M)`, and `truth` with `step_tasks (T, M)`, `segment_tasks (N, M)`,
        `quantities (n, T)` (the relevant fact of each step), `irrelevant (n, T, k)` (the step's other facts:
        hour, then one-hot colour, name and object),
        `separator`.
    """
    if T % segment_length:
        raise InputError(f"`T`={T} must be a multiple of `segment_length`={segment_length}.")
    rng = np.random.default_rng(seed)
    n_segments = T // segment_length
    if assignment is None:
        assignment = random_assignment(n_segments, M, rng, min_segments_per_task, max_segments_per_task)
    assignment = np.asarray(assignment, dtype=bool)
    if assignment.shape != (n_segments, M):
        raise InputError(f"`assignment` must have shape {(n_segments, M)}, got {assignment.shape}.")
    step_tasks = np.repeat(assignment, segment_length, axis=0)
    quantities = rng.integers(1, 10, size=(n, T))
    names = rng.integers(0, len(_NAMES), size=(n, T))
    colours = rng.integers(0, len(_COLOURS), size=(n, T))
    hours = rng.integers(1, 13, size=(n, T))
    objects = rng.integers(0, len(_OBJECTS), size=(n, T))
    texts = []
    for row in range(n):
        sentences = [
            f"At {hours[row, t]} o'clock {_NAMES[names[row, t]]} put {_NUMBER_WORDS[quantities[row, t]]} "
            f"{_COLOURS[colours[row, t]]} {_OBJECTS[objects[row, t]]} in the box"
            for t in range(T)
        ]
        texts.append(". ".join(sentences) + ".")
    tasks = quantities @ step_tasks.astype(float)
    irrelevant = np.concatenate([hours[..., None].astype(float), np.eye(len(_COLOURS))[colours],
                                 np.eye(len(_NAMES))[names], np.eye(len(_OBJECTS))[objects]], axis=-1)
    truth = {
        "step_tasks": step_tasks,
        "segment_tasks": assignment,
        "segment_length": segment_length,
        "quantities": quantities.astype(float),
        "irrelevant": irrelevant,
        "separator": ". ",
    }
    return texts, tasks, truth


from .entities import entity_sentences, entity_sequences  # noqa: E402  (real-knowledge texts, RAVEL attributes)

__all__ = ["collider_sequences", "collider_step_latents", "entity_sentences", "entity_sequences",
           "paper_linear_gaussian", "planted_text", "random_assignment", "random_runs", "within_step_latents"]
