"""A process's share of a global batch draws the rows of the global batch's noise (the two-process behaviour is
tested under torchrun in tests/test_distributed.py)."""

import pytest
import torch

from hf_specialist.adapter.batch_share import BatchShare, randn_rows, sharing, sum_over_processes


def test_a_share_draws_its_rows_of_the_global_batch_noise():
    share = BatchShare(positions=torch.tensor([1, 3, 5]), global_rows=6, world=2)
    torch.manual_seed(0)
    whole = torch.randn(2, 6 * 4, 3)  # 2 tasks, 6 sequences of 4 steps, 3 latents
    torch.manual_seed(0)
    with sharing(share):
        own = randn_rows((2, 3 * 4, 3), 1, torch.device("cpu"), torch.float32)
    steps = (torch.tensor([1, 3, 5])[:, None] * 4 + torch.arange(4)).reshape(-1)
    torch.testing.assert_close(own, whole[:, steps], rtol=0, atol=0)


def test_without_a_share_nothing_changes():
    torch.manual_seed(0)
    expected = torch.randn(5, 3)
    torch.manual_seed(0)
    torch.testing.assert_close(randn_rows((5, 3), 0, torch.device("cpu"), torch.float32), expected, rtol=0, atol=0)
    x = torch.ones(3)
    assert sum_over_processes(x) is x


def test_noise_rows_must_be_a_multiple_of_the_share():
    share = BatchShare(positions=torch.tensor([0, 2]), global_rows=4, world=2)
    with sharing(share), pytest.raises(ValueError, match="not a multiple"):
        randn_rows((3, 5), 0, torch.device("cpu"), torch.float32)
