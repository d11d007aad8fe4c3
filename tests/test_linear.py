"""Tests of `klax.nn.Linear` and `klax.nn.InputSplitLinear` (API §2, §3)."""

import dataclasses
import inspect
import math

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, settings

import klax

init_mod = jax.nn.initializers
RNG = np.random.default_rng(0)  # NumPy data: no compilation per shape


def arange_init(key, shape, dtype=jnp.float32):
    """A deterministic JAX-style initializer (no random compilation)."""
    del key
    n = math.prod(shape)
    return jnp.asarray(np.arange(1, n + 1).reshape(shape) / (n + 1), dtype)


class FanInSpy:
    """A klax initializer that records the `fan_in` it is handed."""

    def __init__(self):
        self.calls = []

    def __call__(self, key, shape, fan_in, dtype=jnp.float32):
        self.calls.append((tuple(shape), fan_in))
        return jnp.ones(shape, dtype)


def data(*shape):
    return jnp.asarray(RNG.standard_normal(shape), jnp.float32)


# ---------------------------------------------------------------------------
# Linear


SEED_EXAMPLE = """
>>> import jax
>>> from jax.nn.initializers import he_normal
>>> import jax.random as jrandom
>>> import klax
>>>
>>> key = jrandom.PRNGKey(0)
>>> keys = jrandom.split(key)
>>> x = jrandom.uniform(keys[0], (10,))
>>> linear = klax.nn.Linear(
>>> "scalar",
>>> "scalar",
>>> he_normal(),
>>> key=keys[1]
>>> )
>>> jax.vmap(linear)(x).shape
"""


def test_seed_page_example_runs_verbatim():
    """The example of the Linear seed page (prompts stripped) gives shape (10,)."""
    lines = [line.removeprefix(">>>").strip() for line in SEED_EXAMPLE.splitlines()]
    *body, last = [line for line in lines if line]
    namespace = {}
    exec("\n".join(body), namespace)
    assert eval(last, namespace) == (10,)


@pytest.mark.parametrize(
    ("in_features", "out_features", "x_shape", "y_shape"),
    [
        (3, 2, (3,), (2,)),
        ("scalar", 2, (), (2,)),
        (3, "scalar", (3,), ()),
        ("scalar", "scalar", (), ()),
        (0, 4, (0,), (4,)),
        (4, 0, (4,), (0,)),
    ],
)
def test_linear_shapes_and_values(in_features, out_features, x_shape, y_shape):
    layer = klax.nn.Linear(
        in_features, out_features, arange_init, init_mod.ones, key=jr.key(0)
    )
    i = 1 if in_features == "scalar" else in_features
    o = 1 if out_features == "scalar" else out_features
    assert layer.weight.shape == (i, o)
    assert layer.bias.shape == (o,)
    x = data(*x_shape)
    y = layer(x)
    assert y.shape == y_shape
    assert y.dtype == jnp.float32
    expected = np.reshape(x, (i,)) @ np.asarray(layer.weight) + 1.0
    np.testing.assert_allclose(np.reshape(y, (o,)), expected, rtol=1e-6)


def test_linear_key_use():
    for key in (jr.key(3), jr.PRNGKey(3), jr.fold_in(jr.PRNGKey(0), 7)):
        layer = klax.nn.Linear(3, 2, init_mod.normal(), init_mod.normal(), key=key)
        wkey, bkey = jr.split(key, 2)
        np.testing.assert_array_equal(
            layer.weight, init_mod.normal()(wkey, (3, 2), jnp.float32)
        )
        np.testing.assert_array_equal(
            layer.bias, init_mod.normal()(bkey, (2,), jnp.float32)
        )


def test_linear_hands_fan_in_to_initializers():
    weight_spy, bias_spy = FanInSpy(), FanInSpy()
    klax.nn.Linear(5, 2, weight_spy, bias_spy, key=jr.key(0))
    assert weight_spy.calls == [((5, 2), 5)]
    assert bias_spy.calls == [((2,), 5)]
    bias_spy = FanInSpy()
    klax.nn.Linear("scalar", 3, init_mod.ones, bias_spy, key=jr.key(0))
    assert bias_spy.calls == [((3,), 1)]


