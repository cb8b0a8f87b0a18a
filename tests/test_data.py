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


def test_shards_join_into_one_cache(tmp_path, monkeypatch):
    """Simulate three `accelerate` processes: each extracts its shard; the joined cache equals one process."""
    model = build_tiny_model("gpt2")
    tok = tokenizer()
    full = hfs.extract_steps(model, tok, TEXTS, hook_point="layers.1", steps=".")
    monkeypatch.setattr(data, "_barrier", lambda: None)
    key = data.cache_key(model, "layers.1", ".", "mean", None, TEXTS)
    # processes 1 and 2 write their shards first; process 0 then joins
    for rank in (1, 2):
        shard = np.array_split(np.arange(len(TEXTS)), 3)[rank]
        part = data.extract_step_list(model, tok, TEXTS[shard[0] : shard[-1] + 1], data.step_spans(TEXTS, ".")[shard[0] : shard[-1] + 1], "layers.1")
        (tmp_path / key).mkdir(parents=True, exist_ok=True)
        data._save_arrow(tmp_path / key / f"shard-{rank:05d}", part)
    joined = hfs.extract_steps(
        model, tok, TEXTS, hook_point="layers.1", steps=".", cache_dir=tmp_path, process_index=0, num_processes=3
    )
    np.testing.assert_allclose(joined, full, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / key).iterdir()) == ["joined"]
