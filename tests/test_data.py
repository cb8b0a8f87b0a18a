import numpy as np
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

    monkeypatch.setattr(data, "extract_step_list", fail)
    second = hfs.extract_steps(model, tokenizer(), TEXTS, hook_point="layers.1", steps=".", cache_dir=tmp_path)
    np.testing.assert_array_equal(first, second)
    # a different hook point is a different key
    with pytest.raises(AssertionError, match="cache should"):
        hfs.extract_steps(model, tokenizer(), TEXTS, hook_point="layers.0", steps=".", cache_dir=tmp_path)
