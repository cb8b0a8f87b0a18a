"""Texts whose task outcomes depend on what a model knows about the entities it reads (RAVEL attributes).

Each sentence names one entity, an occupation or a city from the RAVEL benchmark (Huang et al., ACL 2024, MIT
licence; `data_files/ravel/`), inside varied phrasings with surface content drawn independently of it (a person, a
time, the template). A task's outcome is computed from the *real attributes* of the entities in the sentences that
serve it (how many are health-care occupations, how many cities are in Europe, which industry most of them work in,
their mean latitude), so a model can only help if its representation of the entity carries the attribute: the
sentence's words never state it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import InputError

DATA_DIR = Path(__file__).parent / "data_files" / "ravel"
NAMES = ("Alice", "Bob", "Carla", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kemal", "Lena",
         "Marco", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wei", "Yusuf")
TIMES = ("on Monday", "on Tuesday", "on Friday", "last week", "last year", "in the spring", "in the winter",
         "yesterday", "this morning", "in 2019")
TEMPLATES = {
    "occupation": ("{name} works as a {entity} {time}", "{time}, {name} met a {entity}",
                   "{name} wants to become a {entity}", "{name} talked to a {entity} {time}",
                   "the {entity} that {name} hired arrived {time}"),
    "city": ("{name} flew to {entity} {time}", "{time}, {name} moved to {entity}", "{name} has a friend in {entity}",
             "{name} wrote a postcard from {entity} {time}", "the trip {name} took {time} ended in {entity}"),
}
INDUSTRIES = ("construction", "health care", "automotive", "education")  # the four largest, spellings merged


@dataclass(frozen=True)
class EntityTask:
    """One task: an aggregate of an attribute of the entities in the sentences that serve it.

    Attributes:
        name (`str`): the task's name.
        kind (`str`): the entity type, `"occupation"` or `"city"`.
        attribute (`str`): the RAVEL attribute read (`"Industry"`, `"Continent"`, `"Latitude"`).
        aggregate (`str`): `"count"` (of entities whose attribute equals `value`), `"majority"` (the class among
            `classes` held by most, ties to the earliest), or `"mean"` (of a numeric attribute).
        value (`str`, *optional*): the counted value. classes (`tuple[str, ...]`, *optional*): for `"majority"`.
    """

    name: str
    kind: str
    attribute: str
    aggregate: str
    value: str | None = None
    classes: tuple[str, ...] | None = None

    @property
    def task_type(self) -> str:
        """`"classification"` for a majority class over the serving sentences, else `"regression"`."""
        return "classification" if self.aggregate == "majority" else "regression"

    @property
    def n_classes(self) -> int:
        """Classes of a classification task (0 for regression)."""
        return len(self.classes) if self.classes else 0


TASKS = {
    "health_workers": EntityTask("health_workers", "occupation", "Industry", "count", value="health care"),
    "european_cities": EntityTask("european_cities", "city", "Continent", "count", value="Europe"),
    "main_industry": EntityTask("main_industry", "occupation", "Industry", "majority", classes=INDUSTRIES),
    "mean_latitude": EntityTask("mean_latitude", "city", "Latitude", "mean"),
}
DEFAULT_TASKS = ("health_workers", "european_cities", "main_industry")


def _normalise(attribute: str, value: str) -> str:
    value = value.strip()
    if attribute == "Industry" and value.replace(" ", "") == "healthcare":
        return "health care"
    return value


@functools.lru_cache(maxsize=None)
def load_entities(kind: str) -> dict[str, dict[str, str]]:
    """RAVEL attributes by entity name for `kind` (`"occupation"` or `"city"`), spellings normalised; names with a
    full stop are left out (sentences are split at ". ")."""
    if kind not in TEMPLATES:
        raise InputError(f"`kind` must be 'occupation' or 'city', got {kind!r}.")
    raw = json.loads((DATA_DIR / ("occupations.json" if kind == "occupation" else "cities.json")).read_text())
    return {name: {k: _normalise(k, v) for k, v in attrs.items()} for name, attrs in sorted(raw.items())
            if "." not in name and name.strip()}


def _pools(kind: str, rng_order: bool = False) -> list[list[str]]:
    """Entity pools drawn with equal probability, so counted values are frequent: occupations by industry among
    the four largest; cities in Europe and elsewhere."""
    entities = load_entities(kind)
    if kind == "occupation":
        return [[n for n, a in entities.items() if a["Industry"] == industry] for industry in INDUSTRIES]
    return [[n for n, a in entities.items() if a["Continent"] == "Europe"],
            [n for n, a in entities.items() if a["Continent"] != "Europe"]]


def _draw_entities(kind: str, size: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    pools = _pools(kind)
    which = rng.integers(len(pools), size=size)
    out = np.empty(size, dtype=object)
    for p, pool in enumerate(pools):
        hit = which == p
        out[hit] = np.asarray(pool, dtype=object)[rng.integers(len(pool), size=int(hit.sum()))]
    return out


def _sentence(kind: str, entity: str, name: int, time: int, template: int) -> str:
    text = TEMPLATES[kind][template].format(entity=entity, name=NAMES[name], time=TIMES[time])
    return text[0].upper() + text[1:]


def task_outcomes(tasks: list[EntityTask], entities: np.ndarray, step_tasks: np.ndarray) -> np.ndarray:
    """`(n, M)` outcomes from `(n, T)` entity names and the `(T, M)` structure (the generator's rule, exposed so
    tests can recompute it)."""
    n = len(entities)
    out = np.zeros((n, len(tasks)))
    for i, task in enumerate(tasks):
        steps = np.flatnonzero(step_tasks[:, i])
        table = load_entities(task.kind)
        values = np.array([[table[e][task.attribute] for e in row] for row in entities[:, steps]], dtype=object)
        if task.aggregate == "count":
            out[:, i] = (values == task.value).sum(1)
        elif task.aggregate == "mean":
            out[:, i] = values.astype(float).mean(1)
        else:
            counts = np.stack([(values == c).sum(1) for c in task.classes], axis=1)
            out[:, i] = counts.argmax(1)  # ties go to the earliest class in `classes`
    return out


def _assignment(n_segments: int, tasks: list[EntityTask], rng: np.random.Generator,
                min_segments: int = 2, attempts: int = 100) -> tuple[np.ndarray, list[str]]:
    """Segment x task marks with one entity type per segment (a sentence names one entity).

    The tasks draw their segments in a random order; a draw that leaves a later task fewer than `min_segments`
    segments of its entity type is drawn again (the first draw that fits is kept, so a seed always gives the same
    assignment). Raises `ValueError` when `attempts` draws all fail (too few segments for the tasks).
    """
    for _ in range(attempts):
        drawn = _draw_assignment(n_segments, tasks, rng, min_segments)
        if drawn is not None:
            return drawn
    raise InputError(f"{n_segments} segments cannot give every task {min_segments} segments with one entity type "
                     "each; use a larger T.")


def _draw_assignment(n_segments: int, tasks: list[EntityTask], rng: np.random.Generator,
                     min_segments: int) -> tuple[np.ndarray, list[str]] | None:
    """One draw of `_assignment`, or `None` when a task is left too few segments of its type."""
    kinds: list[str | None] = [None] * n_segments
    marks = np.zeros((n_segments, len(tasks)), dtype=bool)
    for i in rng.permutation(len(tasks)):
        free = [k for k in range(n_segments) if kinds[k] in (None, tasks[i].kind)]
        if len(free) < min_segments:
            return None
        count = int(rng.integers(min_segments, max(min_segments, len(free) // 2) + 1))
        for k in rng.choice(free, size=count, replace=False):
            marks[k, i] = True
            kinds[k] = tasks[i].kind
    for k in range(n_segments):
        kinds[k] = kinds[k] or str(rng.choice(list(TEMPLATES)))
    return marks, kinds


def entity_sequences(
    n: int = 2000,
    T: int = 8,
    tasks: tuple[str, ...] | list[str] = DEFAULT_TASKS,
    *,
    segment_length: int = 2,
    min_segments_per_task: int = 2,
    seed: int | None = 0,
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Texts of `T` sentences, one entity each, whose task outcomes come from the entities' real attributes.

    Tasks interleave over segments of `segment_length` sentences (each segment names one type of entity; some
    serve no task, some serve two tasks about the same type). The people, times and phrasings are drawn
    independently of the entity and of the structure: they are the surface a specialist should drop.

    Args:
        n (`int`): sequences. T (`int`): sentences per sequence, a multiple of `segment_length`.
        tasks: names from `entities.TASKS` (`"health_workers"`, `"european_cities"`, `"main_industry"`,
            `"mean_latitude"`).
        seed (`int`): random seed.

    Returns:
        texts (`list[str]`), tasks `(n, M)` (class indices for `"main_industry"`), and `truth` with `step_tasks
        (T, M)`, `segment_tasks (N, M)`, `segment_length`, `separator`, `step_kinds (T,)`, `entities (n, T)`,
        `surface` (`{"name", "time", "template"}`: `(n, T)` indices), `tasks` (the `EntityTask`s), `task_types`,
        `n_classes` and `task_names` (for `SpecialistConfig`).
    """
    if T % segment_length:
        raise InputError(f"`T`={T} must be a multiple of `segment_length`={segment_length}.")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise InputError(f"Unknown tasks {unknown}; choose from {sorted(TASKS)}.")
    specs = [TASKS[t] for t in tasks]
    rng = np.random.default_rng(seed)
    segment_tasks, segment_kinds = _assignment(T // segment_length, specs, rng, min_segments_per_task)
    step_tasks = np.repeat(segment_tasks, segment_length, axis=0)
    step_kinds = np.repeat(np.array(segment_kinds, dtype=object), segment_length)
    entities = np.empty((n, T), dtype=object)
    for kind in TEMPLATES:
        columns = np.flatnonzero(step_kinds == kind)
        if len(columns):
            entities[:, columns] = _draw_entities(kind, (n, len(columns)), rng)
    surface = {"name": rng.integers(len(NAMES), size=(n, T)), "time": rng.integers(len(TIMES), size=(n, T)),
               "template": rng.integers(len(TEMPLATES["city"]), size=(n, T))}
    texts = [". ".join(_sentence(step_kinds[t], entities[r, t], surface["name"][r, t], surface["time"][r, t],
                                 surface["template"][r, t]) for t in range(T)) + "." for r in range(n)]
    outcomes = task_outcomes(specs, entities, step_tasks)
    truth = {"step_tasks": step_tasks, "segment_tasks": segment_tasks, "segment_length": segment_length,
             "separator": ". ", "step_kinds": step_kinds, "entities": entities, "surface": surface, "tasks": specs,
             "task_names": [t.name for t in specs], "task_types": [t.task_type for t in specs],
             "n_classes": [t.n_classes for t in specs]}
    return texts, outcomes, truth


def entity_sentences(n: int = 2000, kind: str = "occupation", *, seed: int | None = 0) -> tuple[list[str], dict[str, Any]]:
    """Single sentences, one entity each, with every attribute and surface factor recorded (within-step data).

    Returns:
        texts (`list[str]`) and `labels`: `"entity"` (names), one entry per RAVEL attribute (strings), and the
        surface indices `"name"`, `"time"`, `"template"`.
    """
    rng = np.random.default_rng(seed)
    entities = _draw_entities(kind, (n,), rng)
    surface = {"name": rng.integers(len(NAMES), size=n), "time": rng.integers(len(TIMES), size=n),
               "template": rng.integers(len(TEMPLATES[kind]), size=n)}
    texts = [_sentence(kind, e, surface["name"][r], surface["time"][r], surface["template"][r]) + "."
             for r, e in enumerate(entities)]
    table = load_entities(kind)
    attributes = sorted(next(iter(table.values())))
    labels = {"entity": entities, **{a: np.array([table[e][a] for e in entities], dtype=object) for a in attributes},
              **surface}
    return texts, labels
