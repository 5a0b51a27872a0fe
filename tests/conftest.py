"""Pytest fixtures shared by the metabayes test suite (helpers live in tests/helpers.py)."""
import os
import sys

import jax
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def x64():
    """Run the test in float64 (jax.enable_x64 scoped to the test)."""
    with jax.enable_x64():
        yield
