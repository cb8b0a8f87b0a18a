"""The one pipeline behind both demos and the CLI's `demo` command.

load the model -> make the texts -> extract -> discover -> train (the specialist and its generalist ablation) ->
score -> save. A demo supplies only what differs: the data (`DemoData`: texts, outcomes and the ground truth) and
the scoring (a function of the finished `PipelineRun` returning `DemoScores`). Everything else runs with the API's
own defaults (`extract_steps`, `TaskStructure`, `SpecialistConfig`, `SpecialistTrainingArguments`); a demo names
only the options it changes (`structure_options`), and the few demo choices below are written once, here.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# a middle layer of each offline model (`models.OFFLINE_MODELS`); any other model reads its last layer
DEFAULT_HOOK_POINTS = {"minilm": "layers.3", "smollm2": "layers.15"}
# the demos' own choices, where they differ from the API's defaults on purpose: a larger latent than
# `SpecialistConfig`'s 16 (a hidden state of 384-576 dims) and 20 epochs (at the demos' 2,000 texts of 8 steps,
# 1,000 optimizer steps, a little more than the API's default schedule of 800), the setting their documented
# numbers were measured with
DEMO_D_LATENT = 32
DEMO_EPOCHS = 20
EXTRACT_BATCH_SIZE = 32


def _api_default(function: Callable[..., Any], name: str) -> Any:
    """The default of `name` in `function`'s signature (the API is the one source of defaults)."""
    return inspect.signature(function).parameters[name].default


@dataclass
class DemoData:
    """What a demo's data maker returns.

    Args:
        texts (`list[str]`): the sequences, steps separated by `truth["separator"]`.
        tasks (`np.ndarray` of shape `(n_sequences, M)`): one outcome per task per sequence.
        truth (`dict`): the ground truth, with at least `"separator"`, `"segment_length"` and `"step_tasks"`
            (`(T, M)` bool); the scorer may read more from it.
        task_names (`list[str]`): one name per task (the adapter's and the plots').
        dataset (`str`): the dataset id written into the model card.
        description (`str`): one line saying what was made (the first progress line).
        title (`str`): the structure heatmap's title, after the model's name.
        task_types (`list[str]`, *optional*): `"regression"` or `"classification"` per task (`SpecialistConfig`'s
            default when `None`).
        n_classes (`list[int]`, *optional*): classes per task (`SpecialistConfig`'s default when `None`).
    """

    texts: list[str]
    tasks: np.ndarray
    truth: dict[str, Any]
    task_names: list[str]
    dataset: str
    description: str
    title: str = "step x task structure"
    task_types: list[str] | None = None
    n_classes: list[int] | None = None


@dataclass
class PipelineRun:
    """Everything one run made, handed to the demo's scorer.

    Attributes:
        model (`str`): the model's name as given (`"minilm"`, a folder, ...).
        hook_point (`str`): where the states were read.
        data (`DemoData`): the texts, outcomes and truth.
        states (`np.ndarray` of shape `(n_sequences, T, d)`): the extracted step states.
        structure (`TaskStructure`): the fitted structure.
        structure_scores (`dict`): `structure_scores(structure.step_tasks_, truth["step_tasks"])`.
        specialist, generalist (`SpecialistAdapter`): trained with `sparsity="auto"` and with `sparsity=0`.
        history (`dict`): the specialist's `train_specialist` history.
        timings (`dict`): seconds of `extract`, `discover` and `train`.
        seed (`int`): the run's seed (for the scorer's own randomness).
    """

    model: str
    hook_point: str
    data: DemoData
    states: np.ndarray
    structure: Any
    structure_scores: dict[str, float]
    specialist: Any
    generalist: Any
    history: dict[str, Any]
    timings: dict[str, float]
    seed: int


@dataclass
class DemoScores:
    """A scorer's answer.

    Args:
        summary (`dict`): the demo's results (written to `results.json` after `model` and `hook_point`, with
            `seconds` and `timings` added).
        card_metrics (`dict`): the metrics the saved adapter's model card lists.
        plots (`dict`, *optional*): file name -> function writing that figure to the path it is given.
    """

    summary: dict[str, Any]
    card_metrics: dict[str, Any]
    plots: dict[str, Callable[[Path], Any]] = field(default_factory=dict)


