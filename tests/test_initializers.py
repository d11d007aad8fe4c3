"""Tests of `Initializer`, `canonicalize_initializer`, `hoedt_normal`, `hoedt_bias`.

The statistical checks of the Hoedt & Klambauer scheme (INIT_PAPER.md T1-T5) are in
tests/test_init_paper.py; this file checks the API: shapes, dtypes, signatures,
transformations and errors.
"""

import functools as ft
import inspect
import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, settings

import klax

init_mod = jax.nn.initializers
# One weight shape for (almost) all draws: every new shape compiles the samplers again.
SHAPE = (4, 3)

# Every `jax.nn.initializers` factory, called the way a user would.
JAX_INITIALIZERS = {
    "constant": init_mod.constant(0.5),
    "delta_orthogonal": init_mod.delta_orthogonal(),
    "glorot_normal": init_mod.glorot_normal(),
    "glorot_uniform": init_mod.glorot_uniform(),
    "he_normal": init_mod.he_normal(),
    "he_uniform": init_mod.he_uniform(),
    "kaiming_normal": init_mod.kaiming_normal(),
    "kaiming_uniform": init_mod.kaiming_uniform(),
    "lecun_normal": init_mod.lecun_normal(),
    "lecun_uniform": init_mod.lecun_uniform(),
    "normal": init_mod.normal(),
    "ones": init_mod.ones,
    "orthogonal": init_mod.orthogonal(),
    "truncated_normal": init_mod.truncated_normal(),
    "uniform": init_mod.uniform(),
    "variance_scaling": init_mod.variance_scaling(1.0, "fan_in", "normal"),
    "xavier_normal": init_mod.xavier_normal(),
    "xavier_uniform": init_mod.xavier_uniform(),
    "zeros": init_mod.zeros,
    "hoedt_normal": klax.hoedt_normal(),
    "hoedt_bias": klax.hoedt_bias(),
}


# ---------------------------------------------------------------------------
# Initializer protocol and SupportedInitializer


def test_initializer_protocol_runtime_checkable():
    assert isinstance(klax.hoedt_bias(), klax.Initializer)
    assert isinstance(klax.canonicalize_initializer(init_mod.zeros), klax.Initializer)
    assert not isinstance(3, klax.Initializer)
    params = list(inspect.signature(klax.Initializer.__call__).parameters)
    assert params == ["self", "key", "shape", "fan_in", "dtype"]


def test_supported_initializer_alias():
    members = set(klax.SupportedInitializer.__args__)
    assert members == {klax.Initializer, jax.nn.initializers.Initializer}


# ---------------------------------------------------------------------------
# canonicalize_initializer


@pytest.mark.parametrize("name", sorted(JAX_INITIALIZERS))
def test_canonicalize_every_initializer(name):
    init = klax.canonicalize_initializer(JAX_INITIALIZERS[name])
    key = jr.key(0)
    out = init(key, (2, 1, 3), 2)
    assert out.shape == (2, 1, 3)
    assert out.dtype == jnp.float32
    # fan_in and dtype may also be passed by keyword.
    out_kw = init(key, (2, 1, 3), fan_in=2, dtype=jnp.float32)
    np.testing.assert_array_equal(out, out_kw)
    assert bool(jnp.all(jnp.isfinite(out)))


def test_canonicalize_returns_fan_in_initializers_unchanged():
    bias = klax.hoedt_bias()
    assert klax.canonicalize_initializer(bias) is bias

    def custom(key, shape, fan_in, dtype=jnp.float32):
        return jnp.full(shape, fan_in, dtype)

    assert klax.canonicalize_initializer(custom) is custom


def test_canonicalize_wrapper_ignores_fan_in_and_keeps_metadata():
    base = init_mod.he_normal()
    init = klax.canonicalize_initializer(base)
    assert init is not base
    assert list(inspect.signature(init).parameters) == [
        "key",
        "shape",
        "fan_in",
        "dtype",
    ]
    assert init.__wrapped__ is base  # functools.wraps
    assert init.__name__ == base.__name__
    key = jr.key(3)
    expected = base(key, (4, 5), jnp.float32)
    for fan_in in (0, 1, 100):
        np.testing.assert_array_equal(init(key, (4, 5), fan_in), expected)


