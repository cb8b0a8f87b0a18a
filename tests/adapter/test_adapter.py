import numpy as np
import pytest
import torch

import hf_specialist as hfs
from hf_specialist import synthetic
from hf_specialist.adapter.checkpoints import latest_checkpoint
from hf_specialist.adapter.stacked import StackedAdapters
from hf_specialist.metrics import block_r2
from helpers import build_adapter


@pytest.fixture(scope="module")
def latent_data():
    return synthetic.within_step_latents(n=3000, n_tasks=2, block_size=2, n_irrelevant=3, obs_dim=32, seed=0)


def test_config_round_trip_and_unknown_keys():
    cfg = hfs.SpecialistConfig(d_in=16, n_tasks=2, task_types=["regression", "classification"], n_classes=[0, 3])
    again = hfs.SpecialistConfig.from_dict(cfg.to_dict())
    assert again == cfg
    payload = cfg.to_dict()
    payload["from_the_future"] = 1
    with pytest.warns(UserWarning, match="from_the_future"):
        assert hfs.SpecialistConfig.from_dict(payload) == cfg


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(d_in=0), "`d_in` must be a positive int"),
        (dict(d_in=8, sparsity=-1.0), "`sparsity` must be non-negative, got -1.0"),
        (dict(d_in=8, n_tasks=2, task_names=["a"]), "`task_names` has 1 entries but `n_tasks` is 2"),
        (dict(d_in=8, task_types=["classification"], n_classes=[1]), r"`n_classes\[0\]` must be an int >= 2"),
        (dict(d_in=8, task_types=["ranking"]), r"`task_types\[0\]` must be one of"),
        (dict(d_in=8, mask_threshold=1.5), "`mask_threshold` must be in"),
        (dict(d_in=8, kl_weight="a"), "`kl_weight` must be a non-negative float, got 'a'"),
        (dict(d_in=8, encoder_widths=5), "`encoder_widths` must be a list of positive ints"),
        (dict(d_in=8, n_tasks=2, task_names="ab"), "`task_names` must be a list with one entry per task"),
        (dict(d_in=8, variational="no"), "`variational` must be True or False"),
        (dict(d_in=8, n_tasks=2, step_tasks=[[True], [False]]), r"`step_tasks` must be a \(T, n_tasks=2\)"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hfs.SpecialistConfig(**kwargs)


def test_shapes_any_leading_dims():
    adapter = build_adapter().eval()
    h = torch.randn(3, 5, 7, 32)
    z = adapter.encode(h)
    assert z.shape == (3, 5, 7, 8)
    assert adapter.decode(z).shape == h.shape
    assert adapter.task_latents(h.numpy(), task=1).shape[:-1] == (3, 5, 7)
    assert adapter.predict(h, task="task_0").shape == (3, 5, 7)
    with pytest.raises(ValueError, match=r"expects \(\.\.\., 32\).*hidden size does not match"):
        adapter.encode(torch.randn(4, 31))
    with pytest.raises(ValueError, match="Unknown task 'nope'"):
        adapter.task_latents(h, task="nope")
    with pytest.raises(ValueError, match="`task` must be an int in 0..1"):
        adapter.task_latents(h, task=2)


def _block_scores(adapter, obs, truth):
    h = torch.as_tensor(obs, dtype=torch.float32)
    return [
        block_r2(adapter.task_latents(h, task=i), truth["latents"][:, truth["relevant"][i]], truth["latents"][:, truth["irrelevant"]],
                 max_samples=600)
        for i in range(2)
    ]


def test_sparse_adapter_recovers_blocks_and_generalist_does_not(latent_data):
    obs, tasks, truth = latent_data
    torch.manual_seed(0)
    sparse = build_adapter(task_dims=[2, 2], encoder_widths=[128, 128], decoder_widths=[128, 128], d_latent=8)
    history = hfs.train_specialist(sparse, obs, tasks, sparsity=0.1, epochs=60, seed=0, progress=False)
    np.testing.assert_array_equal(sparse.task_support_.sum(1), [2, 2])
    for score in _block_scores(sparse, obs, truth):
        assert score["r2_relevant"] > 0.85 and score["r2_irrelevant"] < 0.2
    names = set(history["steps"][-1])
    assert {"adapter/support_size", "adapter/l0", "recon", "task", "sparsity"} <= names
    assert "adapter/explained_variance" in history["final"]

    dense = build_adapter(task_dims=[2, 2], encoder_widths=[128, 128], decoder_widths=[128, 128], d_latent=8)
    hfs.train_specialist(dense, obs, tasks, sparsity=0.0, epochs=30, seed=0, progress=False)
    assert dense.task_support_.all()
    for score in _block_scores(dense, obs, truth):
        assert score["r2_irrelevant"] > 0.6


def test_auto_sparsity_records_path_and_picks_sparsest_within_tolerance(latent_data):
    obs, tasks, truth = latent_data
    adapter = build_adapter(task_dims=[2, 2], encoder_widths=[128, 128], decoder_widths=[128, 128], d_latent=8)
    history = hfs.train_specialist(adapter, obs, tasks, epochs=40, lambda_path=[0.1, 5.0], seed=0, progress=False)
    sizes = [r["adapter/support_size"] for r in history["path"]]
    assert [r["sparsity"] for r in history["path"]] == [0.0, 0.1, 5.0]
    assert sizes[0] == 16 and sizes[1] < sizes[0]
    chosen = history["selected_sparsity"]
    assert history["path"][[r["sparsity"] for r in history["path"]].index(chosen)]["within_tolerance"]
    assert int(adapter.task_support_.sum()) == history["final"]["adapter/support_size"]
    assert chosen == 0.1  # lambda = 5 empties or hurts a task, so it is not kept


def test_task_mask_rows_do_not_count():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(400, 32)).astype(np.float32)
    tasks = states[:, :2] @ np.array([[1.0, 0.0], [0.0, 1.0]])
    mask = np.ones((400, 2), dtype=bool)
    mask[:200, 1] = False
    garbage = tasks.copy()
    garbage[:200, 1] = 1e6
    a, b = build_adapter(), build_adapter()
    torch.manual_seed(0)
    b.load_state_dict(a.state_dict())
    ha = hfs.train_specialist(a, states, tasks, mask, sparsity=0.0, epochs=3, seed=0, progress=False)
    hb = hfs.train_specialist(b, states, garbage, mask, sparsity=0.0, epochs=3, seed=0, progress=False)
    assert ha["final"]["task_1"] == pytest.approx(hb["final"]["task_1"], rel=1e-5)


