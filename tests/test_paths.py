"""Local paths and Hub ids at the doors: a missing path fails at once with no Hub call; offline mode and an
unreachable Hub fail fast, naming why; one exception type (`InputError`) for bad input."""

import time

import pytest

import hf_specialist as hfs
from hf_specialist import _files
from hf_specialist.models import load_model
from helpers import build_tiny_model


@pytest.fixture
def no_hub_calls(monkeypatch):
    """Any request to the Hub fails the test."""
    import huggingface_hub
    import huggingface_hub.file_download

    def refuse(*args, **kwargs):
        raise AssertionError(f"a Hub call was made: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(huggingface_hub.file_download, "hf_hub_download", refuse)
    monkeypatch.setattr(_files, "_probe", refuse)


@pytest.fixture
def online(monkeypatch):
    """Offline mode off and the Hub endpoint a closed local port (unreachable at once)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    _files._probe.cache_clear()
    yield
    _files._probe.cache_clear()


@pytest.mark.parametrize("name", ["./no_such_folder", "../no_such_folder", "/no/such/folder", "~/no_such_folder",
                                  "a/b/no_such_folder"])
def test_a_missing_path_fails_at_once_at_every_door(name, no_hub_calls):
    base = build_tiny_model("gpt2", n_layers=2)
    for door in (lambda: load_model(name), lambda: hfs.SpecialistAdapter.from_pretrained(name),
                 lambda: hfs.SpecialistModel.from_pretrained(base, name)):
        with pytest.raises(hfs.InputError, match=f"no such folder: {name}$"):
            door()
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError, for existing `except` clauses
        load_model(name)


def test_a_bare_adapter_name_is_no_folder_and_costs_no_retries(no_hub_calls):
    base = build_tiny_model("gpt2", n_layers=2)
    start = time.perf_counter()
    with pytest.raises(hfs.InputError, match=r"no such folder: no_such_adapter \(and not a Hub repo id, which has "
                                             r"the form 'owner/name'\)"):
        hfs.SpecialistModel.from_pretrained(base, "no_such_adapter")
    assert time.perf_counter() - start < 2


def test_offline_mode_fails_fast_naming_it(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"config.json of 'alice/not-cached' is not in the local Hub cache, "
                                                r"and offline mode is on \(HF_HUB_OFFLINE=1\)"):
        hfs.SpecialistAdapter.from_pretrained("alice/not-cached")
    with pytest.raises(hfs.InputError, match=r"model 'nonexistent' is neither a local folder nor in the local Hub "
                                             r"cache, and offline mode is on \(HF_HUB_OFFLINE=1\)"):
        load_model("nonexistent")
    assert time.perf_counter() - start < 10


def test_an_unreachable_hub_is_asked_once_without_retries(online):
    start = time.perf_counter()
    with pytest.raises(hfs.InputError, match=r"not in the local Hub cache, and the Hub at http://127.0.0.1:9 cannot "
                                             r"be reached \(ConnectError"):
        hfs.SpecialistAdapter.from_pretrained("alice/specialist")
    with pytest.raises(hfs.InputError, match="the Hub at http://127.0.0.1:9 cannot be reached"):
        load_model("nonexistent")
    assert time.perf_counter() - start < 10


def test_a_file_is_not_an_artifact_folder(tmp_path):
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(hfs.InputError, match="not a folder: .*model.txt"):
        hfs.SpecialistAdapter.from_pretrained(tmp_path / "model.txt")


def test_an_invalid_name_is_neither_a_folder_nor_a_repo_id(no_hub_calls):
    with pytest.raises(hfs.InputError, match=r"'bad name!' is neither an existing folder nor a valid Hub repo id"):
        load_model("bad name!")


def test_input_error_is_a_value_error():
    assert issubclass(hfs.InputError, ValueError)
    with pytest.raises(hfs.InputError, match="The 'alpha' parameter of TaskStructure"):
        hfs.TaskStructure(alpha=2.0).fit(*__import__("numpy").zeros((2, 10, 3, 1)))
