"""The user's own files at the CLI and in Python: texts and tasks from .txt, .jsonl, .csv, .parquet, a
`save_to_disk` folder (and .npy), through `datasets`; a CSV header is never a text; blank texts and uneven step
counts are errors in the CLI as in Python, padding only when asked."""

import json

import datasets
import numpy as np
import pytest

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist._arrays import as_task_array
from hf_specialist._files import read_array, read_texts
from hf_specialist.cli import main
from helpers import build_adapter

TEXTS = ["The cat sat. It was warm.", "A dog, a big one. It ran.", "Rain fell. We stayed in."]


def _write_all_formats(folder):
    table = datasets.Dataset.from_dict({"text": TEXTS, "score": [1.0, 2.0, 3.0], "mood": [0, 1, 0]})
    table.to_csv(str(folder / "data.csv"), index=False)
    table.to_json(str(folder / "data.jsonl"))
    table.to_parquet(str(folder / "data.parquet"))
    table.save_to_disk(str(folder / "saved"))
    (folder / "data.txt").write_text("\n".join(TEXTS) + "\n")
    return ["data.csv", "data.jsonl", "data.parquet", "saved"]


def test_every_format_reads_the_same_texts_and_tasks(tmp_path):
    tables = _write_all_formats(tmp_path)
    assert read_texts(tmp_path / "data.txt") == TEXTS
    for name in tables:
        assert read_texts(tmp_path / name) == TEXTS, name  # the CSV header is not a text
        np.testing.assert_array_equal(read_array(tmp_path / name, "tasks", ["score", "mood"]),
                                      [[1, 0], [2, 1], [3, 0]])
    np.save(tmp_path / "tasks.npy", np.ones((3, 2)))
    assert read_array(tmp_path / "tasks.npy", "tasks").shape == (3, 2)


