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

# Modules of end-to-end runs (30 s to 3 min each on 2 cores with a cold cache), longest first.
# Collected before the rest, so that pytest-xdist hands them out at the start, not last to one
# worker while the others idle.
LONG_RUNNING = ("test_omniglot_experiment.py", "test_sharding.py", "test_benchmarks.py",
                "test_multihost.py", "test_sinusoid_experiment.py", "test_bandits.py")


def pytest_collection_modifyitems(config, items):
    rank = lambda item: (LONG_RUNNING.index(item.path.name) if item.path.name in LONG_RUNNING
                         else len(LONG_RUNNING))
    items.sort(key=rank)   # stable: the order within a module is kept


@pytest.fixture
def x64():
    """Run the test in float64 (jax.enable_x64 scoped to the test)."""
    with jax.enable_x64():
        yield
