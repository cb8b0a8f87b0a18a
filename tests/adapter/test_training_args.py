"""SpecialistTrainingArguments, the lambda rule, progress and summary, training_args.json and the card's metrics."""

import json
import warnings

import numpy as np
import pytest
import torch

import hf_specialist as hfs
from hf_specialist.adapter.lambda_path import select_lambda
from hf_specialist.adapter.loop import epoch_batches, process_share, support_settled
from helpers import build_adapter


def _linear_data(n=400, d=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, np.stack([x[:, 0] * 2.0, x[:, 1] - x[:, 2]], axis=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=0), r"SpecialistTrainingArguments.epochs must be an int >= 1 or None; got 0"),
        (dict(batch_size=2.5), r"batch_size must be an int >= 1; got 2.5"),
        (dict(lr=-1.0), r"lr must be a float > 0; got -1.0"),
        (dict(sparsity="sometimes"), r"sparsity must be a float >= 0, 'auto' or None"),
        (dict(lambda_path=[0.1, -2]), r"lambda_path must be a non-empty list of floats > 0"),
        (dict(selection="cv"), r"selection must be one of \('one_se_margin', 'one_se', 'tolerance'\)"),
        (dict(validation_split=1.0), r"validation_split must be a float in \(0, 1\)"),
        (dict(mixed_precision="fp8"), r"mixed_precision must be one of"),
        (dict(checkpoint_every=5), r"checkpoint_every needs checkpoint_dir"),
        (dict(progress="yes"), r"progress must be a bool or None"),
        (dict(epochs=2, finetune_fraction=0.9), r"finetune_fraction must be a float in \[0, 1\) that leaves"),
        (dict(max_steps=0), r"max_steps must be an int >= 1 or None; got 0"),
        (dict(max_steps=2, finetune_fraction=0.9), r"leaves at least one step before the support is frozen"),
    ],
)
def test_arguments_are_validated_in_one_place(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hfs.SpecialistTrainingArguments(**kwargs)


def test_arguments_round_trip_through_dict_and_json(tmp_path):
    args = hfs.SpecialistTrainingArguments(epochs=7, batch_size=32, lr=3e-3, seed=4, lambda_path=[0.01, 0.1],
                                           checkpoint_dir=tmp_path / "ckpt", checkpoint_every=3, progress=False)
    assert args.checkpoint_dir == str(tmp_path / "ckpt")  # a path is stored as a string (JSON)
    assert hfs.SpecialistTrainingArguments.from_dict(args.to_dict()) == args
    assert hfs.SpecialistTrainingArguments.from_json_file(args.to_json_file(tmp_path / "a.json")) == args
    payload = {**args.to_dict(), "from_the_future": 1}
    with pytest.warns(UserWarning, match="from_the_future"):
        assert hfs.SpecialistTrainingArguments.from_dict(payload) == args
    assert args.resolved().epochs == 7 and hfs.SpecialistTrainingArguments().resolved(lora=True).epochs == 10
    assert "SpecialistTrainingArguments" in hfs.__all__


def test_train_with_args_object_overrides_and_old_keywords_agree():
    x, y = _linear_data()
    args = hfs.SpecialistTrainingArguments(epochs=3, batch_size=64, seed=1, progress=False, sparsity=0.05)
    torch.manual_seed(0)
    first = build_adapter()
    h1 = hfs.train_specialist(first, x, y, args=args, epochs=2)  # the keyword wins over the object
    torch.manual_seed(0)
    second = build_adapter()
    h2 = hfs.train_specialist(second, x, y, epochs=2, batch_size=64, seed=1, progress=False, sparsity=0.05)
    assert h1["args"]["epochs"] == 2 and h1["args"] == h2["args"]
    assert args.epochs == 3  # the caller's object is not changed
    for key, value in first.state_dict().items():
        torch.testing.assert_close(second.state_dict()[key], value, msg=key)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['epoch'\]"):
        hfs.train_specialist(build_adapter(), x, y, epoch=2)
    with pytest.raises(ValueError, match="SpecialistTrainingArguments.seed must be an int >= 0"):
        hfs.train_specialist(build_adapter(), x, y, args=args, seed=-1)


def test_readout_resolution_is_recorded_not_silent():
    x, y = _linear_data()
    auto = build_adapter()
    history = hfs.train_specialist(auto, x, y, epochs=2, sparsity=0.0, progress=False)
    assert history["config_changes"] == {"task_readout": ["auto", "step"]} and auto.config.task_readout == "step"
    explicit = build_adapter(task_readout="step")
    assert hfs.train_specialist(explicit, x, y, epochs=2, sparsity=0.0, progress=False)["config_changes"] == {}


def _record(lam, losses, errors, sizes):
    support = [[1] * s + [0] * (8 - s) for s in sizes]
    record = {"sparsity": lam, "adapter/support_size": sum(sizes), "support": support}
    for i, (loss, err) in enumerate(zip(losses, errors)):
        record[f"task_{i}"], record[f"task_{i}/se"] = loss, err
    return record


def test_one_se_rule_keeps_the_sparsest_model_within_one_standard_error_of_the_best():
    path = [_record(0.0, [0.100, 0.200], [0.01, 0.02], [8, 8]),
            _record(0.01, [0.095, 0.210], [0.01, 0.02], [5, 6]),   # best for task 0
            _record(0.1, [0.104, 0.214], [0.01, 0.02], [2, 2]),    # within 0.095 + 0.01 and 0.200 + 0.02
            _record(0.3, [0.130, 0.205], [0.01, 0.02], [1, 2]),    # task 0 worse than its threshold 0.105
            _record(1.0, [1.000, 1.000], [0.05, 0.05], [0, 0])]    # empty supports never count
    best, selection = select_lambda(path, 2, "one_se")
    assert best == 2 and selection["best"] == [1, 0]
    np.testing.assert_allclose(selection["thresholds"], [0.105, 0.22])
    assert [r["within_tolerance"] for r in path] == [True, True, True, False, False]
    old, _ = select_lambda(path, 2, "tolerance", 0.1)  # the earlier rule: 10% + 0.02 of the dense loss
    assert old == 3


def test_default_rule_adds_a_margin_to_the_best_loss():
    path = [_record(0.0, [0.050, 0.060], [0.004, 0.004], [8, 8]),
            _record(0.03, [0.048, 0.058], [0.004, 0.004], [3, 3]),  # the best
            _record(0.1, [0.060, 0.065], [0.004, 0.004], [2, 2]),   # truly a little worse: beyond one s.e.
            _record(0.3, [0.300, 0.070], [0.010, 0.004], [1, 2])]   # lost a relevant latent of task 0
    best, selection = select_lambda(path, 2)  # "one_se_margin", tolerance 0.1: best + max(se, 0.1 best + 0.02)
    np.testing.assert_allclose(selection["thresholds"], [0.048 + 0.0248, 0.058 + 0.0258])
    assert best == 2 and [r["within_tolerance"] for r in path] == [True, True, True, False]
    assert select_lambda(path, 2, "one_se")[0] == 1  # one s.e. alone rejects the block model
    few_rows = [dict(r, **{"task_0/se": 0.05, "task_1/se": 0.05}) for r in path]  # a small held-out set
    np.testing.assert_allclose(select_lambda(few_rows, 2)[1]["thresholds"], [0.098, 0.108])  # noise > margin
    with pytest.raises(ValueError, match="`rule` must be"):
        select_lambda(path, 2, "median")


def test_held_out_brier_score_of_a_classification_task_matches_sklearn():
    from hf_specialist.adapter.loop import evaluate

    rng = np.random.default_rng(0)
    adapter = build_adapter(n_tasks=2, task_types=["regression", "classification"], n_classes=[1, 3],
                            task_readout="step")
    x = torch.as_tensor(rng.normal(size=(300, 32)), dtype=torch.float32)
    labels = rng.integers(0, 3, size=300)
    y = torch.as_tensor(np.stack([rng.normal(size=300), labels], axis=1), dtype=torch.float32)
    mask = torch.ones(300, 2, dtype=torch.bool)
    metrics = evaluate(adapter, x, y, mask, batch_size=64)  # several chunks: the sums must add up
    adapter.eval()
    with torch.no_grad():
        terms = adapter.loss_terms(x, y, mask, 0.0, per_row=True)
        probs = adapter.predict(x, task=1).softmax(-1).numpy()
    per_row = ((probs - np.eye(3)[labels]) ** 2).sum(1)
    shares = np.bincount(labels, minlength=3) / 300
    null = 1 - (shares**2).sum()
    np.testing.assert_allclose(metrics["task_1/brier"], per_row.mean() / null, rtol=1e-5)
    np.testing.assert_allclose(metrics["task_1/brier_se"], per_row.std(ddof=1) / np.sqrt(300) / null, rtol=1e-4)
    np.testing.assert_allclose(terms["task_1/brier"].numpy(), per_row, rtol=1e-5)
    assert "task_0/brier" not in metrics  # regression keeps its standardised squared error
    one_class = y.clone()
    one_class[:, 1] = 2
    assert "task_1/brier" not in evaluate(adapter, x, one_class, mask)  # nothing to normalise by: no Brier score


def test_rule_compares_classification_tasks_on_the_brier_score():
    from hf_specialist.adapter.lambda_path import selection_loss

    # cross-entropy says the sparse model lost task 0 (a few confidently wrong rows); Brier says it did not
    path = [_record(0.0, [0.08], [0.02], [8]), _record(0.1, [0.20], [0.05], [2])]
    path[0].update({"task_0/brier": 0.10, "task_0/brier_se": 0.010})
    path[1].update({"task_0/brier": 0.11, "task_0/brier_se": 0.011})
    assert selection_loss(path[1], 0) == (0.11, 0.011, 1.0)  # the null of a normalised Brier score is 1
    best, selection = select_lambda(path, 1)
    assert best == 1 and selection["thresholds"] == pytest.approx([0.10 + 0.03])
    without = [{k: v for k, v in r.items() if "brier" not in k} for r in path]  # old records: the loss
    assert select_lambda(without, 1)[0] == 0
    for record in path:
        record["task_0/accuracy"] = 0.9
    mixed = [without[0] | {"task_0/accuracy": 0.9}, path[1]]  # a resumed path begun before the Brier score
    assert select_lambda(mixed, 1)[0] == 0  # one scale for every record: the loss


def test_a_task_no_model_predicts_does_not_vote():
    # task 1 is noise for every model (loss about its null 1): its differences between models say nothing
    path = [_record(0.0, [0.05, 1.01], [0.004, 0.07], [8, 8]), _record(0.1, [0.055, 1.15], [0.004, 0.08], [2, 2])]
    for record in path:
        record["task_0/null"], record["task_1/null"] = 1.0, 1.0
    best, selection = select_lambda(path, 2)
    assert best == 1 and selection["uninformative"] == [1] and selection["thresholds"][1] is None
    path[0]["task_1"], path[1]["task_1"] = 0.60, 0.90  # now it is predicted (0.60 < 1 - 2 x 0.07): it votes again
    best, selection = select_lambda(path, 2)
    assert best == 0 and selection["uninformative"] == []


def test_a_choice_holds_only_when_the_kept_and_sparser_passing_supports_settled():
    from hf_specialist.adapter.lambda_path import unsettled_lambdas

    path = [_record(0.0, [0.05], [0.004], [8]), _record(0.1, [0.05], [0.004], [3]),
            _record(0.3, [0.05], [0.004], [2]), _record(1.0, [0.9], [0.01], [1])]
    for record, ok, settled in zip(path, [True, True, True, False], [True, True, False, False]):
        record["within_tolerance"], record["settled"] = ok, settled
    assert unsettled_lambdas(path, 1) == [0.3]  # a sparser model passed but was still moving
    assert unsettled_lambdas(path, 2) == [0.3] and unsettled_lambdas(path, 0) == [0.3]
    path[2]["settled"] = True
    assert unsettled_lambdas(path, 2) == []  # lambda 1.0 failed the thresholds: it does not count


def test_support_settled_needs_a_stable_tail_after_the_warmup():
    full, some = np.ones((2, 4), dtype=int), np.array([[1, 1, 0, 0], [0, 0, 1, 1]])
    stable = [full] * 3 + [some] * 7
    assert support_settled(stable, main_points=10, warmup_points=3) == [True]
    late = [full] * 8 + [some] * 2
    assert support_settled(late, main_points=10, warmup_points=3) == [False]
    assert support_settled([full, full], main_points=2, warmup_points=0.6) == [False]  # too short to tell
    stack = [np.stack([a, b]) for a, b in zip(stable, late)]
    assert support_settled(stack, main_points=10, warmup_points=3) == [True, False]


def test_short_run_warns_instead_of_claiming_a_choice():
    x, y = _linear_data()
    with pytest.warns(UserWarning, match="too short for the supports to settle"):
        history = hfs.train_specialist(build_adapter(), x, y, epochs=2, lambda_path=[0.05], progress=False,
                                       settle_retries=0)
    assert history["settled"] is False and "train longer" in history["summary"]
    assert "settle_retries" not in history


def test_keeping_the_dense_model_says_that_nothing_was_pruned(monkeypatch):
    from hf_specialist.adapter import lambda_path

    real = lambda_path.select_lambda

    def dense_wins(path, *args, **kwargs):  # as when every lambda lost more than the tolerance allows
        _, selection = real(path, *args, **kwargs)
        return 0, selection

    monkeypatch.setattr(lambda_path, "select_lambda", dense_wins)
    x, y = _linear_data()
    with pytest.warns(UserWarning, match="the dense model \\(lambda 0\\) was kept"):
        history = hfs.train_specialist(build_adapter(), x, y, epochs=4, lambda_path=[0.05], progress=False,
                                       settle_retries=0)
    assert history["selected_sparsity"] == 0.0 and "nothing was pruned" in history["summary"]


@pytest.mark.filterwarnings("ignore:train_specialist")
def test_unsettled_path_is_trained_again_twice_as_long(capsys):
    x, y = _linear_data()
    history = hfs.train_specialist(build_adapter(), x, y, epochs=2, lambda_path=[0.05], settle_retries=1)
    assert history["settle_retries"][0]["schedule"] == "epochs=2" and history["settle_retries"][0]["unsettled"]
    assert history["args"]["epochs"] == 4 and history["args"]["settle_retries"] == 0
    assert "training the lambda path again with twice the schedule" in capsys.readouterr().err
    assert "trained 2x the first schedule (epochs=2)" in history["summary"]
    assert len(history["settle_retries"][0]["path"]) == 2  # the first attempt's dense and sparse models
    same = hfs.train_specialist(build_adapter(), x, y, epochs=4, lambda_path=[0.05], settle_retries=0,
                                progress=False)  # the retry is the run asked for at the longer schedule
    assert same["selected_sparsity"] == history["selected_sparsity"]
    assert [r["task_0"] for r in same["path"]] == [r["task_0"] for r in history["path"]]


@pytest.mark.filterwarnings("ignore:train_specialist")
def test_retry_interrupted_and_resumed_equals_the_uninterrupted_run(tmp_path):
    x, y = _linear_data()
    kwargs = dict(epochs=2, lambda_path=[0.05], settle_retries=1, progress=False, seed=0)
    torch.manual_seed(0)
    expected = hfs.train_specialist(reference := build_adapter(), x, y, **kwargs)
    assert expected["settle_retries"]  # 2 epochs (4 steps) were too short here: the path ran again at 4 epochs
    first_steps = 4  # 2 epochs of 2 batches (320 training rows, batch 256)
    torch.manual_seed(0)
    stopped = hfs.train_specialist(build_adapter(), x, y, checkpoint_dir=tmp_path, checkpoint_every=1,
                                   stop_after_steps=first_steps + 2, **kwargs)  # inside the retry
    assert "interrupted_at" in stopped and (tmp_path / "settle-retry").is_dir()
    torch.manual_seed(0)
    resumed = hfs.train_specialist(adapter := build_adapter(), x, y, checkpoint_dir=tmp_path, checkpoint_every=1,
                                   resume=True, **kwargs)
    assert resumed["path"] == expected["path"] and resumed["selected_sparsity"] == expected["selected_sparsity"]
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(adapter.state_dict()[key], value, msg=key)


def test_default_schedule_is_a_step_budget_between_one_and_100_passes():
    from hf_specialist.adapter.training_args import DEFAULT_MAX_STEPS, default_schedule

    assert default_schedule(4) == (100, None)  # small data: the old 100 epochs (400 steps)
    assert default_schedule(32) == (None, DEFAULT_MAX_STEPS)  # 10,000 rows: 800 steps, 25 passes
    assert default_schedule(5000) == (None, 5000)  # at least one pass over the rows
    assert default_schedule(32, lora=True) == (10, None)
    args = hfs.SpecialistTrainingArguments()
    assert args.resolved(steps_per_epoch=32).max_steps == DEFAULT_MAX_STEPS
    assert hfs.SpecialistTrainingArguments(epochs=3).resolved(steps_per_epoch=32).max_steps is None


def test_max_steps_ends_mid_epoch_and_is_recorded(tmp_path):
    x, y = _linear_data()  # 320 training rows, 5 steps per epoch at batch 64
    adapter = build_adapter()
    history = hfs.train_specialist(adapter, x, y, max_steps=12, batch_size=64, sparsity=0.01, progress=False)
    assert max(r["step"] for r in history["steps"]) == 12 and history["args"]["max_steps"] == 12
    assert bool(adapter.support_frozen)  # the last 15% of the steps (2) trained with the support frozen
    folder = adapter.save_pretrained(tmp_path / "a")
    assert json.loads((folder / "training_args.json").read_text())["max_steps"] == 12


def test_default_call_records_its_schedule():
    x, y = _linear_data(n=600, d=8)  # 480 training rows: 2 steps per epoch at batch 256, 100 epochs = 200 steps
    history = hfs.train_specialist(build_adapter(d_in=8), x, y, sparsity=0.01, progress=False)
    assert history["args"]["epochs"] == 100 and history["args"]["max_steps"] is None


def test_batches_do_not_depend_on_the_process_count():
    for n, batch_size in ((402, 32), (50, 7), (5, 256)):
        batches = epoch_batches(n, epoch=3, seed=1, batch_size=batch_size)
        assert sorted(torch.cat(batches).tolist()) == list(range(n))
        for batch in batches:
            shares = [process_share(batch, r, 2) for r in (0, 1)]
            assert set(torch.cat(shares).tolist()) == set(batch.tolist()) and min(len(s) for s in shares) >= 2


def test_progress_lines_off_a_terminal_and_a_summary_and_quiet(capsys):
    x, y = _linear_data()
    adapter = build_adapter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = hfs.train_specialist(adapter, x, y, epochs=5, lambda_path=[0.05])
    err = capsys.readouterr().err  # captured: not a terminal
    lines = [line for line in err.splitlines() if "train specialist (2 lambdas at once): step" in line]
    assert 5 <= len(lines) <= 11 and lines[-1].count("(100%)") == 1
    assert history["summary"] in err and "kept lambda" in history["summary"]
    for name in adapter.config.task_names:
        assert f"{name}: {int(adapter.task_support_[adapter.config.task_names.index(name)].sum())} of 8" in err
    assert "R^2" in history["summary"]
    hfs.train_specialist(build_adapter(), x, y, epochs=2, sparsity=0.0, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_modes_tenths_and_time_based_lines(capsys):
    from hf_specialist.adapter.loop import TrainingProgress

    def run(**kwargs):
        bar = TrainingProgress(total=50, initial=0, label="test", **kwargs)
        for step in range(50):
            bar.set_postfix(loss=f"{step:.1f}")
            bar.update(step // 10, 5)
        bar.close()
        return bar.mode, capsys.readouterr().err

    mode, err = run(progress=None, log_every=1e6)  # captured stderr is no terminal: a line per tenth
    lines = err.splitlines()
    assert mode == "log" and len(lines) == 10 and "step 5/50 (10%), epoch 1/5, loss 4.0" in lines[0]
    assert "step 50/50 (100%)" in lines[-1]
    mode, err = run(progress=None, log_every=1e-9)  # and at least every `log_every` seconds
    assert len(err.splitlines()) == 50
    assert run(progress=False, log_every=1.0) == ("quiet", "")
    assert run(progress=None, log_every=1.0, enabled=False) == ("quiet", "")  # not the main process
    mode, err = run(progress=True, log_every=1.0)
    assert mode == "bar" and "train specialist (test)" in err


def test_saved_artifact_holds_training_args_and_the_card_its_held_out_metrics(tmp_path):
    x, y = _linear_data()
    adapter = build_adapter()
    args = hfs.SpecialistTrainingArguments(epochs=2, batch_size=64, seed=3, progress=False)
    history = hfs.train_specialist(adapter, x, y, args=args, sparsity=0.01)
    folder = adapter.save_pretrained(tmp_path / "a")
    saved = hfs.SpecialistTrainingArguments.from_json_file(folder / "training_args.json")
    assert saved == args.resolved(config_sparsity="auto").__class__(**{**args.to_dict(), "sparsity": 0.01})
    assert not (folder / "adapter_config.json").exists()
    card = (folder / "README.md").read_text()
    assert "| - | - |" not in card and "Held-out metrics of the training run" in card
    assert f"| `task_0/loss` | {history['final']['task_0']:.4g} |" in card and "task_1/r2" in card
    assert "standardised targets" in card and "held-out loss of task_0" in card
    loaded = hfs.SpecialistAdapter.from_pretrained(folder)  # the run's record comes back with the weights
    assert loaded.training_args_ == saved and loaded.training_metrics_ == adapter.training_metrics_
    resaved = loaded.save_pretrained(tmp_path / "again")
    assert f"| `task_0/loss` | {history['final']['task_0']:.4g} |" in (resaved / "README.md").read_text()
    record = json.loads((folder / "training_args.json").read_text())
    record.pop("max_steps")  # written before the field existed: still loads
    (folder / "training_args.json").write_text(json.dumps(record))
    assert hfs.SpecialistAdapter.from_pretrained(folder).training_args_.epochs == 2
    (folder / "training_args.json").write_text(json.dumps({**record, "epochs": -1}))  # a record that does not parse
    with pytest.warns(UserWarning, match="Could not read the training record"):
        assert not hasattr(hfs.SpecialistAdapter.from_pretrained(folder), "training_args_")
    retrained = hfs.SpecialistAdapter.from_pretrained(tmp_path / "again")
    hfs.train_specialist(retrained, x, y, sparsity=0.01, epochs=2, batch_size=64, stop_after_steps=1, progress=False)
    assert not hasattr(retrained, "training_metrics_")  # an unfinished run leaves no record of the earlier one
    untrained = build_adapter()
    untrained.save_pretrained(tmp_path / "b")
    assert not (tmp_path / "b" / "training_args.json").exists()
    assert not (tmp_path / "b" / "training_metrics.json").exists()
    assert not hasattr(hfs.SpecialistAdapter.from_pretrained(tmp_path / "b"), "training_metrics_")


def test_lambda_path_plot_from_history(tmp_path):
    from hf_specialist import plots

    x, y = _linear_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = hfs.train_specialist(build_adapter(), x, y, epochs=3, lambda_path=[0.05, 0.5], progress=False)
    png = plots.lambda_path_plot(history, tmp_path / "path.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no lambda path"):
        plots.lambda_path_plot({"path": []}, tmp_path / "x.png")


def test_cli_evaluate_prints_named_metrics_with_their_meaning(tmp_path, capsys):
    from hf_specialist.cli import main

    x, y = _linear_data()
    np.save(tmp_path / "h.npy", x)
    np.save(tmp_path / "y.npy", y)
    assert main(["train", "--states", str(tmp_path / "h.npy"), "--tasks", str(tmp_path / "y.npy"), "--sparsity",
                 "0.01", "--epochs", "2", "--no-progress", "--output", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "training_args.json").read_text())["progress"] is False
    capsys.readouterr()
    assert main(["evaluate", "--adapter", str(tmp_path / "a"), "--states", str(tmp_path / "h.npy"), "--tasks",
                 str(tmp_path / "y.npy"), "--output", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "task_0/loss" in out and "mean squared error on standardised targets" in out
    assert "held-out" not in out  # evaluate's rows are the caller's, not the training run's held-out share
    assert not [line for line in out.splitlines() if line.startswith("task_0 ")]  # no bare `task_0 0.0412`
    assert "task_1/r2" in json.loads((tmp_path / "m.json").read_text())
    assert main(["train", "--states", str(tmp_path / "h.npy"), "--tasks", str(tmp_path / "y.npy"),
                 "--selection", "median"]) == 2
