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
    dataset = hfs.extract_steps(model, tokenizer(), texts, hook_point="layers.1", steps=". ", cache_dir=tmp_path,
                                as_dataset=True)
    assert len(dataset) == 80 and dataset.cache_files  # read from the Arrow files on disk, not held in memory
    np.testing.assert_array_equal(np.stack(dataset["steps"]), array)
    with pytest.raises(ValueError, match="pass `cache_dir=`"):
        hfs.extract_steps(model, tokenizer(), texts, hook_point="layers.1", steps=". ", as_dataset=True)

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
    bad = hfs.extract_steps(build_tiny_model("llama"), tokenizer(), texts, hook_point="layers.1", steps=". ",
                            cache_dir=tmp_path, as_dataset=True)
    with pytest.raises(ValueError, match="hidden size does not match"):
        hfs.train_specialist(build_adapter(d_in=16), bad, tasks, epochs=1)


def test_discover_from_the_model_equals_fit_on_extracted_states():
    texts, tasks, _ = hfs.synthetic.planted_text(n=300, T=4, M=2, seed=0)
    model = build_tiny_model("gpt2", n_layers=3)
    streamed = hfs.discover(model, tokenizer(), texts, tasks, hook_point="layers.1", steps=". ", chunk_size=70,
                            batch_size=32, project=None)
    states = hfs.extract_steps(model, tokenizer(), texts, hook_point="layers.1", steps=". ")
    whole = hfs.TaskStructure(project=None).fit(states, tasks)
    np.testing.assert_array_equal(streamed.step_tasks_, whole.step_tasks_)
    np.testing.assert_allclose(streamed.pvalues_, whole.pvalues_, rtol=1e-6)
    with pytest.raises(ValueError, match="one row per text"):
        hfs.discover(model, tokenizer(), texts, tasks[:10], hook_point="layers.1", steps=". ")
