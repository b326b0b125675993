"""Random streams from a seed: the derivations the seeded results of the suite rely on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xlevda.core.rng import generator, normal


def test_a_seed_without_stream_seeds_the_generator_itself():
    expected = torch.rand(5, generator=torch.Generator().manual_seed(11))
    assert torch.equal(torch.rand(5, generator=generator(11)), expected)


@pytest.mark.parametrize("stream", [0, 1, 7])
def test_a_stream_is_seeded_from_the_seed_sequence_spawn(stream):
    state = np.random.SeedSequence(3, spawn_key=(stream,)).generate_state(2, np.uint32)
    seed = int(state[0]) << 32 | int(state[1])
    expected = torch.rand(5, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(torch.rand(5, generator=generator(3, stream)), expected)


def test_streams_of_one_seed_differ_and_a_generator_passes_through():
    draws = [torch.rand(4, generator=generator(0, k)) for k in (0, 1)]
    assert not torch.equal(*draws)
    gen = torch.Generator().manual_seed(0)
    assert generator(gen, 1, device="cpu") is gen


def test_normal_draws_on_the_generator_device_in_the_dtype_of_like():
    like = torch.zeros((), dtype=torch.float64)
    out = normal((2, 3), generator(5), like)
    expected = torch.randn((2, 3), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert out.dtype == torch.float64 and torch.equal(out, expected)