def test_sequence_states_with_structure_mask(tmp_path):
    # task 0 is a sum over steps 0 and 1, task 1 reads step 2; step 3 serves no task
    rng = np.random.default_rng(0)
    states = rng.normal(size=(600, 4, 8)).astype(np.float32)
    tasks = np.stack([states[:, 0, 0] + states[:, 1, 0], states[:, 2, 1]], axis=1)
    step_tasks = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], dtype=bool)
    adapter = build_adapter(d_in=8, d_latent=6, encoder_widths=[64], decoder_widths=[64])
    history = hfs.train_specialist(adapter, states, tasks, step_tasks, sparsity=0.0, epochs=40, seed=0,
                                   progress=False)
    assert adapter.config.task_readout == "sequence"
    assert history["final"]["task_0"] < 0.3 and history["final"]["task_1"] < 0.3  # standardised held-out MSE
    h = torch.as_tensor(states[:50])
    shuffled = h.clone()
    shuffled[:, 3] = h[torch.randperm(50), 3]  # a step outside both tasks' masks
    shuffled[:, 2] = h[torch.randperm(50), 2]  # outside task 0's mask
    with torch.no_grad():
        torch.testing.assert_close(adapter.predict(shuffled, task=0, step_mask=step_tasks[:, 0]),
                                   adapter.predict(h, task=0, step_mask=step_tasks[:, 0]))
    # training recorded the steps each task is read from: predict reads them by default, also after a reload
    # without a structure (before, it summed over every step)
    assert adapter.config.step_tasks == step_tasks.tolist()
    with torch.no_grad():
        torch.testing.assert_close(adapter.predict(h, task=0), adapter.predict(h, task=0, step_mask=step_tasks[:, 0]))
        adapter.save_pretrained(tmp_path / "no_structure")
        again = hfs.SpecialistAdapter.from_pretrained(tmp_path / "no_structure")
        torch.testing.assert_close(again.predict(h, task=1), adapter.predict(h, task=1, step_mask=step_tasks[:, 1]))
    # a sequence whose label is absent (its mask all False) does not hide the steps the others share
    from hf_specialist.adapter.lambda_path import shared_step_mask

    masks = torch.as_tensor(np.repeat(step_tasks[None], 5, axis=0))
    masks[2, :, 1] = False
    assert shared_step_mask(masks) == step_tasks.tolist()
    masks[3, 0, 0] = False  # steps that differ between sequences: no shared mask
    assert shared_step_mask(masks) is None
    # trained again on sequences of another length: both records follow, and the artifact still loads
    hfs.train_specialist(again, states[:, :3], tasks, step_tasks[:3], sparsity=0.0, epochs=1, seed=0, progress=False)
    assert again.config.n_steps == 3 and again.config.step_tasks == step_tasks[:3].tolist()
    again.save_pretrained(tmp_path / "three_steps")
    assert hfs.SpecialistAdapter.from_pretrained(tmp_path / "three_steps").config.n_steps == 3


