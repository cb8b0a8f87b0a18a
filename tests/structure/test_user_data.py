"""The structure on data shaped like a user's: isolated steps, layer sweeps, a nonlinear streaming test, bad step
rules."""

import numpy as np
import pytest

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist.structure.ci_tests import RandomFourierZ
from helpers import build_tiny_model, tokenizer


def test_isolated_context_encodes_each_step_alone():
    model = build_tiny_model("gpt2", n_layers=2)
    texts = ["the cat sat. a dog ran far. birds sing", "one. two three. four five six"]
    isolated = hfs.extract_steps(model, tokenizer(), texts, hook_point="layers.1", steps=". ", context="isolated")
    full = hfs.extract_steps(model, tokenizer(), texts, hook_point="layers.1", steps=". ")
    assert isolated.shape == full.shape == (2, 3, 32)
    alone = hfs.extract_steps(model, tokenizer(), ["a dog ran far"], hook_point="layers.1", steps=[[(0, 13)]])
    np.testing.assert_allclose(isolated[0, 1], alone[0, 0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(full[0, 1], alone[0, 0], atol=1e-3)  # in context, step 2 also sees step 1
    with pytest.raises(ValueError, match="context='isolated' encodes each step on its own"):
        hfs.extract_steps(model, tokenizer(), texts, hook_point="layers.1", steps="token", context="isolated")


def test_step_rules_that_do_not_fit_fail_before_the_forward_pass():
    model = build_tiny_model("gpt2", n_layers=2)
    texts = ["a b; c d; e f", "g h; i j; k l"]
    with pytest.raises(ValueError, match=r"The step rule '\. ' matches nothing in any of the 2 texts.*'a b; c d; e f'"):
        hfs.extract_steps(model, tokenizer(), texts, hook_point="layers.1", steps=". ")
    with pytest.raises(ValueError, match=r"most have 3, texts\[2\] has 2 \(.m; n.\)"):
        hfs.extract_steps(model, tokenizer(), texts + ["m; n", "o; p; q"], hook_point="layers.1", steps="; ")
    states, mask = hfs.extract_padded_steps(model, tokenizer(), texts + ["m; n"], hook_point="layers.1", steps="; ")
    assert states.shape[:2] == (3, 3) and mask.sum() == 8


def test_sweep_layers_equals_a_fit_per_layer_and_plots(tmp_path):
    model = build_tiny_model("gpt2", n_layers=3)
    texts, tasks, truth = synthetic.planted_text(n=400, T=4, M=2, seed=0)
    sweep = hfs.sweep_layers(model, tokenizer(), texts, tasks, hook_points=["embed", "layers.0", "layers.2"],
                             steps=". ", batch_size=64, plot=tmp_path / "sweep.png", project=None)
    assert sweep.hook_points == ["embed", "layers.0", "layers.2"]
    for point in sweep.hook_points:
        states = hfs.extract_steps(model, tokenizer(), texts, hook_point=point, steps=". ")
        assert sweep.structures[point].causal is True  # GPT-2 (measured per hook point)
        assert sweep.structures[point].context_ == "full"
        alone = hfs.TaskStructure(project=None, causal=True).fit(states, tasks)
        np.testing.assert_array_equal(sweep.structures[point].step_tasks_, alone.step_tasks_)
        np.testing.assert_allclose(sweep.structures[point].step_pvalues_, alone.step_pvalues_, rtol=1e-5, atol=1e-300)
        assert 0.0 <= sweep.confidence[point] <= 1.0
    assert (tmp_path / "sweep.png").stat().st_size > 0
    table = sweep.table()
    assert table.splitlines()[0].startswith("hook point") and len(table.splitlines()) == 4
    assert sweep.best() in sweep.hook_points
    import datasets  # a Dataset of tasks names them in every layer's structure and in the table

    named = hfs.sweep_layers(model, tokenizer(), texts, datasets.Dataset.from_dict({"x": tasks[:, 0], "y": tasks[:, 1]}),
                             hook_points=["embed"], steps=". ", batch_size=64, project=None)
    assert named.structures["embed"].task_names_ == ["x", "y"] and named.table().splitlines()[0].endswith("| x | y")


def test_rff_z_streams_and_finds_a_threshold_outcome():
    states, tasks, truth = synthetic.collider_sequences(n=6000, T=8, M=2, outcome="threshold", seed=1)
    test = RandomFourierZ(seed=0)
    whole = hfs.TaskStructure(segment_length=2, test=test).fit(states, tasks)
    np.testing.assert_array_equal(whole.step_tasks_, truth["step_tasks"])
    streamed = hfs.TaskStructure(segment_length=2, test=test)
    for start in range(0, 6000, 1500):
        streamed.partial_fit(states[start : start + 1500], tasks[start : start + 1500])
    np.testing.assert_array_equal(streamed.step_tasks_, whole.step_tasks_)
    # the features are drawn from the first batch: a stream of the same batches gives the same fit
    batches = [(states[start : start + 1500], tasks[start : start + 1500]) for start in range(0, 6000, 1500)]
    again = hfs.TaskStructure(segment_length=2, test=test).fit(batches)
    np.testing.assert_allclose(again.step_pvalues_, streamed.step_pvalues_, rtol=1e-5, atol=1e-300)


def test_rff_z_is_calibrated_on_unlinked_tasks():
    marks = 0
    for seed in range(3):
        states, tasks, _ = synthetic.unlinked_collider_sequences(n=3000, T=8, M=2, outcome="max", seed=seed)
        marks += hfs.TaskStructure(segment_length=2, test="rff_z").fit(states, tasks).step_tasks_.sum()
    assert marks == 0
    with pytest.raises(ValueError, match="`n_task_features` must be an int >= 1"):
        RandomFourierZ(n_task_features=0)


def test_an_adapter_on_isolated_steps_is_served_on_isolated_steps(tmp_path):
    from helpers import build_adapter

    base = build_tiny_model("gpt2", n_layers=3)
    texts = [f"alpha {k}. beta {k % 3}. gamma {k % 5}." for k in range(30)]
    states = hfs.extract_steps(base, tokenizer(), texts, hook_point="layers.1", steps=". ", context="isolated")
    __import__("torch").manual_seed(0)
    adapter = build_adapter(d_in=32, n_tasks=1, hook_point="layers.1", step_rule=". ", pool="mean", context="isolated",
                            base_model_type="gpt2", base_hidden_size=32)
    hfs.train_specialist(adapter, states, states[:, :2, 0].sum(1, keepdims=True), sparsity=0.0, epochs=1, seed=0,
                         progress=False)
    folder = adapter.save_pretrained(tmp_path / "adapter")
    specialist = hfs.SpecialistModel.from_pretrained(base, folder, tokenizer=tokenizer())
    assert specialist.adapter.config.context == "isolated"
    np.testing.assert_allclose(specialist.step_states(texts[:4]), states[:4], rtol=1e-5, atol=1e-6)


def test_isolated_errors_name_the_users_text_and_step():
    model = build_tiny_model("gpt2", n_layers=2)
    with pytest.raises(hfs.InputError, match=r"texts\[1\] step 2 \(encoded alone\)"):
        hfs.extract_steps(model, tokenizer(), ["abc def", "ghi jkl"], hook_point="layers.1",
                          steps=[[(0, 3), (4, 7)], [(0, 3), (3, 4)]], context="isolated")  # step 2 of text 1 is " "


def test_long_calls_print_lines_off_a_terminal_and_end_with_a_summary(capsys):
    model = build_tiny_model("gpt2", n_layers=2)
    texts, tasks, _ = synthetic.planted_text(n=400, T=4, M=1, seed=0)
    hfs.discover(model, tokenizer(), texts, tasks, hook_point="layers.1", steps=". ", chunk_size=100)
    err = capsys.readouterr().err  # captured: not a terminal
    assert "discover at layers.1: 2/4 chunks (50%)" in err and "400 texts x 4 steps" in err
    hfs.discover(model, tokenizer(), texts, tasks, hook_point="layers.1", steps=". ", chunk_size=100, progress=False)
    assert capsys.readouterr().err == ""


def test_rff_z_step_features_are_tested_with_a_reduction():
    """With cosine features of the steps, every feature column of the tested step is tested (not only the reduced
    dims the features are computed from)."""
    rng = np.random.default_rng(0)
    states = rng.normal(size=(1500, 4, 20))
    tasks = states[:, 2, :1] + 0.5 * rng.normal(size=(1500, 1))
    fitted = hfs.TaskStructure(test=RandomFourierZ(n_features=4, seed=0), project=4, reduction="pca").fit(states, tasks)
    assert fitted._layout.widths()[0] == 8 == fitted.conditioning_dims_["tested"]


def _repair_tickets(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Six-sentence repair tickets: the bill multiplies the numbers of sentences 2 and 3, the review adds those of
    sentences 5 and 6; the rest is noise."""
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    rng = np.random.default_rng(seed)
    q = rng.integers(1, 10, size=(n, 6))
    towns = ["Leeds", "Porto", "Lyon", "Graz", "Turin", "Cork"]
    texts = [". ".join([f"The ticket was opened in {towns[rng.integers(6)]} after {words[r[0]]} calls",
                        f"The engineer replaced {words[r[1]]} valves in the boiler",
                        f"Each part was billed at {words[r[2]]} pounds",
                        f"The van arrived {words[r[3]]} minutes late",
                        f"The customer gave the visit {words[r[4]]} stars",
                        f"The follow-up survey scored {words[r[5]]} points"]) + "." for r in q]
    truth = np.zeros((6, 2), dtype=bool)
    truth[1:3, 0] = truth[4:6, 1] = True
    return texts, np.stack([q[:, 1] * q[:, 2], q[:, 4] + q[:, 5]], 1).astype(float), truth


def test_discover_isolates_the_steps_of_an_encoder_whose_context_leaks():
    from helpers import minilm

    model, tok = minilm()
    texts, tasks, truth = _repair_tickets(600, seed=0)
    kwargs = dict(hook_point="layers.-1", steps=". ", batch_size=64, progress=False)
    default = hfs.discover(model, tok, texts, tasks, **kwargs)  # context="auto": sentence steps, each alone
    isolated = hfs.discover(model, tok, texts, tasks, context="isolated", **kwargs)
    full = hfs.discover(model, tok, texts, tasks, context="full", **kwargs)
    np.testing.assert_array_equal(default.step_tasks_, truth)
    np.testing.assert_allclose(default.step_pvalues_, isolated.step_pvalues_, rtol=1e-6, atol=1e-300)
    assert default.causal is None and full.causal is False
    assert (full.step_tasks_ & ~truth).any()  # in full context attention echoes the serving steps into others
    assert (default.context_, full.context_) == ("isolated", "full")
    assert "States: each step's text encoded on its own" in default.report()
    assert hfs.TaskStructure.from_dict(default.to_dict()).context_ == "isolated"


def test_discover_isolates_a_decoders_sentences_too_and_keeps_token_steps_whole(tmp_path):
    from helpers import build_adapter

    model = build_tiny_model("gpt2", n_layers=2)
    texts, tasks, _ = synthetic.planted_text(n=300, T=4, M=2, seed=0)
    kwargs = dict(hook_point="layers.1", batch_size=64, progress=False, project=None)
    default = hfs.discover(model, tokenizer(), texts, tasks, steps=". ", **kwargs)
    isolated = hfs.discover(model, tokenizer(), texts, tasks, steps=". ", context="isolated", **kwargs)
    full = hfs.discover(model, tokenizer(), texts, tasks, steps=". ", context="full", **kwargs)
    assert (default.context_, default.causal) == ("isolated", None)
    np.testing.assert_allclose(default.step_pvalues_, isolated.step_pvalues_, rtol=1e-6, atol=1e-300)
    assert (full.context_, full.causal) == ("full", True)  # full context: measured as causal
    folder = build_adapter(d_in=32, n_tasks=2).save_pretrained(tmp_path / "adapter", structure=default)
    assert "states in `isolated` context" in (folder / "README.md").read_text()  # the model card says so
    encoder = build_tiny_model("bert", n_layers=2)
    short = [" ".join(["one", "two", "three"][i % 3] for i in range(k, k + 5)) for k in range(len(texts))]
    tokens = hfs.discover(encoder, tokenizer(), short, tasks, steps="token", **kwargs)  # never encoded alone
    assert (tokens.context_, tokens.causal) == ("full", False)  # measured as bidirectional
    with pytest.raises(ValueError, match="`context` must be one of 'auto', 'full', 'isolated', got 'whole'"):
        hfs.discover(model, tokenizer(), texts, tasks, steps=". ", context="whole", **kwargs)


def test_discover_refuses_a_blank_step_before_encoding_steps_alone_and_partial_fit_drops_its_record():
    model = build_tiny_model("gpt2", n_layers=2)
    texts, tasks = ["abc d efg", "hij k lmn"], np.zeros((2, 1))
    spans = [[(0, 3), (3, 4), (4, 9)], [(0, 3), (4, 5), (5, 9)]]  # texts[0] step 2 is " "
    with pytest.raises(ValueError, match=r"`texts\[0\]` step 2 is blank; encoded on its own .*pass context='full'"):
        hfs.discover(model, tokenizer(), texts, tasks, hook_point="layers.1", steps=spans)
    rng = np.random.default_rng(0)
    states = rng.normal(size=(2000, 4))
    every_step = states.sum(1, keepdims=True) + 0.1 * rng.normal(size=(2000, 1))
    with pytest.warns(UserWarning, match="marked on every step"):
        structure = hfs.TaskStructure().fit(states, every_step)
    assert "hfs.discover(...) with sentence or span steps does by default" in structure.report(warn=False)
    structure.context_ = "isolated"  # as hfs.discover records it
    assert "encoded alone, so this is not leakage" in structure.report(warn=False)
    with pytest.warns(UserWarning, match="marked on every step"):
        structure.partial_fit(states, every_step)  # states from elsewhere: the record no longer holds
    assert not hasattr(structure, "context_")


def test_discovers_fit_time_warning_knows_the_steps_were_encoded_alone():
    model = build_tiny_model("gpt2", n_layers=2)
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 10, size=(400, 3))
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    texts = [". ".join(f"box {chr(97 + t)} holds {words[c]} pens" for t, c in enumerate(row)) + "." for row in counts]
    with pytest.warns(UserWarning, match="encoded alone, so this is not leakage"):
        structure = hfs.discover(model, tokenizer(), texts, counts.sum(1, keepdims=True).astype(float),
                                 hook_point="layers.1", steps=". ", progress=False, project=None)
    assert structure.step_tasks_.all() and structure.context_ == "isolated"
    assert not hasattr(structure, "_extraction_context")
