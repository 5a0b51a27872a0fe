"""Defaults for $XLA_FLAGS, which XLA reads once, when its first backend starts."""
import importlib.metadata
import os
import re
import warnings
from typing import Tuple

# The first jaxlib that metabayes does not support (pyproject.toml's pin): its XLA no longer
# knows --xla_cpu_use_fusion_emitters (and aborts the process on it), the emitters' wrong
# gradients are back (BENCHMARKS.md, "jax 0.11 on CPU"), and the defaults below were measured
# only under it.
FIRST_UNSUPPORTED_JAXLIB = (0, 11)


def jaxlib_version() -> Tuple[int, ...]:
    """The installed jaxlib's (major, minor, patch), read from its metadata without importing
    it."""
    return tuple(int(part) for part in
                 re.findall(r"\d+", importlib.metadata.version("jaxlib"))[:3])


def set_default_xla_flag(name: str, value: str) -> None:
    """Append ``--name=value`` to $XLA_FLAGS unless it already sets ``name`` (the user's wins)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if name not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --{name}={value}".strip()


def turn_off_cpu_fusion_emitters() -> None:
    """Turn XLA:CPU's fusion emitters off by default, where the installed jaxlib still can
    (jax 0.10: they miscompile the jitted gradient of a Conv4 whose weights are sampled inside
    jit, ``tests/test_models.py::test_jit_gradient_of_sampled_conv_net``). From jaxlib 0.11 on,
    the flag is gone and the gradients are wrong again on the CPU: warn, and set nothing, since
    an unknown flag aborts the process."""
    version = jaxlib_version()
    if version[:2] >= FIRST_UNSUPPORTED_JAXLIB:
        warnings.warn(
            f"jaxlib {'.'.join(map(str, version))}: XLA:CPU's fusion emitters cannot be turned "
            "off, and they miscompile the gradients of sampled convolutional networks on the CPU "
            "(off by about 60%); metabayes supports jax and jaxlib < 0.11 (pyproject.toml). "
            "GPU and TPU programs are not affected by this flag.", RuntimeWarning, stacklevel=2)
        return
    set_default_xla_flag("xla_cpu_use_fusion_emitters", "false")


# XLA:CPU's own convolution thunk (Eigen) instead of YNNPACK's for every convolution: Conv4's
# 14×14×64 convolution of 75 images takes 5.9 ms against 10.6 ms (``benchmarks.conv_kernels``),
# and the Omniglot M = 32 meta-steps 10-11% less time (BENCHMARKS.md, "Issue 20, eighth pass").
# Matmuls stay with YNNPACK.
CONVOLUTIONS_OUTSIDE_YNNPACK = ("xla_cpu_experimental_ynn_fusion_type", "-individual_convolution")


def convolutions_outside_ynnpack() -> None:
    """Have XLA:CPU run convolutions with its own kernels (``CONVOLUTIONS_OUTSIDE_YNNPACK``),
    where the installed jaxlib is one this was measured with (below
    ``FIRST_UNSUPPORTED_JAXLIB``; a flag that XLA does not know aborts the process)."""
    if jaxlib_version()[:2] < FIRST_UNSUPPORTED_JAXLIB:
        set_default_xla_flag(*CONVOLUTIONS_OUTSIDE_YNNPACK)
