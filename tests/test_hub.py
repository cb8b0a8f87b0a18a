import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import hf_specialist as hfs
from hf_specialist import synthetic
from helpers import build_adapter, build_tiny_model
from hub_server import TOKEN


@pytest.fixture
def trained():
    torch.manual_seed(0)
    adapter = build_adapter(hook_point="layers.1", base_model="tiny-gpt2", base_model_type="gpt2", base_hidden_size=32)
    rng = np.random.default_rng(0)
    states = rng.normal(size=(200, 32)).astype(np.float32)
    hfs.train_specialist(adapter, states, states[:, :2], sparsity=0.0, epochs=1, seed=0, progress=False)
    return adapter, torch.as_tensor(states[:16])


@pytest.fixture(scope="module")
def structure():
    states, tasks, _ = synthetic.collider_sequences(n=4000, T=6, M=2, seed=0)
    return hfs.TaskStructure().fit(states, tasks)


def _same(a, b, h):
    torch.testing.assert_close(a.encode(h), b.encode(h))
    torch.testing.assert_close(a.predict(h, task=1), b.predict(h, task=1))
    np.testing.assert_array_equal(a.task_support_, b.task_support_)


def test_sequence_readout_round_trip_uses_the_saved_structure(tmp_path, structure):
    rng = np.random.default_rng(0)
    states = rng.normal(size=(60, 6, 32)).astype(np.float32)
    tasks = states[:, :, :2].sum(1)
    adapter = build_adapter()
    hfs.train_specialist(adapter, states, tasks, structure.step_tasks_, sparsity=0.0, epochs=1, seed=0, progress=False)
    assert adapter.config.task_readout == "sequence"
    loaded = hfs.SpecialistAdapter.from_pretrained(adapter.save_pretrained(tmp_path / "seq", structure=structure))
    assert loaded.config.task_readout == "sequence"
    h = torch.as_tensor(states[:8])
    for task in range(2):
        column = structure.step_tasks_[:, task]
        expected = adapter.predict(h, task=task, step_mask=column)
        torch.testing.assert_close(loaded.predict(h, task=task), expected)  # the saved structure is the default mask
        torch.testing.assert_close(loaded.predict(h, task=task, step_mask=column), expected)


def test_local_round_trip_layout_and_structure(tmp_path, trained, structure):
    adapter, h = trained
    folder = adapter.save_pretrained(tmp_path / "art", structure=structure, metrics={"adapter/explained_variance": 0.9})
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["README.md", "config.json", "model.safetensors", "structure.json", "structure.png",
                     "training_args.json", "training_metrics.json"]  # trained: its arguments and metrics beside it
    assert not (folder / "adapter_config.json").exists()
    config = json.loads((folder / "config.json").read_text())
    assert config["hook_point"] == "layers.1" and set(config["versions"]) == {"hf_specialist", "torch", "transformers"}
    card = (folder / "README.md").read_text()
    assert "library_name: hf_specialist" in card and "base_model: tiny-gpt2" in card and "structure.png" in card
    loaded = hfs.SpecialistAdapter.from_pretrained(folder)
    _same(adapter, loaded, h)
    np.testing.assert_array_equal(loaded.structure_.step_tasks_, structure.step_tasks_)


def test_user_readme_is_never_overwritten(tmp_path, trained):
    adapter, _ = trained
    folder = adapter.save_pretrained(tmp_path / "art")
    (folder / "README.md").write_text("# my own notes\n")
    adapter.save_pretrained(folder)
    assert (folder / "README.md").read_text() == "# my own notes\n"


def test_strict_loading_errors(tmp_path, trained):
    adapter, _ = trained
    folder = adapter.save_pretrained(tmp_path / "art")
    weights = folder / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[: len(original) // 2])
    with pytest.raises(ValueError, match="model.safetensors is corrupt or truncated"):
        hfs.SpecialistAdapter.from_pretrained(folder)
    weights.write_bytes(original)
    config = json.loads((folder / "config.json").read_text())
    config["d_latent"] = 9
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match config.json: .*wrong shapes"):
        hfs.SpecialistAdapter.from_pretrained(folder)
    config["d_latent"] = 8
    config["a_key_from_a_newer_version"] = True
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="a_key_from_a_newer_version"):
        hfs.SpecialistAdapter.from_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        hfs.SpecialistAdapter.from_pretrained(folder)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="no such folder: .*missing"):
        hfs.SpecialistAdapter.from_pretrained(tmp_path / "missing")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="model.safetensors not found"):
        hfs.SpecialistAdapter.from_pretrained(folder)


