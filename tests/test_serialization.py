"""Tests of the text serialisation filter specs (API §13)."""

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given

import klax


def fn(x):
    return x


class Opaque:
    """An arbitrary object: written as nothing, returned unchanged."""


OBJ = Opaque()


def save(path, tree):
    eqx.tree_serialise_leaves(path, tree, filter_spec=klax.text_serialize_filter_spec)


def load(path, like):
    return eqx.tree_deserialise_leaves(
        path, like, filter_spec=klax.text_deserialize_filter_spec
    )


def assert_same_tree(a, b):
    """Same structure, same leaf types, dtypes, shapes and values."""
    leaves_a, def_a = jax.tree.flatten(a)
    leaves_b, def_b = jax.tree.flatten(b)
    assert def_a == def_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert type(x) is type(y), (x, y)
        if isinstance(x, (jax.Array, np.ndarray)):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            assert x == y or x is y, (x, y)
    assert bool(eqx.tree_equal(a, b))


def test_spec_round_trip(tmp_path):
    tree = (
        jnp.array(1),
        jnp.array([1.0, 2.0]),
        fn,
        np.array(1),
        np.array([1.0, 2.0]),
        (True, 1, 1.0, 1 + 1j),
        OBJ,
    )
    like = (
        jnp.array(5),
        jnp.array([5.0, 6.0]),
        fn,
        np.array(5),
        np.array([5.0, 6.0]),
        (False, 6, 6.0, 6 + 6j),
        OBJ,
    )
    path = tmp_path / "tree.txt"
    save(path, tree)
    assert_same_tree(load(path, like), tree)


def test_written_lines(tmp_path):
    tree = (
        True,
        1,
        1.0,
        1 + 1j,
        np.float32(2.5),
        jnp.array([1.0, 2.0]),
        jnp.array([[1, 2], [3, 4]], jnp.int32),
        np.array([True, False]),
        jnp.array([1.5 + 2j], jnp.complex64),
        jnp.zeros((0, 3)),
        jnp.array(3.0),
        fn,
        "a string",
        OBJ,
    )
    path = tmp_path / "leaves.txt"
    save(path, tree)
    lines = path.read_bytes().decode("utf-8").split("\n")
    assert lines == [
        "True",
        "1",
        "1.0",
        "(1+1j)",
        "2.5",
        "1.000000000000000000e+00 2.000000000000000000e+00",
        "1 2 3 4",
        "1 0",
        "(1.5+2j)",
        "",
        "3.000000000000000000e+00",
        "",  # after the final newline
    ]


def test_false_round_trips(tmp_path):
    path = tmp_path / "bool.txt"
    for value in (False, True, np.bool_(False), np.bool_(True)):
        save(path, (value,))
        out = load(path, (type(value)(not value),))
        assert out[0] == value
        assert type(out[0]) is type(value)


@pytest.mark.parametrize(
    "array",
    [
        jnp.array([[1, -2], [3, 2**31 - 1]], jnp.int32),
        jnp.array([True, False, True]),
        jnp.array([1.5 + 2j, -0.1 - 3j], jnp.complex64),
        jnp.array(-7, jnp.int32),  # 0-d
        jnp.array(0.1, jnp.float32),  # 0-d
        jnp.zeros((2, 0), jnp.float32),  # zero-size
        jnp.zeros((0,), jnp.int32),
        jnp.array([0.1, 1e-30, -3e30, np.inf, -np.inf], jnp.float32),
        jnp.array([1.0, 2.0], jnp.float16),
        jnp.array([1.0, 2.0], jnp.bfloat16),
        np.array([2**62, -1], np.int64),
        np.array([0.1 + 0.2j], np.complex128),
        np.array([[True], [False]]),
        np.array(2.5, np.float64),
    ],
    ids=lambda a: f"{type(a).__name__}-{a.dtype}-{a.shape}",
)
def test_array_round_trip_exact(tmp_path, array):
    path = tmp_path / "array.txt"
    save(path, (array, 3))
    like = (
        jnp.zeros_like(array) if isinstance(array, jax.Array) else np.zeros_like(array)
    )
    out = load(path, (like, 0))
    assert_same_tree(out, (array, 3))


def test_nan_round_trips(tmp_path):
    path = tmp_path / "nan.txt"
    save(path, (jnp.array([np.nan, 1.0]),))
    out = load(path, (jnp.zeros(2),))
    assert np.isnan(out[0][0]) and out[0][1] == 1.0


def test_float64_round_trip_exact(tmp_path, x64):
    values = jnp.array([0.1, 1 / 3, np.pi, 1e-300], jnp.float64)
    path = tmp_path / "f64.txt"
    save(path, (values,))
    out = load(path, (jnp.zeros(4),))
    assert out[0].dtype == jnp.float64
    np.testing.assert_array_equal(out[0], values)


def test_numpy_scalar_leaves(tmp_path):
    tree = (np.float32(0.1), np.int64(-3), np.complex64(1 + 2j), np.float16(2.5))
    path = tmp_path / "np.txt"
    save(path, tree)
    out = load(path, (np.float32(0), np.int64(0), np.complex64(0), np.float16(0)))
    assert_same_tree(out, tree)


def test_shape_dtype_struct_like(tmp_path):
    path = tmp_path / "struct.txt"
    save(path, (jnp.array([[1, 2, 3]], jnp.int32),))
    like = (jax.ShapeDtypeStruct((1, 3), jnp.int32),)
    out = load(path, like)
    assert isinstance(out[0], jax.Array)
    assert out[0].dtype == jnp.int32
    np.testing.assert_array_equal(out[0], [[1, 2, 3]])