def test_linear_fields_stored_as_passed():
    layer = klax.nn.Linear(3, "scalar", init_mod.ones, key=jr.key(0))
    assert layer.in_features == 3
    assert layer.out_features == "scalar"
    assert layer.use_bias is True
    # Only the arrays are pytree leaves; sizes and flags are static.
    assert len(jax.tree.leaves(layer)) == 2
    fields = [f.name for f in dataclasses.fields(layer)]
    assert fields == ["weight", "bias", "in_features", "out_features", "use_bias"]


def test_numpy_integer_sizes_are_stored_as_python_ints():
    """NumPy integer sizes work; they are stored as equal Python ints, because
    Equinox warns about NumPy scalars in static fields (run with -W error)."""
    layer = klax.nn.Linear(np.int64(3), np.int32(2), init_mod.ones, key=jr.key(0))
    assert layer.in_features == 3 and type(layer.in_features) is int
    assert layer.out_features == 2 and type(layer.out_features) is int
    assert layer(jnp.ones(3)).shape == (2,)
    split = klax.nn.InputSplitLinear(
        [np.int64(3), "scalar"], np.int64(2), init_mod.ones, key=jr.key(0)
    )
    assert split.in_features == (3, "scalar")
    assert type(split.in_features[0]) is int
    assert type(split.out_features) is int


def test_linear_signature():
    params = inspect.signature(klax.nn.Linear.__init__).parameters
    assert list(params) == [
        "self",
        "in_features",
        "out_features",
        "weight_init",
        "bias_init",
        "use_bias",
        "weight_wrap",
        "bias_wrap",
        "dtype",
        "key",
    ]
    assert params["key"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["bias_init"].default is init_mod.zeros


def test_linear_without_bias_skips_bias_init_and_wrap():
    def fail(*args, **kwargs):
        raise AssertionError("the bias initializer must not be called")

    layer = klax.nn.Linear(
        3, 2, init_mod.ones, fail, use_bias=False, bias_wrap=fail, key=jr.key(0)
    )
    assert layer.bias is None
    assert layer.use_bias is False
    np.testing.assert_allclose(layer(jnp.ones(3)), jnp.full(2, 3.0))


def test_linear_wraps():
    layer = klax.nn.Linear(
        3,
        2,
        init_mod.ones,
        init_mod.ones,
        weight_wrap=klax.NonNegative,
        bias_wrap=lambda b: klax.Parameterize(jnp.negative, b),
        key=jr.key(0),
    )
    assert isinstance(layer.weight, klax.NonNegative)
    assert isinstance(layer.bias, klax.Parameterize)
    np.testing.assert_allclose(klax.finalize(layer)(jnp.ones(3)), jnp.full(2, 2.0))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float32, jnp.complex64])
def test_linear_dtypes(dtype):
    layer = klax.nn.Linear(
        3, "scalar", init_mod.he_normal(), dtype=dtype, key=jr.key(0)
    )
    assert layer.weight.dtype == dtype
    assert layer.bias.dtype == dtype
    y = layer(jnp.ones(3, dtype))
    assert y.shape == ()
    assert y.dtype == dtype


def test_linear_dtypes_x64(x64):
    layer = klax.nn.Linear("scalar", 2, init_mod.he_normal(), key=jr.key(0))
    assert layer.weight.dtype == jnp.float64  # default dtype follows x64
    assert layer(1.0).dtype == jnp.float64
    layer32 = klax.nn.Linear(
        "scalar", 2, init_mod.he_normal(), dtype=jnp.float32, key=jr.key(0)
    )
    assert layer32.weight.dtype == jnp.float32
    assert layer32(jnp.float32(1.0)).dtype == jnp.float32


def test_linear_default_dtype_is_read_at_construction():
    layer = klax.nn.Linear(3, 2, init_mod.ones, key=jr.key(0))
    assert layer.weight.dtype == jnp.float32
    with jax.enable_x64(True):
        assert klax.nn.Linear(3, 2, init_mod.ones, key=jr.key(0)).weight.dtype == (
            jnp.float64
        )


def test_linear_scalar_input_accepts_python_and_numpy_numbers():
    layer = klax.nn.Linear("scalar", 2, arange_init, key=jr.key(0))
    expected = layer(jnp.array(0.5))
    np.testing.assert_array_equal(layer(0.5), expected)
    np.testing.assert_array_equal(layer(np.float32(0.5)), expected)
    np.testing.assert_array_equal(layer(np.array(0.5, np.float32)), expected)


