"""Tests of klax.nn.MLP."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, strategies as st

import klax
from klax.nn import MLP, Linear

IN, OUT, WIDTHS = 3, 2, [4, 5]

run = eqx.filter_jit(lambda model, *args: model(*args))


class Scaled(eqx.Module):
    """A learnable activation: scale * softplus(x)."""

    scale: jax.Array

    def __call__(self, x):
        return self.scale * jax.nn.softplus(x)


def abstract(cls, *args, **kwargs):
    """Build a module with shape-only leaves: structure checks without computing."""
    return eqx.filter_eval_shape(cls, *args, **kwargs)


def test_layout_and_key_use(getkey):
    key = getkey()
    mlp = MLP(IN, OUT, WIDTHS, use_bias=False, key=key)
    assert [layer.in_features for layer in mlp.layers] == [IN, 4, 5]
    assert [layer.out_features for layer in mlp.layers] == [4, 5, OUT]
    assert [layer.use_bias for layer in mlp.layers] == [False, False, True]
    assert mlp.width_sizes == (4, 5)
    assert mlp.in_size == IN and mlp.out_size == OUT
    assert mlp.use_bias is False and mlp.use_final_bias is True
    assert len(mlp.activations) == 2
    keys = jr.split(key, 3)
    he = jax.nn.initializers.he_normal()
    for k, (i, o, use_bias) in enumerate(
        [(IN, 4, False), (4, 5, False), (5, OUT, True)]
    ):
        expected = Linear(i, o, he, jax.nn.initializers.zeros, use_bias, key=keys[k])
        assert eqx.tree_equal(mlp.layers[k], expected)


def test_width_sizes_forms():
    mlp = MLP(IN, OUT, (np.int64(4), 5), key=jr.key(0))
    assert mlp.width_sizes == (4, 5)
    assert all(type(w) is int for w in mlp.width_sizes)
    single = abstract(MLP, IN, OUT, [], use_final_bias=False, key=jr.key(0))
    assert len(single.layers) == 1 and single.activations == ()
    assert single.layers[0].bias is None
    assert single.layers[0].weight.shape == (IN, OUT)


def test_forward_matches_manual(getkey):
    mlp = MLP(IN, OUT, WIDTHS, final_activation=jnp.tanh, key=getkey())
    x = jr.normal(getkey(), (IN,))
    h = x
    for layer in mlp.layers[:-1]:
        h = jax.nn.softplus(h @ layer.weight + layer.bias)
    last = mlp.layers[-1]
    expected = jnp.tanh(h @ last.weight + last.bias)
    np.testing.assert_allclose(run(mlp, x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mlp(x), expected, rtol=1e-5, atol=1e-6)  # eager


def test_plain_activation_sees_one_neuron_at_a_time(getkey):
    shapes = []

    def recording(x):
        shapes.append(jnp.shape(x))
        return jax.nn.softplus(x)

    mlp = MLP(
        IN, OUT, WIDTHS, activation=recording, final_activation=recording, key=getkey()
    )
    mlp(jnp.ones(IN))
    assert shapes and set(shapes) == {()}


def test_learnable_activation_one_copy_per_neuron(getkey):
    act = Scaled(jnp.array(1.0))
    mlp = MLP(IN, OUT, WIDTHS, activation=act, final_activation=act, key=getkey())
    assert [a.scale.shape for a in mlp.activations] == [(4,), (5,)]
    assert mlp.final_activation.scale.shape == (OUT,)

    # Give every copy its own value; neuron j must use copy j.
    hidden = jnp.arange(1.0, 5.0)
    mlp = eqx.tree_at(lambda m: m.activations[0].scale, mlp, hidden)
    x = jr.normal(getkey(), (IN,))
    h = hidden * jax.nn.softplus(mlp.layers[0](x))
    h = jax.nn.softplus(mlp.layers[1](h))
    expected = jax.nn.softplus(mlp.layers[2](h))
    np.testing.assert_allclose(run(mlp, x), expected, rtol=1e-5)

    # Output k depends only on copy k of the final activation ...
    jac = eqx.filter_jit(eqx.filter_jacfwd(lambda m: m(x)))(mlp)
    final_jac = jac.final_activation.scale  # (OUT, OUT): d out_k / d scale_j
    np.testing.assert_array_equal(final_jac - jnp.diag(jnp.diag(final_jac)), 0.0)
    assert jnp.all(jnp.diag(final_jac) != 0)
    # ... and gradients reach every hidden copy.
    grads = eqx.filter_jit(eqx.filter_grad(lambda m: m(x).sum()))(mlp)
    for g in grads.activations:
        assert jnp.all(g.scale != 0)


def test_learnable_activation_scalar_sizes(getkey):
    act = Scaled(jnp.array(2.0))
    mlp = MLP(
        "scalar", "scalar", [4], activation=act, final_activation=act, key=getkey()
    )
    assert mlp.activations[0].scale.shape == (4,)
    assert mlp.final_activation.scale.shape == ()  # "scalar": not replicated
    grads = eqx.filter_jit(eqx.filter_grad(lambda m: m(0.5)))(mlp)
    assert grads.final_activation.scale.shape == ()
    assert grads.final_activation.scale != 0


def test_scalar_sizes(getkey):
    mlp = MLP("scalar", "scalar", [4], key=getkey())
    assert mlp.layers[0].weight.shape == (1, 4)
    assert run(mlp, 0.5).shape == ()
    assert run(mlp, 0.5) == run(mlp, jnp.array(0.5))
    out = jax.eval_shape(
        lambda k: MLP(IN, "scalar", [4], key=k)(jnp.ones(IN)), getkey()
    )
    assert out.shape == ()


def test_zero_sizes():
    # he_normal cannot scale by fan_in 0; a plain normal init can.
    mlp = MLP(0, OUT, [0, 4], jax.nn.initializers.normal(), key=jr.key(0))
    assert mlp(jnp.ones(0)).shape == (OUT,)
    np.testing.assert_allclose(
        mlp(jnp.ones(0)), jax.nn.softplus(mlp.layers[1].bias) @ mlp.layers[2].weight
    )


def test_wrappers(getkey):
    mlp = MLP(
        IN, OUT, WIDTHS, weight_wrap=klax.NonNegative, bias_wrap=klax.NonNegative,
        bias_init=jax.nn.initializers.constant(-1.0), key=getkey(),
    )  # fmt: skip
    assert all(isinstance(layer.weight, klax.NonNegative) for layer in mlp.layers)
    assert all(isinstance(layer.bias, klax.NonNegative) for layer in mlp.layers)
    with pytest.raises(klax.ContainsUnwrappablesError, match="klax.finalize"):
        mlp(jnp.ones(IN))
    final = klax.finalize(mlp)
    for layer in final.layers:
        assert jnp.all(layer.weight >= 0)
        np.testing.assert_array_equal(layer.bias, 0.0)


@given(seed=st.integers(0, 2**32 - 1))
def test_vmap_equals_loop(seed):
    kmodel, kx = jr.split(jr.key(seed))
    mlp = MLP(IN, OUT, WIDTHS, key=kmodel)
    x = jr.normal(kx, (3, IN))
    batched, looped = _batched_and_looped(mlp, x)
    np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6)


@eqx.filter_jit
def _batched_and_looped(model, x):
    return jax.vmap(model)(x), jnp.stack([model(x[i]) for i in range(x.shape[0])])


@eqx.filter_jit
def _value_and_grads(model, x):
    def loss(m, x):
        return jnp.sum(m(x) ** 2)

    return loss(model, x), eqx.filter_grad(loss)(model, x), jax.grad(loss, 1)(model, x)


@pytest.mark.parametrize("use_x64", [False, True], ids=["float32", "float64"])
def test_jit_vmap_grad(getkey, use_x64):
    with jax.enable_x64(use_x64):
        dtype = jnp.float64 if use_x64 else jnp.float32
        act = Scaled(jnp.array(1.0))
        mlp = MLP("scalar", "scalar", [4], activation=act, key=getkey())
        params = jax.tree.leaves(eqx.filter(mlp, eqx.is_inexact_array))
        assert all(leaf.dtype == dtype for leaf in params)
        x = jr.normal(getkey(), (3,), dtype)
        batched, looped = _batched_and_looped(mlp, x)
        assert batched.shape == (3,) and batched.dtype == dtype
        np.testing.assert_allclose(batched, looped, rtol=1e-6)
        value, grads, grad_x = _value_and_grads(mlp, x[0])
        leaves = jax.tree.leaves(grads)
        assert all(leaf.dtype == dtype for leaf in leaves)
        assert all(bool(jnp.all(leaf != 0)) for leaf in leaves)
        if use_x64:
            eps = 1e-6  # central differences: error O(eps**2) + round-off 1e-16 / eps
            f = lambda x: _value_and_grads(mlp, x)[0]
            fd = (f(x[0] + eps) - f(x[0] - eps)) / (2 * eps)
            np.testing.assert_allclose(grad_x, fd, rtol=1e-7)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float32])
def test_dtype(dtype):
    def out(key, x):
        return MLP(IN, OUT, WIDTHS, dtype=dtype, key=key)(x)

    assert jax.eval_shape(out, jr.key(0), jnp.ones(IN, dtype)).dtype == dtype


def test_legacy_key():
    mlp = abstract(MLP, IN, OUT, WIDTHS, key=jr.fold_in(jr.PRNGKey(0), 1))
    assert mlp.layers[0].weight.shape == (IN, 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(in_size="sclar"), ValueError, r"MLP\(in_size=...\).*'sclar'"),
        (dict(out_size=-2), ValueError, r"MLP\(out_size=...\)"),
        (dict(out_size=2.0), ValueError, r"MLP\(out_size=...\)"),
        (dict(width_sizes=4), TypeError, r"MLP\(width_sizes=...\)"),
        (dict(width_sizes="44"), TypeError, r"MLP\(width_sizes=...\)"),
        (dict(width_sizes=[4, -1]), ValueError, r"width_sizes\[1\]"),
        (dict(width_sizes=["scalar"]), ValueError, r"width_sizes\[0\]"),
        (dict(activation=None), TypeError, r"MLP\(activation=...\)"),
        (dict(final_activation="relu"), TypeError, r"final_activation"),
    ],
)
def test_bad_construction(kwargs, error, match):
    args = dict(in_size=IN, out_size=OUT, width_sizes=WIDTHS) | kwargs
    with pytest.raises(error, match=match):
        MLP(**args, key=jr.key(0))


def test_bad_call_inputs():
    mlp = abstract(MLP, IN, OUT, WIDTHS, key=jr.key(0))
    with pytest.raises(ValueError, match=r"x of shape \(3,\).*got x of shape \(2,\)"):
        mlp(jnp.ones(2))
    with pytest.raises(ValueError, match=r"got x of shape \(\)"):
        mlp(1.0)
    scalar = abstract(MLP, "scalar", OUT, WIDTHS, key=jr.key(0))
    with pytest.raises(ValueError, match="'scalar'"):
        scalar(jnp.ones(1))
