"""Texts that do not fit the saved adapter (another step count, a separator that does not match, steps cut by
`max_length`) raise an `InputError` naming the text, before any forward pass, unless padding is asked for."""

import numpy as np
import pytest
import torch

import hf_specialist as hfs
from helpers import build_adapter, build_tiny_model, tokenizer

SEP = ". "


def _text(n_steps, sep=SEP, words="the value is one"):
    return sep.join(f"{words} {i}" for i in range(n_steps)) + "."


@pytest.fixture(scope="module")
def specialist(tmp_path_factory):
    base = build_tiny_model("gpt2", n_layers=3)
    texts = [_text(4, words=f"step {k} says") for k in range(40)]
    states = hfs.extract_steps(base, tokenizer(), texts, hook_point="layers.1", steps=SEP, max_length=64)
    torch.manual_seed(0)
    adapter = build_adapter(d_in=32, n_tasks=1, hook_point="layers.1", step_rule=SEP, pool="mean", max_length=64,
                            base_model_type="gpt2", base_hidden_size=32)
    tasks = states[:, :2, 0].sum(1, keepdims=True)
    hfs.train_specialist(adapter, states, tasks, sparsity=0.0, epochs=1, seed=0, progress=False)
    assert adapter.config.n_steps == 4  # recorded by training
    folder = adapter.save_pretrained(tmp_path_factory.mktemp("fit") / "adapter")
    return hfs.SpecialistModel.from_pretrained(build_tiny_model("gpt2", n_layers=3), folder, tokenizer=tokenizer())


@pytest.fixture
def no_forward(specialist, monkeypatch):
    """The checks come before any forward pass."""
    def refuse(*args, **kwargs):
        raise AssertionError("the base model ran")

    monkeypatch.setattr(specialist.base_model, "forward", refuse)


def test_another_step_count_names_the_text(specialist, no_forward):
    texts = [_text(4), _text(3), _text(2)]
    for door in (specialist.predict, specialist.encode_steps):
        with pytest.raises(hfs.InputError, match=r"texts\[1\] has 3 steps under the step rule '. ', but the adapter "
                                                 r"was trained on 4 steps per text \(2 of 3 texts differ, e.g. indices "
                                                 r"\[1, 2\]\); pass texts of 4 steps, or pass `pad=True`"):
            door(texts)


def test_a_separator_that_does_not_match_names_the_text(specialist, no_forward):
    with pytest.raises(hfs.InputError, match=r"texts\[1\] does not contain the step separator '. ' the adapter was "
                                             r"trained with, so it would be one step \(expected 4\)"):
        specialist.predict([_text(4), _text(4, sep="; ")])


def test_steps_cut_by_max_length_name_the_text(specialist, no_forward):
    long = _text(4, words="a very long sentence " * 8)
    with pytest.raises(hfs.InputError, match=r"texts\[0\] has \d+ tokens, more than the max_length 64 the adapter "
                                             r"was trained with, so its last steps would be cut"):
        specialist.encode_steps([long, _text(4)])


def test_more_steps_cannot_be_padded(specialist, no_forward):
    with pytest.raises(hfs.InputError, match=r"texts\[0\] has 5 steps .* texts with more steps cannot be padded"):
        specialist.predict([_text(5)], pad=True)


def test_padding_when_asked_returns_a_mask(specialist):
    texts = [_text(4), _text(3)]
    latents, mask = specialist.encode_steps(texts, pad=True)
    np.testing.assert_array_equal(mask, [[True] * 4, [True, True, True, False]])
    assert latents.shape[:2] == (2, 4)
    np.testing.assert_allclose(latents[0], specialist.encode_steps(texts[:1])[0], atol=1e-5)
    prediction, mask = specialist.predict(texts, pad=True)
    assert prediction.shape == (2,) and mask.shape == (2, 4)
    np.testing.assert_allclose(prediction[0], specialist.predict(texts[:1])[0], atol=1e-5)


def test_padding_that_covers_every_step_of_a_task_gives_nan(specialist):
    base = specialist.base_model
    texts = [_text(4, words=f"step {k} says") for k in range(40)]
    states = hfs.extract_steps(base, tokenizer(), texts, hook_point="layers.1", steps=SEP, max_length=64)
    adapter = build_adapter(d_in=32, n_tasks=1, hook_point="layers.1", step_rule=SEP, pool="mean", max_length=64)
    only_last = np.array([[False], [False], [False], [True]])  # the task is read from step 4 alone
    hfs.train_specialist(adapter, states, states[:, 3, :1], only_last, sparsity=0.0, epochs=1, progress=False)
    model = hfs.SpecialistModel(base, adapter, tokenizer=tokenizer())
    with pytest.warns(UserWarning, match=r"1 of 2 texts \(first: texts\[1\]\) have none of the steps task 0 is read"):
        prediction, mask = model.predict([_text(4), _text(3)], pad=True)
    assert np.isfinite(prediction[0]) and np.isnan(prediction[1])
    with pytest.raises(hfs.InputError, match=r"3 steps per sequence .* but the adapter was trained on 4"):
        adapter.predict(torch.from_numpy(states[:, :3]))  # states of another T are refused, not read whole
    with pytest.raises(hfs.InputError, match=r"shape \(3, 32\): 3 steps per sequence"):
        adapter.predict(torch.from_numpy(states[:3, 0]))  # rows of one step are not a sequence


def test_wrong_model_inputs_are_named_before_torch_fails():
    import copy

    base = build_tiny_model("gpt2", n_layers=2)
    with pytest.raises(hfs.InputError, match="`hook_point` must be a string .* for layer 1 write 'layers.1'"):
        hfs.extract_steps(base, tokenizer(), [_text(2)], hook_point=1, steps=SEP)
    short = copy.deepcopy(tokenizer())
    short.model_max_length = 8  # a text longer than the model reads, and no max_length to cut it
    with pytest.raises(hfs.InputError, match=r"texts\[1\]` has \d+ tokens, more than the 8 the model reads"):
        hfs.extract_steps(base, short, [_text(2), _text(2, words="a long sentence " * 4)], hook_point="layers.0",
                          steps=SEP)
    small_vocabulary = build_tiny_model("llama", n_layers=2, vocab_size=1000)
    with pytest.raises(hfs.InputError, match="the tokenizer produced token id \\d+, but LlamaForCausalLM has 1000"):
        hfs.extract_steps(small_vocabulary, tokenizer(), [_text(2, words="zebra xylophone")], hook_point="layers.0",
                          steps=SEP)