def test_linear_batch_axes_with_rank_promotion_raise():
    layer = klax.nn.Linear(3, 2, arange_init, init_mod.ones, key=jr.key(0))
    scalar_out = klax.nn.Linear(3, "scalar", arange_init, init_mod.ones, key=jr.key(0))
    x = data(5, 4, 3)
    with jax.numpy_rank_promotion("raise"):
        y = layer(x)
        assert y.shape == (5, 4, 2)
        np.testing.assert_allclose(y[1, 2], layer(x[1, 2]), rtol=1e-6)
        assert scalar_out(x).shape == (5, 4)


def test_linear_jit_vmap_grad():
    layer = klax.nn.Linear(3, "scalar", init_mod.he_normal(), key=jr.key(0))
    xs = data(4, 3)
    looped = jnp.stack([layer(x) for x in xs])
    np.testing.assert_allclose(jax.vmap(layer)(xs), looped, rtol=1e-6)
    np.testing.assert_allclose(eqx.filter_jit(layer)(xs[0]), looped[0], rtol=1e-6)
    grads = eqx.filter_grad(lambda m, x: m(x))(layer, xs[0])
    np.testing.assert_allclose(grads.weight, xs[0][:, None], rtol=1e-6)
    np.testing.assert_allclose(grads.bias, jnp.ones(1))
    dx = jax.grad(layer)(xs[0])
    np.testing.assert_allclose(dx, layer.weight[:, 0], rtol=1e-6)
    # Building layers under vmap gives a stacked ensemble.
    keys = jr.split(jr.key(1), 2)
    ensemble = eqx.filter_vmap(
        lambda k: klax.nn.Linear(3, "scalar", init_mod.he_normal(), key=k)
    )(keys)
    assert ensemble.weight.shape == (2, 3, 1)


@given(
    in_features=st.one_of(st.integers(0, 4), st.just("scalar")),
    out_features=st.one_of(st.integers(0, 4), st.just("scalar")),
)
@settings(max_examples=8)  # every new shape compiles the call
def test_linear_property_shapes(in_features, out_features):
    layer = klax.nn.Linear(in_features, out_features, arange_init, key=jr.key(0))
    i = 1 if in_features == "scalar" else in_features
    x_shape = () if in_features == "scalar" else (in_features,)
    y_shape = () if out_features == "scalar" else (out_features,)
    x = jnp.ones(x_shape)
    y = layer(x)
    assert y.shape == y_shape
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(
        np.reshape(y, (-1,)), np.ones(i) @ np.asarray(layer.weight), rtol=1e-6
    )


# --- bad input


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("sclar", "non-negative integer or the string 'scalar'.*'sclar'"),
        (-1, "must be non-negative, but got -1"),
        (2.5, "non-negative integer or 'scalar', but got 2.5 of type float"),
        (None, "but got None"),
        (True, "but got True"),
    ],
)
def test_linear_bad_sizes(size, message):
    with pytest.raises(ValueError, match="in_features .*" + message):
        klax.nn.Linear(size, 2, init_mod.ones, key=jr.key(0))
    with pytest.raises(ValueError, match="out_features .*" + message):
        klax.nn.Linear(2, size, init_mod.ones, key=jr.key(0))


def test_linear_non_scalar_input_to_scalar_layer():
    layer = klax.nn.Linear("scalar", 2, init_mod.ones, key=jr.key(0))
    with pytest.raises(ValueError, match=r"x must have scalar shape.*\(3,\)"):
        layer(jnp.ones(3))
    with pytest.raises(ValueError, match="scalar shape"):
        layer(jnp.ones(1))


def test_linear_wrong_input_size():
    layer = klax.nn.Linear(3, 2, init_mod.ones, key=jr.key(0))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\).*has shape \(4,\)"):
        layer(jnp.ones(4))
    with pytest.raises(ValueError, match=r"has shape \(\)"):
        layer(1.0)


def test_linear_uninspectable_initializer():
    with pytest.raises(TypeError, match="Cannot inspect this initializer"):
        klax.nn.Linear(3, 2, max, key=jr.key(0))  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="Cannot inspect this initializer"):
        klax.nn.Linear(3, 2, init_mod.ones, "zeros", key=jr.key(0))  # pyright: ignore


# ---------------------------------------------------------------------------
# InputSplitLinear


