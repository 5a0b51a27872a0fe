"""Pytest setup shared by the metabayes test suite (helpers live in tests/helpers.py).

Many tests build learners whose XLA programs are identical; a persistent compilation cache in
``.jax_cache`` (ignored by git) lets later ones reuse earlier compilations.
"""
import os
import sys

import jax
import pytest

sys.path.insert(0, os.path.dirname(__file__))

jax.config.update("jax_compilation_cache_dir",
                  os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@pytest.fixture
def x64():
    """Run the test in float64 (jax.enable_x64 scoped to the test)."""
    with jax.enable_x64():
        yield