def test_canonicalize_is_idempotent_and_keeps_dtype():
    """Canonicalizing a canonicalized initializer must not wrap it again.

    A second wrapper would pass the requested dtype as `fan_in` and lose it.
    """
    once = klax.canonicalize_initializer(init_mod.he_normal())
    assert klax.canonicalize_initializer(once) is once
    assert once(jr.key(0), SHAPE, 4, jnp.float16).dtype == jnp.float16
    bias = klax.canonicalize_initializer(init_mod.normal())
    layer = klax.nn.Linear(4, 3, once, bias, dtype=jnp.float16, key=jr.key(0))
    assert layer.weight.dtype == jnp.float16
    assert layer.bias.dtype == jnp.float16  # pyright: ignore[reportOptionalMemberAccess]


def test_canonicalize_default_dtype_follows_x64(x64):
    init = klax.canonicalize_initializer(init_mod.ones)
    assert init(jr.key(0), (2,), 2).dtype == jnp.float64
    assert init(jr.key(0), (2,), 2, jnp.float32).dtype == jnp.float32


def test_canonicalize_default_dtype_without_x64_is_float32():
    # The default jnp.float_ is canonicalized: no float64 warning, float32 result.
    init = klax.canonicalize_initializer(init_mod.ones)
    assert init(jr.key(0), (2,), 2).dtype == jnp.float32


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float32, jnp.complex64])
def test_canonicalize_low_precision_and_complex(dtype):
    init = klax.canonicalize_initializer(init_mod.normal())
    assert init(jr.key(0), SHAPE, 4, dtype).dtype == dtype


def test_canonicalize_rejects_non_callable():
    with pytest.raises(TypeError, match="Cannot inspect this initializer"):
        klax.canonicalize_initializer(3)  # pyright: ignore[reportArgumentType]


def test_canonicalize_rejects_uninspectable_signature():
    # Builtins such as `max` have no inspectable signature.
    with pytest.raises(ValueError):
        inspect.signature(max)
    with pytest.raises(TypeError, match="Cannot inspect this initializer"):
        klax.canonicalize_initializer(max)  # pyright: ignore[reportArgumentType]


def test_canonicalized_initializer_under_jit_and_vmap():
    init = klax.canonicalize_initializer(init_mod.he_normal())
    keys = jr.split(jr.key(0), 4)
    batched = jax.vmap(lambda k: init(k, SHAPE, 4))(keys)
    jitted = jax.jit(lambda k: init(k, SHAPE, 4))
    assert batched.shape == (4, *SHAPE)
    for k, b in zip(keys, batched, strict=True):
        np.testing.assert_allclose(jitted(k), b, rtol=1e-6)


# ---------------------------------------------------------------------------
# hoedt_normal


def test_hoedt_normal_signature_and_type():
    params = inspect.signature(klax.hoedt_normal).parameters
    assert list(params) == ["in_axis", "dtype"]
    assert params["in_axis"].default == -2
    init = klax.hoedt_normal()
    # A JAX-style initializer: no fan_in parameter.
    assert "fan_in" not in inspect.signature(init).parameters


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float32])
def test_hoedt_normal_dtypes(dtype):
    w = klax.hoedt_normal()(jr.key(0), SHAPE, dtype)
    assert w.shape == SHAPE
    assert w.dtype == dtype
    assert bool(jnp.all(w > 0))
    assert bool(jnp.all(jnp.isfinite(w)))


def test_hoedt_normal_factory_dtype_is_default():
    w = klax.hoedt_normal(dtype=jnp.float16)(jr.key(0), SHAPE)
    assert w.dtype == jnp.float16