def test_one_subfolder_per_hook_point(tmp_path, trained):
    adapter, h = trained
    adapter.save_pretrained(tmp_path / "multi", subfolder="layers.1")
    other = build_adapter(hook_point="layers.0")
    other.save_pretrained(tmp_path / "multi", subfolder="layers.0")
    assert sorted(p.name for p in (tmp_path / "multi").iterdir()) == ["layers.0", "layers.1"]
    _same(adapter, hfs.SpecialistAdapter.from_pretrained(tmp_path / "multi", subfolder="layers.1"), h)
    with pytest.raises(FileNotFoundError, match=r"subfolder= one of \['layers.0', 'layers.1'\]"):
        hfs.SpecialistAdapter.from_pretrained(tmp_path / "multi")


def test_interrupted_save_leaves_old_artifact_loadable(tmp_path, trained):
    adapter, h = trained
    folder = adapter.save_pretrained(tmp_path / "art")
    before = hfs.SpecialistAdapter.from_pretrained(folder).encode(h)
    script = textwrap.dedent(
        f"""
        import os, signal, safetensors.torch as st
        import hf_specialist as hfs
        real = st.save_file
        def dying_save(tensors, path, metadata=None):
            with open(path, "wb") as f:
                f.write(b"half a file")
            os.kill(os.getpid(), signal.SIGKILL)
        st.save_file = dying_save
        adapter = hfs.SpecialistAdapter.from_pretrained({str(folder)!r})
        with __import__("torch").no_grad():
            for p in adapter.parameters():
                p.add_(1.0)
        adapter.save_pretrained({str(folder)!r})
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=os.getcwd())
    assert done.returncode == -9, done.stderr[-2000:]
    after = hfs.SpecialistAdapter.from_pretrained(folder).encode(h)
    torch.testing.assert_close(before, after)


def test_push_load_update_and_old_revision(hub_endpoint, trained, structure):
    from huggingface_hub import HfApi

    adapter, h = trained
    repo = "alice/specialist"
    url = adapter.push_to_hub(repo, token=TOKEN, structure=structure, metrics={"structure/f1": 1.0})
    api = HfApi(endpoint=hub_endpoint.url, token=TOKEN)
    files = sorted(api.list_repo_files(repo))
    assert files == ["README.md", "config.json", "model.safetensors", "structure.json", "structure.png",
                     "training_args.json", "training_metrics.json"]
    first = api.model_info(repo).sha
    assert first in url
    assert len(hub_endpoint.state.repos[repo]["commits"]) == 2  # the initial commit + one push
    loaded = hfs.SpecialistAdapter.from_pretrained(repo)
    _same(adapter, loaded, h)
    assert loaded.structure_ is not None

    with torch.no_grad():
        adapter.mask_logits.mul_(-1)
    adapter.push_to_hub(repo, token=TOKEN, commit_message="flip masks")
    assert len(hub_endpoint.state.repos[repo]["commits"]) == 3
    _same(adapter, hfs.SpecialistAdapter.from_pretrained(repo), h)
    old = hfs.SpecialistAdapter.from_pretrained(repo, revision=first)
    _same(loaded, old, h)


def test_private_repo_branch_and_readme_survives(hub_endpoint, trained):
    from huggingface_hub import HfApi

    adapter, h = trained
    repo = "alice/private-specialist"
    adapter.push_to_hub(repo, token=TOKEN, private=True)
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a reachable Hub repo"):
        hfs.SpecialistAdapter.from_pretrained(repo)
    _same(adapter, hfs.SpecialistAdapter.from_pretrained(repo, token=TOKEN), h)

    api = HfApi(endpoint=hub_endpoint.url, token=TOKEN)
    api.upload_file(path_or_fileobj=b"# Written by a person\n", path_in_repo="README.md", repo_id=repo)
    adapter.push_to_hub(repo, token=TOKEN)
    from huggingface_hub import hf_hub_download

    readme = hf_hub_download(repo, "README.md", token=TOKEN, force_download=True)
    assert open(readme).read() == "# Written by a person\n"

    adapter.push_to_hub(repo, token=TOKEN, branch="experiment")
    assert "experiment" in hub_endpoint.state.repos[repo]["branches"]
    _same(adapter, hfs.SpecialistAdapter.from_pretrained(repo, token=TOKEN, revision="experiment"), h)


def test_save_and_push_options(tmp_path, hub_endpoint, trained):
    from huggingface_hub import HfApi

    adapter, h = trained
    from huggingface_hub import ModelHubMixin

    assert issubclass(hfs.SpecialistAdapter, ModelHubMixin)
    card = (adapter.save_pretrained(tmp_path / "carded") / "README.md").read_text()
    assert card.count("model_hub_mixin") <= 1 and "hf_specialist" in card
    folder = adapter.save_pretrained(tmp_path / "plain", card=False)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "training_args.json",
                                                        "training_metrics.json"]  # no card of any kind
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['strucutre'\]"):
        adapter.save_pretrained(tmp_path / "typo", strucutre=None)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['strucutre'\]"):
        adapter.push_to_hub("alice/typo", strucutre=None)

    repo = "alice/multi-hook"
    url = adapter.save_pretrained(tmp_path / "multi", subfolder="layers.1", push_to_hub=True, repo_id=repo,
                                  token=TOKEN)
    api = HfApi(endpoint=hub_endpoint.url, token=TOKEN)
    assert api.model_info(repo).sha in url
    assert sorted(api.list_repo_files(repo)) == ["layers.1/README.md", "layers.1/config.json",
                                                 "layers.1/model.safetensors", "layers.1/training_args.json",
                                                 "layers.1/training_metrics.json"]
    _same(adapter, hfs.SpecialistAdapter.from_pretrained(repo, subfolder="layers.1"), h)
    # cached now: loads offline although the repo has no top-level config.json
    _same(adapter, hfs.SpecialistAdapter.from_pretrained(repo, subfolder="layers.1", local_files_only=True), h)


def test_push_deletes_stale_files_in_the_same_commit_and_keeps_a_user_readme(hub_endpoint, trained, structure):
    from huggingface_hub import HfApi

    from huggingface_hub import hf_hub_download

    adapter, h = trained
    repo = "alice/stale"
    api = HfApi(endpoint=hub_endpoint.url, token=TOKEN)
    adapter.push_to_hub(repo, token=TOKEN, structure=structure)
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="lora/adapter_config.json", repo_id=repo)  # an earlier LoRA
    api.upload_file(path_or_fileobj=b"# Mine\n", path_in_repo="README.md", repo_id=repo)
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="layers.2/config.json", repo_id=repo)  # another hook point
    commits = len(hub_endpoint.state.repos[repo]["commits"])
    adapter.push_to_hub(repo, token=TOKEN, structure=None)  # the adapter holds no structure now
    assert len(hub_endpoint.state.repos[repo]["commits"]) == commits + 1  # deletions and uploads in one commit
    files = sorted(f for f in api.list_repo_files(repo) if f != ".gitattributes" and "/training_" not in "/" + f)
    assert files == ["README.md", "config.json", "layers.2/config.json", "model.safetensors"]
    assert open(hf_hub_download(repo, "README.md", force_download=True)).read() == "# Mine\n"
    loaded = hfs.SpecialistAdapter.from_pretrained(repo)
    assert getattr(loaded, "structure_", None) is None  # no stale structure as predict's mask
    _same(adapter, loaded, h)


def test_push_to_a_subfolder_deletes_only_within_it(hub_endpoint, trained, structure):
    from huggingface_hub import HfApi

    adapter, _ = trained
    repo = "alice/stale-sub"
    api = HfApi(endpoint=hub_endpoint.url, token=TOKEN)
    adapter.push_to_hub(repo, token=TOKEN, subfolder="layers.1", structure=structure)
    adapter.push_to_hub(repo, token=TOKEN, subfolder="layers.3", structure=structure)
    api.upload_file(path_or_fileobj=b"notes", path_in_repo="notes.txt", repo_id=repo)
    adapter.push_to_hub(repo, token=TOKEN, subfolder="layers.1")
    files = sorted(f for f in api.list_repo_files(repo) if f != ".gitattributes" and "/training_" not in "/" + f)
    assert [f for f in files if f.startswith("layers.1/")] == ["layers.1/README.md", "layers.1/config.json",
                                                               "layers.1/model.safetensors"]
    assert "layers.3/structure.json" in files and "notes.txt" in files


def test_corrupt_and_missing_files_on_the_hub(hub_endpoint, trained):
    from huggingface_hub import HfApi

    adapter, _ = trained
    repo = "alice/broken"
    adapter.push_to_hub(repo, token=TOKEN)
    api = HfApi(endpoint=hub_endpoint.url, token=TOKEN)
    api.upload_file(path_or_fileobj=b"\x00garbage", path_in_repo="model.safetensors", repo_id=repo)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        hfs.SpecialistAdapter.from_pretrained(repo)
    api.delete_file("model.safetensors", repo_id=repo)
    with pytest.raises(FileNotFoundError, match="model.safetensors not found in repo"):
        hfs.SpecialistAdapter.from_pretrained(repo)


def test_specialist_model_one_line_and_mismatch(tmp_path, trained):
    adapter, _ = trained
    folder = adapter.save_pretrained(tmp_path / "art")
    base = build_tiny_model("gpt2", n_layers=3)
    model = hfs.SpecialistModel.from_pretrained(base, folder)
    ids = torch.randint(5, 1000, (2, 6))
    out = model(input_ids=ids, task=0)
    assert out.specialist.shape[:2] == (2, 6) and out.latents.shape == (2, 6, 8)
    with hfs.HiddenStateExtractor(base, "layers.1") as ex:
        torch.testing.assert_close(out.latents, adapter.encode(ex(input_ids=ids)["layers.1"]))
    with pytest.raises(hfs.InputError, match="got a single str; wrap it in a list"):
        model.predict("One step. Another step.", task=0)
    with pytest.raises(ValueError, match="hidden size is 64, but the adapter was trained on hidden size 32"):
        hfs.SpecialistModel.from_pretrained(build_tiny_model("llama", hidden_size=64), folder)
    with pytest.raises(ValueError, match="type is 'llama', but the adapter was trained on a 'gpt2'"):
        hfs.SpecialistModel.from_pretrained(build_tiny_model("llama"), folder)
    # another checkpoint of the same architecture loads, with a warning naming both
    recorded = copy.deepcopy(adapter)  # the fixture's adapter is shared by other tests
    recorded.config.base_model, recorded.config.base_model_revision = "me/tiny-gpt2", "abc123"
    folder = recorded.save_pretrained(tmp_path / "recorded")
    base.config._name_or_path = "me/tiny-gpt2-finetuned"
    with pytest.warns(UserWarning, match=r"base model is me/tiny-gpt2-finetuned \(revision unknown\), but the "
                                         r"adapter was trained on me/tiny-gpt2 \(revision abc123\)"):
        hfs.SpecialistModel.from_pretrained(base, folder)


def test_a_base_loaded_from_the_hub_records_the_commit_it_was_loaded_from(hub_endpoint, tiny_model_folder):
    from huggingface_hub import HfApi

    from hf_specialist.models import load_model

    api = HfApi(endpoint=hub_endpoint.url, token=TOKEN)
    api.create_repo("alice/tiny-base")
    first = api.upload_folder(repo_id="alice/tiny-base", folder_path=str(tiny_model_folder)).oid
    settings = json.loads((tiny_model_folder / "tokenizer_config.json").read_text())
    api.upload_file(repo_id="alice/tiny-base", path_in_repo="tokenizer_config.json",
                    path_or_fileobj=json.dumps({**settings, "model_max_length": 77}).encode())
    main = hub_endpoint.state.repos["alice/tiny-base"]["branches"]["main"]
    assert main != first
    for revision, expected in ((None, main), (first, first)):  # the branch's head, or the commit asked for
        model, tok = load_model("alice/tiny-base", **({"revision": revision} if revision else {}))
        config = hfs.SpecialistConfig(d_in=32)
        config.record_base(model)
        assert (config.base_model, config.base_model_revision) == ("alice/tiny-base", expected)
        assert (tok.model_max_length == 77) == (expected == main)  # the tokenizer of the same commit


def test_a_save_keeps_the_users_files_and_a_push_sends_only_the_artifact(tmp_path, hub_endpoint, trained, monkeypatch):
    from huggingface_hub import HfApi

    adapter, h = trained
    folder = tmp_path / "outputs"
    (folder / "plots").mkdir(parents=True)
    (folder / "results.json").write_text("{}")
    (folder / "plots" / "a.png").write_bytes(b"png")
    adapter.save_pretrained(folder)
    adapter.save_pretrained(folder)  # a second save replaces the artifact, not the user's files
    assert (folder / "results.json").read_text() == "{}" and (folder / "plots" / "a.png").read_bytes() == b"png"
    _same(adapter, hfs.SpecialistAdapter.from_pretrained(folder), h)
    from hf_specialist.hub import push_folder

    with pytest.warns(UserWarning, match=r"Not uploaded from .*\['plots/a.png', 'results.json'\]"):
        push_folder(folder, "alice/only-artifact", token=TOKEN)
    files = {f for f in HfApi(endpoint=hub_endpoint.url, token=TOKEN).list_repo_files("alice/only-artifact")}
    assert "results.json" not in files and "plots/a.png" not in files and "config.json" in files
    # paths: `~` is the home folder, a subfolder stays inside, the working directory is never replaced
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    adapter.save_pretrained("~/x")
    assert (tmp_path / "home" / "x" / "config.json").is_file()
    for subfolder in ("/abs", "../out"):
        with pytest.raises(hfs.InputError, match="`subfolder` must be a relative path inside the folder"):
            adapter.save_pretrained(tmp_path / "y", subfolder=subfolder)
    monkeypatch.chdir(folder)
    with pytest.raises(hfs.InputError, match=r"is \(or holds\) the working directory"):
        adapter.save_pretrained(".")
    with pytest.warns(UserWarning, match="`revision='abc'` is ignored: .* is a local folder"):
        hfs.SpecialistAdapter.from_pretrained(folder, revision="abc")


def test_resume_refuses_finished_runs_of_other_data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 32)).astype(np.float32)
    kwargs = dict(sparsity=0.05, epochs=1, batch_size=32, seed=0, progress=False, checkpoint_dir=tmp_path / "ck")
    hfs.train_specialist(build_adapter(), x, x[:, :2], **kwargs)
    with pytest.raises(hfs.InputError, match=r"found finished runs .* trained on other data .*\(states: .* then"):
        hfs.train_specialist(build_adapter(), x + 1, x[:, :2], resume=True, **kwargs)
    with pytest.raises(hfs.InputError, match="epochs: 1 then, 2 now"):
        hfs.train_specialist(build_adapter(), x, x[:, :2], resume=True, **{**kwargs, "epochs": 2})
    hfs.train_specialist(build_adapter(), x, x[:, :2], resume=True, **kwargs)  # the same call resumes
    stopped = dict(kwargs, checkpoint_dir=tmp_path / "stopped", checkpoint_every=2)
    assert "interrupted_at" in hfs.train_specialist(build_adapter(), x, x[:, :2], stop_after_steps=3, **stopped)
    with pytest.raises(hfs.InputError, match="found a checkpoint in .* written under another schedule"):
        hfs.train_specialist(build_adapter(), x * 2, x[:, :2], resume=True, **stopped)  # an interrupted run too


def test_a_base_of_another_depth_is_warned_about(tmp_path):
    adapter = build_adapter(n_tasks=1, hook_point="layers.-1")
    adapter.config.record_base(build_tiny_model("gpt2", n_layers=2))
    assert adapter.config.base_num_layers == 2
    folder = adapter.save_pretrained(tmp_path / "ad")
    with pytest.warns(UserWarning, match="has 4 layers, but the adapter was trained on a base of 2 .* 'layers.-1' is "
                                         "another layer here"):
        hfs.SpecialistModel.from_pretrained(build_tiny_model("gpt2", n_layers=4), folder)
