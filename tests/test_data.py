import numpy as np
import torch
import pytest

import hf_specialist as hfs
from hf_specialist import data
from helpers import build_tiny_model, tokenizer

TEXTS = [f"item {i} is here. value {i * 3} there." for i in range(7)]


def test_cache_written_and_reused(tmp_path, monkeypatch):
    model = build_tiny_model("gpt2")
    first = hfs.extract_steps(model, tokenizer(), TEXTS, hook_point="layers.1", steps=".", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*/joined"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(data, "iter_step_arrays", fail)
    second = hfs.extract_steps(model, tokenizer(), TEXTS, hook_point="layers.1", steps=".", cache_dir=tmp_path)
    np.testing.assert_array_equal(first, second)
    # a different hook point is a different key
    with pytest.raises(AssertionError, match="cache should"):
        hfs.extract_steps(model, tokenizer(), TEXTS, hook_point="layers.0", steps=".", cache_dir=tmp_path)


def test_cache_as_dataset_is_memory_mapped_and_trains_like_the_array(tmp_path):
    texts, tasks, truth = hfs.synthetic.planted_text(n=80, T=4, M=2, seed=0)
    model = build_tiny_model("gpt2")
    array = hfs.extract_steps(model, tokenizer(), texts, hook_point="layers.1", steps=". ", cache_dir=tmp_path)
    dataset = hfs.extract_steps_dataset(model, tokenizer(), texts, hook_point="layers.1", steps=". ",
                                        cache_dir=tmp_path)
    assert len(dataset) == 80 and dataset.cache_files  # read from the Arrow files on disk, not held in memory
    np.testing.assert_array_equal(np.stack(dataset["steps"]), array)
    with pytest.raises(hfs.InputError, match="pass `cache_dir=`"):
        hfs.extract_steps_dataset(model, tokenizer(), texts, hook_point="layers.1", steps=". ", cache_dir=None)

    from helpers import build_adapter

    for mask, readout in ((truth["step_tasks"], "sequence"), (None, "step")):
        targets = tasks if readout == "sequence" else np.repeat(tasks[:, None], 4, axis=1)
        torch.manual_seed(0)
        from_disk = build_adapter()
        init = {k: v.clone() for k, v in from_disk.state_dict().items()}
        a = hfs.train_specialist(from_disk, dataset, targets, mask, sparsity=0.05, epochs=3, batch_size=64, seed=0)
        in_memory = build_adapter()
        in_memory.load_state_dict(init)
        b = hfs.train_specialist(in_memory, array, targets, mask, sparsity=0.05, epochs=3, batch_size=64, seed=0)
        assert from_disk.config.task_readout == in_memory.config.task_readout == readout
        for key, value in in_memory.state_dict().items():
            torch.testing.assert_close(from_disk.state_dict()[key], value, atol=2e-4, rtol=1e-3, msg=key)
        assert a["final"]["task_0"] == pytest.approx(b["final"]["task_0"], rel=1e-3)
    bad = hfs.extract_steps_dataset(build_tiny_model("llama"), tokenizer(), texts, hook_point="layers.1", steps=". ",
                                    cache_dir=tmp_path)
    with pytest.raises(ValueError, match="hidden size does not match"):
        hfs.train_specialist(build_adapter(d_in=16), bad, tasks, epochs=1)


def test_discover_from_the_model_equals_fit_on_extracted_states():
    texts, tasks, _ = hfs.synthetic.planted_text(n=300, T=4, M=2, seed=0)
    model = build_tiny_model("gpt2", n_layers=3)
    streamed = hfs.discover(model, tokenizer(), texts, tasks, hook_point="layers.1", steps=". ", chunk_size=70,
                            batch_size=32, project=None, context="full")
    states = hfs.extract_steps(model, tokenizer(), texts, hook_point="layers.1", steps=". ")
    assert streamed.causal is True  # measured on the model: GPT-2's states read only earlier tokens
    whole = hfs.TaskStructure(project=None, causal=True).fit(states, tasks)
    np.testing.assert_array_equal(streamed.step_tasks_, whole.step_tasks_)
    np.testing.assert_allclose(streamed.pvalues_, whole.pvalues_, rtol=1e-6)
    given = hfs.TaskStructure(project=None)  # an estimator passed in keeps its parameters: a measured copy is fitted
    fitted = hfs.discover(model, tokenizer(), texts, tasks, hook_point="layers.1", steps=". ", chunk_size=70,
                          batch_size=32, structure=given, context="full")
    assert given.causal is None and not hasattr(given, "step_tasks_") and fitted.causal is True
    np.testing.assert_array_equal(fitted.step_tasks_, whole.step_tasks_)
    with pytest.raises(ValueError, match="one row per text"):
        hfs.discover(model, tokenizer(), texts, tasks[:10], hook_point="layers.1", steps=". ")


def test_each_form_has_its_own_function_and_one_return_type(tmp_path, monkeypatch):
    model = build_tiny_model("gpt2")
    tok = tokenizer()
    uneven = TEXTS[:3] + ["item 9 alone."]  # 2, 2, 2 and 1 steps under "."
    array = hfs.extract_steps(model, tok, TEXTS, hook_point="layers.1", steps=".")
    assert isinstance(array, np.ndarray) and array.shape == (7, 2, 32) and array.dtype == np.float32

    states, mask = hfs.extract_padded_steps(model, tok, uneven, hook_point="layers.1", steps=".")
    assert states.shape == (4, 2, 32) and states.dtype == np.float32
    assert mask.shape == (4, 2) and mask.dtype == bool and mask.sum(1).tolist() == [2, 2, 2, 1]
    assert not states[3, 1].any()  # padding is zeros
    np.testing.assert_allclose(states[:3], array[:3], atol=1e-6)  # another batch: float noise only
    # equal step counts: the padded form is the array with an all-true mask
    same, full = hfs.extract_padded_steps(model, tok, TEXTS, hook_point="layers.1", steps=".")
    np.testing.assert_array_equal(same, array)
    assert full.all()
    # the padded form reads the same cache as the others (written by one, reused by the next)
    cached, cached_mask = hfs.extract_padded_steps(model, tok, uneven, hook_point="layers.1", steps=".",
                                                   cache_dir=tmp_path)
    monkeypatch.setattr(data, "iter_step_arrays", lambda *a, **k: pytest.fail("the cache should have been used"))
    again, again_mask = hfs.extract_padded_steps(model, tok, uneven, hook_point="layers.1", steps=".",
                                                 cache_dir=tmp_path)
    np.testing.assert_array_equal(cached, states)
    np.testing.assert_array_equal(again, states)
    np.testing.assert_array_equal(again_mask, mask)

    # uneven texts through the array or dataset form: a clear error before any forward pass, naming the new function
    for extract in (hfs.extract_steps, hfs.extract_steps_dataset):
        with pytest.raises(hfs.InputError, match=r"texts\[3\] has 1 .*hfs\.extract_padded_steps"):
            extract(model, tok, uneven, hook_point="layers.1", steps=".", cache_dir=tmp_path / "other")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("argument, value, replacement", [
    ("pad_steps", True, "extract_padded_steps"), ("pad_steps", False, "extract_padded_steps"),
    ("as_dataset", True, "extract_steps_dataset"),
])
def test_removed_arguments_name_the_function_to_call(argument, value, replacement, monkeypatch):
    monkeypatch.setattr(data, "_extract", lambda *a, **k: pytest.fail("no work before the migration error"))
    with pytest.raises(hfs.InputError, match=rf"no longer takes `{argument}`.*hfs\.{replacement}\("):
        hfs.extract_steps(None, None, TEXTS, hook_point="layers.1", steps=".", **{argument: value})
    with pytest.raises(TypeError, match="unexpected keyword argument 'pad_step'"):
        hfs.extract_steps(None, None, TEXTS, pad_step=True)
    with pytest.raises(TypeError):  # what used to be the 9th positional argument (pad_steps) is refused, not shifted
        hfs.extract_steps(None, None, TEXTS, "layers.1", ".", "mean", 16, None, True)


def test_the_three_forms_share_one_implementation(monkeypatch):
    calls = []
    monkeypatch.setattr(data, "_extract", lambda model, tok, texts, form, **kwargs: calls.append((form, kwargs)))
    hfs.extract_steps("m", "t", TEXTS, hook_point="layers.1", steps=".")
    hfs.extract_padded_steps("m", "t", TEXTS, hook_point="layers.1", steps=".")
    hfs.extract_steps_dataset("m", "t", TEXTS, hook_point="layers.1", steps=".", cache_dir="c")
    assert [form for form, _ in calls] == ["array", "padded", "dataset"]
    assert calls[0][1].keys() == calls[1][1].keys() == calls[2][1].keys()