@pytest.fixture(scope="module")
def collider_steps():
    return synthetic.collider_step_latents(n=800, T=6, context=0.1, seed=0)


def _collider_block_scores(adapter, obs, truth):
    scores = []
    for i in range(truth["step_tasks"].shape[1]):
        rows = truth["step_tasks"][:, i]
        block = adapter.task_latents(torch.as_tensor(obs[:, rows].reshape(-1, obs.shape[-1])), task=i).detach()
        latents = truth["latents"][:, rows].reshape(-1, truth["latents"].shape[-1])
        scores.append(block_r2(block, latents[:, truth["relevant"][i]], latents[:, truth["irrelevant"]], max_samples=600))
    return scores


def test_sequence_readout_recovers_each_steps_own_block(collider_steps):
    # tasks are sums over the steps that serve them, and every step faintly sees the others (context=0.1): read out
    # per sequence, each step's block is its own latent; read out per step, the heads cannot fit the outcome
    obs, tasks, truth = collider_steps
    kwargs = dict(d_latent=8, encoder_widths=[64, 64], decoder_widths=[64, 64])
    torch.manual_seed(0)
    sequence = build_adapter(**kwargs)
    history = hfs.train_specialist(sequence, obs, tasks, truth["step_tasks"], sparsity=0.1, epochs=30, seed=0, progress=False)
    assert sequence.config.task_readout == "sequence"  # "auto" resolved from per-sequence targets
    for score in _collider_block_scores(sequence, obs, truth):
        assert score["r2_relevant"] > 0.9 and score["r2_irrelevant"] < 0.35
    torch.manual_seed(0)
    step = build_adapter(**kwargs, task_readout="step")
    per_step = hfs.train_specialist(step, obs, tasks, truth["step_tasks"], sparsity=0.1, epochs=30, seed=0, progress=False)
    for i in range(2):
        assert history["final"][f"task_{i}"] < 0.2 < per_step["final"][f"task_{i}"]

    prediction = sequence.predict(obs[:5], task=1, step_mask=truth["step_tasks"][:, 1])
    assert prediction.shape == (5,)
    full = sequence.predict(obs[:5], task=1, step_mask=np.ones(6, dtype=bool))
    assert not torch.allclose(prediction, full)  # steps outside the mask change the sum
    with pytest.raises(ValueError, match="`step_mask` has shape"):
        sequence.predict(obs[:5], task=1, step_mask=np.ones(5, dtype=bool))


