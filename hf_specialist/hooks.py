"""Hook points on any `transformers` model and a hidden-state extractor that stops the forward pass early.

Hook-point specs (see `resolve_hook_points`):

- ``"layers.N"``: the output of block N (negative N counts from the end), equal to
  ``output_hidden_states[N + 1]``;
- ``"layers.*"`` or any fnmatch pattern over the canonical names and raw module paths;
- ``"embed"``: the input of block 0, equal to ``output_hidden_states[0]``;
- ``"final_norm"``: the output of the final normalisation layer, where the architecture has one;
- a raw module path such as ``"transformer.h.3.mlp"``.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._validation import InputError, InputTypeError

# Suffixes of the block list per architecture family; matched against module paths, so wrappers such as
# `*ForCausalLM`, `*ForSequenceClassification` and `peft.PeftModel` resolve too.
LAYER_LIST_SUFFIXES: dict[str, str] = {
    "gpt2": "transformer.h",
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "gemma": "model.layers",
    "bert": "encoder.layer",
    "gpt_neox": "gpt_neox.layers",
    "opt": "decoder.layers",
    "t5": "encoder.block",
}
# Encoder-decoder models: hook points index the encoder's blocks (BART, mBART, Marian, Pegasus: `encoder.layers`).
ENCODER_LIST_SUFFIXES: tuple[str, ...] = ("encoder.layers", "encoder.block")
# Names of the final normalisation layer, looked up beside the block list (its siblings).
FINAL_NORM_NAMES: tuple[str, ...] = ("ln_f", "norm", "final_layer_norm", "final_layernorm", "final_norm")
_LAYER_NAME = re.compile(r"^layers\.(-?\d+)$")
_INDEXED_NAME = re.compile(r"^([A-Za-z_]+?)[._ -]?(-?\d+)$")
HOOK_POINT_FORMS = ("'layers.N'", "'layers.-N'", "'embed'", "'final_norm'",
                    "a raw module path such as 'encoder.layer.3'")


def check_hook_point_name(spec: str, name: str = "hook_point") -> None:
    """Refuse a hook-point name that is a near-miss of the keywords (no model needed): `"layer.3"`, `"layers3"`,
    `"Layers.3"`, `"embeds"`, `"final-norm"`. Raw module paths are accepted; they are checked against the model
    when it is loaded (`resolve_hook_points`).

    Raises:
        InputError: naming the value, the name it was probably meant to be and the valid forms.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"`{name}` must be a non-empty string, got {spec!r}. Valid forms: "
                         f"{', '.join(HOOK_POINT_FORMS)}.")
    if spec in ("embed", "final_norm") or _LAYER_NAME.match(spec) or any(ch in spec for ch in "*?["):
        return
    suggestion = None
    indexed = _INDEXED_NAME.match(spec)
    if indexed and difflib.SequenceMatcher(None, indexed.group(1).lower(), "layers").ratio() >= 0.75:
        suggestion = f"layers.{int(indexed.group(2))}"
    elif difflib.SequenceMatcher(None, spec.lower(), "layers").ratio() >= 0.8:
        suggestion = "layers.N"
    else:
        for keyword in ("embed", "final_norm"):
            if difflib.SequenceMatcher(None, spec.lower().replace("-", "_"), keyword).ratio() >= 0.8:
                suggestion = keyword
    if suggestion is not None:
        raise InputError(f"`{name}` {spec!r} is not a hook point name: did you mean {suggestion!r}? Valid forms: "
                         f"{', '.join(HOOK_POINT_FORMS)}.")


class _StopForward(Exception):
    """Raised inside a hook once every requested hook point has fired."""


@dataclass(frozen=True)
class HookPoint:
    """A resolved hook point: its canonical `name`, the module path, and whether it reads the module's input."""

    name: str
    module_path: str
    reads_input: bool = False


def config_int(model: nn.Module, names: tuple[str, ...]) -> int | None:
    """The first integer among `model.config.<names>` (architectures name the same size differently)."""
    config = getattr(model, "config", None)
    for attr in names:
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    return None


def _num_layers(model: nn.Module) -> int | None:
    return config_int(model, ("num_hidden_layers", "n_layer", "num_layers"))


