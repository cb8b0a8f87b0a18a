import json

import numpy as np
import pytest

from hf_specialist import synthetic
from hf_specialist.cli import main
from hf_specialist.demo import run_demo
from helpers import build_tiny_model, tokenizer


def test_planted_text_has_the_structure_it_claims():
    texts, tasks, truth = synthetic.planted_text(n=50, T=6, M=2, seed=3)
    numbers = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    for text, outcome in zip(texts, tasks):
        sentences = text.rstrip(".").split(". ")
        assert len(sentences) == 6
        stated = [next(numbers.index(w) for w in s.split() if w in numbers) for s in sentences]
        np.testing.assert_array_equal(outcome, np.array(stated) @ truth["step_tasks"])
    assert truth["step_tasks"].shape == (6, 2)
    assert (truth["segment_tasks"].sum(0) >= 2).all()  # each task touches at least two segments
    np.testing.assert_array_equal(truth["step_tasks"][::2], truth["step_tasks"][1::2])  # segments of two


def test_cli_discover_takes_every_reduction_the_api_takes(tmp_path):
    states, tasks, _ = synthetic.collider_sequences(n=1200, T=4, M=2, state_dim=3, obs_dim=12, seed=0)
    np.save(tmp_path / "s.npy", states)
    np.save(tmp_path / "g.npy", tasks)
    for reduction in ("auto", "supervised", "pca"):
        out = tmp_path / f"{reduction}.json"
        assert main(["discover", "--states", str(tmp_path / "s.npy"), "--tasks", str(tmp_path / "g.npy"), "--project",
                     "4", "--reduction", reduction, "--output", str(out)]) == 0
        saved = json.loads(out.read_text())
        assert saved["params"]["reduction"] == reduction
        assert saved["reduction_used"] in (("pca", "supervised") if reduction == "auto" else (reduction,))