def test_bad_files_name_the_problem(tmp_path):
    _write_all_formats(tmp_path)
    (tmp_path / "blank.txt").write_text("one. two.\n\nthree. four.\n")
    with pytest.raises(hfs.InputError, match=r"blank.txt: text 1 \(line 2\) is blank"):
        read_texts(tmp_path / "blank.txt")
    with pytest.raises(hfs.InputError, match=r"tasks column 'text' holds text .*--task-columns"):
        read_array(tmp_path / "data.csv", "tasks")
    with pytest.raises(hfs.InputError, match=r"has no column 'body'; its columns are \['text', 'score', 'mood'\]"):
        read_texts(tmp_path / "data.csv", "body")
    with pytest.raises(hfs.InputError, match=r"unknown file type '.xlsx'"):
        (tmp_path / "data.xlsx").write_text("x")
        read_texts(tmp_path / "data.xlsx")
    with pytest.raises(hfs.InputError, match="no such file: .*nope.csv"):
        read_texts(tmp_path / "nope.csv")
    (tmp_path / "pickled.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(hfs.InputError, match="is not a numeric .npy array"):
        read_array(tmp_path / "pickled.npy", "tasks")


def test_python_takes_a_dataset_or_its_columns_for_tasks():
    table = datasets.Dataset.from_dict({"y0": [1.0, 2.0], "y1": [3, 4], "name": ["a", "b"],
                                        "vec": [[1.0, 2.0], [3.0, 4.0]]})
    np.testing.assert_array_equal(as_task_array(table, ["y0", "y1"]), [[1, 3], [2, 4]])
    np.testing.assert_array_equal(as_task_array(table["y0"]), [[1], [2]])
    assert as_task_array(table, ["vec"]).shape == (2, 1, 2)
    assert as_task_array(table.select_columns(["y0", "y1"])).shape == (2, 2)
    array = np.zeros((2, 2))
    assert as_task_array(array) is array
    with pytest.raises(hfs.InputError, match=r"tasks column\(s\) \['zz'\] not in the dataset"):
        as_task_array(table, ["zz"])

    rng = np.random.default_rng(0)
    states = rng.normal(size=(120, 32)).astype(np.float32)
    tasks = datasets.Dataset.from_dict({"a": states[:, 0].tolist(), "b": states[:, 1].tolist()})
    history = hfs.train_specialist(build_adapter(), states, tasks, sparsity=0.0, epochs=1, seed=0, progress=False)
    assert history is not None


def test_cli_extract_and_discover_from_a_csv(tmp_path, tiny_model_folder, capsys):
    _write_all_formats(tmp_path)
    code = main(["extract", "--model", str(tiny_model_folder), "--texts", str(tmp_path / "data.csv"),
                 "--hook-point", "layers.1", "--output", str(tmp_path / "states.npy")])
    out = capsys.readouterr().out
    assert code == 0 and "extracted 3 sequences x 2 steps" in out
    assert np.load(tmp_path / "states.npy").shape == (3, 2, 32) and not (tmp_path / "states_mask.npy").exists()
    assert json.loads((tmp_path / "states.pipeline.json").read_text())["context"] == "full"

    # --context isolated: each step through the model alone, recorded so the trained adapter reads texts that way
    assert main(["extract", "--model", str(tiny_model_folder), "--texts", str(tmp_path / "data.csv"),
                 "--hook-point", "layers.1", "--context", "isolated", "--output", str(tmp_path / "iso.npy")]) == 0
    isolated = np.load(tmp_path / "iso.npy")
    from hf_specialist.models import load_model

    model, tokenizer = load_model(str(tiny_model_folder))
    texts = list(TEXTS)
    np.testing.assert_allclose(isolated, hfs.extract_steps(model, tokenizer, texts, hook_point="layers.1", steps=". ",
                                                           context="isolated"), atol=1e-5)
    from hf_specialist import cli

    assert cli._pipeline_for_config({"states": str(tmp_path / "iso.npy")})["context"] == "isolated"  # what train records

    states, tasks, truth = synthetic.collider_sequences(n=3000, T=4, M=2, seed=0)
    np.save(tmp_path / "s.npy", states)
    datasets.Dataset.from_dict({"id": list(range(3000)), "g0": tasks[:, 0], "g1": tasks[:, 1]}).to_csv(
        str(tmp_path / "tasks.csv"), index=False)
    assert main(["discover", "--states", str(tmp_path / "s.npy"), "--tasks", str(tmp_path / "tasks.csv"),
                 "--task-columns", "g0,g1", "--output", str(tmp_path / "structure.json")]) == 0
    expected = hfs.TaskStructure(segment_length=2).fit(states, tasks).step_tasks_
    np.testing.assert_array_equal(json.loads((tmp_path / "structure.json").read_text())["step_tasks"], expected)
    assert "States:" not in capsys.readouterr().out  # states made elsewhere: the report claims no context
    datasets.Dataset.from_dict({"refund": tasks[:, 0], "rating": tasks[:, 1]}).to_csv(str(tmp_path / "named.csv"),
                                                                                     index=False)
    (tmp_path / "s.pipeline.json").write_text(json.dumps({"context": "isolated"}))  # as `extract --context isolated`
    assert main(["discover", "--states", str(tmp_path / "s.npy"), "--tasks", str(tmp_path / "named.csv"),
                 "--output", str(tmp_path / "named.json")]) == 0
    report = capsys.readouterr().out  # the report names the tasks by the file's columns
    assert "refund |" in report and "rating |" in report
    assert "States: each step's text encoded on its own" in report
    assert json.loads((tmp_path / "named.json").read_text())["context_used"] == "isolated"
    # train names the tasks by their columns (the summary, the card and `evaluate` show them)
    assert main(["train", "--states", str(tmp_path / "s.npy"), "--tasks", str(tmp_path / "tasks.csv"),
                 "--task-columns", "g0,g1", "--sparsity", "0", "--epochs", "1", "--no-progress",
                 "--output", str(tmp_path / "adapter")]) == 0
    assert hfs.SpecialistAdapter.from_pretrained(tmp_path / "adapter").config.task_names == ["g0", "g1"]


def test_cli_blank_lines_and_uneven_steps_are_errors_as_in_python(tmp_path, tiny_model_folder, capsys):
    (tmp_path / "blank.txt").write_text("one. two.\n\nthree. four.\n")
    assert main(["extract", "--model", str(tiny_model_folder), "--texts", str(tmp_path / "blank.txt")]) == 2
    assert "error: " + str(tmp_path / "blank.txt") + ": text 1 (line 2) is blank" in capsys.readouterr().err
    (tmp_path / "uneven.txt").write_text("a b. c d. e f.\na b. c d.\n")
    argv = ["extract", "--model", str(tiny_model_folder), "--texts", str(tmp_path / "uneven.txt"),
            "--hook-point", "layers.1", "--output", str(tmp_path / "u.npy")]
    assert main(argv) == 2  # before the model is loaded
    assert ("error: texts have different numbers of steps under '. ': most have 2, text 0 has 3 ('a b. c d. e f.'; "
            "1 of 2 differ); make every text produce the same number of steps, or pass --pad") in capsys.readouterr().err
    assert main(argv + ["--steps", "; "]) == 2
    assert "error: The step rule '; ' matches nothing in any of the 2 texts" in capsys.readouterr().err
    assert main(argv + ["--pad"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "u_mask.npy"), [[True, True, True], [True, True, False]])


def test_a_hub_dataset_offline_fails_fast_naming_it(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(hfs.InputError, match=r"no such file or folder: alice/my-texts \(as a Hub dataset id it cannot "
                                             r"be fetched: offline mode is on \(HF_HUB_OFFLINE=1\)\)"):
        read_texts("alice/my-texts")


def test_cli_evaluate_refuses_states_with_another_step_count(tmp_path, capsys):
    rng = np.random.default_rng(0)
    states = rng.normal(size=(60, 4, 32)).astype(np.float32)
    adapter = build_adapter(d_in=32, n_tasks=1, step_rule=". ")
    hfs.train_specialist(adapter, states, states[:, :2, 0].sum(1, keepdims=True), sparsity=0.0, epochs=1, seed=0,
                         progress=False)
    adapter.save_pretrained(tmp_path / "adapter")
    np.save(tmp_path / "s3.npy", states[:, :3])
    np.save(tmp_path / "g.npy", np.zeros((60, 1)))
    assert main(["evaluate", "--adapter", str(tmp_path / "adapter"), "--states", str(tmp_path / "s3.npy"),
                 "--tasks", str(tmp_path / "g.npy")]) == 2
    assert ("error: states have 3 steps per sequence (shape (60, 3, 32)), but the adapter was trained on 4; extract "
            "them with the adapter's step rule ('. ')") in capsys.readouterr().err


def test_the_cli_reads_texts_and_tasks_from_a_dataset_on_the_hub(hub_endpoint, tmp_path, tiny_model_folder, capsys):
    """A dataset pushed with `datasets` to the (local) Hub, read by its id: texts by --text-column, tasks by
    --task-columns, the same as from a local file."""
    from hub_server import TOKEN

    texts, tasks, truth = synthetic.planted_text(n=40, T=4, M=2, seed=0)
    table = datasets.Dataset.from_dict({"id": list(range(40)), "conversation": texts, "sum_0": tasks[:, 0],
                                        "sum_1": tasks[:, 1]})
    table.push_to_hub("alice/conversations", token=TOKEN)
    assert "datasets/alice/conversations" in hub_endpoint.state.repos  # a dataset repo, read through the Hub API
    table.to_csv(str(tmp_path / "local.csv"), index=False)

    assert read_texts("alice/conversations", "conversation") == texts
    np.testing.assert_array_equal(read_array("alice/conversations", "tasks", ["sum_1", "sum_0"]), tasks[:, ::-1])
    with pytest.raises(hfs.InputError, match=r"has the columns \['id', 'conversation', 'sum_0', 'sum_1'\]; name the "
                                             r"one holding the texts \(--text-column\)"):
        read_texts("alice/conversations")

    for source, name in (("alice/conversations", "hub"), (str(tmp_path / "local.csv"), "local")):
        assert main(["extract", "--model", str(tiny_model_folder), "--texts", source, "--text-column", "conversation",
                     "--hook-point", "layers.1", "--steps", truth["separator"], "-o",
                     str(tmp_path / f"{name}.npy")]) == 0
        assert "extracted 40 sequences x 4 steps" in capsys.readouterr().out
        assert main(["discover", "--states", str(tmp_path / f"{name}.npy"), "--tasks", source, "--task-columns",
                     "sum_0,sum_1", "--project", "4", "-o", str(tmp_path / f"{name}.json")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "hub.npy"), np.load(tmp_path / "local.npy"))
    hub, local = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("hub", "local"))
    assert hub["step_tasks"] == local["step_tasks"]
    # discover --model streams from the texts on the Hub too
    assert main(["discover", "--model", str(tiny_model_folder), "--texts", "alice/conversations", "--text-column",
                 "conversation", "--tasks", "alice/conversations", "--task-columns", "sum_0,sum_1", "--hook-point",
                 "layers.1", "--steps", truth["separator"], "--project", "4", "-o", str(tmp_path / "streamed.json")]) == 0
    assert json.loads((tmp_path / "streamed.json").read_text())["step_tasks"] == local["step_tasks"]


def test_cli_doors_that_succeeded_with_a_wrong_result(tmp_path, capsys):
    rng = np.random.default_rng(0)
    states = rng.normal(size=(200, 3, 8)).astype(np.float32)
    a, b = states[:, 0, 0] + states[:, 1, 1], np.tanh(states[:, 2, 2])
    datasets.Dataset.from_dict({"a": a, "b": b, "flat": np.full(200, 3.0)}).to_csv(str(tmp_path / "t.csv"), index=False)
    np.save(tmp_path / "s.npy", states)
    np.save(tmp_path / "t.npy", np.c_[a, b])

    def fails(argv, message):
        assert main(argv) == 2
        assert message in capsys.readouterr().err

    # states padded by `extract --pad`: their mask sits beside them and marks steps that are not real
    np.save(tmp_path / "p.npy", states)
    np.save(tmp_path / "p_mask.npy", np.arange(3)[None, :] < np.where(np.arange(200) % 4 == 0, 2, 3)[:, None])
    fails(["discover", "--states", str(tmp_path / "p.npy"), "--tasks", str(tmp_path / "t.npy")],
          "was extracted with --pad: 50 texts have fewer steps")
    # column names cannot choose columns of a .npy, and a column named twice is not two tasks
    fails(["discover", "--states", str(tmp_path / "s.npy"), "--tasks", str(tmp_path / "t.npy"), "--task-columns", "a"],
          "is a .npy array, which has no column names")
    fails(["discover", "--states", str(tmp_path / "s.npy"), "--tasks", str(tmp_path / "t.csv"),
           "--task-columns", "a,a"], "columns ['a'] are named more than once")
    # a constant outcome has nothing to learn
    fails(["train", "--states", str(tmp_path / "s.npy"), "--tasks", str(tmp_path / "t.csv"), "--sparsity", "0"],
          "(flat) is constant (3)")
    fails(["train", "--states", str(tmp_path / "s.npy"), "--tasks", str(tmp_path / "t.csv"), "--structure",
           str(tmp_path / "t.npy")], "is not a structure.json")
    # evaluate matches the adapter's heads to the table's columns by name, whatever order they are asked in
    assert main(["train", "--states", str(tmp_path / "s.npy"), "--tasks", str(tmp_path / "t.csv"), "--task-columns",
                 "a,b", "--sparsity", "0", "--max-steps", "30", "--output", str(tmp_path / "ad")]) == 0
    scores = []
    for order in ("a,b", "b,a", None):
        argv = ["evaluate", "--adapter", str(tmp_path / "ad"), "--states", str(tmp_path / "s.npy"), "--tasks",
                str(tmp_path / "t.csv"), "--output", str(tmp_path / "m.json")] + (["--task-columns", order] if order else [])
        assert main(argv) == 0
        scores.append(json.loads((tmp_path / "m.json").read_text()))
    assert scores[0]["a/r2"] == scores[1]["a/r2"] == scores[2]["a/r2"]
    # push refuses, before any Hub call, a folder that is not an adapter and a repo id that is not one
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    fails(["push", str(tmp_path / "model"), "me/x"], "is not an hf_specialist adapter config (it describes a "
                                                     "transformers 'bert' model)")
    fails(["push", str(tmp_path / "ad"), "a/b/c"], "is not a Hub repo id")
    with pytest.raises(hfs.InputError, match="not an hf_specialist adapter config"):
        hfs.SpecialistAdapter.from_pretrained(tmp_path / "model")


def test_files_shaped_as_users_write_them(tmp_path):
    """A pandas index column, a CSV without a header, empty files, empty cells and a .txt of numbers: each read as
    meant, or refused naming the file and the place."""
    rng = np.random.default_rng(1)
    values = rng.normal(size=(6, 2))
    import pandas as pd

    pd.DataFrame({"price": values[:, 0], "score": values[:, 1]}).to_csv(tmp_path / "indexed.csv")  # index kept
    with pytest.warns(UserWarning, match=r"unnamed column\(s\) \['Unnamed: 0'\] are read as an index"):
        np.testing.assert_allclose(read_array(tmp_path / "indexed.csv", "tasks"), values)
    np.testing.assert_allclose(read_array(tmp_path / "indexed.csv", "tasks", ["score"]), values[:, 1:])
    (tmp_path / "numbers.txt").write_text("\n".join(f"{a} {b}" for a, b in values) + "\n")
    np.testing.assert_allclose(read_array(tmp_path / "numbers.txt", "tasks"), values)
    (tmp_path / "ragged.txt").write_text("1 2\n3\n")
    with pytest.raises(hfs.InputError, match="line 2 has 1 numbers but line 1 has 2"):
        read_array(tmp_path / "ragged.txt", "tasks")
    (tmp_path / "headless.csv").write_text("\n".join(f"{a},{b}" for a, b in values) + "\n")
    with pytest.raises(hfs.InputError, match="its header .* is numbers: .* the first row would be lost"):
        read_array(tmp_path / "headless.csv", "tasks")
    (tmp_path / "texts.csv").write_text("\n".join(TEXTS) + "\n")
    with pytest.raises(hfs.InputError, match="its header 'The cat sat. It was warm.' is a sentence"):
        read_texts(tmp_path / "texts.csv")
    (tmp_path / "gaps.csv").write_text("price,score\n1,2\n3,\n5,6\n")
    with pytest.raises(hfs.InputError, match=r"gaps.csv: 1 empty, NaN .* column 'score', data row 2 \(after the header\)"):
        read_array(tmp_path / "gaps.csv", "tasks")
    for name, content, message in (("empty.csv", "", "holds no rows"), ("empty.txt", "\n\n", "holds no rows"),
                                   ("header.csv", "price,score\n", "holds one line, read as its header")):
        (tmp_path / name).write_text(content)
        with pytest.raises(hfs.InputError, match=message):
            read_array(tmp_path / name, "tasks")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(hfs.InputError, match=r"nan.npy holds 1 NaN .* the first at index \(0, 1\)"):
        read_array(tmp_path / "nan.npy", "tasks")


def test_structure_json_keeps_task_names_and_train_matches_them(tmp_path, capsys):
    states, tasks, truth = synthetic.collider_sequences(n=1500, T=5, M=2, segment_length=1, state_dim=2,
                                                        mixing="linear", carry_actions=False, seed=4)
    np.save(tmp_path / "s.npy", states.astype(np.float32))
    datasets.Dataset.from_dict({"alpha": tasks[:, 0], "beta": tasks[:, 1]}).to_csv(str(tmp_path / "ab.csv"), index=False)
    datasets.Dataset.from_dict({"beta": tasks[:, 1], "alpha": tasks[:, 0]}).to_csv(str(tmp_path / "ba.csv"), index=False)
    np.save(tmp_path / "truth.npy", truth["step_tasks"])
    np.save(tmp_path / "wrong.npy", np.ones((5, 3), bool))
    base = ["--states", str(tmp_path / "s.npy"), "--tasks"]
    assert main(["discover", *base, str(tmp_path / "wrong.npy"), "--truth", str(tmp_path / "wrong.npy")]) == 2
    assert main(["discover", *base, str(tmp_path / "ab.csv"), "--truth", str(tmp_path / "wrong.npy")]) == 2
    assert "expected (T steps, 2 tasks)" in capsys.readouterr().err
    (tmp_path / "t.txt").write_text("a b. c d. e f\n" * 10)  # 3 steps: a truth of 5 is refused before any model loads
    np.save(tmp_path / "y.npy", np.ones((10, 2)))
    assert main(["discover", "--model", "minilm", "--texts", str(tmp_path / "t.txt"), "--tasks", str(tmp_path / "y.npy"),
                 "--truth", str(tmp_path / "truth.npy")]) == 2
    assert "has 5 steps but the texts have 3 under the step rule '. '" in capsys.readouterr().err
    assert main(["discover", *base, str(tmp_path / "ab.csv"), "-o", str(tmp_path / "st.json")]) == 0
    assert json.loads((tmp_path / "st.json").read_text())["task_names"] == ["alpha", "beta"]
    assert hfs.TaskStructure.from_dict(json.loads((tmp_path / "st.json").read_text())).task_names_ == ["alpha", "beta"]
    assert "alpha |" in capsys.readouterr().out
    train = ["train", *base, str(tmp_path / "ba.csv"), "--structure", str(tmp_path / "st.json"), "--sparsity", "0",
             "--max-steps", "20", "-o", str(tmp_path / "ad")]
    assert main(train + ["--task-columns", "beta,alpha"]) == 2  # in another order each task would get the other's steps
    assert "pass --task-columns alpha,beta" in capsys.readouterr().err
    assert main(train) == 0  # no columns named: the structure's, in its order
    assert "task columns from" in capsys.readouterr().out
    assert hfs.SpecialistAdapter.from_pretrained(tmp_path / "ad").config.task_names == ["alpha", "beta"]
    # the CLI's other doors: states must be an array, a local folder has no revision, regression has no classes
    assert main(["evaluate", "--adapter", str(tmp_path / "ad"), "--states", str(tmp_path / "ab.csv"), "--tasks",
                 str(tmp_path / "ab.csv")]) == 2
    assert "must be a .npy array of per-step states" in capsys.readouterr().err
    assert main(["evaluate", "--adapter", str(tmp_path / "ad"), "--revision", "main", *base, str(tmp_path / "ab.csv")]) == 2
    assert "is a local folder, which has none" in capsys.readouterr().err
    assert main(["train", *base, str(tmp_path / "ab.csv"), "--task-types", "regression,regression", "--n-classes",
                 "3,0", "-o", str(tmp_path / "ad2")]) == 2
    assert "--n-classes gives task 0 3 classes but --task-types makes it 'regression'" in capsys.readouterr().err
    with pytest.warns(UserWarning, match=r"`n_classes\[0\]` is 3 but `task_types\[0\]` is 'regression'"):
        assert hfs.SpecialistConfig(d_in=4, n_tasks=1, task_types=["regression"], n_classes=[3]).n_classes == [0]
    assert hfs.SpecialistConfig(d_in=4, n_tasks=2, n_classes=[3, 0]).task_types == ["classification", "regression"]
    # in Python: a Dataset of tasks names the structure's tasks
    fitted = hfs.TaskStructure().fit(states, datasets.Dataset.from_dict({"alpha": tasks[:, 0], "beta": tasks[:, 1]}))
    assert fitted.task_names_ == ["alpha", "beta"] and "beta |" in fitted.report(warn=False)
    assert hfs.TaskStructure().fit(states, tasks).task_names_ is None


def _indexed(folder):
    import pandas as pd

    pd.DataFrame({"y": [1.0, 2.0]}).to_csv(folder / "indexed_frame.csv")
    return folder / "indexed_frame.csv"


def test_files_refused_only_where_they_are_wrong(tmp_path):
    """Headers pandas writes by default, named columns that confirm a header, an empty header cell that is data; and
    the refusals that remain: a .txt of numbers with column names or a blank line, an empty parquet file."""
    import pandas as pd

    values = np.arange(12.0).reshape(6, 2)
    pd.DataFrame(values).to_csv(tmp_path / "default.csv", index=False)  # header 0,1
    np.testing.assert_allclose(read_array(tmp_path / "default.csv", "tasks"), values)
    pd.Series(values[:, 0]).to_csv(tmp_path / "one.csv", index=False)  # one column named 0 reads as a label
    with pytest.raises(hfs.InputError, match="is numbers"):
        read_array(tmp_path / "one.csv", "tasks")
    (tmp_path / "named.csv").write_text("customer message text here\nhello there\n")  # a column name of words
    assert read_texts(tmp_path / "named.csv") == ["hello there"]
    with pytest.warns(UserWarning, match=r"unnamed column\(s\) \['Unnamed: 0'\]"):  # pandas' own reader keeps it
        assert as_task_array(pd.read_csv(_indexed(tmp_path))).shape == (2, 1)
    pd.DataFrame(values, columns=["2019", "2020"]).to_csv(tmp_path / "years.csv", index=False)
    with pytest.raises(hfs.InputError, match="is numbers"):
        read_array(tmp_path / "years.csv", "tasks")
    np.testing.assert_allclose(read_array(tmp_path / "years.csv", "tasks", ["2019", "2020"]), values)
    (tmp_path / "gap.csv").write_text("a,\n1,2\n3,4\n")  # an empty header cell: data, not an index
    assert read_array(tmp_path / "gap.csv", "tasks").shape == (2, 2)
    (tmp_path / "n.txt").write_text("1 2\n\n3 4\n")
    with pytest.raises(hfs.InputError, match="line 2 is blank"):
        read_array(tmp_path / "n.txt", "tasks")
    with pytest.raises(hfs.InputError, match="is a .txt of numbers, which has no column names"):
        read_array(tmp_path / "n.txt", "tasks", ["a"])
    pd.DataFrame({"a": []}).to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(hfs.InputError, match="empty.parquet holds no rows"):
        read_array(tmp_path / "empty.parquet", "tasks")


def test_batches_with_other_task_columns_are_refused():
    states, tasks, _ = synthetic.collider_sequences(n=600, T=4, M=2, segment_length=1, seed=5)
    ab = datasets.Dataset.from_dict({"a": tasks[:300, 0], "b": tasks[:300, 1]})
    ba = datasets.Dataset.from_dict({"b": tasks[300:, 1], "a": tasks[300:, 0]})
    with pytest.raises(hfs.InputError, match=r"batch 2 has the task columns \['b', 'a'\], but the first batch had"):
        hfs.TaskStructure().fit([(states[:300], ab), (states[300:], ba)])
    structure = hfs.TaskStructure().partial_fit(states[:300], ab)
    with pytest.raises(hfs.InputError, match="this batch has the task columns"):
        structure.partial_fit(states[300:], ba)
    assert hfs.TaskStructure().fit([(states[:300], ab), (states[300:], tasks[300:])]).task_names_ == ["a", "b"]


def test_cli_sweep_fits_every_layer_of_a_model(tmp_path, tiny_model_folder, capsys):
    texts, tasks, truth = synthetic.planted_text(n=300, T=4, M=2, seed=1)
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    datasets.Dataset.from_dict({"a": tasks[:, 0], "b": tasks[:, 1]}).to_csv(str(tmp_path / "t.csv"), index=False)
    assert main(["sweep", "--model", str(tiny_model_folder), "--texts", str(tmp_path / "texts.txt"), "--tasks",
                 str(tmp_path / "t.csv"), "--steps", truth["separator"], "--project", "none", "-o",
                 str(tmp_path / "sweep.json")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["hook", "point", "|", "confidence", "|", "a", "|", "b"]
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert record["hook_points"] == ["layers.0", "layers.1"] and record["best"] in record["hook_points"]
    from hf_specialist.models import load_model

    model, tokenizer = load_model(str(tiny_model_folder))
    states = hfs.extract_steps(model, tokenizer, texts, hook_point="layers.1", steps=truth["separator"])
    alone = hfs.TaskStructure(project=None, causal=True).fit(states, tasks)
    layer = hfs.TaskStructure.from_dict(record["layers"]["layers.1"]["structure"])
    np.testing.assert_array_equal(layer.step_tasks_, alone.step_tasks_)  # the same fit as one layer alone
    assert layer.task_names_ == ["a", "b"] and (tmp_path / "sweep.png").stat().st_size > 0
