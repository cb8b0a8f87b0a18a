import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(params=[0, 1])
def global_random_seed(request):
    """Seeds that every randomised test runs under."""
    np.random.seed(request.param)
    return request.param


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory):
    """A tiny GPT-2 and its tokenizer saved to a folder (a local "model id" for the CLI's --model)."""
    from helpers import build_tiny_model, tokenizer

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    build_tiny_model("gpt2", n_layers=2).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hub_endpoint(tmp_path_factory):
    """A local Hub-compatible server (`hub_server.HubServer`, model and dataset repos); the real `huggingface_hub`
    client, and `datasets` (`push_to_hub`, `load_dataset("owner/name")`), are pointed at it."""
    import datasets
    from huggingface_hub import constants

    from hub_server import HubServer

    server = HubServer().start()
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_ENDPOINT", server.url)
    patch.setattr(constants, "ENDPOINT", server.url)
    patch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    patch.setattr(constants, "HF_HUB_OFFLINE", False)
    patch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    patch.setattr(constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf_cache")))
    # `datasets` reads its endpoint, offline flag and cache once, at import
    patch.setattr(datasets.config, "HF_ENDPOINT", server.url)
    patch.setattr(datasets.config, "HUB_DATASETS_URL", server.url + "/datasets/{repo_id}/resolve/{revision}/{path}")
    patch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    patch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("datasets_cache"))
    yield server
    patch.undo()
    server.stop()
