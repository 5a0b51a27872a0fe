"""$XLA_FLAGS defaults: set before a backend starts, never over the user's, and never one that
the installed XLA no longer knows (it aborts the process on an unknown flag)."""
import os

import pytest

from metabayes import xla_flags


def test_default_flag_is_added_unless_the_user_set_it(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_user_flag=1")
    xla_flags.set_default_xla_flag("xla_new_flag", "false")
    xla_flags.set_default_xla_flag("xla_user_flag", "0")
    assert os.environ["XLA_FLAGS"] == "--xla_user_flag=1 --xla_new_flag=false"


def test_fusion_emitters_are_turned_off_where_the_flag_exists_and_a_warning_says_where_not(
        monkeypatch):
    assert xla_flags.jaxlib_version() < (0, 11)   # the pinned jaxlib knows the flag
    monkeypatch.setenv("XLA_FLAGS", "")
    xla_flags.turn_off_cpu_fusion_emitters()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_use_fusion_emitters=false"

    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setattr(xla_flags, "jaxlib_version", lambda: (0, 11, 2))
    with pytest.warns(RuntimeWarning, match=r"jaxlib 0\.11\.2: XLA:CPU's fusion emitters cannot"):
        xla_flags.turn_off_cpu_fusion_emitters()
    assert os.environ["XLA_FLAGS"] == ""   # XLA 0.11 aborts on the unknown flag