def test_sequence_readout_needs_sequences():
    rng = np.random.default_rng(0)
    adapter = build_adapter(task_readout="sequence")
    with pytest.raises(ValueError, match="`task_readout='sequence'` needs `states` of shape"):
        hfs.train_specialist(adapter, rng.normal(size=(50, 32)), rng.normal(size=(50, 2)), epochs=1, progress=False)
    with pytest.raises(ValueError, match="`task_readout` must be one of"):
        hfs.SpecialistConfig(d_in=8, task_readout="mean")


@pytest.mark.parametrize(
    "case, match",
    [
        ("hidden", r"expects \(\.\.\., 32\) \(d_in=32\); the hidden size does not match"),
        ("count", "the task count does not match"),
        ("nan", "NaN"),
        ("labels", r"integer labels in 0..2"),
        ("mask", "`task_mask` has shape"),
    ],
)
def test_training_bad_input(case, match):
    rng = np.random.default_rng(0)
    states, tasks = rng.normal(size=(50, 32)), rng.normal(size=(50, 2))
    mask = None
    adapter = build_adapter()
    if case == "hidden":
        states = states[:, :31]
    elif case == "count":
        tasks = tasks[:, :1]
    elif case == "nan":
        states[3, 3] = np.nan
    elif case == "labels":
        adapter = build_adapter(task_types=["regression", "classification"], n_classes=[0, 3])
        tasks[:, 1] = 3
    elif case == "mask":
        mask = np.ones((50, 3), dtype=bool)
    before = {k: v.clone() for k, v in adapter.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        hfs.train_specialist(adapter, states, tasks, mask, epochs=1, progress=False)
    assert all(torch.equal(before[k], v) for k, v in adapter.state_dict().items())  # nothing started


def test_classification_task_trains():
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(600, 6))
    states = (factors @ rng.normal(size=(6, 32))).astype(np.float32)
    labels = (factors[:, 0] > 0).astype(int) + (factors[:, 1] > 0).astype(int)
    tasks = np.stack([factors[:, 2], labels], axis=1)
    adapter = build_adapter(task_types=["regression", "classification"], n_classes=[0, 3])
    hfs.train_specialist(adapter, states, tasks, sparsity=0.0, epochs=30, batch_size=64, seed=0, progress=False)
    logits = adapter.predict(torch.as_tensor(states), task=1)
    assert logits.shape == (600, 3)
    assert (logits.argmax(-1).numpy() == labels).mean() > 0.8


@pytest.mark.parametrize("sparsity, run_dir, schedule", [
    (0.05, "run-00", {"epochs": 4}), ("auto", "lambda-path", {"epochs": 4}),
    (0.05, "run-00", {"max_steps": 14}),  # 4 batches per epoch: stopped mid-epoch 3, ends mid-epoch 4
    ("auto", "lambda-path", {"max_steps": 7, "gradient_accumulation_steps": 2}),  # 14 batches, stopped at 10
])
def test_checkpoint_resume_matches_uninterrupted(tmp_path, sparsity, run_dir, schedule):
    rng = np.random.default_rng(1)
    states = rng.normal(size=(300, 32)).astype(np.float32)
    tasks = rng.normal(size=(300, 2))
    kwargs = dict(sparsity=sparsity, lambda_path=[0.05, 0.3], batch_size=64, seed=3, progress=False, **schedule)
    torch.manual_seed(0)
    reference = build_adapter()
    init = {k: v.clone() for k, v in reference.state_dict().items()}
    expected = hfs.train_specialist(reference, states, tasks, **kwargs)

    interrupted = build_adapter()
    interrupted.load_state_dict(init)
    out = hfs.train_specialist(interrupted, states, tasks, checkpoint_dir=tmp_path, checkpoint_every=5,
                               stop_after_steps=10, **kwargs)
    assert out["interrupted_at"] == 10
    assert latest_checkpoint(tmp_path / run_dir).name == "checkpoint-00000010"  # "auto": every lambda at once
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt"))  # safetensors + JSON only

    resumed = build_adapter()
    resumed.load_state_dict(init)
    history = hfs.train_specialist(resumed, states, tasks, checkpoint_dir=tmp_path, checkpoint_every=5, resume=True,
                                   **kwargs)
    assert history["path"] == expected["path"]
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)
    if "max_steps" in schedule:  # the schedule is recorded in each checkpoint: another one is refused
        with pytest.raises(ValueError, match="written under another schedule"):
            hfs.train_specialist(build_adapter(), states, tasks, checkpoint_dir=tmp_path / "again", checkpoint_every=5,
                                 stop_after_steps=10, **kwargs)
            hfs.train_specialist(build_adapter(), states, tasks, checkpoint_dir=tmp_path / "again", resume=True,
                                 **{**kwargs, "batch_size": 48})
    if sparsity == "auto" and "max_steps" not in schedule:  # finished runs are kept; only the new lambda trains
        longer = hfs.train_specialist(build_adapter(), states, tasks, checkpoint_dir=tmp_path, resume=True,
                                      **{**kwargs, "lambda_path": [0.05, 0.3, 1.0]})
        assert longer["path"][:3] == expected["path"] and longer["path"][3]["sparsity"] == 1.0