def test_input_split_spec_examples():
    x0 = jnp.ones(0)
    layer = klax.nn.InputSplitLinear((0, 0), 4, init_mod.uniform(), key=jr.key(0))
    assert layer(x0, x0).shape == (4,)
    layer = klax.nn.InputSplitLinear((3, 2, 5), 4, init_mod.uniform(), key=jr.key(0))
    assert layer(jnp.ones(3), jnp.ones(2), jnp.ones(5)).shape == (4,)
    layer = klax.nn.InputSplitLinear(
        (2, 3), "scalar", init_mod.he_normal(), dtype=jnp.complex64, key=jr.key(0)
    )
    y = layer(jnp.ones(2, jnp.complex64), jnp.ones(3, jnp.complex64))
    assert y.shape == ()
    assert y.dtype == jnp.complex64


def test_input_split_values_and_key_use():
    key = jr.key(5)
    layer = klax.nn.InputSplitLinear(
        [3, "scalar"], 2, init_mod.normal(), init_mod.normal(), key=key
    )
    key_w, bkey = jr.split(key, 2)
    wkeys = jr.split(key_w, 2)
    np.testing.assert_array_equal(
        layer.weights[0], init_mod.normal()(wkeys[0], (3, 2), jnp.float32)
    )
    np.testing.assert_array_equal(
        layer.weights[1], init_mod.normal()(wkeys[1], (1, 2), jnp.float32)
    )
    np.testing.assert_array_equal(
        layer.bias, init_mod.normal()(bkey, (2,), jnp.float32)
    )
    x1, x2 = data(3), 0.7
    expected = x1 @ layer.weights[0] + x2 * layer.weights[1][0] + layer.bias
    np.testing.assert_allclose(layer(x1, x2), expected, rtol=1e-6)
    # Same as a Linear on the concatenated input.
    stacked = jnp.concatenate(layer.weights)
    np.testing.assert_allclose(
        layer(x1, x2), jnp.append(x1, x2) @ stacked + layer.bias, rtol=1e-6
    )


def test_input_split_fan_ins():
    spies = [FanInSpy(), FanInSpy()]
    bias_spy = FanInSpy()
    klax.nn.InputSplitLinear((3, "scalar"), 2, spies, bias_spy, key=jr.key(0))
    assert spies[0].calls == [((3, 2), 3)]
    assert spies[1].calls == [((1, 2), 1)]
    assert bias_spy.calls == [((2,), 4)]  # the sum of all inputs


def test_input_split_fields_and_leaves():
    layer = klax.nn.InputSplitLinear([2, "scalar"], 3, init_mod.ones, key=jr.key(0))
    assert layer.in_features == (2, "scalar")
    assert isinstance(layer.in_features, tuple)
    assert isinstance(layer.weights, tuple)
    assert layer.out_features == 3
    assert layer.use_bias is True
    assert layer._num_inputs == 2
    # _num_inputs is a (non-static) leaf, after the weights and the bias.
    leaves = jax.tree.leaves(layer)
    assert len(leaves) == 4
    assert leaves[-1] == 2
    params = inspect.signature(klax.nn.InputSplitLinear.__init__).parameters
    assert list(params) == [
        "self",
        "in_features",
        "out_features",
        "weight_inits",
        "bias_init",
        "use_bias",
        "weight_wraps",
        "bias_wrap",
        "dtype",
        "key",
    ]


def test_input_split_per_input_inits_and_wraps():
    layer = klax.nn.InputSplitLinear(
        (2, 2),
        2,
        [init_mod.ones, init_mod.zeros],
        weight_wraps=[klax.NonNegative, None],
        bias_wrap=klax.NonNegative,
        key=jr.key(0),
    )
    assert isinstance(layer.weights[0], klax.NonNegative)
    assert isinstance(layer.weights[1], jax.Array)
    assert isinstance(layer.bias, klax.NonNegative)
    np.testing.assert_array_equal(layer.weights[1], jnp.zeros((2, 2)))
    single = klax.nn.InputSplitLinear(
        (2, 2), 2, init_mod.ones, weight_wraps=klax.NonNegative, key=jr.key(0)
    )
    assert all(isinstance(w, klax.NonNegative) for w in single.weights)
    out = klax.finalize(layer)(jnp.ones(2), jnp.ones(2))
    np.testing.assert_array_equal(out, jnp.full(2, 2.0))


def test_input_split_no_bias():
    layer = klax.nn.InputSplitLinear(
        (1, 1), 1, init_mod.ones, init_mod.ones, use_bias=False, key=jr.key(0)
    )
    assert layer.bias is None
    np.testing.assert_array_equal(layer(jnp.ones(1), jnp.ones(1)), jnp.full(1, 2.0))


