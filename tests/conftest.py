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
