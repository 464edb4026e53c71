import numpy as np
import pytest
from hypothesis import settings

# Seeded: the same examples every run, here and in CI.
settings.register_profile("kernelfit", max_examples=60, deadline=None, derandomize=True)
settings.load_profile("kernelfit")


@pytest.fixture
def rng():
    return np.random.default_rng(20261121)
