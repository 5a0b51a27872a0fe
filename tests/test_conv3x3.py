"""metabayes.conv3x3: the convolution whose derivatives are written out (conv="direct") is
lax.conv's function to every order, under vmap too, in float64."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from metabayes import conv3x3
from metabayes.layers import conv3x3_patches

pytestmark = pytest.mark.usefixtures("x64")


def im2col(x, kernel):
    return conv3x3_patches(x) @ kernel.reshape(-1, kernel.shape[-1])


def inputs(*shapes):
    rng = np.random.default_rng(0)
    return [jnp.asarray(rng.normal(size=shape)) for shape in shapes]


def meta_gradient(conv, x, kernel):
    """∇_(x, w) of a loss after one inner gradient step on w: MAML's second order."""
    def after_one_step(x, kernel):
        inner = jax.grad(lambda w: jnp.sum(jnp.tanh(conv(x, w)) ** 2))(kernel)
        return jnp.sum(jnp.sin(conv(1.3 * x, kernel - 0.1 * inner)))
    return jax.grad(after_one_step, argnums=(0, 1))(x, kernel)


# (C, F): a general block, and Conv4's first (one channel: the weight gradient's batch of one)
CHANNELS = [(3, 4), (1, 10)]


@pytest.mark.parametrize("channels,features", CHANNELS)
def test_conv_and_its_derivatives_equal_im2col_to_third_order(channels, features):
    x, kernel = inputs((2, 6, 5, channels), (3, 3, channels, features))
    np.testing.assert_allclose(conv3x3.conv(x, kernel), im2col(x, kernel), rtol=1e-12, atol=1e-12)
    for a, b in zip(meta_gradient(conv3x3.conv, x, kernel), meta_gradient(im2col, x, kernel)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    third = lambda conv: jax.grad(lambda w: jnp.sum(jax.grad(lambda w: jnp.sum(jax.grad(
        lambda w: jnp.sum(conv(x, w) ** 3))(w) ** 2))(w) ** 2))(kernel)
    np.testing.assert_allclose(third(conv3x3.conv), third(im2col), rtol=1e-10)


@pytest.mark.parametrize("channels,features", CHANNELS)
def test_conv_second_order_against_finite_differences(channels, features):
    x, kernel = inputs((2, 5, 4, channels), (3, 3, channels, features))
    check_grads(conv3x3.conv, (x, kernel), order=2, modes=["rev"])
    check_grads(conv3x3.weight_gradient, (x, conv3x3.conv(x, kernel)), order=2, modes=["rev"])


@pytest.mark.parametrize("axes", [(0, 0), (None, 0), (0, None)])
def test_vmapped_conv_equals_a_loop(axes):
    """Batched kernels (one per task or per sample of φ) run one convolution each; batched inputs
    against one kernel fold into the image axis; values and second-order gradients equal a loop."""
    x, kernel = inputs((3, 2, 5, 4, 2), (3, 3, 3, 2, 3))
    pick = lambda a, axis, i: a if axis is None else a[i]
    for conv in (conv3x3.conv, lambda a, w: meta_gradient(conv3x3.conv, a, w)):
        args = [a[0] if axis is None else a for a, axis in zip((x, kernel), axes)]
        batched = jax.jit(jax.vmap(conv, in_axes=axes))(*args)
        for i in range(3):
            one = conv(*(pick(a, axis, i) for a, axis in zip(args, axes)))
            for a, b in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(one)):
                np.testing.assert_allclose(a[i], b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("axes", [(0, 0), (None, 0), (0, None)])
def test_vmapped_weight_gradient_equals_a_loop(axes):
    x, dy = inputs((3, 2, 5, 4, 2), (3, 2, 5, 4, 3))
    args = [a[0] if axis is None else a for a, axis in zip((x, dy), axes)]
    batched = jax.jit(jax.vmap(conv3x3.weight_gradient, in_axes=axes))(*args)
    for i in range(3):
        one = conv3x3.weight_gradient(*(a if axis is None else a[i] for a, axis in zip(args, axes)))
        np.testing.assert_allclose(batched[i], one, rtol=1e-10, atol=1e-12)


def convolution_layouts(function, *args) -> list:
    """The dim_labels of every convolution XLA:CPU compiles ``function`` to."""
    return re.findall(r" convolution\(.*?dim_labels=([^,]+)",
                      jax.jit(function).lower(*args).compile().as_text())


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's convolution layouts")
def test_second_order_inside_a_loop_compiles_to_canonical_convolutions_only():
    """Inside a loop XLA:CPU runs a convolution in its Eigen kernel only if it is already in the
    canonical layout (NHWC input, HWIO kernel): JAX's own weight gradient (f01b_i01o->01bf) was
    a naive loop nest there. Every convolution of a second-order step in a ``lax.map`` is
    canonical, the weight gradients' included."""
    x, kernel = inputs((2, 2, 6, 5, 3), (2, 3, 3, 3, 4))
    looped = lambda conv: lambda x, kernel: jax.lax.map(
        lambda pair: meta_gradient(conv, *pair), (x, kernel))
    layouts = convolution_layouts(looped(conv3x3.conv), x, kernel)
    assert len(layouts) >= 6 and set(layouts) == {"b01f_01io->b01f"}, layouts
    assert set(convolution_layouts(looped(conv3x3.lax_conv), x, kernel)) != {"b01f_01io->b01f"}
