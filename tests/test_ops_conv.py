"""conv / depthwise / separable / transpose conv: scratch == xla, values and gradients."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnn_lab import ops
from tests.helpers import normal

TOL = dict(rtol=2e-4, atol=2e-4)


def rand(key, shape):
  return normal(key, shape)


@st.composite
def conv_cases(draw):
  ndim = draw(st.sampled_from([1, 2, 3]))
  groups = draw(st.sampled_from([1, 1, 2]))
  c_in = groups * draw(st.integers(1, 3))
  c_out = groups * draw(st.integers(1, 3))
  k = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
  stride = draw(st.integers(1, 3))
  dilation = draw(st.integers(1, 2))
  padding = draw(st.one_of(st.sampled_from(["SAME", "VALID"]), st.integers(0, 2),
                           st.just([(draw(st.integers(0, 2)), draw(st.integers(0, 2)))] * ndim)))
  eff = [(f - 1) * dilation + 1 for f in k]
  size = tuple(draw(st.integers(max(e, 1), max(e, 1) + 5)) for e in eff)
  return dict(x=(2, *size, c_in), w=(*k, c_in // groups, c_out), stride=stride,
              dilation=dilation, padding=padding, groups=groups)


@given(conv_cases(), st.integers(0, 1000))
def test_conv_scratch_matches_xla_values_and_grads(case, seed):
  x, w = rand(seed, case["x"]), rand(seed + 1, case["w"])
  b = rand(seed + 2, case["w"][-1:])
  kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
            groups=case["groups"])

  for a, e in zip(values_and_grads(ops.conv, "scratch", x, w, b, **kw),
                  values_and_grads(ops.conv, "xla", x, w, b, **kw)):
    np.testing.assert_allclose(a, e, **TOL)


def values_and_grads(op, impl, *arrays, **kw):
  """op(*arrays) and the gradient of a nonlinear scalar of it w.r.t. every array, jitted."""
  def loss(*arrays):
    y = op(*arrays, impl=impl, **kw)
    return jnp.sum(jnp.sin(y)), y
  (_, y), grads = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(arrays))),
                                             has_aux=True))(*arrays)
  return (y, *grads)


def naive_conv2d(x, w, stride, pad):
  """Loop reference straight from the course: slice, multiply, sum."""
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  n, h, wd, _ = x.shape
  f, _, _, c_out = w.shape
  ho, wo = (h - f) // stride + 1, (wd - f) // stride + 1
  y = np.zeros((n, ho, wo, c_out), np.float64)
  for i, j in itertools.product(range(ho), range(wo)):
    patch = x[:, i * stride:i * stride + f, j * stride:j * stride + f, :]
    y[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
  return y


@pytest.mark.parametrize("impl", ops.IMPLS)
def test_conv_matches_loop_reference(impl):
  x, w = np.asarray(rand(0, (2, 7, 9, 3))), np.asarray(rand(1, (3, 3, 3, 4)))
  y = ops.conv(x, w, stride=2, padding=1, impl=impl)
  np.testing.assert_allclose(y, naive_conv2d(x, w, 2, 1), **TOL)
  assert y.shape == (2, ops.output_size(7, 3, 1, 2), ops.output_size(9, 3, 1, 2), 4)


def test_output_size_formula_and_same_padding_convention():
  assert ops.output_size(6, 3, 0, 1) == 4
  assert ops.output_size(7, 3, 0, 2) == 3
  assert ops.output_size(39, 3, 0, 1) == 37
  # SAME: ceil(n / s), odd total padding puts the extra pixel at the end.
  assert ops.resolve_padding("SAME", (6,), (2,), (1,)) == ((0, 1),)
  assert ops.resolve_padding("SAME", (7,), (4,), (2,)) == ((1, 2),)
  y = ops.conv(jnp.ones((1, 7, 7, 1)), jnp.ones((4, 4, 1, 1)), stride=2, padding="SAME")
  assert y.shape == (1, 4, 4, 1)


def test_zero_pad():
  x = jnp.ones((4, 3, 3, 2))
  assert ops.zero_pad(x, 2).shape == (4, 7, 7, 2)
  y = ops.zero_pad(x, [(1, 0), (0, 2)])
  assert y.shape == (4, 4, 5, 2) and float(y[0, 0, 0, 0]) == 0 and float(y[0, 1, 0, 0]) == 1


@settings(max_examples=12)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(0, 500))
def test_depthwise_and_separable(ndim, k, mult, seed):
  c = 3
  x = rand(seed, (2, *(6,) * ndim, c))
  dw = rand(seed + 1, (*(k,) * ndim, c, mult))
  pw = rand(seed + 2, (*(1,) * ndim, c * mult, 5))
  ys = [values_and_grads(ops.separable_conv, i, x, dw, pw, padding="SAME") for i in ops.IMPLS]
  for a, e in zip(*ys):
    np.testing.assert_allclose(a, e, **TOL)
  # depthwise channel c*M + m only sees input channel c (jitted: run eagerly, the taps
  # of a 3-D kernel are dispatched one by one, slower than compiling them)
  d = jax.jit(lambda x, w: ops.depthwise_conv(x, w, padding="SAME", impl="scratch"))(x, dw)
  one = jax.jit(lambda x, w: ops.conv(x, w, padding="SAME"))(x[..., 1:2], dw[..., 1:2, :])
  np.testing.assert_allclose(d[..., mult:2 * mult], one, **TOL)


def scatter_transpose_reference(x, w, s):
  """The course's algorithm with loops: each input pixel times the kernel, added at i*s."""
  n, h, wd, _ = x.shape
  f, g, _, c_out = w.shape
  y = np.zeros((n, (h - 1) * s + f, (wd - 1) * s + g, c_out))
  for i, j in itertools.product(range(h), range(wd)):
    y[:, i * s:i * s + f, j * s:j * s + g, :] += np.einsum("nc,hwco->nhwo", x[:, i, j, :], w)
  return y