def test_hoedt_normal_default_dtype_float32_and_x64(x64):
    w = klax.hoedt_normal()(jr.key(0), SHAPE)
    assert w.dtype == jnp.float64
    assert bool(jnp.all(w > 0))
    w32 = klax.hoedt_normal()(jr.key(0), SHAPE, jnp.float32)
    assert w32.dtype == jnp.float32


def test_hoedt_normal_without_x64_is_float32():
    assert klax.hoedt_normal()(jr.key(0), SHAPE).dtype == jnp.float32


def test_hoedt_normal_exact_formula():
    """`w = exp(mu + s * eps)` with `eps = jr.normal(key, shape, dtype)` (API §1.4)."""
    key, shape, n = jr.key(7), SHAPE, SHAPE[0]
    mean_sq = 3.440115731272907 / (n * (1.3450928843923602 + n))
    var = 1.0 / n
    s = math.sqrt(math.log(var + mean_sq) - math.log(mean_sq))
    mu = math.log(mean_sq) - 0.5 * math.log(var + mean_sq)
    expected = jnp.exp(mu + s * jr.normal(key, shape, jnp.float32))
    np.testing.assert_allclose(
        klax.hoedt_normal()(key, shape), expected, rtol=1e-6, atol=0
    )


def test_hoedt_normal_in_axis():
    key = jr.key(1)
    # The fan-in is read from `in_axis`: SHAPE with in_axis=-1 has n = 3.
    w = klax.hoedt_normal(in_axis=-1)(key, SHAPE)
    n = 3
    mean_sq = 3.440115731272907 / (n * (1.3450928843923602 + n))
    s = math.sqrt(math.log(1 / n + mean_sq) - math.log(mean_sq))
    mu = math.log(mean_sq) - 0.5 * math.log(1 / n + mean_sq)
    expected = jnp.exp(mu + s * jr.normal(key, SHAPE))
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    w0 = klax.hoedt_normal(in_axis=0)(key, SHAPE)
    assert not np.allclose(w0, w)


def test_hoedt_normal_zero_fan_in_gives_empty_array():
    w = klax.hoedt_normal()(jr.key(0), (0, 4))
    assert w.shape == (0, 4)
    assert w.dtype == jnp.float32
    w = klax.hoedt_normal()(jr.key(0), (4, 0))
    assert w.shape == (4, 0)


def test_hoedt_normal_bad_in_axis():
    with pytest.raises(ValueError, match=r"in_axis=-2.*got shape \(3,\)"):
        klax.hoedt_normal()(jr.key(0), (3,))
    with pytest.raises(ValueError, match="in_axis=2"):
        klax.hoedt_normal(in_axis=2)(jr.key(0), (3, 4))


def test_hoedt_normal_jit_vmap_and_legacy_keys():
    init = klax.hoedt_normal()
    keys = jr.split(jr.key(0), 3)
    batched = jax.vmap(lambda k: init(k, SHAPE))(keys)
    assert batched.shape == (3, *SHAPE)
    jitted = jax.jit(lambda k: init(k, SHAPE))
    for k, b in zip(keys, batched, strict=True):
        np.testing.assert_allclose(jitted(k), b, rtol=1e-6)
    # Different keys give different draws.
    assert not np.allclose(batched[0], batched[1])
    # Legacy uint32 keys, also derived ones, are accepted.
    legacy = init(jr.fold_in(jr.PRNGKey(0), 3), SHAPE)
    assert legacy.shape == SHAPE
    assert bool(jnp.all(legacy > 0))


def test_hoedt_normal_grad_through_sample_scale():
    """The sample is a constant w.r.t. a parameter that scales it."""
    w = klax.hoedt_normal()(jr.key(0), SHAPE)
    grad = jax.grad(lambda c: jnp.sum(c * klax.hoedt_normal()(jr.key(0), SHAPE)))(2.0)
    np.testing.assert_allclose(grad, jnp.sum(w), rtol=1e-6)


