"""Tokens to time steps: span rules, mapping character spans to tokens, and pooling.

A step is either one token (``steps="token"``), the text between occurrences of a separator string
(``steps="\\n"`` or ``steps=". "``), or explicit character spans per text (``steps=[[(0, 12), (13, 40)], ...]``).
Character spans are mapped to tokens through the fast tokenizer's offsets; padding and special tokens never
enter a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch

from ._validation import InputError, InputTypeError

StepRule = Union[str, Sequence[Sequence[tuple[int, int]]]]
POOLING_MODES = ("mean", "last", "first")


def separator_spans(text: str, separator: str) -> list[tuple[int, int]]:
    """Character spans of the non-blank pieces of `text` between occurrences of `separator`.

    Leading and trailing white space is trimmed from each span; empty pieces are dropped.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    while start <= len(text):
        end = text.find(separator, start)
        end = len(text) if end < 0 else end
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            offset = start + (len(piece) - len(piece.lstrip()))
            spans.append((offset, offset + len(stripped)))
        if end >= len(text):
            break
        start = end + len(separator)
    return spans


def step_spans(texts: Sequence[str], steps: StepRule) -> list[list[tuple[int, int]]] | None:
    """Character spans for every text, or `None` for token steps.

    Raises:
        ValueError: an empty text, a text with no step, or per-text spans of the wrong count or out of range.
    """
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputTypeError(f"`texts[{i}]` must be a str, got {type(text).__name__}.")
        if not text.strip():
            raise InputError(f"`texts[{i}]` is empty; every text needs at least one step.")
    if isinstance(steps, str):
        if steps == "token":
            return None
        if not steps:
            raise InputError("`steps` separator must be a non-empty string (or 'token', or per-text spans).")
        if not any(steps in text.strip() for text in texts):
            raise InputError(
                f"The step rule {steps!r} matches nothing in any of the {len(texts)} texts, so each text would be one "
                f"step; e.g. texts[0] = {texts[0][:80]!r}. Pass the separator the texts use (steps='\\n', '. ', ...), "
                "'token', or per-text character spans."
            )
        spans = [separator_spans(text, steps) for text in texts]
    else:
        spans = [list(s) for s in steps]
        if len(spans) != len(texts):
            raise InputError(f"`steps` gives spans for {len(spans)} texts but {len(texts)} texts were passed.")
        for i, (text, text_spans) in enumerate(zip(texts, spans)):
            for start, end in text_spans:
                if not 0 <= start < end <= len(text):
                    raise InputError(
                        f"`steps[{i}]` has span ({start}, {end}) outside text {i} of length {len(text)}; "
                        "spans must satisfy 0 <= start < end <= len(text)."
                    )
    for i, text_spans in enumerate(spans):
        if not text_spans:
            raise InputError(f"`texts[{i}]` has no step under the rule {steps!r}: {texts[i][:60]!r}.")
    return spans


def assignment_matrix(
    offsets: torch.Tensor,
    content_mask: torch.Tensor,
    spans: list[list[tuple[int, int]]] | None,
    n_steps: int,
) -> torch.Tensor:
    """Boolean `(batch, n_steps, tokens)` matrix: token j belongs to step t.

    Args:
        offsets: `(batch, tokens, 2)` character offsets from the fast tokenizer.
        content_mask: `(batch, tokens)` true for real, non-special tokens.
        spans: per-text character spans, or `None` for one step per content token.
        n_steps: width of the step axis (the largest step count in the batch).
    """
    batch, n_tokens = content_mask.shape
    assign = torch.zeros(batch, n_steps, n_tokens, dtype=torch.bool)
    if spans is None:
        for b in range(batch):
            positions = torch.nonzero(content_mask[b]).flatten()
            assign[b, torch.arange(len(positions)), positions] = True
        return assign
    for b, text_spans in enumerate(spans):
        span = torch.tensor(text_spans, dtype=torch.long)
        starts, ends = offsets[b, :, 0], offsets[b, :, 1]
        overlap = (starts[None, :] < span[:, 1:2]) & (ends[None, :] > span[:, 0:1]) & content_mask[b][None, :]
        assign[b, : len(text_spans)] = overlap
    return assign