def test_cli_train_reads_the_classes_from_the_labels(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(300, 16)).astype(np.float32)
    labels = np.stack([rows[:, :2].sum(1), (rows[:, 2:4] > 0).sum(1)], 1)  # regression, 3 classes
    np.save(tmp_path / "h.npy", rows)
    np.save(tmp_path / "y.npy", labels)
    common = ["train", "--states", str(tmp_path / "h.npy"), "--task-types", "regression,classification",
              "--sparsity", "0.01", "--epochs", "2", "--d-latent", "4"]
    assert main([*common, "--tasks", str(tmp_path / "y.npy"), "--output", str(tmp_path / "adapter")]) == 0
    assert "classes per task read from the labels: [0, 3]" in capsys.readouterr().out
    assert json.loads((tmp_path / "adapter" / "config.json").read_text())["n_classes"] == [0, 3]
    np.save(tmp_path / "bad.npy", labels + [0.0, 0.5])
    assert main([*common, "--tasks", str(tmp_path / "bad.npy"), "--output", str(tmp_path / "bad")]) == 2
    assert "task 1 is a classification task but its labels are not whole numbers" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_cli_pipeline_on_a_small_recipe(tmp_path):
    states, tasks, truth = synthetic.collider_sequences(n=3000, T=6, M=2, seed=0)
    np.save(tmp_path / "s.npy", states)
    np.save(tmp_path / "g.npy", tasks)
    np.save(tmp_path / "truth.npy", truth["step_tasks"])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"states: {tmp_path / 's.npy'}\ntasks: {tmp_path / 'g.npy'}\n"
        f"discover:\n  segment_length: 2\n  truth: {tmp_path / 'truth.npy'}\n  output: {tmp_path / 'structure.json'}\n"
    )
    assert main(["discover", "--recipe", str(recipe)]) == 0
    saved = json.loads((tmp_path / "structure.json").read_text())
    np.testing.assert_array_equal(np.array(saved["step_tasks"], dtype=bool), truth["step_tasks"])
    assert (tmp_path / "structure.png").exists()

    rows = np.random.default_rng(0).normal(size=(300, 6, 16)).astype(np.float32)
    np.save(tmp_path / "h.npy", rows)
    np.save(tmp_path / "y.npy", rows[:, 0, :2].sum(-1, keepdims=True))
    code = main(["train", "--states", str(tmp_path / "h.npy"), "--tasks", str(tmp_path / "y.npy"), "--sparsity", "0.01",
                 "--epochs", "2", "--d-latent", "4", "--output", str(tmp_path / "adapter")])
    assert code == 0 and (tmp_path / "adapter" / "model.safetensors").exists()
    code = main(["evaluate", "--adapter", str(tmp_path / "adapter"), "--states", str(tmp_path / "h.npy"),
                 "--tasks", str(tmp_path / "y.npy"), "--output", str(tmp_path / "metrics.json")])
    assert code == 0 and "adapter/explained_variance" in json.loads((tmp_path / "metrics.json").read_text())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["discover", "--states", "missing.npy", "--tasks", "missing.npy"], "tasks file not found: missing.npy"),
        (["discover"], "pass --tasks TASKS.npy and either --states"),
        (["train", "--states", "missing.npy", "--tasks", "x.npy"], "not found: missing.npy"),
        (["evaluate", "--adapter", "/no/such/folder", "--states", "a.npy", "--tasks", "b.npy"],
         "error: no such folder: /no/such/folder"),
        (["evaluate", "--adapter", "no_such_adapter", "--states", "a.npy", "--tasks", "b.npy"],
         "no such folder: no_such_adapter (and not a Hub repo id"),
        (["extract", "--model", "./nope", "--texts", "t.txt"], "error: no such folder: ./nope"),
        (["discover", "--model", "../nope", "--texts", "t.txt", "--tasks", "g.npy"], "error: no such folder: ../nope"),
        (["push"], "usage: hf-specialist push DIR REPO_ID"),
        (["demo", "--recipe", "no_such_recipe.yaml"], "recipe file not found: no_such_recipe.yaml"),
        (["discover", "--mode", "sideways"], "invalid choice: 'sideways'"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
    ],
)
def test_cli_exit_code_two_on_bad_input(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_cli_exit_code_one_for_a_failure_that_is_not_bad_input(tmp_path, capsys, monkeypatch):
    from hf_specialist import cli

    def broken(args):
        """A command with a programming error."""
        raise TypeError("an internal bug")

    monkeypatch.setitem(cli.COMMANDS, "push", (broken, cli.COMMANDS["push"][1]))
    assert main(["push", "a", "b"]) == 1
    err = capsys.readouterr().err
    assert "failed: TypeError: an internal bug (run with --debug for the traceback)" in err
    assert "Traceback" not in err
    assert main(["push", "a", "b", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "an internal bug" in err


def test_cli_separators_pass_through_intact():
    from hf_specialist.cli import _separator

    assert _separator("。") == "。" and _separator(" — ") == " — " and _separator("; ") == "; "
    assert _separator("\\n") == "\n" and _separator("a\\tb") == "a\tb" and _separator("\\\\n") == "\\n"
    assert _separator("token") == "token"


def test_cli_bad_values_inside_files(tmp_path, capsys):
    np.save(tmp_path / "s.npy", np.full((50, 4), np.nan))
    np.save(tmp_path / "g.npy", np.zeros((50, 1)))
    assert main(["discover", "--states", str(tmp_path / "s.npy"), "--tasks", str(tmp_path / "g.npy")]) == 2
    assert "NaN" in capsys.readouterr().err


def test_demo_end_to_end_on_a_tiny_model(tmp_path):
    model, tok = build_tiny_model("bert", n_layers=2), tokenizer()
    summary = run_demo("tiny-bert", n=300, T=4, M=1, hook_point="layers.1", epochs=2, d_latent=4,
                       output_dir=str(tmp_path), quiet=True, base=(model, tok))
    for name in ("structure.png", "latents_r2.png", "training.png", "results.json", "adapter/README.md",
                 "adapter/model.safetensors", "adapter/structure.json"):
        assert (tmp_path / name).exists(), name
    # the numbers reported are the numbers of what was saved: the saved structure scored against the planted truth
    from hf_specialist.metrics import structure_scores

    _, _, truth = synthetic.planted_text(n=300, T=4, M=1, seed=0)
    saved = np.array(json.loads((tmp_path / "adapter" / "structure.json").read_text())["step_tasks"], dtype=bool)
    assert summary["structure/f1"] == structure_scores(saved, truth["step_tasks"])["f1"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["structure/f1"] == summary["structure/f1"]
    assert results["latents/r2_relevant"] == summary["latents/r2_relevant"]


def test_both_demos_and_the_cli_run_the_one_pipeline(tmp_path, monkeypatch):
    """`run_demo`, `run_entities_demo` and `hf-specialist demo [--data entities]` are one call of
    `pipeline.run_pipeline`, differing only in the data maker, the scorer, the structure's `project` and the entities'
    epochs; the CLI's defaults are the demo's signature's."""
    import inspect

    from hf_specialist import demo, knowledge, pipeline

    shared = ("model", "hook_point", "d_latent", "epochs", "seed")
    defaults = {name: p.default for name, p in inspect.signature(pipeline.run_pipeline).parameters.items()}
    calls = []

    def recorder(make_data, score, model="minilm", **options):
        calls.append({"make_data": make_data, "score": score, "model": model, **options})
        return {}

    monkeypatch.setattr(pipeline, "run_pipeline", recorder)
    monkeypatch.setattr(demo, "print_results", lambda summary: None)
    monkeypatch.setattr(knowledge, "print_table", lambda summary: None)
    assert main(["demo", "--n", "30", "--T", "4", "-o", str(tmp_path)]) == 0
    assert main(["demo", "--data", "entities", "--n", "30", "-o", str(tmp_path)]) == 0
    planted, entities = calls
    assert planted["score"] is demo.score_planted and entities["score"] is knowledge.score_entities
    expected = {"planted": {k: defaults[k] for k in shared},  # one source of the defaults
                "entities": {**{k: defaults[k] for k in shared}, "epochs": knowledge.ENTITIES_EPOCHS}}
    assert knowledge.ENTITIES_EPOCHS != defaults["epochs"]  # the entities data's one training choice of its own
    for name, call in (("planted", planted), ("entities", entities)):
        assert {k: call[k] for k in shared} == expected[name]
    assert planted.get("structure_options") is None  # TaskStructure's own defaults
    assert entities["structure_options"] == {"project": 32} and entities["require_every_task"] is True
    assert planted["output_dir"] == str(tmp_path) and entities["output_dir"] == str(tmp_path / "entities")
    data = planted["make_data"]()
    assert len(data.texts) == 30 and data.tasks.shape == (30, 2) and data.truth["step_tasks"].shape == (4, 2)
    for name, runner in (("planted", demo.run_demo), ("entities", knowledge.run_entities_demo)):
        signature = inspect.signature(runner).parameters
        assert {k: signature[k].default for k in shared} == expected[name]


def test_cli_discover_from_a_model_streams_and_matches_the_python_call(tmp_path):
    import hf_specialist as hfs

    texts, tasks, truth = synthetic.planted_text(n=400, T=4, M=2, seed=2)
    (tmp_path / "texts.txt").write_text("\n".join(texts))
    np.save(tmp_path / "tasks.npy", tasks)
    code = main(["discover", "--model", "minilm", "--texts", str(tmp_path / "texts.txt"), "--tasks",
                 str(tmp_path / "tasks.npy"), "--hook-point", "layers.3", "--steps", ". ", "--project", "4",
                 "--chunk-size", "150", "--batch-size", "50", "--output", str(tmp_path / "structure.json")])
    assert code == 0
    saved = json.loads((tmp_path / "structure.json").read_text())
    from helpers import minilm

    model, tok = minilm()
    expected = hfs.discover(model, tok, texts, tasks, hook_point="layers.3", steps=". ", project=4, chunk_size=150)
    np.testing.assert_array_equal(np.array(saved["step_tasks"], dtype=bool), expected.step_tasks_)
    np.testing.assert_array_equal(expected.step_tasks_, truth["step_tasks"])


def test_cli_train_defaults_come_from_the_api_and_classification_is_reachable(tmp_path, monkeypatch):
    import functools

    import hf_specialist as hfs
    from hf_specialist import cli
    from hf_specialist.adapter import lambda_path

    seen = {}
    real = lambda_path.train_specialist

    @functools.wraps(real)
    def spy(adapter, *args, **kwargs):
        seen.update(kwargs["args"].to_dict(), d_latent=adapter.config.d_latent, task_types=adapter.config.task_types,
                    n_classes=adapter.config.n_classes)
        return real(adapter, *args, **{**kwargs, "epochs": 2})

    monkeypatch.setattr(lambda_path, "train_specialist", spy)
    rng = np.random.default_rng(0)
    states = rng.normal(size=(200, 16)).astype(np.float32)
    tasks = np.stack([states[:, 0], (states[:, 1] > 0).astype(float) + (states[:, 2] > 0)], axis=1)
    np.save(tmp_path / "h.npy", states)
    np.save(tmp_path / "y.npy", tasks)
    code = main(["train", "--states", str(tmp_path / "h.npy"), "--tasks", str(tmp_path / "y.npy"), "--sparsity", "0.01",
                 "--task-types", "regression,classification", "--n-classes", "0,3", "--output", str(tmp_path / "a")])
    assert code == 0
    api = hfs.SpecialistTrainingArguments()  # the CLI's training defaults are the dataclass's
    assert seen["batch_size"] == api.batch_size and seen["lr"] == api.lr and seen["selection"] == api.selection
    assert seen["epochs"] is None and api.resolved().epochs == lambda_path.DEFAULT_EPOCHS
    assert seen["d_latent"] == hfs.SpecialistConfig(d_in=1).d_latent
    assert seen["task_types"] == ["regression", "classification"] and seen["n_classes"] == [0, 3]
    loaded = hfs.SpecialistAdapter.from_pretrained(tmp_path / "a")
    assert loaded.predict(states[:5], task=1).shape == (5, 3)
    assert cli.api_defaults(hfs.SpecialistConfig, ["encoder_widths"]) == {"encoder_widths": [256, 256]}
    assert main(["train", "--states", str(tmp_path / "h.npy"), "--tasks", str(tmp_path / "y.npy"),
                 "--task-types", "regression,ranking"]) == 2
    assert main(["train", "--states", str(tmp_path / "h.npy"), "--tasks", str(tmp_path / "y.npy"),
                 "--sparsity", "aut"]) == 2
    # a recipe spells numbers as Python does: `1e-3` is a float (YAML 1.1 alone reads it as a string)
    recipe = tmp_path / "train.yaml"
    recipe.write_text(f"states: {tmp_path / 'h.npy'}\ntasks: {tmp_path / 'y.npy'}\ntrain:\n  lr: 3e-4\n"
                      f"  sparsity: 1e-2\n  task_types: [regression, classification]\n  n_classes: [0, 3]\n"
                      f"  output: {tmp_path / 'b'}\n")
    assert main(["train", "--recipe", str(recipe)]) == 0
    assert seen["lr"] == pytest.approx(3e-4)


def test_cli_push_reads_its_recipe(tmp_path, capsys):
    recipe = tmp_path / "push.yaml"
    recipe.write_text(f"push:\n  dir: {tmp_path / 'no_such_adapter'}\n  repo_id: me/x\n")
    assert main(["push", "--recipe", str(recipe)]) == 2
    assert f"not a folder: {tmp_path / 'no_such_adapter'}" in capsys.readouterr().err


def test_recipe_numbers_are_numbers_only_where_a_number_is_expected(tmp_path):
    import argparse

    from hf_specialist import cli

    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 3e-4\nrevision: 1234e56\nlambda_path: [1e-3, 1e-2]\n")
    values = cli._merge(argparse.Namespace(), cli._load_recipe(str(recipe), "train"),
                        {"lr": 1e-3, "revision": None, "lambda_path": None})
    assert values["lr"] == pytest.approx(3e-4) and values["lambda_path"] == pytest.approx([1e-3, 1e-2])
    assert values["revision"] == "1234e56"  # a short commit id, not 1.234e59
