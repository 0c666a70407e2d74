"""Shared test setup: single-threaded torch (tiny tensors; avoids thread oversubscription on small CI
machines) and offline W&B."""

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def shared_data_root():
    """$OTLAB_DATA when it holds MNIST, else None (real-data tests skip cleanly)."""
    root = os.environ.get("OTLAB_DATA")
    if root and os.path.exists(os.path.join(root, "MNIST", "raw", "train-images-idx3-ubyte")):
        return root
    return None


@pytest.fixture
def float64():
    """float64 as torch's default dtype for one test (tiny nets checked against float64 oracles)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the prior draws follow the default dtype
    yield
    torch.set_default_dtype(previous)