def test_checkpoint_restores_each_processes_own_rng_state(tmp_path):
    """Processes draw noise for shares of different sizes, so their RNG streams differ: each resumes its own."""
    from hf_specialist.adapter.checkpoints import load_checkpoint, rng_state, save_checkpoint

    adapter = build_adapter()
    optimizer = torch.optim.Adam(adapter.parameters())
    torch.manual_seed(1)
    states = [rng_state()]
    torch.randn(15)
    states.append(rng_state())  # what a second process would hold
    folder = save_checkpoint(tmp_path, adapter, optimizer, {"global_step": 5, "epoch": 0, "history": []},
                             rng_states=states)
    for rank in (0, 1, 2):  # a third process (more than wrote the checkpoint) takes the main one's
        restored = build_adapter()
        load_checkpoint(folder, restored, torch.optim.Adam(restored.parameters()), process_index=rank)
        torch.testing.assert_close(torch.get_rng_state(), states[rank if rank < 2 else 0]["torch"])


def test_resume_refuses_a_checkpoint_of_another_lambda(tmp_path):
    rng = np.random.default_rng(1)
    states, tasks = rng.normal(size=(200, 32)).astype(np.float32), rng.normal(size=(200, 2))
    kwargs = dict(epochs=4, batch_size=64, seed=3, progress=False, checkpoint_dir=tmp_path, checkpoint_every=2)
    hfs.train_specialist(build_adapter(), states, tasks, sparsity=0.05, stop_after_steps=4, **kwargs)
    with pytest.raises(ValueError, match=r"of lambdas \[0.05\], but this call trains \[0.1\]"):
        hfs.train_specialist(build_adapter(), states, tasks, sparsity=0.1, resume=True, **kwargs)


def test_stacked_adapters_compute_each_models_loss_and_gradient():
    torch.manual_seed(0)
    adapter = build_adapter()
    stack = StackedAdapters(adapter, [0.0, 0.05, 0.3])
    with torch.no_grad():  # make the three models differ
        for _, param in stack.adapter_named_parameters():
            param.add_(0.1 * torch.randn_like(param))
    models = stack.unstack()
    stack.eval()
    rng = np.random.default_rng(0)
    h, y = torch.as_tensor(rng.normal(size=(40, 32)), dtype=torch.float32), torch.randn(40, 2)
    mask = torch.ones(40, 2, dtype=torch.bool)
    terms = stack(h, y, mask, stack.sparsities)
    terms["loss"].sum().backward()
    grads = dict(stack.adapter_named_parameters())
    for j, (model, lam) in enumerate(zip(models, [0.0, 0.05, 0.3])):
        expected = model.loss_terms(h, y, mask, lam)
        expected["loss"].backward()
        for key, value in expected.items():
            torch.testing.assert_close(terms[key][j], value.detach(), msg=key)
        for name, param in model.named_parameters():
            torch.testing.assert_close(grads[name].grad[j], param.grad, msg=name)


