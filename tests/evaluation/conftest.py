"""Shared fixtures of the evaluation tests: one random-inception extractor per session (CPU, 2 threads)."""
import pytest
import torch

from evaluation import features as F


@pytest.fixture(scope="session")
def random_extractor():
    torch.set_num_threads(2)
    return F.load_extractor("random-inception", seed=0, device="cpu")