def pool_steps(hidden: torch.Tensor, assign: torch.Tensor, pool: str) -> torch.Tensor:
    """Pool `(batch, tokens, d)` hidden states into `(batch, n_steps, d)` with the assignment matrix.

    Steps with no token come out as zeros (callers mask or reject them).
    """
    if pool not in POOLING_MODES:
        raise InputError(f"`pool` must be one of {POOLING_MODES}, got {pool!r}.")
    hidden = hidden.float()
    weights = assign.to(hidden.dtype)
    if pool == "mean":
        counts = weights.sum(-1, keepdim=True).clamp(min=1.0)
        return torch.bmm(weights / counts, hidden)
    n_tokens = assign.shape[-1]
    index = torch.arange(n_tokens).expand_as(assign)
    if pool == "first":
        chosen = torch.where(assign, index, n_tokens).min(-1).values.clamp(max=n_tokens - 1)
    else:
        chosen = torch.where(assign, index, -1).max(-1).values.clamp(min=0)
    pooled = torch.gather(hidden, 1, chosen.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    return pooled * assign.any(-1, keepdim=True).to(hidden.dtype)


def stack_steps(
    per_sequence: list[np.ndarray], pad_steps: bool
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Join per-sequence `(T_i, d)` arrays into `(n_sequences, T, d)`.

    Raises:
        ValueError: step counts differ and `pad_steps` is false.
    """
    counts = [len(x) for x in per_sequence]
    if not pad_steps:
        if len(set(counts)) > 1:
            first_bad = next(i for i, c in enumerate(counts) if c != counts[0])
            raise InputError(
                f"Sequences have different numbers of steps (sequence 0 has {counts[0]}, sequence {first_bad} has "
                f"{counts[first_bad]}; range {min(counts)}..{max(counts)}). Use `hfs.extract_padded_steps(...)` to pad "
                "them and get a step mask, or make every text produce the same number of steps."
            )
        return np.stack(per_sequence).astype(np.float32)
    width = max(counts)
    d = per_sequence[0].shape[-1]
    states = np.zeros((len(per_sequence), width, d), dtype=np.float32)
    mask = np.zeros((len(per_sequence), width), dtype=bool)
    for i, x in enumerate(per_sequence):
        states[i, : len(x)] = x
        mask[i, : len(x)] = True
    return states, mask


def ensure_pad_token(tokenizer: Any) -> None:
    """Give a tokenizer without a pad token its eos token as pad token (decoder tokenizers often lack one)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise InputError("The tokenizer has neither a pad nor an eos token; set `tokenizer.pad_token` first.")
        tokenizer.pad_token = tokenizer.eos_token


def token_step_counts(tokenizer: Any, texts: Sequence[str], max_length: int | None = None) -> list[int]:
    """Each text's number of steps under `steps="token"`: its content tokens (no special tokens), after truncation
    to `max_length`, exactly as `tokenize_steps` counts them; tokenises without running any model."""
    ensure_pad_token(tokenizer)
    encoded = tokenizer(list(texts), truncation=max_length is not None, max_length=max_length,
                        return_special_tokens_mask=True)
    return [len(mask) - int(sum(mask)) for mask in encoded["special_tokens_mask"]]


def tokenize_steps(
    tokenizer: Any,
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]] | None,
    max_length: int | None = None,
    first_index: int = 0,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[int]]:
    """Tokenise a batch of texts and map its tokens to steps: the one tokenise-and-pool front end.

    Used by extraction, joint LoRA training and `SpecialistModel`, so all three see the same tokens and steps.

    Args:
        tokenizer: a `transformers` tokenizer (a fast one for span steps).
        texts (`list[str]`): the batch.
        spans: per-text character spans from `step_spans`, or `None` for token steps.
        max_length (`int`, *optional*): truncate to this many tokens.
        first_index (`int`, *optional*): index of `texts[0]` in the caller's full list, for error messages.

    Returns:
        `(model_inputs, assign, counts)`: the tensors to feed the model, the `(batch, max_steps, tokens)` bool
        assignment matrix and each text's step count.

    Raises:
        ValueError: a step covers no token (e.g. cut off by `max_length`).
    """
    ensure_pad_token(tokenizer)
    fast = getattr(tokenizer, "is_fast", False)
    if spans is not None and not fast:
        raise InputError("Span steps need a fast tokenizer (offset mapping); load it with `use_fast=True`.")
    encoded = tokenizer(
        list(texts),
        return_tensors="pt",
        padding=True,
        truncation=max_length is not None,
        max_length=max_length,
        return_offsets_mapping=fast,
        return_special_tokens_mask=True,
    )
    limit = getattr(tokenizer, "model_max_length", None)
    if max_length is None and isinstance(limit, int) and limit < 1_000_000 and encoded["input_ids"].shape[1] > limit:
        lengths = encoded["attention_mask"].sum(-1) if "attention_mask" in encoded else None
        row = int(lengths.argmax()) if lengths is not None else 0
        raise InputError(f"`texts[{first_index + row}]` has {encoded['input_ids'].shape[1]} tokens, more than the "
                         f"{limit} the model reads (the tokenizer's `model_max_length`); pass `max_length=` to cut "
                         "texts (a step cut off is then an error), or split the text (or, for a model that reads "
                         "longer texts, such as one with relative positions, raise `tokenizer.model_max_length`).")
    offsets = encoded.pop("offset_mapping", None)
    special = encoded.pop("special_tokens_mask").bool()
    attention = encoded.get("attention_mask", torch.ones_like(encoded["input_ids"])).bool()
    content = attention & ~special
    counts = [int(c) for c in content.sum(-1)] if spans is None else [len(s) for s in spans]
    assign = assignment_matrix(offsets, content, None if spans is None else [list(s) for s in spans], max(counts))
    for row, count in enumerate(counts):
        empty = (~assign[row, :count].any(-1)).nonzero().flatten()
        if count == 0 or len(empty):
            cause = "cut off by max_length?" if max_length is not None else "whitespace only?"
            detail = "no token" if count == 0 else f"steps {empty.tolist()} cover no token ({cause})"
            raise InputError(f"`texts[{first_index + row}]` has {detail}; every step needs at least one token.")
    return dict(encoded), assign, counts