def test_stacked_lambda_path_trains_each_model_as_alone(tmp_path, monkeypatch):
    from hf_specialist.adapter import lambda_path

    rng = np.random.default_rng(4)
    states = rng.normal(size=(240, 32)).astype(np.float32)
    tasks = states[:, :2] + 0.1 * rng.normal(size=(240, 2))
    kwargs = dict(sparsity="auto", lambda_path=[0.02, 0.2], epochs=3, batch_size=64, seed=1, progress=False)
    runs = {}
    for stacked in (True, False):
        monkeypatch.setattr(lambda_path, "STACK_LAMBDAS", stacked)
        torch.manual_seed(0)
        adapter = build_adapter()
        runs[stacked] = (hfs.train_specialist(adapter, states, tasks, **kwargs), adapter)
    (stacked, a), (alone, b) = runs[True], runs[False]
    for x, y in zip(stacked["path"], alone["path"]):  # same data, initial weights and noise draws per model
        assert x["support"] == y["support"]
        for key in ("task_0", "task_1", "adapter/explained_variance"):
            assert x[key] == pytest.approx(y[key], rel=1e-3, abs=1e-4), key
    torch.testing.assert_close(a.encode(states[:20]), b.encode(states[:20]), rtol=1e-3, atol=1e-4)

    monkeypatch.setattr(lambda_path, "STACK_LAMBDAS", True)
    out = hfs.train_specialist(build_adapter(), states, tasks, checkpoint_dir=tmp_path, checkpoint_every=2,
                               stop_after_steps=4, **kwargs)
    assert out["interrupted_at"] == 4
    with pytest.raises(ValueError, match=r"of lambdas \[0.0, 0.02.*but this call trains \[0.0, 0.05, 0.2\]"):
        hfs.train_specialist(build_adapter(), states, tasks, checkpoint_dir=tmp_path, resume=True,
                             **{**kwargs, "lambda_path": [0.05, 0.2]})


def test_block_r2_checks_rows():
    with pytest.raises(ValueError, match="same number of rows"):
        block_r2(np.zeros((10, 2)), np.zeros((9, 2)), np.zeros((10, 1)))
    rng = np.random.default_rng(0)
    s = rng.uniform(-1, 1, size=(800, 4))
    good = block_r2(np.tanh(s[:, :2]), s[:, :2], s[:, 2:], max_samples=600)
    assert good["r2_relevant"] > 0.95 and good["r2_irrelevant"] < 0.05


