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
