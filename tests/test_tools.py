"""Tests of `klax.count_parameters` (API §14)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import paramax
import pytest
from jaxtyping import Array

import klax


class Small(eqx.Module):
    n: int
    a: Array
    b: Array
    frozen: klax.NonTrainable


def check(tree, expected):
    count = klax.count_parameters(tree)
    assert type(count) is int
    assert count == expected


def test_spec_examples():
    check((jnp.ones((3, 3)), jnp.zeros((2, 3))), 15)
    check((np.ones((3, 3)), np.zeros((2, 3))), 15)
    small = Small(
        4, jnp.ones((3, 3)), jnp.ones((3, 3)), klax.NonTrainable(jnp.ones((2, 2)))
    )
    check(small, 18)


@pytest.mark.parametrize("tree", [(), None, {}, (1, 2.0, "text"), jnp.arange(3)])
def test_no_parameters_gives_zero(tree):
    check(tree, 0)


def test_what_counts():
    tree = {
        "float16": jnp.ones(2, jnp.float16),
        "complex": jnp.ones(3, jnp.complex64),
        "ints": jnp.arange(4),
        "bools": np.ones(5, bool),
        "scalar": 1.5,
        # A NumPy floating scalar is an inexact array to Equinox (and to the
        # training step, which partitions with eqx.is_inexact_array): it counts.
        "numpy_scalar": np.float32(1.5),
        "zero_d": jnp.array(1.0),
        "constrained": klax.NonNegative(jnp.ones(6)),
        "parameterized": klax.Parameterize(jnp.exp, jnp.ones(7)),
        "frozen": klax.NonTrainable(klax.NonNegative(jnp.ones(8))),
        "paramax_frozen": paramax.NonTrainable(jnp.ones(9)),
    }
    check(tree, 2 + 3 + 1 + 1 + 6 + 7)


def test_layers():
    init = jax.nn.initializers.ones
    check(klax.nn.Linear(3, 2, init, key=jr.key(0)), 3 * 2 + 2)
    check(klax.nn.Linear(3, "scalar", init, use_bias=False, key=jr.key(0)), 3)
    split = klax.nn.InputSplitLinear((2, "scalar"), 3, init, key=jr.key(0))
    check(split, 2 * 3 + 1 * 3 + 3)  # the int leaf _num_inputs does not count
    check(klax.non_trainable(split), 0)
    wrapped = klax.nn.Linear(3, 2, init, weight_wrap=klax.NonNegative, key=jr.key(0))
    check(wrapped, 8)
    check(klax.finalize(wrapped), 8)


def test_x64_and_ensembles(x64):
    layer = klax.nn.Linear(2, 2, jax.nn.initializers.ones, key=jr.key(0))
    assert layer.weight.dtype == jnp.float64
    check(layer, 6)
    keys = jr.split(jr.key(0), 3)
    ensemble = eqx.filter_vmap(
        lambda k: klax.nn.Linear(2, 2, jax.nn.initializers.ones, key=k)
    )(keys)
    check(ensemble, 18)
