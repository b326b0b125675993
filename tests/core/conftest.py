"""Core tests run single-threaded: their tensors are tiny, and on a shared 2-core machine a
second BLAS thread waiting for a busy core costs milliseconds per float64 matmul."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
