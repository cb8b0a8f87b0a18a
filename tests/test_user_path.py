"""The user's path end to end: the adapter back on its base as trained (LoRA included), fresh cache keys,
NaN refused at every door, unknown structure keys dropped."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import hf_specialist as hfs
from hf_specialist import synthetic
from helpers import build_adapter, build_tiny_model, tokenizer


@pytest.fixture(scope="module")
def planted():
    return synthetic.planted_text(n=60, T=4, M=2, seed=1)


@pytest.fixture(scope="module")
def lora_artifact(tmp_path_factory, planted):
    """An adapter trained jointly with a LoRA on a tiny GPT-2, with a fitted structure, saved to a folder."""
    from peft import LoraConfig

    texts, tasks, truth = planted
    base = build_tiny_model("gpt2", n_layers=3)
    torch.manual_seed(0)
    adapter = build_adapter(hook_point="layers.1")
    history = hfs.train_specialist(
        adapter, tasks=tasks, task_mask=truth["step_tasks"], texts=texts, steps=truth["separator"], base_model=base,
        tokenizer=tokenizer(), lora=LoraConfig(r=4, target_modules=["c_attn"], lora_dropout=0.0), epochs=2,
        batch_size=64, sparsity=0.05, max_length=64, progress=False)
    structure = hfs.TaskStructure().fit(np.random.default_rng(0).normal(size=(200, 4)),
                                        np.random.default_rng(1).normal(size=(200, 2)))
    structure.step_tasks_ = truth["step_tasks"].copy()
    folder = adapter.save_pretrained(tmp_path_factory.mktemp("lora") / "artifact", structure=structure,
                                     lora_model=history["lora_model"])
    return folder, adapter, history["lora_model"]


def test_config_records_the_pipeline(lora_artifact, planted):
    _, adapter, _ = lora_artifact
    cfg = adapter.config
    assert (cfg.hook_point, cfg.step_rule, cfg.pool, cfg.max_length) == ("layers.1", planted[2]["separator"], "mean", 64)
    assert cfg.base_model_type == "gpt2" and cfg.base_hidden_size == 32 and cfg.task_readout == "sequence"


def test_specialist_model_equals_the_pipeline_with_its_lora(lora_artifact, planted):
    """A fresh base + the folder gives exactly the trained pipeline: LoRA, hook point, step rule, pooling."""
    folder, adapter, peft_model = lora_artifact
    texts, _, truth = planted
    fresh = build_tiny_model("gpt2", n_layers=3)  # same seed: the base the LoRA was trained on
    specialist = hfs.SpecialistModel.from_pretrained(fresh, folder, tokenizer=tokenizer())
    states = hfs.extract_steps(peft_model.eval(), tokenizer(), texts[:9], hook_point="layers.1",
                               steps=truth["separator"], max_length=64)
    for task in (0, 1):
        expected = adapter.task_latents(torch.from_numpy(states), task=task).detach().numpy()
        got = specialist.encode_steps(texts[:9], task=task)
        assert got.shape == (9, 4, int(adapter.task_support_[task].sum()))
        np.testing.assert_allclose(got, expected, atol=1e-5)
        np.testing.assert_allclose(specialist.predict(texts[:9], task=task),
                                   adapter.predict(torch.from_numpy(states), task=task,
                                                   step_mask=truth["step_tasks"][:, task]).detach().numpy(), atol=1e-5)
    # without its LoRA the base gives other states: the LoRA really was loaded
    plain = hfs.extract_steps(build_tiny_model("gpt2", n_layers=3), tokenizer(), texts[:9], hook_point="layers.1",
                              steps=truth["separator"], max_length=64)
    assert not np.allclose(plain, states, atol=1e-4)


def test_the_lora_goes_where_the_adapter_goes(lora_artifact, tmp_path):
    """Training records the LoRA: a save without `lora_model=` keeps it, and a base without it is warned about."""
    folder, adapter, peft_model = lora_artifact
    assert adapter.config.trained_with_lora and adapter.lora_model_ is peft_model
    again = adapter.save_pretrained(tmp_path / "again")  # no `lora_model=`: the trained one is saved
    assert (again / "lora" / "adapter_config.json").is_file()
    assert hfs.SpecialistAdapter.from_pretrained(again).config.trained_with_lora
    with pytest.warns(UserWarning, match="trained with a LoRA on the base .* but `base_model` has none"):
        hfs.SpecialistModel(build_tiny_model("gpt2", n_layers=3), hfs.SpecialistAdapter.from_pretrained(again))
    loaded = hfs.SpecialistAdapter.from_pretrained(again)
    with pytest.warns(UserWarning, match="trained with a LoRA on the base .* but none is saved with it"):
        loaded.save_pretrained(tmp_path / "without")


def test_specialist_model_in_a_fresh_process(lora_artifact, planted, tmp_path):
    folder, adapter, peft_model = lora_artifact
    texts, _, truth = planted
    expected = hfs.SpecialistModel.from_pretrained(build_tiny_model("gpt2", n_layers=3), folder,
                                                   tokenizer=tokenizer()).encode_steps(texts[:5], task=1)
    out = tmp_path / "z.npy"
    script = textwrap.dedent(f"""
        import json, sys, numpy as np
        sys.path.insert(0, "tests")
        import hf_specialist as hfs
        from helpers import build_tiny_model, tokenizer
        texts = json.loads({json.dumps(json.dumps(texts[:5]))})
        model = hfs.SpecialistModel.from_pretrained(build_tiny_model("gpt2", n_layers=3), {str(folder)!r},
                                                    tokenizer=tokenizer())
        np.save({str(out)!r}, model.encode_steps(texts, task=1))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_card_usage_is_the_three_lines(lora_artifact):
    card = (lora_artifact[0] / "README.md").read_text()
    assert "SpecialistModel.from_pretrained(base_model" in card and "encode_steps(texts" in card
    assert "predict(texts" in card