@pytest.mark.parametrize("impl", ops.IMPLS)
@pytest.mark.parametrize("s,f", [(1, 3), (2, 3), (2, 2), (3, 2), (2, 4)])
def test_conv_transpose_is_the_scatter_algorithm(impl, s, f):
  x, w = np.asarray(rand(s, (2, 3, 4, 2))), np.asarray(rand(f, (f, f, 2, 3)))
  full = scatter_transpose_reference(x, w, s)
  y = ops.conv_transpose(x, w, stride=s, padding=0, impl=impl)
  np.testing.assert_allclose(y, full, **TOL)
  valid = ops.conv_transpose(x, w, stride=s, padding="VALID", impl=impl)
  assert valid.shape[1:3] == (3 * s + max(f - s, 0), 4 * s + max(f - s, 0))
  np.testing.assert_allclose(valid[:, :full.shape[1], :full.shape[2]], full, **TOL)
  same = ops.conv_transpose(x, w, stride=s, padding="SAME", impl=impl)
  assert same.shape[1:3] == (3 * s, 4 * s)


@settings(max_examples=15)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2),
       st.integers(0, 500))
def test_conv_transpose_scratch_matches_xla_and_is_conv_gradient(ndim, f, s, p, seed):
  x = rand(seed, (2, *(4,) * ndim, 3))
  w = rand(seed + 1, (*(f,) * ndim, 3, 2))
  op = min(s - 1, 1)
  full = (4 - 1) * s + f
  if full - 2 * p + op < 1:
    return
  kw = dict(stride=s, padding=p, output_padding=op)
  y_x, *g_x = values_and_grads(ops.conv_transpose, "xla", x, w, **kw)
  y_s, *g_s = values_and_grads(ops.conv_transpose, "scratch", x, w, **kw)
  assert y_x.shape[1:-1] == (full - 2 * p + op,) * ndim  # PyTorch's formula
  for a, e in zip([y_s, *g_s], [y_x, *g_x]):
    np.testing.assert_allclose(a, e, **TOL)
  # It is the gradient of conv w.r.t. its input, with the kernel's in/out swapped.
  if full - 2 * p + op >= f and p <= f - 1:
    z_shape = (2, *y_x.shape[1:-1], 2)
    input_grad = jax.jit(lambda x: jax.vjp(  # jitted: eager, each op compiles alone
        lambda z: ops.conv(z, jnp.swapaxes(w, -1, -2), stride=s, padding=p),
        jnp.zeros(z_shape))[1](x)[0])
    np.testing.assert_allclose(input_grad(x), y_x, **TOL)


def test_keras_transpose_sizes():
  assert ops.transpose_output_size(5, 3, 2, "SAME") == 10
  assert ops.transpose_output_size(5, 3, 2, "VALID") == 11
  assert ops.transpose_output_size(5, 1, 2, "VALID") == 10
  assert ops.transpose_output_size(5, 3, 2, 1, output_padding=1) == 10  # PyTorch


