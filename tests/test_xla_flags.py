"""$XLA_FLAGS defaults: set before a backend starts, never over the user's, and never one that
the installed XLA no longer knows (it aborts the process on an unknown flag)."""
import os
import subprocess
import sys

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


def test_convolutions_leave_ynnpack_unless_the_user_says_or_the_jaxlib_is_unmeasured(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")
    xla_flags.convolutions_outside_ynnpack()
    assert os.environ["XLA_FLAGS"] == \
        "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
    users = "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
    monkeypatch.setenv("XLA_FLAGS", users)
    xla_flags.convolutions_outside_ynnpack()
    assert os.environ["XLA_FLAGS"] == users
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setattr(xla_flags, "jaxlib_version", lambda: (0, 11, 2))
    xla_flags.convolutions_outside_ynnpack()
    assert os.environ["XLA_FLAGS"] == ""


@pytest.mark.parametrize("user_flags,in_ynnpack", [
    ("", False), ("--xla_cpu_experimental_ynn_fusion_type=+individual_convolution", True)])
def test_importing_metabayes_takes_convolutions_out_of_ynnpack(user_flags, in_ynnpack):
    """In a fresh process (XLA reads its flags once): with metabayes's default, XLA:CPU compiles
    a convolution as its own instruction; with the user's flag, as a YNNPACK fusion (which it
    does from about 64 channels on)."""
    program = ("import metabayes, jax, jax.numpy as jnp\n"
               "x, w = jnp.ones((2, 8, 8, 64)), jnp.ones((3, 3, 64, 64))\n"
               "print(jax.jit(metabayes.conv3x3.lax_conv).lower(x, w).compile().as_text())")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "XLA_FLAGS": user_flags})
    assert done.returncode == 0, done.stderr[-3000:]
    entry = done.stdout.split("ENTRY")[1]
    assert ("ynn_fusion" in entry) == in_ynnpack and (" convolution(" in entry) != in_ynnpack