def find_layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Return `(path, module_list)` of the model's transformer blocks.

    Looks up the architecture table first, then falls back to the single `nn.ModuleList` whose length is
    `config.num_hidden_layers`.

    Raises:
        ValueError: when no block list can be identified.
    """
    n_layers = _num_layers(model)
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    suffixes = list(ENCODER_LIST_SUFFIXES) if getattr(config, "is_encoder_decoder", False) else []
    suffixes += [LAYER_LIST_SUFFIXES[model_type]] if model_type in LAYER_LIST_SUFFIXES else []
    suffixes += [s for s in LAYER_LIST_SUFFIXES.values() if s not in suffixes]
    for suffix in suffixes:
        for name, module in lists:
            if (name == suffix or name.endswith("." + suffix)) and (n_layers is None or len(module) == n_layers):
                return name, module
    if n_layers is not None:
        matching = [(name, m) for name, m in lists if len(m) == n_layers]
        if len(matching) == 1:
            return matching[0]
    raise InputError(
        f"Could not find the list of transformer blocks in {type(model).__name__}: no known block list "
        f"({sorted(set(LAYER_LIST_SUFFIXES.values()))}) and no single nn.ModuleList of length "
        f"config.num_hidden_layers={n_layers}. Pass raw module paths as hook points instead."
    )


def _find_final_norm(model: nn.Module, layer_path: str) -> str | None:
    parent = layer_path.rsplit(".", 1)[0] if "." in layer_path else ""
    modules = dict(model.named_modules())
    for name in FINAL_NORM_NAMES:
        path = f"{parent}.{name}" if parent else name
        if path in modules:
            return path
    return None


def layer_count(model: nn.Module) -> int | None:
    """The number of transformer blocks (`layers.0` ... `layers.{n-1}`), or `None` where no layer list is found."""
    try:
        return len(find_layer_list(model)[1])
    except ValueError:
        return None


def _canonical_points(model: nn.Module) -> dict[str, HookPoint]:
    layer_path, layers = find_layer_list(model)
    points = {"embed": HookPoint("embed", f"{layer_path}.0", reads_input=True)}
    for i in range(len(layers)):
        points[f"layers.{i}"] = HookPoint(f"layers.{i}", f"{layer_path}.{i}")
    norm = _find_final_norm(model, layer_path)
    if norm is not None:
        points["final_norm"] = HookPoint("final_norm", norm)
    return points


def _resolve(model: nn.Module, spec: str | Iterable[str]) -> list[HookPoint]:
    if not isinstance(spec, str) and not isinstance(spec, Iterable):
        raise InputTypeError(f"`hook_point` must be a string such as 'layers.3' (or a list of them), got "
                             f"{type(spec).__name__} {spec!r}" + (f"; for layer {spec} write 'layers.{spec}'."
                                                                  if isinstance(spec, int) else "."))
    specs = [spec] if isinstance(spec, str) else list(spec)
    if not specs:
        raise InputError("`spec` must name at least one hook point, got an empty list.")
    try:
        canonical = _canonical_points(model)
        n_layers = sum(1 for k in canonical if k.startswith("layers."))
    except ValueError:
        canonical, n_layers = {}, 0
    modules = dict(model.named_modules())
    resolved: list[HookPoint] = []
    for item in specs:
        if not isinstance(item, str) or not item:
            raise InputTypeError(f"Hook point specs must be non-empty strings, got {item!r}"
                                 + (f"; for layer {item} write 'layers.{item}'." if isinstance(item, int) else "."))
        matched: list[HookPoint] = []
        layer_match = _LAYER_NAME.match(item)
        if layer_match and canonical:
            index = int(layer_match.group(1))
            if index < 0:
                index += n_layers
            if not 0 <= index < n_layers:
                raise InputError(f"Hook point {item!r} is out of range: the model has {n_layers} layers (0..{n_layers - 1}).")
            matched = [canonical[f"layers.{index}"]]
        elif item in canonical:
            matched = [canonical[item]]
        elif item in modules and item:
            matched = [HookPoint(item, item)]
        elif any(ch in item for ch in "*?["):
            matched = [p for name, p in canonical.items() if fnmatch.fnmatchcase(name, item)]
            if not matched:
                matched = [HookPoint(n, n) for n in modules if n and fnmatch.fnmatchcase(n, item)]
        if not matched:
            if item == "final_norm" and canonical:
                raise InputError(f"Hook point 'final_norm' matches nothing: {type(model).__name__} has no final norm layer.")
            candidates = list(canonical) + [n for n in modules if n]
            near = difflib.get_close_matches(item, candidates, n=5, cutoff=0.4)
            if not near:
                near = list(canonical)[:3] + (["layers.*", f"layers.{n_layers - 1}"] if n_layers else [])
            raise InputError(f"Hook point {item!r} matches nothing in {type(model).__name__}. Nearest valid names: {near}.")
        for point in matched:
            if point not in resolved:
                resolved.append(point)
    return resolved


def resolve_hook_points(model: nn.Module, spec: str | Iterable[str]) -> list[str]:
    """Resolve hook-point specs to canonical names.

    Args:
        model (`nn.Module`): any `transformers` model, also wrapped in a `peft.PeftModel`.
        spec (`str` or `list[str]`): ``"layers.6"``, ``"layers.-1"``, ``"layers.*"``, fnmatch patterns,
            ``"embed"``, ``"final_norm"``, or raw module paths.

    Returns:
        `list[str]`: canonical names (``"layers.6"``, ``"embed"``, ``"final_norm"`` or the raw module path), in
        the order given, without duplicates.

    Raises:
        InputError: (a `ValueError`) a spec matches nothing; the message lists the nearest valid names.

    Examples:
        >>> resolve_hook_points(gpt2, "layers.-1")  # doctest: +SKIP
        ['layers.11']
    """
    return [p.name for p in _resolve(model, spec)]


def _first_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value:
        return _first_tensor(value[0])
    if isinstance(value, dict):
        for key in ("last_hidden_state", "hidden_states"):
            if isinstance(value.get(key), torch.Tensor):
                return value[key]
        return _first_tensor(next(iter(value.values())))
    raise TypeError(f"Hooked module returned {type(value).__name__}, which holds no tensor.")


def _forward_target(model: nn.Module, points: list[HookPoint]) -> nn.Module:
    """The module to call: the encoder alone when every point lies in an encoder-decoder's encoder."""
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        encoder = model.get_encoder()
        encoder_paths = {name for name, m in model.named_modules() if m is encoder}
        if encoder_paths and all(any(p.module_path.startswith(e + ".") for e in encoder_paths) for p in points):
            return encoder
    return model


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens, so left and right padding give the same positions."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.clamp(min=0)


