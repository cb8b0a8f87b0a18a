"""The `hf-specialist` command: extract, discover, sweep, train, evaluate, push, demo.

Every subcommand takes `--recipe FILE.yaml` whose keys mirror the Python API's keyword arguments; flags given on
the command line win over the recipe. Exit codes: 0 success, 2 bad arguments or input (`InputError` or a usage
error: a one-line reason), 1 any other failure (a short message; the traceback with `--debug`).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import InputError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(InputError):
    """An input problem of the command line, reported with exit code 2 (as every `InputError`)."""


def _separator(value: str) -> str:
    """A step rule from the command line: 'token', or a separator with the escapes `\\n`, `\\t` and `\\\\` read as
    newline, tab and backslash; every other character (non-ASCII included) passes through intact."""
    if value == "token":
        return value
    out, i = [], 0
    while i < len(value):
        pair = value[i:i + 2]
        if pair in ("\\n", "\\t", "\\\\"):
            out.append({"\\n": "\n", "\\t": "\t", "\\\\": "\\"}[pair])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _check_steps(texts: list[str], steps: str, pad: bool) -> int | None:
    """The texts' steps under the rule, checked before any model is loaded: a rule that matches nothing, or (unless
    `pad`) texts with different step counts, are bad input named by text (as `extract_steps` would find later).
    Returns the most common step count (`None` for token steps, which only the tokenizer counts)."""
    from .steps import step_spans

    try:
        spans = step_spans(texts, steps)
    except (TypeError, ValueError) as err:  # a pure check of the texts and the rule: always the input's fault
        raise BadInput(str(err)) from err
    if spans is None:
        return None
    counts = np.array([len(s) for s in spans])
    common = int(np.bincount(counts).argmax())
    if pad:
        return common
    odd = np.flatnonzero(counts != common)
    if len(odd):
        i = int(odd[0])
        raise BadInput(f"texts have different numbers of steps under {steps!r}: most have {common}, text {i} has "
                       f"{counts[i]} ({texts[i][:60]!r}; {len(odd)} of {len(texts)} differ); make every text produce "
                       "the same number of steps, or pass --pad to pad them and write a step mask.")
    return common


def _check_model_name(name: str | None) -> None:
    """Fail at once for a `--model` that names a missing folder (no Hub call); the offline aliases pass."""
    from ._files import check_source
    from .models import OFFLINE_MODELS

    if name and name not in OFFLINE_MODELS:
        check_source(name, "folder")


class _ExponentNumber(float):
    """A recipe value written like `1e-3`: a float, which remembers the text typed (for keys that take text)."""

    text: str


def _recipe_loader() -> type:
    """YAML's safe loader, reading `1e-3` as the number Python reads (YAML 1.1 needs `1.0e-3`, else a string)."""
    import re

    import yaml

    class RecipeLoader(yaml.SafeLoader):
        pass

    def exponent_number(loader: yaml.SafeLoader, node: yaml.Node) -> _ExponentNumber:
        text = loader.construct_scalar(node)
        value = _ExponentNumber(text.replace("_", ""))
        value.text = text
        return value

    number = re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)[eE][-+]?\d+$")
    RecipeLoader.add_implicit_resolver("tag:hf-specialist,exponent", number, list("-+0123456789."))
    RecipeLoader.add_constructor("tag:hf-specialist,exponent", exponent_number)
    return RecipeLoader