def test_ops_compose_with_jit_vmap_grad():
  x, w = rand(0, (3, 8, 8, 2)), rand(1, (3, 3, 2, 4))
  for impl in ops.IMPLS:
    f = jax.jit(lambda x, w: ops.conv(x, w, padding="SAME", impl=impl))
    per_example = jax.vmap(lambda xi: f(xi[None], w)[0])(x)
    np.testing.assert_allclose(per_example, f(x, w), **TOL)
    assert jax.grad(lambda w: f(x, w).sum())(w).shape == w.shape


@pytest.mark.parametrize("call,match", [
    (lambda: ops.conv(jnp.ones((8, 8, 3)), jnp.ones((3, 3, 3, 4))), "x.ndim: expected 4"),
    (lambda: ops.conv(jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 2, 4))),
     r"w.shape\[-2\] \(input channels\): expected x.shape\[-1\] / groups = 3, received 2"),
    (lambda: ops.conv(jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4)), stride=0),
     "stride: expected values >= 1, received 0"),
    (lambda: ops.conv(jnp.ones((1, 4, 4, 3)), jnp.ones((7, 7, 3, 4)), padding=1),
     r"expected a window no larger than the padded input 6, received \(7, 7\)"),
    (lambda: ops.conv(jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4)), padding="FULL"),
     "padding: expected 'SAME', 'VALID'.*received 'FULL'"),
    (lambda: ops.conv(jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4)), impl="cuda"),
     "impl: expected one of"),
    (lambda: ops.conv_transpose(jnp.ones((1, 4, 4, 3)), jnp.ones((3, 3, 2, 4))),
     r"w.shape\[-2\] \(input channels\): expected x.shape\[-1\] = 3, received 2"),
    (lambda: ops.output_size(4, 7, 1, 1), "f: expected a filter no larger"),
    (lambda: ops.output_size(4, 3, 1, 0), "s: expected a stride >= 1"),
    (lambda: ops.conv(jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 2, 3)), groups=2),
     r"w.shape\[-1\] \(output channels\): expected a multiple of groups=2"),
])
def test_bad_input_names_argument_expected_and_received(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def torch_conv_transpose2d(x, w, s, p, op, d, groups):
  """PyTorch's ConvTranspose2d by its definition, with loops: input pixel i of group g
  times the group's kernel tap k lands at i * s + k * d - p; outputs group-major.
  x `[H, W, C_in]`, w `[f, f, C_in, C_out / groups]` (ours) -> `[H', W', C_out]`."""
  h, wd, c_in = x.shape
  f, per_out = w.shape[0], w.shape[-1]
  per_in = c_in // groups
  size = lambda n: (n - 1) * s - 2 * p + d * (f - 1) + op + 1
  y = np.zeros((size(h), size(wd), groups * per_out))
  for i, j, ki, kj, c in itertools.product(range(h), range(wd), range(f), range(f), range(c_in)):
    r, q = i * s + ki * d - p, j * s + kj * d - p
    if 0 <= r < y.shape[0] and 0 <= q < y.shape[1]:
      g = c // per_in
      y[r, q, g * per_out:(g + 1) * per_out] += x[i, j, c] * w[ki, kj, c]
  return y


@settings(max_examples=10)
@given(f=st.integers(1, 3), s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 3),
       groups=st.sampled_from([1, 2, 4]), seed=st.integers(0, 500))
def test_conv_transpose_groups_and_dilation_are_pytorchs(f, s, p, d, groups, seed):
  """Both impls equal PyTorch's definition (values) and each other (gradients)."""
  op = min(s - 1, 1) if s > 1 and d == 1 else 0  # PyTorch: output_padding < s or d
  x = np.asarray(rand(seed, (3, 4, 4)), np.float64)
  w = np.asarray(rand(seed + 1, (f, f, 4, 2)), np.float64)
  if (3 - 1) * s - 2 * p + d * (f - 1) + op + 1 < 1:
    return
  expected = torch_conv_transpose2d(x, w, s, p, op, d, groups)
  kw = dict(stride=s, padding=p, output_padding=op, dilation=d, groups=groups)
  xj, wj = jnp.asarray(x[None], jnp.float32), jnp.asarray(w, jnp.float32)
  results = [values_and_grads(ops.conv_transpose, impl, xj, wj, **kw) for impl in ops.IMPLS]
  np.testing.assert_allclose(results[0][0][0], expected, **TOL)
  for a, e in zip(results[1], results[0]):
    np.testing.assert_allclose(a, e, **TOL)