def test_joint_lora_training_saves_lora_and_round_trips(tmp_path):
    from peft import LoraConfig, PeftModel

    from helpers import build_tiny_model, tokenizer

    texts, tasks, truth = synthetic.planted_text(n=40, T=4, M=1, seed=0)
    base = build_tiny_model("gpt2", n_layers=3)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    isolated = build_adapter(d_in=32, n_tasks=1, hook_point="layers.1", context="isolated")
    with pytest.raises(hfs.InputError, match=r"encodes whole texts \(context='full'\), but the adapter's config "
                                             r"says context='isolated'"):
        hfs.train_specialist(isolated, tasks=tasks, texts=texts, steps=truth["separator"], base_model=base,
                             tokenizer=tokenizer())
    torch.manual_seed(0)
    adapter = build_adapter(d_in=32, n_tasks=1, hook_point="layers.1")
    history = hfs.train_specialist(
        adapter, tasks=tasks, task_mask=truth["step_tasks"], texts=texts, steps=truth["separator"], epochs=2,
        batch_size=32, progress=False, sparsity=0.05, base_model=base, tokenizer=tokenizer(),
        lora=LoraConfig(r=4, target_modules=["c_attn"], lora_dropout=0.0),
    )
    peft_model = history["lora_model"]
    # 32 training texts of 4 steps, batches of 32 // 4 = 8 texts: 4 optimizer steps per epoch
    assert history["steps"][-1]["step"] == 8 and np.isfinite(history["steps"][-1]["loss"])
    assert np.isfinite(history["final"]["task_0"])
    lora_weights = [n for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert lora_weights and any(p.abs().sum() > 0 for n, p in peft_model.named_parameters() if "lora_B" in n)
    folder = adapter.save_pretrained(tmp_path / "art", lora_model=peft_model)
    assert (folder / "lora" / "adapter_config.json").exists() and not (folder / "adapter_config.json").exists()
    loaded = hfs.SpecialistAdapter.from_pretrained(folder)
    fresh = build_tiny_model("gpt2", n_layers=3)
    fresh.load_state_dict(before)
    relora = PeftModel.from_pretrained(fresh, str(folder / "lora")).eval()
    ids = torch.randint(5, 1000, (2, 7))
    with hfs.HiddenStateExtractor(peft_model.eval(), "layers.1") as a, hfs.HiddenStateExtractor(relora, "layers.1") as b:
        torch.testing.assert_close(loaded.encode(b(input_ids=ids)["layers.1"]), adapter.encode(a(input_ids=ids)["layers.1"]))


def test_named_tasks_are_read_by_name_and_structures_must_match(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    states = rng.normal(size=(300, 3, 32)).astype(np.float32)
    a, b = states[:, 0, 0] + states[:, 1, 1], states[:, 2, 2]
    kwargs = dict(sparsity=0.0, max_steps=20, seed=0, progress=False)
    torch.manual_seed(0)
    ordered = build_adapter(n_tasks=2, task_names=["a", "b"])
    hfs.train_specialist(ordered, states, np.c_[a, b], **kwargs)
    torch.manual_seed(0)
    swapped = build_adapter(n_tasks=2, task_names=["a", "b"])  # columns in another order, and one too many
    hfs.train_specialist(swapped, states, pd.DataFrame({"b": b, "note": ["x"] * 300, "a": a}), **kwargs)
    for task in (0, 1):
        torch.testing.assert_close(swapped.predict(torch.from_numpy(states), task=task),
                                   ordered.predict(torch.from_numpy(states), task=task))
    unnamed = build_adapter(n_tasks=2)
    hfs.train_specialist(unnamed, states, {"b": b, "a": a}, **kwargs)
    assert unnamed.config.task_names == ["b", "a"]  # unnamed tasks take the columns' names
    with pytest.raises(hfs.InputError, match=r"the adapter's tasks are \['a', 'b'\] .* \['b'\] are not among them"):
        hfs.train_specialist(build_adapter(n_tasks=2, task_names=["a", "b"]), states, {"c": b, "a": a}, **kwargs)
    # a structure saved beside the adapter must describe its tasks and steps
    structure = hfs.TaskStructure().fit(states, pd.DataFrame({"b": b, "a": a}))
    with pytest.raises(hfs.InputError, match=r"fitted in another order: its tasks are \['b', 'a'\], the adapter's are"):
        ordered.save_pretrained(tmp_path / "x", structure=structure)
    with pytest.raises(hfs.InputError, match="marks steps for 1 task"):
        ordered.save_pretrained(tmp_path / "x", structure=hfs.TaskStructure().fit(states, a[:, None]))
    with pytest.raises(hfs.InputError, match="has 2 steps but the adapter was trained on 3"):
        ordered.save_pretrained(tmp_path / "x", structure=hfs.TaskStructure().fit(states[:, :2], np.c_[a, b]))
    assert not (tmp_path / "x").exists()
    named = hfs.TaskStructure().fit(states, pd.DataFrame({"a": a, "b": b}))
    with pytest.warns(UserWarning, match=r"marks other steps than the adapter was trained on \(task 'a': structure "
                                         r"1,2, trained 1,2,3\)"):  # trained without a mask: every step
        ordered.save_pretrained(tmp_path / "x", structure=named, metrics={"structure/f1": 1.0})
    card = (tmp_path / "x" / "README.md").read_text()
    assert "structure/f1" in card and "a/r2" in card  # metrics passed join the held-out ones, never replace them
