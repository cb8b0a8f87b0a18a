import numpy as np
import pytest
import torch

import hf_specialist as hfs
from hf_specialist.steps import assignment_matrix, pool_steps, separator_spans
from helpers import build_tiny_model, minilm, tokenizer

TEXTS = ["The cat sat. It was red. Then it left.", "A dog ran far. The sky was grey. We went home late."]


def test_separator_spans_trim_and_drop_empty():
    text = " one. two .. three"
    spans = separator_spans(text, ".")
    assert [text[a:b] for a, b in spans] == ["one", "two", "three"]


def test_pooling_against_manual_mean():
    hidden = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    assign = torch.zeros(2, 2, 5, dtype=torch.bool)
    assign[0, 0, 1:3] = True
    assign[0, 1, 3:5] = True
    assign[1, 0, 0:4] = True
    mean = pool_steps(hidden, assign, "mean")
    torch.testing.assert_close(mean[0, 0], hidden[0, 1:3].mean(0))
    torch.testing.assert_close(mean[1, 0], hidden[1, 0:4].mean(0))
    assert torch.all(mean[1, 1] == 0)
    torch.testing.assert_close(pool_steps(hidden, assign, "first")[0, 1], hidden[0, 3])
    torch.testing.assert_close(pool_steps(hidden, assign, "last")[0, 0], hidden[0, 2])
    with pytest.raises(ValueError, match="pool"):
        pool_steps(hidden, assign, "max")


def test_assignment_excludes_special_and_padding():
    tok = tokenizer()
    enc = tok(["ab cd", "ab cd ef gh"], padding=True, return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="pt")
    content = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
    assign = assignment_matrix(enc["offset_mapping"], content, [[(0, 2), (3, 5)], [(0, 5), (6, 11)]], 2)
    assert not (assign & ~content[:, None, :]).any()
    assert assign[0].sum(-1).tolist() == [1, 1]


@pytest.mark.parametrize("pool", ["mean", "last", "first"])
def test_left_and_right_padding_agree(pool):
    model = build_tiny_model("gpt2")
    tok = tokenizer()
    right = hfs.extract_padded_steps(model, tok, TEXTS, hook_point="layers.2", steps=".", pool=pool)
    tok.padding_side = "left"
    try:
        left = hfs.extract_padded_steps(model, tok, TEXTS, hook_point="layers.2", steps=".", pool=pool)
    finally:
        tok.padding_side = "right"
    np.testing.assert_allclose(right[0], left[0], atol=1e-5)
    np.testing.assert_array_equal(right[1], left[1])
    # padding never leaks: each text alone gives the same steps as in the batch
    for i, text in enumerate(TEXTS):
        alone = hfs.extract_steps(model, tok, [text], hook_point="layers.2", steps=".", pool=pool)
        np.testing.assert_allclose(alone[0], right[0][i, : alone.shape[1]], atol=1e-5)


def test_step_rules_and_shapes():
    model = build_tiny_model("llama")
    tok = tokenizer()
    texts = ["red blue green", "one two three"]
    tokens = hfs.extract_steps(model, tok, texts, hook_point="layers.1", steps="token")
    assert tokens.shape == (2, 3, 32) and tokens.dtype == np.float32
    spans = [[(0, 3), (4, 14)], [(0, 7), (8, 13)]]
    by_span = hfs.extract_steps(model, tok, texts, hook_point="layers.1", steps=spans, pool="mean")
    assert by_span.shape == (2, 2, 32)
    # the span "red" is one token: mean pooling equals that token's state
    np.testing.assert_allclose(by_span[0, 0], tokens[0, 0], atol=1e-5)
    np.testing.assert_allclose(by_span[0, 1], tokens[0, 1:].mean(0), atol=1e-5)


def test_dataset_column_input():
    import datasets

    model = build_tiny_model("bert")
    ds = datasets.Dataset.from_dict({"text": TEXTS, "label": [0, 1]})
    out = hfs.extract_padded_steps(model, tokenizer(), ds, hook_point="layers.0", steps=".")
    ref = hfs.extract_padded_steps(model, tokenizer(), TEXTS, hook_point="layers.0", steps=".")
    np.testing.assert_array_equal(out[0], ref[0])


def test_bad_inputs(tmp_path):
    model = build_tiny_model("gpt2")
    tok = tokenizer()
    with pytest.raises(ValueError, match="different numbers of steps"):
        hfs.extract_steps(model, tok, ["a. b. c", "d. e"], hook_point="layers.0", steps=".")
    from hf_specialist.steps import token_step_counts

    uneven = ["hello there world", "hi"]
    counts = token_step_counts(tok, uneven)
    assert counts[0] != counts[1]
    forwards = []
    handle = model.register_forward_hook(lambda *args: forwards.append(1))
    try:  # token steps of different counts are refused before any forward pass, in every form that stacks them
        with pytest.raises(ValueError, match=rf"under the rule 'token' \(`steps='token'`, the default, makes every "
                                             rf"token a step; for sentence steps pass a separator.*texts\[\d\] has"):
            hfs.extract_steps(model, tok, uneven, hook_point="layers.0")
        with pytest.raises(ValueError, match="different numbers of steps"):
            hfs.extract_steps_dataset(model, tok, uneven, hook_point="layers.0", cache_dir=str(tmp_path))
        with pytest.raises(ValueError, match="different numbers of steps"):
            hfs.discover(model, tok, uneven, np.zeros((2, 1)), hook_point="layers.0")
    finally:
        handle.remove()
    assert not forwards
    states, mask = hfs.extract_padded_steps(model, tok, uneven, hook_point="layers.0")  # padding is the way out
    assert mask.sum(1).tolist() == counts
    with pytest.raises(ValueError, match=r"`texts\[1\]` is empty"):
        hfs.extract_steps(model, tok, ["hello", "  "], hook_point="layers.0")
    with pytest.raises(ValueError, match=r"`texts\[0\]` has no step"):
        hfs.extract_steps(model, tok, ["...", "a. b"], hook_point="layers.0", steps=".")
    with pytest.raises(ValueError, match="matches nothing"):
        hfs.extract_steps(model, tok, TEXTS, hook_point="blocks.1")
    with pytest.raises(ValueError, match="outside text 0"):
        hfs.extract_steps(model, tok, ["abc"], hook_point="layers.0", steps=[[(0, 10)]])
    with pytest.raises(ValueError, match="spans for 1 texts but 2"):
        hfs.extract_steps(model, tok, ["abc", "def"], hook_point="layers.0", steps=[[(0, 2)]])
    with pytest.raises(ValueError, match="cover no token"):
        hfs.extract_steps(model, tok, ["aaa bbb. ccc ddd eee fff"], hook_point="layers.0", steps=".", max_length=4)
    with pytest.raises(TypeError, match="single str"):
        hfs.extract_steps(model, tok, "just one text", hook_point="layers.0")


def test_minilm_paraphrases_closer_than_unrelated():
    model, tok = minilm()
    texts = [
        "The quick brown fox jumps over the lazy dog. A man is playing the guitar on stage.",
        "A fast brown fox leaps over a sleepy dog. The stock market fell sharply on Monday.",
    ]
    states = hfs.extract_steps(model, tok, texts, hook_point="layers.3", steps=". ", pool="mean")
    assert states.shape == (2, 2, 384)

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    paraphrase = cos(states[0, 0], states[1, 0])
    unrelated = [cos(states[0, 0], states[1, 1]), cos(states[0, 1], states[1, 1]), cos(states[0, 1], states[1, 0])]
    assert paraphrase > max(unrelated) + 0.1
