"""Step extraction over lists of texts or `datasets` columns, with an Arrow cache and `accelerate` sharding."""

from __future__ import annotations

import hashlib
import json
import os
import itertools
from collections import Counter
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._atomic import atomic_folder
from ._distributed import barrier, process_layout
from ._validation import InputError, InputTypeError
from .hooks import HiddenStateExtractor, resolve_hook_points
from .steps import (POOLING_MODES, StepRule, ensure_pad_token, pool_steps, stack_steps, step_spans, token_step_counts,
                    tokenize_steps)

CACHE_FORMAT_VERSION = 2


def _texts_from(texts: Sequence[str] | Any, column: str | None) -> list[str]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a hard dependency
        datasets = None
    if datasets is not None and isinstance(texts, datasets.Dataset):
        if column is None:
            string_columns = [k for k, f in texts.features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
            if len(string_columns) != 1:
                raise InputError(f"Pass `column=`: the dataset has string columns {string_columns}, expected exactly one.")
            column = string_columns[0]
        if column not in texts.column_names:
            raise InputError(f"`column` {column!r} is not in the dataset; columns are {texts.column_names}.")
        return list(texts[column])
    if isinstance(texts, str):
        raise InputTypeError("`texts` must be a list of strings or a datasets.Dataset, got a single str; wrap it in a list.")
    texts = list(texts)
    if not texts:
        raise InputError("`texts` is empty; pass at least one text.")
    return texts


def cache_key(model: nn.Module, tokenizer: Any, hook_point: str, steps: StepRule, pool: str, max_length: int | None,
              texts: list[str]) -> str:
    """A stable hash of everything that determines the extracted steps.

    Covers every weight and buffer of the model (a digest of their bytes, so an in-place fine-tune or a merged LoRA
    gives a new key), its config, the tokenizer, the hook point, the step rule, pooling, `max_length` and the texts.
    """
    config = getattr(model, "config", None)
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    payload = {
        "version": CACHE_FORMAT_VERSION,
        "model": getattr(config, "_name_or_path", type(model).__name__),
        "revision": getattr(config, "_commit_hash", None),
        "config": hashlib.sha256(config.to_json_string().encode()).hexdigest() if config is not None else None,
        "weights": weights_digest(model),
        "tokenizer": tokenizer_digest(tokenizer),
        "hook_point": hook_point,
        "steps": steps if isinstance(steps, str) else [list(map(list, s)) for s in steps],
        "pool": pool,
        "max_length": max_length,
        "texts": digest.hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every parameter and buffer of `model`."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=False).items():
            flat = tensor.detach().reshape(-1).contiguous().cpu()
            digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
            digest.update(memoryview(flat.view(torch.uint8).numpy()))
    return digest.hexdigest()


def tokenizer_digest(tokenizer: Any) -> str:
    """SHA-256 of what makes a tokenizer split text the way it does (its full serialisation when fast)."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # padding and truncation are per-call settings that the backend keeps from its last call: not identity
        spec = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("padding", "truncation")}
        digest.update(json.dumps(spec, sort_keys=True).encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    for attr in ("padding_side", "truncation_side", "model_max_length", "pad_token", "eos_token", "bos_token",
                 "cls_token", "sep_token"):
        digest.update(f"{attr}={getattr(tokenizer, attr, None)!r};".encode())
    return digest.hexdigest()


def check_extraction(model: nn.Module, texts: list[str], hook_point: str, steps: StepRule, pool: str,
                     batch_size: int) -> tuple[str, list[list[tuple[int, int]]] | None]:
    """Check the extraction arguments before any work; returns the resolved hook point and the step spans."""
    if pool not in POOLING_MODES:
        raise InputError(f"`pool` must be one of {POOLING_MODES}, got {pool!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"`batch_size` must be a positive int, got {batch_size!r}.")
    names = resolve_hook_points(model, hook_point)
    if len(names) != 1:
        raise InputError(f"`hook_point` must resolve to exactly one hook point, got {names}.")
    return names[0], step_spans(texts, steps)


EQUAL_STEPS_REMEDY = ("Call `hfs.extract_padded_steps(...)` (same arguments) to pad them and get a step mask, or "
                      "make every text produce the same number of steps.")


def check_equal_steps(spans: list[list[tuple[int, int]]] | None, texts: list[str], steps: StepRule,
                      remedy: str = "Make every text produce the same number of steps.", tokenizer: Any = None,
                      max_length: int | None = None) -> None:
    """Refuse texts with different step counts before any forward pass, naming the first one that differs;
    `remedy` ends the message (what the caller's user can do instead). Token steps (`spans=None`) are counted with
    `tokenizer` (skipped without one)."""
    if spans is None and tokenizer is None:
        return
    counts = [len(s) for s in spans] if spans is not None else token_step_counts(tokenizer, texts, max_length)
    if len(set(counts)) > 1:
        first = Counter(counts).most_common(1)[0][0]
        bad = next(i for i, c in enumerate(counts) if c != first)
        token_hint = (" (`steps='token'`, the default, makes every token a step; for sentence steps pass a "
                      "separator such as `steps='. '`, or per-text character spans)") if spans is None else ""
        raise InputError(
            f"Texts have different numbers of steps under the rule {steps!r}{token_hint}: most have {first}, "
            f"texts[{bad}] has {counts[bad]} ({texts[bad][:80]!r}); range {min(counts)}..{max(counts)}. {remedy}"
        )


def _batches(items: list[Any], batch_size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def iter_step_arrays(
    model: nn.Module,
    tokenizer: Any,
    texts: list[str],
    spans: list[list[tuple[int, int]]] | None,
    hook_point: str,
    pool: str = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    progress: bool | None = None,
    dtype: torch.dtype | None = None,
) -> Iterator[np.ndarray]:
    """Yield one `(T_i, d)` float32 array per text, a batch of texts at a time (memory bounded by the batch)."""
    for row in iter_layer_step_arrays(model, tokenizer, texts, spans, [hook_point], pool, batch_size, max_length,
                                      progress, dtype=dtype):
        yield row[hook_point]


def iter_layer_step_arrays(
    model: nn.Module,
    tokenizer: Any,
    texts: list[str],
    spans: list[list[tuple[int, int]]] | None,
    hook_points: list[str],
    pool: str = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    progress: bool | None = None,
    context: str = "full",
    dtype: torch.dtype | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield, per text, `{hook point: (T_i, d)}` from ONE forward pass per batch through every hook point (the
    model stops after the deepest). `context="isolated"` runs each step's text on its own (an error about one of
    those pieces names the user's text and step)."""
    if context == "isolated":
        pieces = [text[a:b] for text, text_spans in zip(texts, spans) for a, b in text_spans]
        owners = [(i, t) for i, text_spans in enumerate(spans) for t in range(len(text_spans))]
        counts = [len(s) for s in spans]
        single = iter_layer_step_arrays(model, tokenizer, pieces, [[(0, len(p))] for p in pieces], hook_points, pool,
                                        batch_size * max(1, round(sum(counts) / max(len(counts), 1))), max_length,
                                        progress, dtype=dtype)
        for count in counts:
            try:
                parts = [next(single) for _ in range(count)]
            except InputError as error:  # name the user's text and step, not the index of the step's piece
                import re

                def owner(match: re.Match) -> str:
                    text, step = owners[int(match.group(1))]
                    return f"texts[{text}] step {step + 1} (encoded alone)"

                raise InputError(re.sub(r"`texts\[(\d+)\]`", owner, str(error))) from None
            yield {point: np.concatenate([part[point] for part in parts]) for point in hook_points}
        return
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    label = hook_points[0] if len(hook_points) == 1 else f"{len(hook_points)} hook points"
    try:
        with HiddenStateExtractor(model, hook_points, dtype=dtype) as extractor, torch.inference_mode():
            bar = tqdm(total=len(texts), desc=f"extract {label}", unit="seq", disable=_quiet(progress))
            for batch_index, batch_texts in enumerate(_batches(texts, batch_size)):
                first = batch_index * batch_size
                batch_spans = None if spans is None else spans[first : first + len(batch_texts)]
                inputs, assign, counts = tokenize_steps(tokenizer, batch_texts, batch_spans, max_length, first)
                hidden = extractor(**{k: v.to(device) for k, v in inputs.items()})
                pooled = {point: pool_steps(hidden[point].float().cpu(), assign, pool).numpy() for point in hook_points}
                for row, count in enumerate(counts):
                    yield {point: pooled[point][row, :count].copy() for point in hook_points}
                bar.update(len(batch_texts))
            bar.close()
    finally:
        model.train(was_training)


def iter_isolated_step_arrays(
    model: nn.Module,
    tokenizer: Any,
    texts: list[str],
    spans: list[list[tuple[int, int]]],
    hook_point: str,
    pool: str = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    progress: bool | None = None,
) -> Iterator[np.ndarray]:
    """Yield one `(T_i, d)` array per text whose step `t` is the pooled state of step `t`'s text run through the
    model on its own (`context="isolated"`): no step's state sees another step."""
    for row in iter_layer_step_arrays(model, tokenizer, texts, spans, [hook_point], pool, batch_size, max_length,
                                      progress, context="isolated"):
        yield row[hook_point]


def extract_step_list(*args: Any, **kwargs: Any) -> list[np.ndarray]:
    """Extract one `(T_i, d)` float32 array per text (`iter_step_arrays` collected)."""
    return list(iter_step_arrays(*args, **kwargs))


def _quiet(progress: bool | None) -> bool | None:
    """tqdm's `disable`: `None` hides the bar when stderr is not a terminal."""
    return None if progress is None else not progress


def _save_arrow(path: Path, per_sequence: Iterable[np.ndarray]) -> None:
    """Write `(T_i, d)` arrays (any iterable: it is consumed once, a writer batch at a time) as an Arrow dataset
    with one row per sequence (column `"steps"`), atomically."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    iterator = iter(per_sequence)
    first = next(iterator)
    features = datasets.Features({"steps": datasets.Array2D(shape=(None, first.shape[-1]), dtype="float32")})
    path.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".build-{path.name}-", dir=path.parent))
    try:
        with ArrowWriter(features=features, path=str(build / "steps.arrow")) as writer:
            for array in itertools.chain([first], iterator):
                writer.write({"steps": np.asarray(array, dtype=np.float32)})
            writer.finalize()
        _save_dataset(path, datasets.Dataset.from_file(str(build / "steps.arrow")))
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _save_dataset(path: Path, table: Any) -> None:
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    quiet_before = are_progress_bars_disabled()
    disable_progress_bars()  # a cache write is quick; its bar would only clutter the caller's output
    try:
        with atomic_folder(path) as tmp:
            table.save_to_disk(str(tmp))
    finally:
        if not quiet_before:
            enable_progress_bars()


def _load_arrow(path: Path) -> list[np.ndarray]:
    import datasets

    table = datasets.load_from_disk(str(path)).with_format("numpy")
    return [np.asarray(x, dtype=np.float32) for x in table["steps"]]


_FORMS = ("array", "padded", "dataset")

# arguments `extract_steps` took before each form had its own function: the function to call now
_MOVED_ARGUMENTS = {
    "pad_steps": "`pad_steps=True` is now `hfs.extract_padded_steps(...)`, which returns `(states, step_mask)`",
    "as_dataset": "`as_dataset=True` is now `hfs.extract_steps_dataset(..., cache_dir=...)`, which returns the "
                  "memory-mapped Arrow cache as a `datasets.Dataset`",
}


def _refuse_moved_arguments(given: dict[str, Any]) -> None:
    """A clear migration error for `extract_steps(pad_steps=...)` / `(as_dataset=...)`; Python's own `TypeError`
    for any other unknown keyword."""
    unknown = sorted(set(given) - set(_MOVED_ARGUMENTS))
    if unknown:
        raise InputTypeError(f"extract_steps() got an unexpected keyword argument {unknown[0]!r}")
    reasons = "; ".join(_MOVED_ARGUMENTS[name] for name in sorted(given))
    raise InputError(f"extract_steps() no longer takes {', '.join(f'`{n}`' for n in sorted(given))}: it always "
                     f"returns one `(n_sequences, T, d)` array. {reasons}.")


def extract_steps(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str] | Any,
    hook_point: str = "layers.-1",
    steps: StepRule = "token",
    pool: str = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    *,
    column: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    process_index: int | None = None,
    num_processes: int | None = None,
    context: str = "full",
    **moved: Any,
) -> np.ndarray:
    """Extract per-step hidden states `(n_sequences, T, d)` from a model.

    Every text must produce the same number of steps; other counts raise an `InputError` naming the first text
    that differs, before any forward pass. For texts of different step counts use `extract_padded_steps`, and for
    a memory-mapped cache larger than memory `extract_steps_dataset`.

    Args:
        model (`nn.Module`): a `transformers` model (or `peft.PeftModel`) on the device to run on.
        tokenizer: its tokenizer; a fast one for span steps.
        texts (`list[str]` or `datasets.Dataset`): the sequences; with a dataset, `column` names the text column.
        hook_point (`str`, *optional*, defaults to `"layers.-1"`): one hook-point spec (see `resolve_hook_points`).
        steps (`str` or per-text spans, *optional*, defaults to `"token"`): `"token"`, a separator string, or
            per-text lists of `(start, end)` character spans.
        pool (`str`, *optional*, defaults to `"mean"`): `"mean"`, `"last"` or `"first"` token of each step.
        batch_size (`int`, *optional*, defaults to 16): texts per forward pass; bounds memory.
        max_length (`int`, *optional*): truncate tokenised texts to this many tokens.
        column (`str`, *optional*): the text column when `texts` is a `datasets.Dataset` (default: its only string
            column).
        cache_dir (`str`, *optional*): an Arrow cache keyed by everything that determines the steps (`cache_key`:
            the model's weights and config, the tokenizer, hook point, step rule, context, pooling, `max_length`
            and the texts); reused when present. Under `accelerate launch` each process extracts its own shard and the shards are
            joined into one cache.
        progress (`bool`, *optional*): show a progress bar (default: when stderr is a terminal).
        process_index, num_processes (`int`, *optional*): override the `accelerate` process layout.
        context (`str`, *optional*, defaults to `"full"`): `"full"` runs each text through the model whole, so a
            step's state also carries what attention brought in from the other steps (the question *where in the
            model* a task is read); `"isolated"` runs each step's text through the model on its own, so a step's
            state holds only its own content (the question *which part of the input* serves a task; no content
            leaks between steps at any layer). Needs separator or span steps.

    Returns:
        `np.ndarray` of shape `(n_sequences, T, d)`, float32.

    Raises:
        InputError: bad input (a hook point that matches nothing, a step rule that matches nothing, texts with
            different step counts, ...) before any forward pass; also for the removed `pad_steps=` and
            `as_dataset=`, naming the function that replaces each.
    """
    if moved:
        _refuse_moved_arguments(moved)
    return _extract(model, tokenizer, texts, "array", hook_point=hook_point, steps=steps, pool=pool,
                    batch_size=batch_size, max_length=max_length, column=column, cache_dir=cache_dir,
                    progress=progress, process_index=process_index, num_processes=num_processes, context=context)


def extract_padded_steps(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str] | Any,
    hook_point: str = "layers.-1",
    steps: StepRule = "token",
    pool: str = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    *,
    column: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    process_index: int | None = None,
    num_processes: int | None = None,
    context: str = "full",
) -> tuple[np.ndarray, np.ndarray]:
    """Extract per-step hidden states of texts with different step counts, padded, with a step mask.

    The same extraction as `extract_steps` (same arguments, same cache), for texts whose step counts differ:
    shorter texts are padded with zero states at the end.

    Args:
        model, tokenizer, texts, hook_point, steps, pool, batch_size, max_length, column, cache_dir, progress,
        process_index, num_processes, context: as in `extract_steps`.

    Returns:
        `tuple[np.ndarray, np.ndarray]`: `states` of shape `(n_sequences, T, d)` (float32, `T` the largest step
        count; padded steps are zeros) and `step_mask` of shape `(n_sequences, T)` (bool, `True` on real steps).
    """
    return _extract(model, tokenizer, texts, "padded", hook_point=hook_point, steps=steps, pool=pool,
                    batch_size=batch_size, max_length=max_length, column=column, cache_dir=cache_dir,
                    progress=progress, process_index=process_index, num_processes=num_processes, context=context)


def extract_steps_dataset(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str] | Any,
    hook_point: str = "layers.-1",
    steps: StepRule = "token",
    pool: str = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    *,
    cache_dir: str | os.PathLike,
    column: str | None = None,
    progress: bool | None = None,
    process_index: int | None = None,
    num_processes: int | None = None,
    context: str = "full",
) -> Any:
    """Extract per-step hidden states into the Arrow cache and return it memory-mapped, for data past memory.

    The cache is written batch by batch (memory bounded by one batch) and never loaded whole; `train_specialist`
    reads its batches from disk. As with `extract_steps`, every text must produce the same number of steps (other
    counts raise before any forward pass). Under `accelerate launch` / `torchrun` each process extracts its own shard and the
    shards are joined into one cache.

    Args:
        model, tokenizer, texts, hook_point, steps, pool, batch_size, max_length, column, progress,
        process_index, num_processes, context: as in `extract_steps`.
        cache_dir (`str` or `os.PathLike`): where the Arrow cache lives (required); reused when present.

    Returns:
        `datasets.Dataset` in numpy format with one row per text and one column `"steps"` holding that text's
        `(T, d)` float32 step states.
    """
    if cache_dir is None:
        raise InputError("extract_steps_dataset returns the Arrow cache on disk: pass `cache_dir=` (a folder).")
    return _extract(model, tokenizer, texts, "dataset", hook_point=hook_point, steps=steps, pool=pool,
                    batch_size=batch_size, max_length=max_length, column=column, cache_dir=cache_dir,
                    progress=progress, process_index=process_index, num_processes=num_processes, context=context)


def _extract(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str] | Any,
    form: str,
    *,
    hook_point: str,
    steps: StepRule,
    pool: str,
    batch_size: int,
    max_length: int | None,
    column: str | None,
    cache_dir: str | os.PathLike | None,
    progress: bool | None,
    process_index: int | None,
    num_processes: int | None,
    context: str,
) -> np.ndarray | tuple[np.ndarray, np.ndarray] | Any:
    """The one extraction behind `extract_steps` (`form="array"`), `extract_padded_steps` (`"padded"`) and
    `extract_steps_dataset` (`"dataset"`): checks, sharding, the cache, then the result in the form asked."""
    if form not in _FORMS:  # pragma: no cover - private
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
    texts = _texts_from(texts, column)
    hook_point, spans = check_extraction(model, texts, hook_point, steps, pool, batch_size)
    if context not in ("full", "isolated"):
        raise InputError(f"`context` must be 'full' or 'isolated', got {context!r}.")
    if context == "isolated" and spans is None:
        raise InputError("context='isolated' encodes each step on its own: pass a separator or per-text spans as "
                         "`steps`, not 'token'.")
    if form != "padded":
        check_equal_steps(spans, texts, steps, remedy=EQUAL_STEPS_REMEDY, tokenizer=tokenizer, max_length=max_length)

    if process_index is None or num_processes is None:
        process_index, num_processes = process_layout()
    shard = np.array_split(np.arange(len(texts)), num_processes)[process_index]
    lo, hi = (int(shard[0]), int(shard[-1]) + 1) if len(shard) else (0, 0)

    ensure_pad_token(tokenizer)  # before the key: it is part of the tokenizer's identity
    key_steps = steps if context == "full" else {"isolated": steps if isinstance(steps, str) else list(map(list, steps))}
    root = Path(cache_dir) / cache_key(model, tokenizer, hook_point, key_steps, pool, max_length, texts) \
        if cache_dir else None

    def result(per_sequence: list[np.ndarray] | None) -> Any:
        if form == "dataset":
            import datasets

            return datasets.load_from_disk(str(root / "joined")).with_format("numpy")
        rows = per_sequence if per_sequence is not None else _load_arrow(root / "joined")
        return stack_steps(rows, pad_steps=form == "padded")

    if root is not None and (root / "joined").exists():
        return result(None)

    def run(a: int, b: int) -> Iterator[np.ndarray]:
        if b <= a:
            return iter(())
        if context == "isolated":
            return iter_isolated_step_arrays(model, tokenizer, texts[a:b], spans[a:b], hook_point, pool, batch_size,
                                             max_length, progress)
        return iter_step_arrays(model, tokenizer, texts[a:b], None if spans is None else spans[a:b], hook_point, pool,
                                batch_size, max_length, progress)

    if num_processes == 1:
        if root is None:
            return result(list(run(0, len(texts))))
        _save_arrow(root / "joined", run(0, len(texts)))  # streamed to disk: memory bounded by a batch
        return result(None)

    if root is not None:
        if hi > lo:
            _save_arrow(root / f"shard-{process_index:05d}", run(lo, hi))
        barrier()
        if process_index == 0:
            join_shards(root, num_processes, expected_rows=len(texts))
        barrier()
        return result(None)
    from accelerate.utils import gather_object

    per_sequence = gather_object([list(run(lo, hi))])
    return result([x for part in per_sequence for x in part])


def join_shards(root: Path, num_processes: int, expected_rows: int) -> None:
    """Join the `shard-XXXXX` Arrow folders (in process order) into `root/joined`, memory-mapped, then drop them.

    Raises `RuntimeError` (and writes nothing) when the shards do not hold `expected_rows` sequences together, e.g. a
    process that never wrote its shard.
    """
    import datasets

    parts = [datasets.load_from_disk(str(root / f"shard-{i:05d}")) for i in range(num_processes)
             if (root / f"shard-{i:05d}").exists()]
    found = sum(len(p) for p in parts)
    if found != expected_rows:
        raise RuntimeError(f"The extraction shards in {root} hold {found} sequences, expected {expected_rows}: a "
                           "process did not write its shard; nothing was cached.")
    _save_dataset(root / "joined", datasets.concatenate_datasets(parts))
    for index in range(num_processes):
        shutil.rmtree(root / f"shard-{index:05d}", ignore_errors=True)