def test_encode_steps_needs_a_tokenizer_and_a_step_rule(tmp_path):
    adapter = build_adapter(hook_point="layers.1", base_model_type="gpt2")
    folder = adapter.save_pretrained(tmp_path / "a")
    model = hfs.SpecialistModel.from_pretrained(build_tiny_model("gpt2", n_layers=3), folder)
    with pytest.raises(ValueError, match="tokenizer="):
        model.encode_steps(["a. b."])
    model = hfs.SpecialistModel.from_pretrained(build_tiny_model("gpt2", n_layers=3), folder, tokenizer=tokenizer())
    with pytest.raises(ValueError, match="records no step rule"):
        model.encode_steps(["a. b."])
    assert model.encode_steps(["a. b.", "c. d."], steps=". ").shape[:2] == (2, 2)


def test_cache_key_sees_an_in_place_change_of_a_middle_layer(tmp_path):
    texts = [f"item {i} is here. value {i * 3} there." for i in range(6)]
    model = build_tiny_model("gpt2", n_layers=4)
    first = hfs.extract_steps(model, tokenizer(), texts, hook_point="layers.2", steps=".", cache_dir=tmp_path)
    with torch.no_grad():
        model.transformer.h[1].mlp.c_fc.weight[3, 7] += 0.5  # one weight, in the middle of the model, in place
    second = hfs.extract_steps(model, tokenizer(), texts, hook_point="layers.2", steps=".", cache_dir=tmp_path)
    assert not np.allclose(first, second)
    fresh = hfs.extract_steps(model, tokenizer(), texts, hook_point="layers.2", steps=".")
    np.testing.assert_allclose(second, fresh, atol=1e-6)
    assert len(list(tmp_path.iterdir())) == 2
    # the tokenizer and the step rule are part of the key too
    other = tokenizer()
    key = hfs.data.cache_key(model, other, "layers.2", ".", "mean", None, texts)
    assert key != hfs.data.cache_key(model, other, "layers.2", ". ", "mean", None, texts)
    padded_left = type(other).from_pretrained(other.name_or_path, padding_side="left")
    assert key != hfs.data.cache_key(model, padded_left, "layers.2", ".", "mean", None, texts)


def _nan(shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    x.flat[3] = np.nan
    return x


@pytest.mark.parametrize("door", ["encode", "task_latents", "predict", "decode", "train_states", "train_tasks",
                                  "structure_states", "structure_tasks", "block_r2"])
def test_nan_is_refused_at_every_door(door):
    adapter = build_adapter().eval()
    clean = np.random.default_rng(1).normal(size=(50, 32)).astype(np.float32)
    calls = {
        "encode": (lambda: adapter.encode(_nan((4, 32))), "`h`"),
        "task_latents": (lambda: adapter.task_latents(_nan((4, 32)), task=0), "`h`"),
        "predict": (lambda: adapter.predict(_nan((4, 32)), task=1), "`h`"),
        "decode": (lambda: adapter.decode(_nan((4, 8))), "`z`"),
        "train_states": (lambda: hfs.train_specialist(adapter, _nan((50, 32)), clean[:, :2], epochs=1), "`states`"),
        "train_tasks": (lambda: hfs.train_specialist(adapter, clean, _nan((50, 2)), epochs=1), "`tasks`"),
        "structure_states": (lambda: hfs.TaskStructure().fit(_nan((50, 4)), clean[:, :2]), "`states`"),
        "structure_tasks": (lambda: hfs.TaskStructure().fit(clean[:, :4], _nan((50, 2))), "`tasks`"),
        "block_r2": (lambda: hfs.metrics.block_r2(_nan((50, 2)), clean[:, :2], clean[:, 2:4]), "`pred_block`"),
    }
    call, name = calls[door]
    with pytest.raises(ValueError, match=f"{name}.*(NaN|finite)"):
        call()


def test_structure_json_with_newer_keys_warns_and_loads(tmp_path):
    states, tasks, _ = synthetic.collider_sequences(n=2000, T=4, M=2, seed=0)
    structure = hfs.TaskStructure().fit(states, tasks)
    adapter = build_adapter()
    folder = adapter.save_pretrained(tmp_path / "a", structure=structure)
    payload = json.loads((folder / "structure.json").read_text())
    payload["from_the_future"] = {"x": 1}
    payload["params"]["new_knob"] = 3
    (folder / "structure.json").write_text(json.dumps(payload))
    with pytest.warns(UserWarning, match=r"from_the_future.*params\.new_knob"):
        loaded = hfs.SpecialistAdapter.from_pretrained(folder)
    np.testing.assert_array_equal(loaded.structure_.step_tasks_, structure.step_tasks_)