def has_left_padding(attention_mask: torch.Tensor) -> bool:
    """Whether some row has a padded position before a real token."""
    if attention_mask.ndim != 2:
        return False
    mask = attention_mask.bool()
    real_later = mask.long().flip(-1).cummax(-1).values.flip(-1).bool()
    return bool((real_later & ~mask).any())


def derives_positions_itself(model: nn.Module) -> bool:
    """Whether the model builds padding-aware positions from its own inputs.

    RoBERTa and its kin (XLM-R, CamemBERT, Longformer, MPNet, ESM, ...) number real tokens from `padding_idx + 1`
    using `input_ids`; their position table is an `nn.Embedding` with a `padding_idx`. Position ids written by
    us (from 0) would be wrong for them, and they handle left padding already.
    """
    for name, module in model.named_modules():
        if name.endswith("position_embeddings") and isinstance(module, nn.Embedding) and module.padding_idx is not None:
            return True
    return False


class HiddenStateExtractor:
    """Capture hidden states at chosen hook points and stop the forward pass after the last one.

    Args:
        model (`nn.Module`): any `transformers` model, also wrapped in a `peft.PeftModel`.
        hook_points (`str` or `list[str]`): specs resolved by `resolve_hook_points`.
        stop_early (`bool`, *optional*, defaults to `True`): raise after every hook point has fired, so the
            modules after the deepest one never run.
        detach (`bool`, *optional*, defaults to `True`): detach captured tensors from the graph.
        clone (`bool`, *optional*, defaults to `False`): copy captured tensors (guards against later in-place ops).
        dtype (`torch.dtype`, *optional*): cast captured tensors to this dtype.

    Examples:
        >>> with HiddenStateExtractor(model, ["layers.6"]) as ex:  # doctest: +SKIP
        ...     hidden = ex(**tokenizer(texts, return_tensors="pt", padding=True))
        >>> hidden["layers.6"].shape  # doctest: +SKIP
        torch.Size([2, 9, 768])
    """

    def __init__(
        self,
        model: nn.Module,
        hook_points: str | Iterable[str],
        stop_early: bool = True,
        detach: bool = True,
        clone: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.model = model
        self.points = _resolve(model, hook_points)
        self.hook_points = [p.name for p in self.points]
        self.stop_early, self.detach, self.clone, self.dtype = stop_early, detach, clone, dtype
        self._handles: list[Any] = []
        self._captured: dict[str, torch.Tensor] = {}
        self._active = False

    def _store(self, name: str, tensor: torch.Tensor) -> None:
        if self.detach:
            tensor = tensor.detach()
        if self.dtype is not None:
            tensor = tensor.to(self.dtype)
        if self.clone:
            tensor = tensor.clone()
        self._captured[name] = tensor
        if self.stop_early and len(self._captured) == len(self.points):
            raise _StopForward

    def _make_hook(self, point: HookPoint):
        if point.reads_input:

            def pre_hook(module, args, kwargs):
                value = args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))
                self._store(point.name, _first_tensor(value))

            return pre_hook

        def hook(module, args, output):
            self._store(point.name, _first_tensor(output))

        return hook

    def __enter__(self) -> HiddenStateExtractor:
        modules = dict(self.model.named_modules())
        try:
            for point in self.points:
                module = modules[point.module_path]
                hook = self._make_hook(point)
                if point.reads_input:
                    self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
                else:
                    self._handles.append(module.register_forward_hook(hook))
        except BaseException:
            self.remove()
            raise
        self._active = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this extractor registered."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._active = False

    def __call__(self, **model_inputs: Any) -> dict[str, torch.Tensor]:
        """Run the model on `model_inputs` and return `{hook point: (batch, tokens, d) tensor}`.

        Without left padding the model runs exactly as called (the states equal `output_hidden_states`). With left
        padding, models that number positions from 0 regardless of padding (GPT-2, Llama, BERT, ...) get position ids
        counted over real tokens, so left padding gives the states of right padding; models that derive
        padding-aware positions from their own `input_ids` (the RoBERTa family, MPNet) are left to do so. Relative-position models (T5,
        DeBERTa) see the same distances either way.
        """
        if not self._active:
            raise RuntimeError("Use HiddenStateExtractor as a context manager: `with HiddenStateExtractor(...) as ex:`.")
        target = _forward_target(self.model, self.points)
        inputs = dict(model_inputs)
        _check_token_ids(self.model, inputs.get("input_ids"))
        if (
            inputs.get("attention_mask") is not None
            and "position_ids" not in inputs
            and target is self.model
            and has_left_padding(inputs["attention_mask"])
            and _accepts(target, "position_ids")
            and not derives_positions_itself(self.model)
        ):
            inputs["position_ids"] = position_ids_from_mask(inputs["attention_mask"])
        if target is self.model and _accepts(target, "use_cache"):
            inputs.setdefault("use_cache", False)
        self._captured = {}
        try:
            target(**inputs)
        except _StopForward:
            pass
        missing = [p.name for p in self.points if p.name not in self._captured]
        if missing:
            raise RuntimeError(f"Hook points {missing} did not run during the forward pass.")
        captured, self._captured = self._captured, {}
        return {name: captured[name] for name in self.hook_points}


