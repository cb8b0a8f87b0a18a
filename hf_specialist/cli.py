"""The `hf-specialist` command: extract, discover, train, evaluate, push, demo.

Every subcommand takes `--recipe FILE.yaml` whose keys mirror the Python API's keyword arguments; flags given on
the command line win over the recipe. Exit codes: 0 success, 2 bad arguments or input (one-line reason), 1 failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(ValueError):
    """An input problem reported with exit code 2."""


def _load_recipe(path: str | None, section: str) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    file = Path(path)
    if not file.is_file():
        raise BadInput(f"recipe file not found: {path}")
    content = yaml.safe_load(file.read_text()) or {}
    if not isinstance(content, dict):
        raise BadInput(f"recipe {path} must be a mapping of keys to values")
    merged = {k: v for k, v in content.items() if not isinstance(v, dict)}
    merged.update(content.get(section, {}) or {})
    return merged


def _merge(args: argparse.Namespace, recipe: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Command-line flags (when given) over recipe keys over defaults."""
    values = dict(defaults)
    values.update({k: v for k, v in recipe.items() if k in defaults})
    unknown = sorted(set(recipe) - set(defaults) - {"command"})
    if unknown:
        print(f"warning: recipe keys not used by this command: {unknown}", file=sys.stderr)
    for key in defaults:
        value = getattr(args, key, None)
        if value is not None:
            values[key] = value
    return values


def _read_lines(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise BadInput(f"texts file not found: {path}")
    if file.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in file.read_text().splitlines() if line.strip()]
    return [line for line in file.read_text().splitlines() if line.strip()]


def _load_array(path: str, name: str) -> np.ndarray:
    file = Path(path)
    if not file.is_file():
        raise BadInput(f"{name} file not found: {path}")
    try:
        return np.load(file, allow_pickle=False)
    except ValueError as err:
        raise BadInput(f"{name} file {path} is not a .npy array: {err}") from err


# --- subcommands ------------------------------------------------------------------------------------


def cmd_extract(args: argparse.Namespace) -> int:
    """Extract per-step hidden states from a model into a .npy file."""
    from .data import extract_steps
    from .models import load_model

    cfg = _merge(
        args,
        _load_recipe(args.recipe, "extract"),
        {"model": "minilm", "texts": None, "hook_point": "layers.3", "steps": ". ", "pool": "mean", "batch_size": 16,
         "output": "outputs/states.npy", "cache_dir": None},
    )
    texts = _read_lines(cfg["texts"]) if cfg["texts"] else _example_texts()
    model, tokenizer = load_model(cfg["model"])
    steps = "token" if cfg["steps"] == "token" else cfg["steps"].encode().decode("unicode_escape")
    states = extract_steps(
        model, tokenizer, texts, hook_point=cfg["hook_point"], steps=steps, pool=cfg["pool"],
        batch_size=cfg["batch_size"], pad_steps=True, cache_dir=cfg["cache_dir"],
    )
    array, mask = states
    out = Path(cfg["output"])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, array)
    np.save(out.with_name(out.stem + "_mask.npy"), mask)
    print(f"extracted {array.shape[0]} sequences x {array.shape[1]} steps x {array.shape[2]} dims "
          f"from {cfg['model']} at {cfg['hook_point']} -> {out}")
    norms = np.linalg.norm(array, axis=-1)
    for i, text in enumerate(texts[:3]):
        print(f"  [{i}] {int(mask[i].sum())} steps, step norms {", ".join(f"{v:.2f}" for v in norms[i][mask[i]])} :: {text[:60]!r}")
    return EXIT_OK


def _example_texts() -> list[str]:
    return [
        "The red box holds 3 apples. Anna paints the fence blue. The green box holds 5 pears.",
        "The blue box holds 7 apples. Omar reads a long book. The red box holds 2 pears.",
        "The green box holds 4 apples. Lena walks to the market. The blue box holds 9 pears.",
    ]


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]] = {}


def _register(name: str, func: Callable[[argparse.Namespace], int], add_args: Callable[[argparse.ArgumentParser], None]) -> None:
    if name in COMMANDS:
        raise ValueError(f"command {name!r} registered twice")
    COMMANDS[name] = (func, add_args)


def _extract_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="minilm (default), smollm2, or a local model folder")
    p.add_argument("--texts", help="a .txt (one sequence per line) or .jsonl file with a 'text' field")
    p.add_argument("--hook-point", dest="hook_point", help="e.g. layers.3, layers.-1, embed")
    p.add_argument("--steps", help="'token' or a separator string such as '. ' (default)")
    p.add_argument("--pool", choices=["mean", "last", "first"])
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--cache-dir", dest="cache_dir")
    p.add_argument("--output", "-o", help="output .npy (a _mask.npy is written beside it)")


def _demo_placeholder(args: argparse.Namespace) -> int:
    """Run the demo (for now: extraction on the offline MiniLM)."""
    return cmd_extract(args)


_register("extract", cmd_extract, _extract_args)
_register("demo", _demo_placeholder, _extract_args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `hf-specialist` command."""
    parser = argparse.ArgumentParser(prog="hf-specialist", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (func, add_args) in COMMANDS.items():
        p = sub.add_parser(name, help=(func.__doc__ or "").splitlines()[0], description=func.__doc__)
        p.add_argument("--recipe", help="a YAML recipe whose keys mirror the Python API")
        add_args(p)
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `hf-specialist`; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        return args.func(args)
    except (BadInput, ValueError, TypeError, FileNotFoundError) as err:
        print(f"hf-specialist {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:  # noqa: BLE001 - the CLI reports any failure as exit code 1
        print(f"hf-specialist {args.command}: failed: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