def _load_recipe(path: str | None, section: str) -> dict[str, Any]:
    """The keys of a YAML recipe for `section`: its top-level keys, overridden by those under `section:`."""
    if path is None:
        return {}
    import yaml

    file = Path(path)
    if not file.is_file():
        raise BadInput(f"recipe file not found: {path}")
    try:
        content = yaml.load(file.read_text(), Loader=_recipe_loader()) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise BadInput(f"recipe {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(content, dict):
        raise BadInput(f"recipe {path} must be a mapping of keys to values")
    merged = {k: v for k, v in content.items() if not isinstance(v, dict)}
    merged.update(content.get(section, {}) or {})
    other_sections = sorted(k for k, v in content.items() if isinstance(v, dict) and k != section)
    unknown = [k for k in other_sections if str(k) not in COMMANDS]
    if unknown:  # a misspelled section (`trian:`) would otherwise be dropped without a word
        near = {k: difflib.get_close_matches(str(k).lower(), sorted(COMMANDS), n=1, cutoff=0.6) for k in unknown}
        if any(near.values()):
            raise BadInput("recipe section(s) misspelled: " + ", ".join(
                f"{k!r} (did you mean {v[0]!r}?)" for k, v in near.items() if v))
        print(f"warning: recipe sections not read by the hf-specialist commands: {unknown}", file=sys.stderr)
    return merged


def _merge(args: argparse.Namespace, recipe: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Command-line flags (when given) over recipe keys over defaults."""
    values = dict(defaults)
    values.update({k: v for k, v in recipe.items() if k in defaults})
    for key, value in values.items():  # `1e5` is a number only where a number is expected (a revision may read so)
        default = defaults.get(key)
        if isinstance(value, _ExponentNumber) and (isinstance(default, bool) or not isinstance(default, (int, float))):
            values[key] = value.text
    unknown = sorted(set(recipe) - set(defaults) - {"command"})
    misspelled = {key: difflib.get_close_matches(key, sorted(defaults), n=1, cutoff=0.8) for key in unknown}
    misspelled = {key: near[0] for key, near in misspelled.items() if near}
    if misspelled:
        raise BadInput("recipe key(s) misspelled: " + ", ".join(f"{k!r} (did you mean {v!r}?)"
                                                                  for k, v in misspelled.items()))
    if unknown:
        print(f"warning: recipe keys not used by this command: {unknown}", file=sys.stderr)
    for key in defaults:
        value = getattr(args, key, None)
        if value is not None:
            values[key] = value
    return values


def _read_lines(path: str, column: str | None = None) -> list[str]:
    """Texts from a .txt (one a line), .jsonl, .csv, .parquet, a `save_to_disk` folder or a Hub dataset (through
    `datasets`); a blank text is an error, as in the Python API."""
    from ._files import read_texts

    return read_texts(path, column)


def _load_array(path: str, name: str, columns: Any = None) -> np.ndarray:
    """A .npy array, or the (task) columns of any file `_read_lines` reads (`columns`: a list or 'a,b')."""
    from ._files import read_array

    return read_array(path, name, _listed(columns, str))


def _task_names(path: str, columns: Any = None) -> list[str]:
    """The tasks' names for the report: the `columns` asked for, else a table's column names (none for `.npy`)."""
    listed = _listed(columns, str)
    if listed or str(path).lower().endswith((".npy", ".txt")):  # arrays and lines of numbers have no names
        return listed or []
    from ._arrays import data_columns
    from ._files import load_table

    return data_columns(list(load_table(path).column_names))


def _task_columns(args: argparse.Namespace, cfg: dict[str, Any]) -> Any:
    return cfg.get("task_columns") or getattr(args, "task_columns", None)


def _mask_path(states_path: str | Path) -> Path:
    """Where `extract --pad` writes the step mask of `states_path` (`states.npy` -> `states_mask.npy`)."""
    path = Path(states_path)
    return path.with_name(path.stem + "_mask.npy")


def _load_states(path: str) -> np.ndarray:
    """States for `discover` / `train` / `evaluate`: refuses states that `extract --pad` padded (their `_mask.npy`
    beside them marks steps that are not real), which these commands would read as real steps."""
    if not str(path).lower().endswith(".npy"):
        raise BadInput(f"--states {path} must be a .npy array of per-step states (as `hf-specialist extract` writes), "
                       f"not a table.")
    states = _load_array(path, "states")
    mask_file = _mask_path(path)
    if mask_file.is_file():
        mask = np.load(mask_file, allow_pickle=False)
        if mask.shape == states.shape[:2] and not mask.all():
            short = int((~mask.all(1)).sum())
            raise BadInput(f"{path} was extracted with --pad: {short} texts have fewer steps, zero-padded (see "
                           f"{mask_file}); this command would read the padding as real steps. Extract texts with "
                           "equal step counts, or train in Python with `hfs.extract_padded_steps` and its mask as "
                           "`task_mask`.")
    return states


def api_defaults(api: Any, names: Sequence[str]) -> dict[str, Any]:
    """The defaults of `names` in a function's signature or a dataclass's fields (the CLI's single source)."""
    import dataclasses
    import inspect

    if dataclasses.is_dataclass(api):
        fields = {f.name: f for f in dataclasses.fields(api)}
        return {n: (fields[n].default if fields[n].default is not dataclasses.MISSING else fields[n].default_factory())
                for n in names}
    parameters = inspect.signature(api).parameters
    return {n: parameters[n].default for n in names}


def _listed(value: Any, kind: type) -> list[Any] | None:
    """A comma-separated flag or a recipe list, as a list of `kind` (`None` stays `None`)."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        return [kind(v.strip() if isinstance(v, str) else v) for v in items]
    except ValueError as err:
        raise BadInput(f"could not read {value!r} as a list of {kind.__name__}: {err}") from err


def _classes_from_labels(tasks: np.ndarray, task_types: list[str]) -> list[int]:
    """Classes per task read from the labels when `--n-classes` is not given: `max label + 1` (at least 2) for each
    classification column, whose labels must be whole numbers from 0; 0 for regression."""
    columns = tasks.reshape(-1, tasks.shape[-1]) if tasks.ndim > 1 else tasks.reshape(-1, 1)
    if len(task_types) != columns.shape[1]:
        raise BadInput(f"--task-types names {len(task_types)} task(s) but the tasks have {columns.shape[1]} "
                       "column(s); give one type per task column.")
    out = []
    for i, kind in enumerate(task_types):
        if kind != "classification":
            out.append(0)
            continue
        labels = columns[:, i]
        if not np.all(np.isfinite(labels)) or np.any(labels < 0) or np.any(labels != np.round(labels)):
            odd = labels[(labels < 0) | (labels != np.round(labels))][:3].tolist()
            raise BadInput(f"task {i} is a classification task but its labels are not whole numbers from 0 (found e.g. "
                           f"{odd}); encode the classes as 0, 1, 2, ... or pass --n-classes.")
        out.append(max(2, int(labels.max()) + 1))
    print(f"classes per task read from the labels: {out} (pass --n-classes to set them)")
    return out


# --- subcommands ------------------------------------------------------------------------------------


def cmd_extract(args: argparse.Namespace) -> int:
    """Extract per-step hidden states from a model into a .npy file."""
    from .data import extract_padded_steps, extract_steps
    from .hooks import resolve_hook_points
    from .models import load_model

    cfg = _merge(
        args,
        _load_recipe(args.recipe, "extract"),
        {"model": "minilm", "texts": None, "hook_point": "layers.3", "steps": ". ", "pool": "mean", "batch_size": 16,
         "output": "outputs/states.npy", "cache_dir": None, "text_column": None, "pad": False, "context": "full"},
    )
    _check_model_name(cfg["model"])
    texts = _read_lines(cfg["texts"], cfg["text_column"]) if cfg["texts"] else _example_texts()
    steps = _separator(cfg["steps"])
    _check_steps(texts, steps, bool(cfg["pad"]))
    model, tokenizer = load_model(cfg["model"])
    # texts with other step counts raise, as in Python, unless --pad asks for padding and a mask
    options = dict(hook_point=cfg["hook_point"], steps=steps, pool=cfg["pool"], batch_size=cfg["batch_size"],
                   cache_dir=cfg["cache_dir"], context=cfg["context"])
    if cfg["pad"]:
        array, mask = extract_padded_steps(model, tokenizer, texts, **options)
    else:
        array = extract_steps(model, tokenizer, texts, **options)
        mask = np.ones(array.shape[:2], dtype=bool)
    out = Path(cfg["output"])
    if out.suffix.lower() != ".npy":  # np.save would append it, and the pipeline record would name another file
        out = out.with_name(out.name + ".npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, array)
    if cfg["pad"]:
        np.save(_mask_path(out), mask)
    _write_pipeline_record(out, model, hook_point=resolve_hook_points(model, cfg["hook_point"])[0], step_rule=steps,
                           pool=cfg["pool"], max_length=None, context=cfg["context"])
    print(f"extracted {array.shape[0]} sequences x {array.shape[1]} steps x {array.shape[2]} dims "
          f"from {cfg['model']} at {cfg['hook_point']} -> {out}")
    norms = np.linalg.norm(array, axis=-1)
    for i, text in enumerate(texts[:3]):
        shown = ", ".join(f"{v:.2f}" for v in norms[i][mask[i]])
        print(f"  [{i}] {int(mask[i].sum())} steps, step norms {shown} :: {text[:60]!r}")
    return EXIT_OK


PIPELINE_SUFFIX = ".pipeline.json"


def _write_pipeline_record(states_path: Path, model: Any, **pipeline: Any) -> Path:
    """Beside `states.npy`, `states.pipeline.json`: how the states were made (the base's real id, revision, type,
    hidden size and depth; hook point, step rule, pooling, max_length, context), so that `train` records them in the adapter."""
    from .adapter.config import SpecialistConfig

    base = SpecialistConfig(d_in=1)
    base.record_base(model)
    record = {"base_model": base.base_model, "base_model_revision": base.base_model_revision,
              "base_model_type": base.base_model_type, "base_hidden_size": base.base_hidden_size,
              "base_num_layers": base.base_num_layers, **pipeline}
    path = states_path.with_name(states_path.stem + PIPELINE_SUFFIX)
    path.write_text(json.dumps(record, indent=2))
    return path


def _pipeline_record(states_path: str) -> dict[str, Any]:
    """What `extract` recorded beside the states (empty when they were made elsewhere)."""
    path = Path(states_path).with_name(Path(states_path).stem + PIPELINE_SUFFIX)
    if not path.is_file():
        return {}
    from ._files import read_config

    return read_config(path)


def _pipeline_for_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The `SpecialistConfig` fields that let `SpecialistModel` rerun the pipeline: flags and recipe keys over what
    `extract` recorded beside the states; an offline alias (`minilm`) becomes the model's real id."""
    from .models import OFFLINE_MODELS

    record = _pipeline_record(cfg["states"])
    fields = {name: cfg.get(name) if cfg.get(name) is not None else record.get(name)
              for name in ("hook_point", "step_rule", "pool", "max_length", "context")}
    if fields["context"] is None:  # states from elsewhere (or an older extract): the config's default, "full"
        del fields["context"]
    base = alias = cfg.get("base_model")
    if base in OFFLINE_MODELS:
        base = OFFLINE_MODELS[base][1]
    same_base = base is None or base == record.get("base_model")
    fields["base_model"] = base or record.get("base_model")
    for name in ("base_model_revision", "base_model_type", "base_hidden_size", "base_num_layers"):
        fields[name] = record.get(name) if same_base else None
    if alias in OFFLINE_MODELS and not fields["base_model_revision"]:  # the installed package's, as load_model's
        from .models import packaged_revision

        try:
            fields["base_model_revision"] = packaged_revision(alias)
        except ValueError:  # the package is not installed: no revision to record
            pass
    missing = [name for name in ("hook_point", "step_rule", "base_model") if fields[name] is None]
    if missing:
        print(f"warning: the adapter will record no {', '.join(missing)} (the states have no {PIPELINE_SUFFIX} from "
              "`hf-specialist extract`; pass --hook-point, --step-rule, --base-model): SpecialistModel will need "
              "them when loading it.", file=sys.stderr)
    return fields


def _example_texts() -> list[str]:
    from .synthetic import planted_text

    return planted_text(n=3, T=4, M=1, seed=0)[0]


def _save_json(path: str | Path, payload: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    return path


def cmd_discover(args: argparse.Namespace) -> int:
    """Discover the step x task structure (Theorem 1) from states and task outcomes."""
    from .plots import step_task_heatmap
    from .structure.discovery import TaskStructure

    import inspect

    api = {name: p.default for name, p in inspect.signature(TaskStructure).parameters.items()
           if p.default is not inspect.Parameter.empty and name != "progress"}  # defaults read from the API
    cfg = _merge(args, _load_recipe(args.recipe, "discover"), {
        **api, "states": None, "tasks": None,
        "output": "outputs/structure.json", "truth": None, "model": None, "texts": None, "hook_point": "layers.-1",
        "steps": ". ", "pool": "mean", "context": "auto", "batch_size": 16, "chunk_size": 1024, "max_length": None,
        "text_column": None, "task_columns": None})
    if isinstance(cfg["project"], str) and cfg["project"] not in ("auto", "none"):
        cfg["project"] = int(cfg["project"]) if cfg["project"].isdigit() else cfg["project"]
    if cfg["project"] == "none":
        cfg["project"] = None
    for name in ("carryover", "causal"):
        if isinstance(cfg[name], str) and cfg[name] in ("true", "false"):
            cfg[name] = cfg[name] == "true"
    if not cfg["tasks"] or not (cfg["states"] or cfg["model"]):
        raise BadInput("pass --tasks TASKS.npy and either --states STATES.npy or --model M --texts FILE "
                       "(or set them in the recipe)")
    _check_model_name(cfg["model"])
    tasks = _load_array(cfg["tasks"], "tasks", cfg["task_columns"])
    correction = None if cfg["correction"] in (None, "none") else cfg["correction"]
    structure = TaskStructure(**{**{name: cfg[name] for name in api}, "correction": correction})
    truth = _load_array(cfg["truth"], "truth").astype(bool) if cfg["truth"] else None
    names = _task_names(cfg["tasks"], cfg["task_columns"])
    if truth is not None and (truth.ndim != 2 or truth.shape[1] != (tasks.shape[1] if tasks.ndim > 1 else 1)):
        raise BadInput(f"--truth {cfg['truth']} has shape {tuple(truth.shape)}; expected (T steps, "
                       f"{tasks.shape[1] if tasks.ndim > 1 else 1} tasks), one column per task.")
    if cfg["model"]:  # extract in chunks and stream the statistics: states are never all in memory
        from .models import load_model
        from .structure.from_model import discover

        if not cfg["texts"]:
            raise BadInput("--model needs --texts FILE (one sequence per line, or .jsonl with a 'text' field)")
        texts = _read_lines(cfg["texts"], cfg["text_column"])
        steps = _separator(cfg["steps"])
        n_steps = _check_steps(texts, steps, pad=True)  # the rule only: the streaming fit has its own step-count rule
        if truth is not None and n_steps is not None and truth.shape[0] != n_steps:
            raise BadInput(f"--truth {cfg['truth']} has {truth.shape[0]} steps but the texts have {n_steps} under the "
                           f"step rule {steps!r}.")
        model, tokenizer = load_model(cfg["model"])
        structure = discover(model, tokenizer, texts, tasks, hook_point=cfg["hook_point"], steps=steps,
                             pool=cfg["pool"], context=cfg["context"], batch_size=cfg["batch_size"],
                             chunk_size=cfg["chunk_size"], max_length=cfg["max_length"], structure=structure)
    else:
        states = _load_states(cfg["states"])
        if truth is not None and states.ndim > 1 and truth.shape[0] != states.shape[1]:
            raise BadInput(f"--truth {cfg['truth']} has {truth.shape[0]} steps but the states have {states.shape[1]}.")
        context = _pipeline_record(cfg["states"]).get("context")  # how `extract` made them, for the report
        if context in ("full", "isolated"):
            from .structure.from_model import recording_context

            with recording_context([structure], context):
                structure = structure.fit(states, tasks)
        else:
            structure = structure.fit(states, tasks)
    if truth is not None and truth.shape != structure.step_tasks_.shape:
        raise BadInput(f"--truth {cfg['truth']} has shape {tuple(truth.shape)} but the structure has "
                       f"{structure.n_steps_} steps x {structure.n_tasks_} tasks.")
    if len(names) == structure.n_tasks_:  # kept in structure.json: `train --structure` matches columns by name
        structure.task_names_ = names
    path = _save_json(cfg["output"], structure.to_dict())
    step_task_heatmap(structure.step_tasks_, path.with_suffix(".png"), truth=truth,
                      pvalues=getattr(structure, "step_pvalues_", None), task_names=structure.task_names_)
    print(f"{structure.n_tests_} CI tests (conditioning: {structure.conditioning_}; decision: {structure.decision_}) "
          f"-> {path}")
    print(structure.report(warn=False))
    if truth is not None:
        from .metrics import structure_scores

        print("scores: " + json.dumps({f"structure/{k}": round(v, 4) for k, v in structure_scores(structure.step_tasks_, truth).items()}))
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    """Discover the step x task structure at every layer of a model in one forward pass per chunk of texts."""
    from .models import load_model
    from .structure.layers import sweep_layers

    defaults = api_defaults(sweep_layers, ("hook_points", "pool", "context", "max_length", "batch_size",
                                           "chunk_size"))
    cfg = _merge(args, _load_recipe(args.recipe, "sweep"), {
        **defaults, "model": None, "texts": None, "tasks": None, "steps": ". ", "text_column": None,
        "task_columns": None, "alpha": 0.05, "project": "auto", "output": "outputs/sweep.json"})
    if not cfg["model"] or not cfg["texts"] or not cfg["tasks"]:
        raise BadInput("pass --model M, --texts FILE and --tasks TASKS (or set them in the recipe)")
    _check_model_name(cfg["model"])
    texts = _read_lines(cfg["texts"], cfg["text_column"])
    tasks = _load_array(cfg["tasks"], "tasks", cfg["task_columns"])
    steps = _separator(cfg["steps"])
    _check_steps(texts, steps, pad=False)
    project = cfg["project"]
    if isinstance(project, str) and project not in ("auto", "none"):
        project = int(project) if project.isdigit() else project
    model, tokenizer = load_model(cfg["model"])
    output = Path(cfg["output"])
    sweep = sweep_layers(model, tokenizer, texts, tasks, hook_points=cfg["hook_points"], steps=steps,
                         pool=cfg["pool"], context=cfg["context"], max_length=cfg["max_length"],
                         batch_size=cfg["batch_size"], chunk_size=cfg["chunk_size"], alpha=cfg["alpha"],
                         project=None if project == "none" else project)
    names = _task_names(cfg["tasks"], cfg["task_columns"])
    if len(names) == tasks.shape[1]:
        for structure in sweep.structures.values():
            structure.task_names_ = names
    _save_json(output, sweep.to_dict())
    sweep.plot(output.with_suffix(".png"))
    print(sweep.table())
    print(f"most confident: {sweep.best()} ({sweep.confidence[sweep.best()]:.2f}); confidence = the share of tasks "
          f"whose marked and unmarked steps lie a decade or more either side of the critical p-value -> {output} "
          f"(and {output.with_suffix('.png').name})")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    """Train a specialist adapter (Theorem 2) on states, tasks and (optionally) a discovered structure."""
    from .adapter.config import SpecialistConfig
    from .adapter.model import SpecialistAdapter
    from .adapter.lambda_path import train_specialist
    from .structure.discovery import TaskStructure

    from .adapter.training_args import SpecialistTrainingArguments

    # defaults come from the API itself (one source of truth): SpecialistConfig's fields for the adapter, the
    # fields of SpecialistTrainingArguments for training (flags and recipe keys alike)
    training_names = _training_fields()
    cfg = _merge(args, _load_recipe(args.recipe, "train"), {
        "states": None, "tasks": None, "structure": None, "output": "outputs/adapter", "task_columns": None,
        **api_defaults(SpecialistConfig, ("d_latent", "sparsity", "hook_point", "base_model", "task_types", "n_classes",
                                          "step_rule", "pool")),
        **api_defaults(SpecialistTrainingArguments, training_names),
    })
    try:
        training_args = SpecialistTrainingArguments(**{
            name: (_listed(cfg[name], float) if name == "lambda_path" else cfg[name]) for name in training_names})
    except (TypeError, ValueError) as err:
        raise BadInput(str(err)) from err
    if not cfg["states"] or not cfg["tasks"]:
        raise BadInput("pass --states STATES.npy and --tasks TASKS.npy (or set them in the recipe)")
    structure = None
    if cfg["structure"]:
        file = Path(cfg["structure"])
        if not file.is_file():
            raise BadInput(f"structure file not found: {file}")
        try:
            structure = TaskStructure.from_dict(json.loads(file.read_text()))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BadInput(f"--structure {file} is not a structure.json (as `discover` writes): {err}") from None
    columns = _task_columns(args, cfg)
    recorded = getattr(structure, "task_names_", None)
    if columns is None and recorded and set(recorded) <= set(_task_names(cfg["tasks"])):
        columns = list(recorded)  # the columns the structure was discovered on, in its order
        print(f"task columns from {cfg['structure']}: {','.join(columns)}")
    states, tasks = _load_states(cfg["states"]), _load_array(cfg["tasks"], "tasks", columns)
    try:
        sparsity = cfg["sparsity"] if cfg["sparsity"] == "auto" else float(cfg["sparsity"])
    except (TypeError, ValueError):
        raise BadInput(f"--sparsity must be 'auto' or a non-negative number, got {cfg['sparsity']!r}.") from None
    n_tasks = tasks.shape[-1] if tasks.ndim > 1 else 1
    task_types, n_classes = _listed(cfg["task_types"], str), _listed(cfg["n_classes"], int)
    conflicting = [i for i, (kind, k) in enumerate(zip(task_types or [], n_classes or []))
                   if kind == "regression" and k]
    if conflicting:  # both flags typed: one of them is a mistake (the Python API warns and drops the classes)
        i = conflicting[0]
        raise BadInput(f"--n-classes gives task {i} {n_classes[i]} classes but --task-types makes it 'regression'; "
                       "use 0 for a regression task, or type it 'classification'.")
    if n_classes is None and task_types and "classification" in task_types:
        n_classes = _classes_from_labels(tasks, task_types)
    names = _task_names(cfg["tasks"], columns) or None  # tasks named by their columns (summary, card, evaluate)
    if structure is not None:
        _check_structure_tasks(structure, names, n_tasks, cfg["structure"])
    try:
        config = SpecialistConfig(d_in=int(states.shape[-1]), d_latent=cfg["d_latent"], n_tasks=n_tasks,
                                  sparsity=sparsity, task_types=task_types, n_classes=n_classes,
                                  task_names=names if names and len(names) == n_tasks else None,
                                  **_pipeline_for_config(cfg))  # hook point, step rule, pooling, base id, revision
    except ValueError as err:
        raise BadInput(str(err)) from err
    adapter = SpecialistAdapter(config)
    history = train_specialist(adapter, states, tasks, None if structure is None else structure.step_tasks_,
                               args=training_args)
    folder = adapter.save_pretrained(cfg["output"], structure=structure)  # card: the held-out metrics of training
    print(f"trained: selected sparsity {history['selected_sparsity']:.3g}, support per task "
          f"{adapter.task_support_.sum(1).tolist()} -> {folder}")
    return EXIT_OK


def _check_structure_tasks(structure: Any, names: list[str] | None, n_tasks: int, path: str) -> None:
    """The structure's task columns must be the tasks' columns, in the same order: `discover` records the table's
    column names in structure.json, so a table whose columns come in another order is refused, not read with
    another task's steps."""
    if structure.n_tasks_ != n_tasks:
        raise BadInput(f"--structure {path} marks steps for {structure.n_tasks_} task(s) but the tasks have {n_tasks} "
                       "column(s); discover the structure on the same task columns.")
    from ._arrays import names_differ

    recorded = getattr(structure, "task_names_", None)
    differ = names_differ(recorded, names)
    if differ is None:
        return
    if differ == "order":
        raise BadInput(f"--structure {path} marks the tasks {recorded} in that order, but the tasks come as {names}; "
                       f"pass --task-columns {','.join(recorded)} so each task gets its own steps.")
    raise BadInput(f"--structure {path} was discovered for the tasks {recorded}, but the tasks are {names}; discover "
                   "the structure on these tasks, or pass --task-columns naming the structure's tasks.")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a saved adapter (folder or Hub repo id) on states and tasks, against ground truth when given."""
    from .adapter.model import SpecialistAdapter
    from .adapter.batches import prepare_training_data
    from .adapter.loop import evaluate
    from .metrics import block_r2

    cfg = _merge(args, _load_recipe(args.recipe, "evaluate"), {
        "adapter": None, "states": None, "tasks": None, "revision": None, "relevant": None, "irrelevant": None,
        "output": None, "task_columns": None})
    if not cfg["adapter"] or not cfg["states"] or not cfg["tasks"]:
        raise BadInput("pass --adapter DIR_OR_REPO_ID, --states STATES.npy and --tasks TASKS.npy")
    from ._files import check_source

    source = check_source(cfg["adapter"], "folder", namespace_required=True)  # a missing folder fails here
    if source == "local" and cfg["revision"]:
        raise BadInput(f"--revision {cfg['revision']} names a Hub revision, but --adapter {cfg['adapter']} is a local "
                       "folder, which has none; drop --revision, or pass the Hub repo id.")
    adapter = SpecialistAdapter.from_pretrained(cfg["adapter"], revision=cfg["revision"])
    columns = _evaluation_columns(_listed(_task_columns(args, cfg), str), cfg["tasks"], adapter.config)
    states, tasks = _load_states(cfg["states"]), _load_array(cfg["tasks"], "tasks", columns)
    structure = getattr(adapter, "structure_", None)
    expected = adapter.config.n_steps or (structure.step_tasks_.shape[0] if structure is not None else None)
    if states.ndim == 3 and expected is not None and states.shape[1] != expected:
        raise BadInput(f"states have {states.shape[1]} steps per sequence (shape {tuple(states.shape)}), but the adapter "
                       f"was trained on {expected}; extract them with the adapter's step rule "
                       f"({adapter.config.step_rule!r}).")
    mask = None  # the steps each task is read from, as `predict` reads them (`config.step_tasks`, else the structure)
    if states.ndim == 3:
        served = [adapter.serving_steps(i, states.shape[1]) for i in range(adapter.config.n_tasks)]
        mask = None if any(s is None for s in served) else np.stack(served, axis=1)
    h, t, m = prepare_training_data(adapter, states, tasks, mask)
    metrics = evaluate(adapter, h, t, m)
    metrics["adapter/support_size"] = int(adapter.task_support_.sum())
    if cfg["relevant"] and cfg["irrelevant"]:
        relevant, irrelevant = _load_array(cfg["relevant"], "relevant"), _load_array(cfg["irrelevant"], "irrelevant")
        rows = h.reshape(-1, h.shape[-1])
        block = adapter.task_latents(rows, task=0).detach().numpy()
        metrics.update({f"latents/{k}": v for k, v in block_r2(block, relevant.reshape(len(rows), -1), irrelevant.reshape(len(rows), -1)).items()})
    from .adapter.card import metric_meaning, named_metrics

    named = named_metrics(adapter.config, metrics)
    width = max(len(k) for k in named)
    for key, value in named.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:{width}s} {shown:>10s}  {metric_meaning(adapter.config, key, held_out=False)}")
    if cfg["output"]:
        _save_json(cfg["output"], named)
    return EXIT_OK


def _training_fields() -> list[str]:
    """The `SpecialistTrainingArguments` fields the `train` command exposes (`sparsity` is the config's flag)."""
    import dataclasses

    from .adapter.training_args import SpecialistTrainingArguments

    return [f.name for f in dataclasses.fields(SpecialistTrainingArguments) if f.name != "sparsity"]


def _evaluation_columns(columns: list[str] | None, tasks_path: str, config: Any) -> list[str] | None:
    """The task columns `evaluate` reads, in the adapter's task order: a table's columns are matched to the
    adapter's task names (recorded from the training table's columns) by name, never by position."""
    task_names = config.task_names
    if not config.named_tasks or str(tasks_path).lower().endswith((".npy", ".txt")):
        return columns
    if columns is None:
        available = _task_names(tasks_path)
        return list(task_names) if set(task_names) <= set(available) else None
    if sorted(columns) == sorted(task_names):
        return list(task_names)  # the same columns in another order: read them in the order the heads were trained
    raise BadInput(f"--task-columns {columns} do not match the adapter's tasks {task_names} (named by the columns it "
                   "was trained on); pass those columns.")


def cmd_push(args: argparse.Namespace) -> int:
    """Push a saved adapter folder to the Hub in one commit."""
    from .hub import push_folder

    cfg = _merge(args, _load_recipe(args.recipe, "push"), {"dir": None, "repo_id": None, "private": None,
                                                           "branch": None, "commit_message": None, "token": None})
    if not cfg["dir"] or not cfg["repo_id"]:
        raise BadInput("usage: hf-specialist push DIR REPO_ID (or `dir` and `repo_id` in the recipe)")
    if not Path(cfg["dir"]).is_dir():
        raise BadInput(f"not a folder: {cfg['dir']}")
    url = push_folder(cfg["dir"], cfg["repo_id"], private=cfg["private"], branch=cfg["branch"],
                      commit_message=cfg["commit_message"], token=cfg["token"])
    print(f"pushed {cfg['dir']} to {cfg['repo_id']}: {url}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the end-to-end demo on a real pretrained model shipped offline (MiniLM, or --model smollm2)."""
    from .demo import run_demo
    from .knowledge import run_entities_demo

    # both demos are one pipeline (`pipeline.run_pipeline`) with their own data and scoring; the flags' defaults
    # are the chosen demo's own (read from its signature, never written twice)
    recipe = _load_recipe(args.recipe, "demo")
    data = args.data or recipe.get("data") or "planted"
    runner = {"planted": run_demo, "entities": run_entities_demo}.get(data)
    if runner is None:
        raise BadInput(f"--data must be 'planted' or 'entities', got {data!r}")
    defaults = api_defaults(run_demo, ("model", "n", "T", "M", "hook_point", "d_latent", "epochs", "seed"))
    defaults.update(api_defaults(runner, [name for name in defaults if name != "M"]))
    cfg = _merge(args, recipe, {**defaults, "output": api_defaults(run_demo, ["output_dir"])["output_dir"],
                                "data": data})
    options = {name: cfg[name] for name in ("n", "T", "hook_point", "d_latent", "epochs", "seed")}
    if runner is run_entities_demo:  # outcomes from what the model knows about the entities (RAVEL attributes)
        run_entities_demo(cfg["model"], output_dir=str(Path(cfg["output"]) / "entities"), **options)
    else:
        run_demo(cfg["model"], M=cfg["M"], output_dir=cfg["output"], **options)
    return EXIT_OK


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]] = {}


def _register(name: str, func: Callable[[argparse.Namespace], int], add_args: Callable[[argparse.ArgumentParser], None]) -> None:
    if name in COMMANDS:
        raise ValueError(f"command {name!r} registered twice")
    COMMANDS[name] = (func, add_args)


def _extract_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="minilm (default), smollm2, or a local model folder")
    p.add_argument("--texts", help="a .txt (one sequence a line), .jsonl, .csv, .parquet, a save_to_disk folder or a "
                                   "Hub dataset id (column: --text-column, default 'text')")
    p.add_argument("--hook-point", dest="hook_point", help="e.g. layers.3, layers.-1, embed")
    p.add_argument("--steps", help="'token' or a separator string such as '. ' (default)")
    p.add_argument("--pool", choices=["mean", "last", "first"])
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--cache-dir", dest="cache_dir")
    p.add_argument("--pad", action="store_true", default=None,
                   help="pad texts with fewer steps (and write a _mask.npy beside the output); without it they are "
                        "an error")
    p.add_argument("--context", choices=["full", "isolated"],
                   help="full (default): whole texts through the model; isolated: each step alone (no content leaks "
                        "between steps; recorded, so the trained adapter reads texts the same way)")
    p.add_argument("--output", "-o", help="output .npy (with --pad, a _mask.npy is written beside it)")


def _discover_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--states", help="(n_sequences, T[, d]) .npy; or --model and --texts to extract in chunks")
    p.add_argument("--model", help="extract from this model (minilm, smollm2 or a folder) in chunks, streaming "
                                   "the test statistics (memory bounded by --chunk-size)")
    p.add_argument("--texts", help="with --model: a .txt (one sequence a line), .jsonl, .csv, .parquet, a "
                                   "save_to_disk folder or a Hub dataset id (--text-column)")
    p.add_argument("--hook-point", dest="hook_point", help="with --model: e.g. layers.3 (default layers.-1)")
    p.add_argument("--steps", help="with --model: 'token' or a separator such as '. ' (default)")
    p.add_argument("--pool", choices=["mean", "last", "first"])
    p.add_argument("--batch-size", dest="batch_size", type=int, help="with --model: texts per forward pass")
    p.add_argument("--chunk-size", dest="chunk_size", type=int, help="with --model: texts per statistics update")
    p.add_argument("--max-length", dest="max_length", type=int)
    p.add_argument("--tasks", help="(n_sequences, M) .npy, or the --task-columns of a .csv/.jsonl/.parquet/saved/Hub "
                                   "dataset")
    p.add_argument("--context", choices=["auto", "full", "isolated"],
                   help="with --model: 'isolated' runs each step's text alone (which part of the INPUT serves a task; "
                        "no content leaks between steps); 'full' runs whole texts (where in the model); 'auto' "
                        "(default): isolated for separator steps, full for token steps")
    p.add_argument("--segment-length", dest="segment_length", type=int,
                   help="steps per segment (default 1: every step on its own, runs at any offset)")
    p.add_argument("--carryover", choices=["auto", "true", "false"],
                   help="whether a step's state carries the previous step's action (the paper's model); auto: "
                        "false at step level, true for segments")
    p.add_argument("--causal", choices=["true", "false"],
                   help="whether each step's state reads only its own and earlier steps (a decoder's states in full "
                        "context; then where content leaks a step must also depend on the task given every earlier "
                        "step); default: measured on --model in full context (isolated states do not use it), unknown "
                        "(false) for --states")
    p.add_argument("--reduction", choices=["auto", "supervised", "pca"],
                   help="how --project dims are chosen per step: pca (top variance), supervised (task directions "
                        "learned on a held-out quarter of the first batch, then top variance) or auto (default): pca "
                        "unless its dims keep under a tenth of what the full states predict for some task")
    p.add_argument("--test", choices=["fisher_z", "rff_z", "knn_cmi", "neural_cmi"])
    p.add_argument("--alpha", type=float)
    p.add_argument("--mode", choices=["pairwise", "direct", "both"])
    p.add_argument("--conditioning", choices=["auto", "band", "all", "past", "band+all", "band+all+past"],
                   help="direct test given the two neighbours, every other step, every earlier step, or several (a "
                        "step marked only where each rejects); auto (default): every other step where the states "
                        "pass the band check (n >= 100 (T d + d_g)), the neighbours and every other step where it "
                        "fails (n >= 10 (T d + d_g); and every earlier step for a decoder's states), else the two "
                        "neighbours")
    p.add_argument("--decision", choices=["auto", "chain", "representative"],
                   help="mark segments from every step's direct test by the Markov chain rule, or from each "
                        "segment's end step alone (halves the tests); auto (default): chain for fisher_z")
    p.add_argument("--correction", choices=["none", "bonferroni", "fdr_bh"])
    p.add_argument("--project", help="dims kept per step: an int, 'auto' (default: 8 when wider) or 'none'")
    p.add_argument("--seed", type=int)
    p.add_argument("--truth", help="optional (T, M) .npy ground truth to score against")
    p.add_argument("--output", "-o", help="structure.json (a .png heatmap is written beside it)")


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="minilm, smollm2 or a local model folder")
    p.add_argument("--texts", help="a .txt (one sequence a line), .jsonl, .csv, .parquet, a save_to_disk folder or a "
                                   "Hub dataset id (--text-column)")
    p.add_argument("--tasks", help="(n_sequences, M) .npy, or the --task-columns of a table")
    p.add_argument("--hook-points", dest="hook_points", help="'layers.*' (default: every layer) or comma-free specs "
                                                             "such as 'layers.[0-3]'")
    p.add_argument("--steps", help="'token' or a separator such as '. ' (default)")
    p.add_argument("--pool", choices=["mean", "last", "first"])
    p.add_argument("--context", choices=["full", "isolated"],
                   help="full (default): whole texts, where in the model; isolated: each step alone")
    p.add_argument("--max-length", dest="max_length", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--chunk-size", dest="chunk_size", type=int, help="texts per statistics update")
    p.add_argument("--alpha", type=float)
    p.add_argument("--project", help="dims kept per step: an int, 'auto' (default) or 'none'")
    p.add_argument("--output", "-o", help="sweep.json (a .png per-layer heatmap is written beside it)")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--states", help="(n_sequences, T, d) or (rows, d) .npy")
    p.add_argument("--tasks", help="(n_sequences, M) or (rows, M) .npy")
    p.add_argument("--structure", help="structure.json from `discover` (its step x task mask picks the rows per task)")
    p.add_argument("--d-latent", dest="d_latent", type=int, help="latent dims (default: SpecialistConfig's)")
    p.add_argument("--sparsity", help="'auto' (default) or a lambda; 0 trains the generalist")
    p.add_argument("--task-types", dest="task_types",
                   help="comma-separated 'regression' / 'classification' per task (default: all regression)")
    p.add_argument("--n-classes", dest="n_classes",
                   help="comma-separated classes per task (0 for regression; default: read from the labels)")
    p.add_argument("--step-rule", dest="step_rule", help="how the states' steps were made (recorded for reloading)")
    p.add_argument("--pool", choices=["mean", "last", "first"])
    p.add_argument("--hook-point", dest="hook_point")
    p.add_argument("--base-model", dest="base_model")
    p.add_argument("--output", "-o", help="adapter folder")
    _training_flags(p)


def _training_flags(p: argparse.ArgumentParser) -> None:
    """One flag per `SpecialistTrainingArguments` field (its help and type from the field; defaults stay there)."""
    import dataclasses

    from .adapter.training_args import MIXED_PRECISIONS, SELECTION_RULES, SpecialistTrainingArguments

    choices = {"mixed_precision": MIXED_PRECISIONS, "selection": SELECTION_RULES}
    fields = {f.name: f for f in dataclasses.fields(SpecialistTrainingArguments)}
    for name in _training_fields():
        meta = fields[name].metadata
        flag = "--" + name.replace("_", "-")
        kind = meta.get("cli_type")
        if kind is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=meta["help"])
        elif kind == "float_list":
            p.add_argument(flag, dest=name, help=meta["help"])
        else:
            p.add_argument(flag, dest=name, type=kind, choices=choices.get(name), help=meta["help"])


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", help="adapter folder or Hub repo id")
    p.add_argument("--revision")
    p.add_argument("--states")
    p.add_argument("--tasks")
    p.add_argument("--relevant", help="optional (rows, a) .npy of true task-relevant latents (task 0)")
    p.add_argument("--irrelevant", help="optional (rows, b) .npy of true irrelevant latents")
    p.add_argument("--output", "-o", help="metrics .json")


def _push_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", help="a saved adapter folder")
    p.add_argument("repo_id", nargs="?", help="namespace/name")
    p.add_argument("--private", action="store_true", default=None)
    p.add_argument("--branch")
    p.add_argument("--commit-message", dest="commit_message")
    p.add_argument("--token")


def _demo_args(p: argparse.ArgumentParser) -> None:
    from .demo import run_demo  # light: torch loads when the demo runs
    from .knowledge import run_entities_demo

    default = api_defaults(run_demo, ("model", "n", "T", "M", "d_latent", "epochs", "seed", "output_dir"))
    p.add_argument("--model", help=f"minilm, smollm2 or a local model folder (default {default['model']})")
    p.add_argument("--data", choices=["planted", "entities"],
                   help="planted: outcomes are numbers stated in the text (default); entities: outcomes from real "
                        "attributes of the occupations and cities named (RAVEL), which the model must know")
    p.add_argument("--n", type=int, help=f"sequences (default {default['n']})")
    p.add_argument("--T", type=int, help=f"sentences per sequence (default {default['T']})")
    p.add_argument("--M", type=int, help=f"tasks (default {default['M']}; planted only)")
    p.add_argument("--hook-point", dest="hook_point", help="default: a middle layer of the offline models")
    p.add_argument("--d-latent", dest="d_latent", type=int, help=f"latent dims (default {default['d_latent']})")
    p.add_argument("--epochs", type=int, help=f"training epochs per model (default {default['epochs']} planted, "
                                                f"{api_defaults(run_entities_demo, ['epochs'])['epochs']} entities)")
    p.add_argument("--seed", type=int, help=f"default {default['seed']}")
    p.add_argument("--output", "-o", help=f"output folder (default ./{default['output_dir']})")


for _name, _func, _args in (
    ("extract", cmd_extract, _extract_args),
    ("discover", cmd_discover, _discover_args),
    ("sweep", cmd_sweep, _sweep_args),
    ("train", cmd_train, _train_args),
    ("evaluate", cmd_evaluate, _evaluate_args),
    ("push", cmd_push, _push_args),
    ("demo", cmd_demo, _demo_args),
):
    _register(_name, _func, _args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `hf-specialist` command."""
    parser = argparse.ArgumentParser(prog="hf-specialist", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (func, add_args) in COMMANDS.items():
        p = sub.add_parser(name, help=(func.__doc__ or "").splitlines()[0], description=func.__doc__)
        p.add_argument("--recipe", help="a YAML recipe whose keys mirror the Python API")
        p.add_argument("--debug", action="store_true", help="print the full traceback of an error")
        if name in ("extract", "discover", "sweep"):
            p.add_argument("--text-column", dest="text_column",
                           help="the texts' column in a .csv/.jsonl/.parquet/saved/Hub dataset (default 'text')")
        if name in ("discover", "sweep", "train", "evaluate"):
            p.add_argument("--task-columns", dest="task_columns",
                           help="comma-separated task columns of a .csv/.jsonl/.parquet/saved/Hub dataset given as "
                                "--tasks (default: every column)")
        add_args(p)
        p.set_defaults(func=func)
    return parser


def _show_warning(command: str) -> Callable[..., None]:
    """`warnings.showwarning` for a command: a `UserWarning` (ours) as one line `hf-specialist CMD: warning: ...`;
    any other category (a library's deprecation notice) with its category and source line."""
    def show(message: Any, category: type[Warning], filename: str, lineno: int, *rest: Any) -> None:
        if category is UserWarning:
            print(f"hf-specialist {command}: warning: {message}", file=sys.stderr)
        else:
            print(f"hf-specialist {command}: {category.__name__} ({filename}:{lineno}): {message}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `hf-specialist`; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        with warnings.catch_warnings():  # a warning is a line of the command's own, not a Python source line
            warnings.showwarning = _show_warning(args.command)
            return args.func(args)
    except InputError as err:  # bad input, whatever door found it: exit 2 with the reason
        if args.debug:
            traceback.print_exc()
        print(f"hf-specialist {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:  # noqa: BLE001 - any other failure is exit code 1, never read as bad input
        if args.debug:
            traceback.print_exc()
        hint = "" if args.debug else " (run with --debug for the traceback)"
        message = str(err).splitlines()[0] if str(err) else ""
        print(f"hf-specialist {args.command}: failed: {type(err).__name__}: {message}{hint}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