def test_reads_integers_written_as_floats(tmp_path):
    """klax 0.2.0 wrote integer arrays in `%.18e`; those files still load."""
    path = tmp_path / "old.txt"
    path.write_bytes(
        b"1.000000000000000000e+00 -2.000000000000000000e+00\n"
        b"1.000000000000000000e+00 0.000000000000000000e+00\n"
    )
    out = load(path, (jnp.zeros(2, jnp.int32), np.zeros(2, bool)))
    np.testing.assert_array_equal(out[0], [1, -2])
    assert out[0].dtype == jnp.int32
    np.testing.assert_array_equal(out[1], [True, False])


def test_wrong_number_of_values(tmp_path):
    path = tmp_path / "bad.txt"
    save(path, (jnp.ones(3),))
    # Equinox re-raises the filter spec's error with the leaf's path attached.
    with pytest.raises(RuntimeError, match="SequenceKey") as info:
        load(path, (jnp.zeros(4),))
    cause = info.value
    while cause.__cause__ is not None:
        cause = cause.__cause__
    assert isinstance(cause, ValueError)
    assert "Expected 4 values for an array of shape (4,)" in str(cause)
    assert "the line holds 3" in str(cause)
    with pytest.raises(ValueError, match=r"Expected 4 values.*shape \(4,\).*holds 3"):
        with open(path, "rb") as f:
            klax.text_deserialize_filter_spec(f, jnp.zeros(4))


def test_model_round_trip(tmp_path):
    """A layer with constraints, static fields and the InputSplitLinear int leaf."""
    model = (
        klax.nn.Linear(
            3,
            2,
            jax.nn.initializers.normal(),
            weight_wrap=klax.NonNegative,
            key=jr.key(0),
        ),
        klax.nn.InputSplitLinear(
            (2, "scalar"), "scalar", jax.nn.initializers.normal(), key=jr.key(1)
        ),
    )
    path = tmp_path / "model.txt"
    save(path, model)
    text = path.read_text()
    assert len(text.splitlines()) == 2 + 4  # one line per leaf
    assert text.splitlines()[-1] == "2"  # _num_inputs
    like = jax.tree.map(jnp.zeros_like, model)
    like = eqx.tree_at(lambda m: m[1]._num_inputs, like, 0)
    assert_same_tree(load(path, like), model)


def test_round_trip_under_x64_model(tmp_path, x64):
    model = klax.nn.Linear(2, 2, jax.nn.initializers.normal(), key=jr.key(0))
    assert model.weight.dtype == jnp.float64
    path = tmp_path / "model64.txt"
    save(path, model)
    out = load(path, jax.tree.map(jnp.zeros_like, model))
    assert_same_tree(out, model)


@given(
    values=st.lists(st.floats(allow_nan=False, width=32), min_size=0, max_size=6),
    ints=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=0, max_size=6),
    flag=st.booleans(),
    number=st.floats(allow_nan=False),
)
def test_property_round_trip(tmp_path_factory, values, ints, flag, number):
    tree = (
        np.array(values, np.float32),
        np.array(ints, np.int64),
        flag,
        number,
        np.array(values, np.float32) + 1j * np.float32(0.5),
    )
    path = tmp_path_factory.mktemp("prop") / "p.txt"
    save(path, tree)
    like = (
        np.zeros(len(values), np.float32),
        np.zeros(len(ints), np.int64),
        not flag,
        0.0,
        np.zeros(len(values), np.complex64),
    )
    assert_same_tree(load(path, like), tree)


def test_load_leaves_round_trip_text_and_binary(tmp_path):
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "n": 3, "f": fn}
    like = {"w": jnp.zeros((2, 3)), "n": 0, "f": fn}
    save(tmp_path / "p.txt", tree)
    assert_same_tree(klax.load_leaves(tmp_path / "p.txt", like), tree)
    eqx.tree_serialise_leaves(tmp_path / "p", tree)  # binary, as p.eqx
    out = klax.load_leaves(
        str(tmp_path / "p"), like, filter_spec=eqx.default_deserialise_filter_spec
    )
    assert_same_tree(out, tree)


def test_load_leaves_names_the_leaf_and_both_shapes(tmp_path):
    model = klax.nn.Linear(2, 3, jr.normal, key=jr.key(0))
    bigger = klax.nn.Linear(3, 3, jr.normal, key=jr.key(0))
    save(tmp_path / "p.txt", model)
    with pytest.raises(ValueError, match=r"\.weight.*shape \(3, 3\), but got 6 values"):
        klax.load_leaves(tmp_path / "p.txt", bigger)
    # The binary format knows the shape: same size, another shape.
    eqx.tree_serialise_leaves(tmp_path / "p.eqx", {"w": jnp.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"\['w'\].*shape \(3, 2\).*shape \(2, 3\)"):
        klax.load_leaves(
            tmp_path / "p.eqx",
            {"w": jnp.zeros((3, 2))},
            filter_spec=eqx.default_deserialise_filter_spec,
        )


def test_load_leaves_rejects_other_structures(tmp_path):
    save(tmp_path / "p.txt", (jnp.ones(2), jnp.ones(3)))
    with pytest.raises(ValueError, match=r"more leaves than `like` \(1\)"):
        klax.load_leaves(tmp_path / "p.txt", (jnp.zeros(2),))
    with pytest.raises(ValueError, match=r"\[2\] of `like`.*shape \(4,\), but got 0"):
        klax.load_leaves(tmp_path / "p.txt", (jnp.zeros(2), jnp.zeros(3), jnp.zeros(4)))
