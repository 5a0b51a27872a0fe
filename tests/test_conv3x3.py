"""metabayes.conv3x3: the convolution whose derivatives are written out (conv="direct") is
lax.conv's function to every order, under vmap too, in float64."""
import re
from unittest import mock

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


# (C, F) on both sides of ``conv3x3.transposes_dy``: dy copied transposed, or x's nine slices
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


def test_weight_gradient_copies_dy_once_instead_of_nine_slices_of_x():
    """At C = F = 64 XLA:CPU's compiled weight gradient holds one transposed copy [F, B·H·W]
    (of dy), where transposing x's slices took nine; the values are the same either way."""
    x, dy = inputs((2, 6, 5, 64), (2, 6, 5, 64))

    def compiled(transposes_dy):
        with mock.patch.object(conv3x3, "transposes_dy", lambda c, f: transposes_dy):
            step = jax.jit(lambda *a: conv3x3.weight_gradient(*a)).lower(x, dy).compile()
        entry = step.as_text().split("ENTRY")[1]   # the instructions XLA:CPU runs
        copies = re.findall(r"= f\d+\[64,60\]\{1,0\} (?!bitcast)", entry)
        return step(x, dy), len(copies)

    (fewer, one), (more, nine) = compiled(True), compiled(False)
    assert (one, nine) == (1, 9)
    np.testing.assert_allclose(fewer, more, rtol=1e-12, atol=1e-12)
    assert conv3x3.transposes_dy(64, 64) and not conv3x3.transposes_dy(1, 64)