def test_input_split_batch_jit_vmap_grad():
    layer = klax.nn.InputSplitLinear(
        (3, 2), "scalar", init_mod.he_normal(), key=jr.key(0)
    )
    a, b = data(5, 3), data(5, 2)
    with jax.numpy_rank_promotion("raise"):
        batched = layer(a, b)
    assert batched.shape == (5,)
    looped = jnp.stack([layer(x, y) for x, y in zip(a, b, strict=True)])
    np.testing.assert_allclose(batched, looped, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(layer)(a, b), looped, rtol=1e-6)
    np.testing.assert_allclose(eqx.filter_jit(layer)(a[0], b[0]), looped[0], rtol=1e-6)
    grads = eqx.filter_grad(lambda m: m(a[0], b[0]))(layer)
    np.testing.assert_allclose(grads.weights[0][:, 0], a[0], rtol=1e-6)
    np.testing.assert_allclose(grads.weights[1][:, 0], b[0], rtol=1e-6)


def test_input_split_x64(x64):
    layer = klax.nn.InputSplitLinear(("scalar", 2), 2, init_mod.ones, key=jr.key(0))
    assert layer.weights[0].dtype == jnp.float64
    assert layer(1.0, jnp.ones(2)).dtype == jnp.float64


# --- bad input


def test_input_split_wrong_length_weight_inits():
    message = (
        r"The length of the weight_inits is unequal to the length of in_features\. "
        r"Expected length 2 but is 3\."
    )
    with pytest.raises(ValueError, match=message):
        klax.nn.InputSplitLinear((2, 2), 2, [init_mod.ones] * 3, key=jr.key(0))


def test_input_split_wrong_length_weight_wraps():
    message = (
        r"The length of the weight_wraps is unequal to the length of in_features\. "
        r"Expected length 3 but is 1\."
    )
    with pytest.raises(ValueError, match=message):
        klax.nn.InputSplitLinear(
            (2, 2, 1), 2, init_mod.ones, weight_wraps=[None], key=jr.key(0)
        )


def test_input_split_bad_in_features():
    with pytest.raises(TypeError, match="list/tuple of input sizes.*got 3"):
        klax.nn.InputSplitLinear(3, 2, init_mod.ones, key=jr.key(0))  # pyright: ignore
    with pytest.raises(TypeError, match="list/tuple of input sizes.*'scalar'"):
        klax.nn.InputSplitLinear("scalar", 2, init_mod.ones, key=jr.key(0))  # pyright: ignore
    with pytest.raises(ValueError, match="at least one input"):
        klax.nn.InputSplitLinear((), 2, init_mod.ones, key=jr.key(0))
    with pytest.raises(ValueError, match=r"in_features\[1\] must be non-negative"):
        klax.nn.InputSplitLinear((2, -3), 2, init_mod.ones, key=jr.key(0))
    with pytest.raises(ValueError, match=r"in_features\[0\].*'vector'"):
        klax.nn.InputSplitLinear(("vector",), 2, init_mod.ones, key=jr.key(0))
    with pytest.raises(ValueError, match="out_features must be non-negative"):
        klax.nn.InputSplitLinear((2,), -2, init_mod.ones, key=jr.key(0))
    with pytest.raises(TypeError, match="weight_inits must be a single entry"):
        klax.nn.InputSplitLinear((2,), 2, 3, key=jr.key(0))  # pyright: ignore


def test_input_split_wrong_number_of_inputs():
    layer = klax.nn.InputSplitLinear((2, 2), 2, init_mod.ones, key=jr.key(0))
    message = (
        r"Number of call arguments \(1\) does not match the number of inputs \(2\)"
    )
    with pytest.raises(ValueError, match=message):
        layer(jnp.ones(2))
    with pytest.raises(ValueError, match=r"arguments \(3\)"):
        layer(jnp.ones(2), jnp.ones(2), jnp.ones(2))


def test_input_split_non_scalar_input_to_scalar_input():
    layer = klax.nn.InputSplitLinear((2, "scalar"), 2, init_mod.ones, key=jr.key(0))
    with pytest.raises(ValueError, match=r"Input 1 must have scalar shape.*\(2,\)"):
        layer(jnp.ones(2), jnp.ones(2))
    with pytest.raises(ValueError, match=r"Input 0 must have shape \(\.\.\., 2\)"):
        layer(jnp.ones(3), 1.0)
