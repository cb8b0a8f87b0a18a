"""Two real processes (torchrun, gloo on CPU): extraction, training and saving behave as in one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist.adapter import checkpoints
from helpers import build_adapter, build_tiny_model, tokenizer

SCRIPT = Path(__file__).parent / "distributed" / "two_process_run.py"


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_processes")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
               str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return out


def test_extraction_with_cache_equals_one_process(two_process_run):
    texts, _, truth = synthetic.planted_text(n=24, T=4, M=1, seed=0)
    single = hfs.extract_steps(build_tiny_model("gpt2", n_layers=3), tokenizer(), texts, hook_point="layers.1",
                               steps=truth["separator"])
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(two_process_run / f"rank{rank}-extract.npy"), single, atol=1e-5)
    assert [p.name for p in (two_process_run / "cache").iterdir()] and all(
        sorted(q.name for q in p.iterdir()) == ["joined"] for p in (two_process_run / "cache").iterdir())


@pytest.mark.parametrize("tag", ["fixed", "auto", "retried", "resumed", "joint", "lora"])
def test_every_process_ends_with_identical_weights(two_process_run, tag):
    first, second = (load_file(str(two_process_run / f"rank{r}-{tag}.safetensors")) for r in (0, 1))
    assert first.keys() == second.keys() and first
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=key)


def test_both_processes_train_an_unsettled_path_again_alike(two_process_run):
    first, second = (json.loads((two_process_run / f"rank{r}-retried.json").read_text()) for r in (0, 1))
    assert first == second and first["retries"] == ["epochs=2"] and first["epochs"] == 4


def test_resume_under_two_processes_matches_uninterrupted(two_process_run):
    fixed, resumed = (load_file(str(two_process_run / f"rank0-{tag}.safetensors")) for tag in ("fixed", "resumed"))
    for key in fixed:
        torch.testing.assert_close(resumed[key], fixed[key], msg=key)


def test_lora_training_moved_the_lora_and_auto_agrees(two_process_run):
    lora = load_file(str(two_process_run / "rank0-lora.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)
    picks = [json.loads((two_process_run / f"rank{r}-auto.json").read_text())["selected"] for r in (0, 1)]
    assert picks[0] == picks[1]


def test_lambda_choice_is_the_same_in_one_and_two_processes(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    from lambda_choice_case import train_lambda_choice

    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(SCRIPT.parent / "lambda_choice_case.py"), str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    adapter, history = train_lambda_choice()
    assert history["settled"]
    for rank in (0, 1):  # the training is the same up to rounding: the same latents, not only the same pattern
        two = json.loads((tmp_path / f"rank{rank}-choice.json").read_text())
        assert two["selected"] == history["selected_sparsity"] and two["settled"]
        assert two["support"] == adapter.task_support_.astype(int).tolist()
    assert adapter.task_support_.sum(1).tolist() == [2, 2]  # the true blocks


@pytest.mark.parametrize("tag", ["fixed", "auto"])
def test_two_processes_train_the_weights_one_process_trains(two_process_run, tag):
    """Each process trains on its share of every global batch, but with the global batch's noise, batch-norm
    statistics and loss weights (`adapter.batch_share`): the weights differ from one process's by rounding only
    (before, by up to 0.29: each process drew its own noise and normalised with its share's statistics)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(402, 32)).astype(np.float32)  # as in two_process_run.py: batches do not split evenly
    y = x[:, :2] * 2.0
    torch.manual_seed(0)
    single = build_adapter()
    kwargs = dict(epochs=4, batch_size=32, seed=0, progress=False)
    if tag == "fixed":
        history = hfs.train_specialist(single, x, y, sparsity=0.05, **kwargs)
        # the logged terms are the whole batch's in both layouts
        logged = json.loads((two_process_run / "rank0-fixed-steps.json").read_text())
        assert [r["step"] for r in logged] == [r["step"] for r in history["steps"]]
        for key in ("loss", "recon", "task_0", "task_1"):
            np.testing.assert_allclose([r[key] for r in logged], [r[key] for r in history["steps"]], atol=1e-5)
    else:
        hfs.train_specialist(single, x, y, lambda_path=[0.01, 0.3], **kwargs)
    two = load_file(str(two_process_run / f"rank0-{tag}.safetensors"))
    one = checkpoints.trainable_state(single)
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key].detach(), rtol=0, atol=1e-5, msg=key)


def test_different_data_per_process_is_refused_on_every_process(two_process_run):
    for rank in (0, 1):
        message = (two_process_run / f"rank{rank}-different-data.txt").read_text()
        assert "the processes passed different data or arguments" in message and "'states'" in message
        rows = (two_process_run / f"rank{rank}-different-rows.txt").read_text()
        assert "the processes passed different data or arguments" in rows and "'inputs'" in rows


def test_only_the_main_process_writes(two_process_run):
    main, other = (json.loads((two_process_run / f"rank{r}-writes.json").read_text()) for r in (0, 1))
    assert other == []
    assert main.count("write_artifact") == 2 and "save_checkpoint" in main and "save_run_state" in main
    loaded = hfs.SpecialistAdapter.from_pretrained(two_process_run / "artifact")
    saved = load_file(str(two_process_run / "rank0-fixed.safetensors"))
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, saved[key], msg=key)
    assert (two_process_run / "joint-artifact" / "lora" / "adapter_config.json").exists()
    assert not (two_process_run / "joint-artifact" / "adapter_config.json").exists()


def test_structure_from_each_process_batches_equals_one_process_on_all(two_process_run):
    states, tasks, _ = synthetic.collider_sequences(n=6000, T=6, M=2, seed=2)
    whole = hfs.TaskStructure().fit(states, tasks)
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(two_process_run / f"rank{rank}-structure.npy"), whole.pvalues_, rtol=1e-6)
        np.testing.assert_array_equal(np.load(two_process_run / f"rank{rank}-structure-steps.npy"), whole.step_tasks_)


def test_discover_sharded_across_processes_equals_one_process(two_process_run):
    texts, _, truth = synthetic.planted_text(n=24, T=4, M=1, seed=0)
    tasks = truth["quantities"][:, :2] @ np.ones((2, 2))
    # the projection is learned from the main process's first chunk: the texts of its shard's first chunk
    for context in ("full", "isolated"):  # full: causal measured on each process; isolated: the default
        single = hfs.discover(build_tiny_model("gpt2", n_layers=3), tokenizer(), texts, tasks, hook_point="layers.1",
                              steps=truth["separator"], chunk_size=5, project=2, reduction="pca", context=context)
        for rank in (0, 1):
            np.testing.assert_allclose(np.load(two_process_run / f"rank{rank}-discover-{context}.npy"), single.pvalues_,
                                       rtol=1e-6)


def test_every_process_returns_from_save_pretrained_with_the_folder_complete(tmp_path):
    script = SCRIPT.parent / "save_barrier_run.py"
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    for rank in (0, 1):  # rank 1 did not write, yet found the whole folder (the main one slept 2 s before writing)
        seen = json.loads((tmp_path / f"rank{rank}-saved.json").read_text())
        assert seen == {"files": ["README.md", "config.json", "model.safetensors"], "same": True}