def _check_token_ids(model: nn.Module, input_ids: Any) -> None:
    """Refuse token ids past the model's embedding table, which a tokenizer of another model produces (torch would
    fail with a bare `IndexError` inside the embedding)."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(embeddings, "num_embeddings", None)
    if input_ids is None or rows is None or input_ids.numel() == 0:
        return
    largest = int(input_ids.max())
    if largest >= rows:
        raise InputError(f"the tokenizer produced token id {largest}, but {type(model).__name__} has {rows} token "
                         "embeddings: the tokenizer belongs to another model. Load the tokenizer saved with this "
                         "model (`AutoTokenizer.from_pretrained` of the same id or folder).")


def _accepts(module: nn.Module, name: str) -> bool:
    inner = getattr(module, "get_base_model", None)
    base = inner() if callable(inner) else module
    try:
        return name in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def is_causal(model: nn.Module, hook_point: str, n_tokens: int = 8) -> bool:
    """Whether the states at `hook_point` read only their own and earlier tokens (a decoder's causal attention).

    Measured, not looked up: the model runs twice on `n_tokens` token ids that differ only in their second half,
    and the first half's states must come out the same (to float tolerance). An encoder (bidirectional attention)
    changes them. `TaskStructure(causal=...)` uses the answer where content leaks between steps.

    Args:
        model (`nn.Module`): a `transformers` model (or `peft.PeftModel`).
        hook_point (`str`): one hook point (`resolve_hook_points`).
        n_tokens (`int`, *optional*, defaults to 8): length of the probe.

    Returns:
        `True` when the first half's states did not move.

    Raises:
        InputError: `hook_point` does not name exactly one hook point, or `n_tokens < 2`.
    """
    points = resolve_hook_points(model, hook_point)
    if len(points) != 1:
        raise InputError(f"`hook_point` must resolve to one hook point, got {points}.")
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 2:
        raise InputError(f"`n_tokens` must be an int >= 2, got {n_tokens!r}.")
    vocab = max(config_int(model, ("vocab_size",)) or 1000, 2)
    low = 10 if vocab > 20 else 0  # past the special tokens most vocabularies start with, where there is room
    device = next(model.parameters()).device
    half = n_tokens // 2
    first = low + torch.arange(n_tokens, device=device)[None] % (vocab - low)
    second = first.clone()
    second[:, half:] = low + (first[:, half:] - low + 1) % (vocab - low)  # every later token changed
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), HiddenStateExtractor(model, points) as extractor:
            states = [extractor(input_ids=ids, attention_mask=torch.ones_like(ids))[points[0]].float()
                      for ids in (first, second)]
    finally:
        model.train(was_training)
    earlier = [state[:, :half] for state in states]
    moved = (earlier[0] - earlier[1]).norm(dim=-1) / earlier[0].norm(dim=-1).clamp_min(1e-12)  # per position
    return bool((moved < 1e-4).all())