def run_pipeline(
    make_data: Callable[[], DemoData],
    score: Callable[[PipelineRun], DemoScores],
    model: str = "minilm",
    *,
    hook_point: str | None = None,
    d_latent: int = DEMO_D_LATENT,
    epochs: int = DEMO_EPOCHS,
    structure_options: dict[str, Any] | None = None,
    require_every_task: bool = False,
    output_dir: str = "outputs",
    seed: int = 0,
    quiet: bool = False,
    base: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline on a demo's data and write the adapter (with its card and structure), the structure
    heatmap, the scorer's plots and `results.json` into `output_dir`.

    Args:
        make_data (`Callable[[], DemoData]`): makes the texts, outcomes and ground truth.
        score (`Callable[[PipelineRun], DemoScores]`): scores the trained run against the truth.
        model (`str`, *optional*, defaults to `"minilm"`): `"minilm"`, `"smollm2"` or a local model folder.
        hook_point (`str`, *optional*): where to read the states (default: `DEFAULT_HOOK_POINTS`, else the last
            layer).
        d_latent (`int`, *optional*, defaults to 32): latent dims of both adapters.
        epochs (`int`, *optional*, defaults to 20): training epochs per trained model; every other training option
            is `SpecialistTrainingArguments`'s default.
        structure_options (`dict`, *optional*): `TaskStructure` options over its defaults (the segment length is
            the truth's).
        require_every_task (`bool`, *optional*, defaults to `False`): raise when the structure finds no step for a
            task (a scorer that probes each task's steps needs at least one).
        output_dir (`str`, *optional*, defaults to `"outputs"`): where everything is written.
        seed (`int`, *optional*, defaults to 0): the seed of the data, the structure and training.
        quiet (`bool`, *optional*, defaults to `False`): no progress lines or bars.
        base (`tuple`, *optional*): an already loaded `(model, tokenizer)` (tests pass tiny models).

    Returns:
        `dict`: `model`, `hook_point`, the scorer's summary, `seconds` and `timings` (also in `results.json`).
    """
    from . import plots
    from .adapter.config import SpecialistConfig
    from .adapter.lambda_path import train_specialist
    from .adapter.model import SpecialistAdapter
    from .adapter.training_args import SpecialistTrainingArguments
    from .data import extract_steps
    from .hooks import is_causal
    from .metrics import structure_scores
    from .models import load_model
    from .structure.discovery import TaskStructure

    started = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = make_data()
    truth = data.truth
    _log(f"[1/5] built {data.description}", quiet)

    base_model, tokenizer = base if base is not None else load_model(model)
    hook_point = hook_point or DEFAULT_HOOK_POINTS.get(model, "layers.-1")
    pool = _api_default(extract_steps, "pool")
    t0 = time.perf_counter()
    states = extract_steps(base_model, tokenizer, data.texts, hook_point=hook_point, steps=truth["separator"],
                           pool=pool, batch_size=EXTRACT_BATCH_SIZE, progress=False if quiet else None)
    extract_s = time.perf_counter() - t0
    _log(f"[2/5] extracted steps {tuple(states.shape)} at {hook_point} in {extract_s:.1f} s", quiet)

    t0 = time.perf_counter()
    causal = is_causal(base_model, hook_point)  # as `discover` measures it (full context)
    structure = TaskStructure(**{"segment_length": truth["segment_length"], "seed": seed, "causal": causal,
                                 **(structure_options or {})}).fit(states, data.tasks)
    discover_s = time.perf_counter() - t0
    scores = structure_scores(structure.step_tasks_, truth["step_tasks"])
    band = "not run" if structure.markov_pvalue_ is None else format(structure.markov_pvalue_, ".2g")
    _log(f"[3/5] discovered the step x task structure with {structure.n_tests_} CI tests in {discover_s:.2f} s: "
         f"F1 {scores['f1']:.3f} (conditioning: {structure.conditioning_}, decision: {structure.decision_}, band "
         f"check p={band})", quiet)
    unfound = [data.task_names[i] for i in np.flatnonzero(~structure.step_tasks_.any(0))]
    if require_every_task and unfound:
        raise RuntimeError(f"The structure test found no step for {unfound} at {hook_point} with n={len(data.texts)}: "
                           "the model's states there carry too little of the attribute for this many sequences (try "
                           "more sequences, another layer, or a larger `project`).")

    t0 = time.perf_counter()
    config = dict(d_in=states.shape[-1], d_latent=d_latent, n_tasks=len(data.task_names), task_names=data.task_names,
                  hook_point=hook_point, step_rule=truth["separator"], pool=pool)
    config.update({k: v for k, v in (("task_types", data.task_types), ("n_classes", data.n_classes)) if v is not None})
    specialist = SpecialistAdapter(SpecialistConfig(**config))  # sparsity: the config's default ("auto")
    specialist.config.record_base(base_model)  # the base's id and revision, never an alias
    training = SpecialistTrainingArguments(epochs=epochs, seed=seed)  # every other option: the API's default
    history = train_specialist(specialist, states, data.tasks, structure.step_tasks_, args=training,
                               progress=False if quiet else None)
    generalist = SpecialistAdapter(SpecialistConfig(**config, sparsity=0.0))  # the ablation without l1
    generalist.config.record_base(base_model)
    train_specialist(generalist, states, data.tasks, structure.step_tasks_, args=training, progress=False)
    train_s = time.perf_counter() - t0
    _log(f"[4/5] trained the specialist (lambda {history['selected_sparsity']:.3g} chosen on held-out data, support "
         f"per task {specialist.task_support_.sum(1).tolist()}) and the generalist ablation in {train_s:.1f} s", quiet)

    timings = {"extract": extract_s, "discover": discover_s, "train": train_s}
    run = PipelineRun(model=model, hook_point=hook_point, data=data, states=states, structure=structure,
                      structure_scores=scores, specialist=specialist, generalist=generalist, history=history,
                      timings=timings, seed=seed)
    result = score(run)
    folder = specialist.save_pretrained(out / "adapter", structure=structure, metrics=result.card_metrics,
                                        datasets=[data.dataset])
    plots.step_task_heatmap(structure.step_tasks_, out / "structure.png", truth=truth["step_tasks"],
                            task_names=data.task_names, title=f"{model}: {data.title}")
    for name, draw in result.plots.items():
        draw(out / name)
    summary = {"model": model, "hook_point": hook_point, **result.summary,
               "seconds": time.perf_counter() - started, "timings": timings}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    _log(f"[5/5] scored; saved the adapter, its card and plots to {folder} and {out}", quiet)
    return summary


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)