# Every new shape compiles the sampler again: keep the number of examples small.
@settings(max_examples=4)
@given(n=st.integers(1, 3000), dtype=st.sampled_from([jnp.float16, jnp.float32]))
def test_hoedt_normal_property_positive_shape_dtype(n, dtype):
    w = klax.hoedt_normal()(jr.key(n), (n, 1), dtype)
    assert w.shape == (n, 1)
    assert w.dtype == dtype
    assert bool(jnp.all(w > 0))
    assert bool(jnp.all(jnp.isfinite(w)))


@given(fan_in=st.integers(0, 10**6))
def test_hoedt_bias_property_negative_bounded_increasing_magnitude(fan_in):
    init = klax.hoedt_bias()
    b = float(init(None, (1,), fan_in, jnp.float32)[0])
    b_next = float(init(None, (1,), fan_in + 1, jnp.float32)[0])
    limit = -math.sqrt(0.5475114234402735)  # fan_in -> infinity
    assert limit <= b <= 0.0
    assert b_next <= b  # the magnitude grows with the number of inputs
    if fan_in > 0:
        assert b < 0.0


# ---------------------------------------------------------------------------
# hoedt_bias


def test_hoedt_bias_spec_examples():
    init = klax.hoedt_bias()
    b4 = init(jr.key(0), (3,), 4)
    np.testing.assert_array_equal(b4, jnp.full((3,), -0.6401017, jnp.float32))
    b1 = init(jr.key(0), (2,), 1)
    np.testing.assert_array_equal(b1, jnp.full((2,), -0.48318848, jnp.float32))
    assert b4.dtype == jnp.float32


def test_hoedt_bias_signature():
    params = list(inspect.signature(klax.hoedt_bias()).parameters)
    assert params == ["key", "shape", "fan_in", "dtype"]
    assert list(inspect.signature(klax.hoedt_bias).parameters) == []


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_hoedt_bias_dtype(dtype):
    b = klax.hoedt_bias()(jr.key(0), (4,), 4, dtype)
    assert b.dtype == dtype
    np.testing.assert_allclose(
        np.asarray(b, np.float32), -0.6401017, rtol=float(jnp.finfo(dtype).eps)
    )


def test_hoedt_bias_x64(x64):
    b = klax.hoedt_bias()(jr.key(0), (2,), 4)
    assert b.dtype == jnp.float64
    expected = -math.sqrt(0.5475114234402735 * 4 / (1.3450928843923602 + 4))
    np.testing.assert_array_equal(b, np.full((2,), expected))


def test_hoedt_bias_keyword_arguments_and_any_key():
    init = klax.hoedt_bias()
    a = init(key=None, shape=(2, 2), fan_in=3, dtype=jnp.float32)
    b = init(jr.PRNGKey(5), (2, 2), 3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 2)


def test_hoedt_bias_zero_fan_in_and_zero_size():
    init = klax.hoedt_bias()
    assert init(jr.key(0), (0,), 3).shape == (0,)
    np.testing.assert_array_equal(init(jr.key(0), (2,), 0), jnp.zeros(2))


def test_hoedt_bias_negative_fan_in():
    with pytest.raises(ValueError, match="non-negative fan_in.*fan_in=-1"):
        klax.hoedt_bias()(jr.key(0), (2,), -1)


def test_hoedt_bias_under_jit_and_vmap():
    init = klax.hoedt_bias()
    jitted = jax.jit(ft.partial(init, shape=(3,), fan_in=4))
    np.testing.assert_array_equal(jitted(jr.key(0)), init(jr.key(0), (3,), 4))
    batched = jax.vmap(lambda k: init(k, (3,), 4))(jr.split(jr.key(0), 2))
    assert batched.shape == (2, 3)
    np.testing.assert_array_equal(batched[0], batched[1])


def test_initializers_work_with_rank_promotion_raise():
    with jax.numpy_rank_promotion("raise"):
        assert klax.hoedt_normal()(jr.key(0), SHAPE).shape == SHAPE
        assert klax.hoedt_bias()(jr.key(0), (2,), 3).shape == (2,)
        init = klax.canonicalize_initializer(init_mod.glorot_uniform())
        assert init(jr.key(0), SHAPE, 4).shape == SHAPE
