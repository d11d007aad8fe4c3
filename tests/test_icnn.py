"""Tests of klax.nn.FICNNLayer, FICNN, PICNNLayer and PICNN.

Shapes are kept identical within this file wherever possible, so that the
jitted property checks compile once and are reused across hypothesis examples.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, strategies as st

import klax
from klax.nn import FICNN, PICNN, FICNNLayer, InputSplitLinear, Linear, PICNNLayer

seeds = st.integers(min_value=0, max_value=2**32 - 1)
scales = st.sampled_from([0.1, 1.0, 5.0])

X, P, OUT, WIDTHS = 3, 2, 2, [4, 4]
N_POINTS = 16


class Shifted(eqx.Module):
    """A learnable, convex, non-decreasing activation: softplus(x) + bias."""

    bias: jax.Array

    def __call__(self, x):
        return jax.nn.softplus(x) + self.bias


def abstract(cls, *args, **kwargs):
    """Build a module with shape-only leaves: structure checks without computing."""
    return eqx.filter_eval_shape(cls, *args, **kwargs)


def constant(value):
    return jax.nn.initializers.constant(value)


def perturb(model, key, scale):
    """Add Gaussian noise to every inexact array (a stand-in for a training update)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jr.split(key, len(leaves))
    noisy = [
        leaf + scale * jr.normal(k, leaf.shape, leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, noisy), static)


def nonnegative_parameters(model):
    return [
        c.parameter
        for c in jax.tree.leaves(
            model, is_leaf=lambda x: isinstance(x, klax.NonNegative)
        )
        if isinstance(c, klax.NonNegative)
    ]


# --- property checks (jitted once per model structure) ---------------------------


@eqx.filter_jit
def convexity_defects(fn, xa, xb, t, *args):
    """Midpoint-inequality violation and most negative Hessian eigenvalue.

    `fn(x, *args)` is evaluated for pairs of points `xa, xb` (shape `(n, X)`);
    both returned values are relative to the function's scale, so a convex
    function gives values <= round-off.
    """
    f = jax.vmap(lambda x: jnp.atleast_1d(fn(x, *args)))
    fa, fb = f(xa), f(xb)
    tt = t[:, None]
    fm = f(tt * xa + (1 - tt) * xb)
    scale = 1 + jnp.abs(fa) + jnp.abs(fb)
    gap = jnp.max((fm - (tt * fa + (1 - tt) * fb)) / scale)
    hess = jax.vmap(jax.hessian(lambda x: jnp.atleast_1d(fn(x, *args))))(xa)
    eigs = jnp.linalg.eigvalsh(hess)
    min_eig = jnp.min(eigs / (1 + jnp.max(jnp.abs(eigs))))
    return gap, min_eig


@eqx.filter_jit
def min_partial_derivative(fn, x, *args):
    jac = jax.vmap(jax.jacfwd(lambda x: jnp.atleast_1d(fn(x, *args))))(x)
    return jnp.min(jac / (1 + jnp.max(jnp.abs(jac))))


def assert_convex(fn, key, scale, *args):
    ka, kb, kt = jr.split(key, 3)
    xa = scale * jr.normal(ka, (N_POINTS, X))
    xb = scale * jr.normal(kb, (N_POINTS, X))
    t = jr.uniform(kt, (N_POINTS,))
    gap, min_eig = convexity_defects(fn, xa, xb, t, *args)
    assert gap <= 1e-5  # float32 round-off, relative to |f|
    assert min_eig >= -1e-5  # float32 round-off, relative to the largest eigenvalue


def assert_non_decreasing(fn, key, scale, *args):
    x = scale * jr.normal(key, (N_POINTS, X))
    assert min_partial_derivative(fn, x, *args) >= -1e-6


def call_ficnn(x, model):
    return model(x)


def call_picnn(x, model, p):
    return model(x, p)


# --- FICNN: structure -------------------------------------------------------------


@pytest.mark.parametrize("non_decreasing", [False, True])
@pytest.mark.parametrize("use_passthrough", [False, True])
def test_ficnn_layout(getkey, non_decreasing, use_passthrough):
    model = abstract(
        FICNN,
        X,
        OUT,
        [4, 5],
        use_passthrough=use_passthrough,
        non_decreasing=non_decreasing,
        use_bias=False,
        key=getkey(),
    )
    assert len(model.layers) == 3
    assert model.width_sizes == (4, 5)
    assert model.use_passthrough is use_passthrough
    assert model.non_decreasing is non_decreasing
    first, *rest = model.layers
    assert first.use_passthrough is False
    assert isinstance(first.linear_y, Linear)
    assert isinstance(first.linear_y.weight, klax.NonNegative) is non_decreasing
    assert first.nonnegative_y_weight is non_decreasing
    for layer, (i, o) in zip(rest, [(4, 5), (5, OUT)], strict=True):
        assert layer.use_passthrough is use_passthrough
        assert layer.nonnegative_y_weight is True
        linear = layer.linear_y
        if use_passthrough:
            assert isinstance(linear, InputSplitLinear)
            assert linear.in_features == (i, X)
            y_weight, pass_weight = linear.weights
            assert isinstance(pass_weight, klax.NonNegative) is non_decreasing
        else:
            assert isinstance(linear, Linear)
            assert linear.in_features == i
            y_weight = linear.weight
        assert isinstance(y_weight, klax.NonNegative)
        assert linear.out_features == o
    for layer in model.layers:
        assert layer.nonnegative_passthrough is non_decreasing
    assert [layer.use_bias for layer in model.layers] == [False, False, True]
    # Biases are never wrapped.
    assert all(
        not isinstance(layer.linear_y.bias, klax.Unwrappable) for layer in model.layers
    )


def test_ficnn_key_use_and_initializers(getkey):
    key = getkey()
    model = FICNN(
        X,
        "scalar",
        [4],
        weight_init=constant(3.0),
        bias_init=constant(7.0),
        constrained_weight_init=constant(2.0),
        constrained_bias_init=constant(5.0),
        key=key,
    )
    first, last = model.layers
    np.testing.assert_array_equal(first.linear_y.weight, jnp.full((X, 4), 3.0))
    np.testing.assert_array_equal(first.linear_y.bias, jnp.full((4,), 7.0))
    y_weight, pass_weight = last.linear_y.weights
    np.testing.assert_array_equal(y_weight.parameter, jnp.full((4, 1), 2.0))
    np.testing.assert_array_equal(pass_weight, jnp.full((X, 1), 3.0))
    np.testing.assert_array_equal(last.linear_y.bias, jnp.full((1,), 5.0))

    # Random inits: layer k is built from jr.split(key, L + 1)[k], passed unsplit.
    model = FICNN(X, "scalar", [4], key=key)
    keys = jr.split(key, 2)
    expected = Linear(X, 4, jax.nn.initializers.he_normal(), key=keys[0])
    np.testing.assert_array_equal(model.layers[0].linear_y.weight, expected.weight)
    expected = InputSplitLinear(
        (4, X),
        "scalar",
        (klax.hoedt_normal(), jax.nn.initializers.he_normal()),
        klax.hoedt_bias(),
        key=keys[1],
    )
    for got, want in zip(
        klax.unwrap(model.layers[1].linear_y.weights), expected.weights, strict=True
    ):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(model.layers[1].linear_y.bias, expected.bias)

    # `None` constrained initializers fall back to the plain ones.
    model = FICNN(
        X,
        "scalar",
        [4],
        weight_init=constant(3.0),
        bias_init=constant(7.0),
        constrained_weight_init=None,
        constrained_bias_init=None,
        key=key,
    )
    np.testing.assert_array_equal(model.layers[1].linear_y.weights[0].parameter, 3.0)
    np.testing.assert_array_equal(model.layers[1].linear_y.bias, 7.0)


def test_ficnn_layer_bias_initializer_routing(getkey):
    kwargs = dict(
        weight_init=constant(3.0),
        bias_init=constant(7.0),
        constrained_weight_init=constant(2.0),
        constrained_bias_init=constant(5.0),
        key=getkey(),
    )
    # A passthrough layer with no constrained weight gets the plain bias init.
    layer = FICNNLayer(2, 3, 4, nonnegative_y_weight=False, **kwargs)
    np.testing.assert_array_equal(layer.linear_y.bias, 7.0)
    assert not klax.contains_unwrappables(layer)
    # A constrained passthrough alone selects the constrained bias init.
    layer = FICNNLayer(
        2, 3, 4, nonnegative_y_weight=False, nonnegative_passthrough=True, **kwargs
    )
    np.testing.assert_array_equal(layer.linear_y.bias, 5.0)
    np.testing.assert_array_equal(layer.linear_y.weights[1].parameter, 2.0)
    np.testing.assert_array_equal(layer.linear_y.weights[0], 3.0)


def test_ficnn_layer_call(getkey):
    key = getkey()
    layer = FICNNLayer(3, 2, 4, key=key)
    assert layer.use_passthrough is True and layer.nonnegative_passthrough is False
    final = klax.finalize(layer)
    y, x = jnp.arange(3.0), jnp.array([1.0, -1.0])
    y_new, x_out = final(y, x)
    u, w = final.linear_y.weights
    expected = jax.nn.softplus(y @ u + x @ w + final.linear_y.bias)
    np.testing.assert_allclose(y_new, expected, rtol=1e-6)
    assert x_out is x or np.array_equal(x_out, x)
    # Equivalent InputSplitLinear built with the same (unsplit) key.
    linear = InputSplitLinear(
        (3, 2),
        4,
        (klax.hoedt_normal(), jax.nn.initializers.he_normal()),
        klax.hoedt_bias(),
        weight_wraps=(klax.NonNegative, None),
        key=key,
    )
    assert eqx.tree_equal(linear, layer.linear_y)


def test_ficnn_flags_stored_as_passed(getkey):
    model = abstract(
        FICNN, X, OUT, [], use_passthrough=False, use_final_bias=False, key=getkey()
    )
    assert model.use_passthrough is False
    assert model.use_final_bias is False
    assert model.width_sizes == ()
    assert len(model.layers) == 1
    assert model.layers[0].linear_y.weight.shape == (X, OUT)


# --- FICNN: properties --------------------------------------------------------------


@given(seed=seeds, scale=scales)
def test_ficnn_is_convex(seed, scale):
    kmodel, kdata = jr.split(jr.key(seed))
    model = klax.finalize(FICNN(X, OUT, WIDTHS, key=kmodel))
    assert_convex(call_ficnn, kdata, scale, model)


@given(seed=seeds, scale=scales)
def test_ficnn_non_decreasing(seed, scale):
    kmodel, kdata = jr.split(jr.key(seed))
    model = klax.finalize(FICNN(X, OUT, WIDTHS, non_decreasing=True, key=kmodel))
    assert_convex(call_ficnn, kdata, scale, model)
    assert_non_decreasing(call_ficnn, kdata, scale, model)


@given(seed=seeds, noise=st.sampled_from([0.3, 1.0, 3.0]))
def test_ficnn_properties_survive_perturbation(seed, noise):
    kmodel, kperturb, kdata = jr.split(jr.key(seed), 3)
    model = FICNN(X, OUT, WIDTHS, non_decreasing=True, key=kmodel)
    perturbed = klax.apply(perturb(model, kperturb, noise))
    assert all(bool((p >= 0).all()) for p in nonnegative_parameters(perturbed))
    final = klax.unwrap(perturbed)
    assert_convex(call_ficnn, kdata, 1.0, final)
    assert_non_decreasing(call_ficnn, kdata, 1.0, final)


def test_convexity_check_detects_violations(getkey):
    """Without clamping, negative y-path weights make the FICNN non-convex."""
    model = FICNN(X, "scalar", WIDTHS, key=getkey())
    negated = jax.tree.map(
        lambda c: (
            klax.NonNegative(-jnp.abs(c.parameter) - 0.5)
            if isinstance(c, klax.NonNegative)
            else c
        ),
        model,
        is_leaf=lambda c: isinstance(c, klax.NonNegative),
    )
    kdata = getkey()
    xa = 3 * jr.normal(kdata, (N_POINTS, X))
    xb = -xa
    t = jnp.full((N_POINTS,), 0.5)
    gap, min_eig = convexity_defects(call_ficnn, xa, xb, t, klax.unwrap(negated))
    assert gap > 1e-3 and min_eig < -1e-3
    gap, min_eig = convexity_defects(call_ficnn, xa, xb, t, klax.finalize(negated))
    assert gap <= 1e-5 and min_eig >= -1e-5


def test_ficnn_learnable_activation_per_neuron(getkey):
    act = Shifted(jnp.array(0.0))
    model = FICNN(
        X, "scalar", [4, 5], activation=act, final_activation=act, key=getkey()
    )
    shapes = [layer.activation_y.bias.shape for layer in model.layers]
    assert shapes == [(4,), (5,), ()]  # "scalar" output: stored unreplicated

    def loss(m):
        return klax.unwrap(m)(jnp.linspace(-1.0, 1.0, X))

    grads = eqx.filter_jit(eqx.filter_grad(loss))(model)
    for layer, grad in zip(model.layers, grads.layers, strict=True):
        assert grad.activation_y.bias.shape == layer.activation_y.bias.shape
    # Copy j of the last hidden layer reaches the output only through weight j:
    # its gradient is that weight times the same outer derivative for all j.
    last_weight = klax.finalize(model).layers[-1].linear_y.weights[0][:, 0]
    ratio = grads.layers[1].activation_y.bias / last_weight
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
    np.testing.assert_allclose(grads.layers[2].activation_y.bias, 1.0)
    assert jnp.all(grads.layers[0].activation_y.bias != 0)


# --- PICNN: structure ---------------------------------------------------------------


def test_picnn_layer_layout_and_replication(getkey):
    act = Shifted(jnp.array(0.0))
    layer = PICNNLayer(
        3,
        2,
        4,
        5,
        6,
        activation_y=act,
        activation_u=act,
        activation_yu=act,
        activation_xu=act,
        key=getkey(),
    )
    assert layer.activation_y.bias.shape == (5,)
    assert layer.activation_u.bias.shape == (6,)
    assert layer.activation_yu.bias.shape == (3,)
    assert layer.activation_xu.bias.shape == (4,)
    assert layer.linear_y.in_features == (3, 4, 2)
    assert isinstance(layer.linear_y.weights[0], klax.NonNegative)
    assert not isinstance(layer.linear_y.weights[1], klax.Unwrappable)
    assert not isinstance(layer.linear_y.weights[2], klax.Unwrappable)
    assert (layer.linear_u.in_features, layer.linear_u.out_features) == (2, 6)
    assert (layer.linear_yu.in_features, layer.linear_yu.out_features) == (2, 3)
    assert (layer.linear_xu.in_features, layer.linear_xu.out_features) == (2, 4)
    for linear in (layer.linear_u, layer.linear_yu, layer.linear_xu):
        assert linear.use_bias is True
    # Default interconnect initializers: zero weights, unit biases.
    np.testing.assert_array_equal(layer.linear_yu.weight, 0.0)
    np.testing.assert_array_equal(layer.linear_yu.bias, 1.0)
    np.testing.assert_array_equal(layer.linear_y.weights[2], 0.0)

    y, u, x = jnp.arange(3.0), jnp.array([0.5, -1.0]), jnp.arange(4.0) - 2
    fl = klax.finalize(layer)
    y_new, u_new, x_out = fl(y, u, x)
    m_y = fl.activation_yu(fl.linear_yu(u))
    m_x = fl.activation_xu(fl.linear_xu(u))
    w_y, w_x, w_u = fl.linear_y.weights
    expected = fl.activation_y(
        (m_y * y) @ w_y + (m_x * x) @ w_x + u @ w_u + fl.linear_y.bias
    )
    np.testing.assert_allclose(y_new, expected, rtol=1e-6)
    np.testing.assert_allclose(u_new, fl.activation_u(fl.linear_u(u)), rtol=1e-6)
    np.testing.assert_array_equal(x_out, x)


def test_picnn_layer_without_passthrough_or_update(getkey):
    act = Shifted(jnp.array(0.0))
    key = getkey()
    layer = PICNNLayer(
        3,
        2,
        4,
        5,
        None,
        use_passthrough=False,
        update_u=False,
        nonnegative_y_weight=False,
        activation_u=act,
        activation_xu=act,
        bias_init=constant(7.0),
        constrained_bias_init=constant(5.0),
        key=key,
    )
    assert layer.linear_u is None and layer.activation_u is None
    assert layer.linear_xu is None and layer.activation_xu is None
    assert layer.linear_y.in_features == (3, 2)
    assert not klax.contains_unwrappables(layer)
    # This branch always uses the constrained bias initializer (as klax 0.2.0).
    np.testing.assert_array_equal(layer.linear_y.bias, 5.0)
    u = jnp.array([0.5, -1.0])
    y_new, u_new, _ = layer(jnp.ones(3), u, jnp.ones(4))
    assert y_new.shape == (5,)
    assert u_new is u
    # Key use: key_y, key_u, key_yu, key_xu = jr.split(key, 4).
    key_y = jr.split(key, 4)[0]
    expected = InputSplitLinear(
        (3, 2),
        5,
        (jax.nn.initializers.he_normal(), jax.nn.initializers.zeros),
        constant(5.0),
        key=key_y,
    )
    assert eqx.tree_equal(expected, layer.linear_y)


@pytest.mark.parametrize("non_decreasing", [False, True])
def test_picnn_layout(getkey, non_decreasing):
    model = PICNN(
        X,
        P,
        OUT,
        [4, (5, 6)],
        non_decreasing=non_decreasing,
        use_bias=False,
        key=getkey(),
    )
    assert model.width_sizes == ((4, 4), (5, 6))
    assert len(model.layers) == 3
    first, *rest = model.layers
    assert first.use_passthrough is False and first.linear_xu is None
    assert first.nonnegative_y_weight is non_decreasing
    assert all(layer.nonnegative_y_weight is True for layer in rest)
    assert all(layer.use_passthrough is True for layer in rest)
    assert all(
        layer.nonnegative_passthrough is non_decreasing for layer in model.layers
    )
    assert [layer.use_bias for layer in model.layers] == [False, False, True]
    assert [layer.update_u for layer in model.layers] == [True, True, False]
    in_sizes = [layer.linear_y.in_features for layer in model.layers]
    assert in_sizes == [(X, P), (4, X, 4), (5, X, 6)]
    assert [layer.linear_y.out_features for layer in model.layers] == [4, 5, OUT]
    assert model.layers[-1].linear_u is None


def test_picnn_fresh_does_not_depend_on_p(getkey):
    model = PICNN(X, P, "scalar", WIDTHS, key=getkey())
    final = klax.finalize(model)
    x = jr.normal(getkey(), (X,))
    p1, p2 = jr.normal(getkey(), (2, P))
    assert run(final, x, p1) == run(final, x, p2)
    grad_p = jax.jit(jax.grad(final, argnums=1))(x, p1)
    np.testing.assert_array_equal(grad_p, 0.0)

    def loss(m):
        return (klax.unwrap(m)(x, p1) - 1.0) ** 2

    grads = eqx.filter_jit(eqx.filter_grad(loss))(model)
    for k, layer in enumerate(grads.layers):
        assert jnp.any(layer.linear_yu.weight != 0), k
        assert jnp.any(layer.linear_yu.bias != 0), k
        if k >= 1:
            assert jnp.any(layer.linear_xu.weight != 0), k
            assert jnp.any(layer.linear_xu.bias != 0), k


# --- PICNN: properties ----------------------------------------------------------------


def picnn(key, **kwargs):
    return PICNN(
        X, P, OUT, WIDTHS,
        interconnect_weight_init=jax.nn.initializers.normal(1.0),
        activation_xu=jax.nn.softplus, key=key, **kwargs,
    )  # fmt: skip


@given(seed=seeds, scale=scales)
def test_picnn_is_convex_in_x(seed, scale):
    kmodel, kdata, kp = jr.split(jr.key(seed), 3)
    model = klax.finalize(picnn(kmodel))
    p = scale * jr.normal(kp, (P,))
    assert_convex(call_picnn, kdata, scale, model, p)


@given(seed=seeds, scale=scales)
def test_picnn_non_decreasing_in_x(seed, scale):
    kmodel, kdata, kp = jr.split(jr.key(seed), 3)
    model = klax.finalize(picnn(kmodel, non_decreasing=True))
    p = scale * jr.normal(kp, (P,))
    assert_convex(call_picnn, kdata, scale, model, p)
    assert_non_decreasing(call_picnn, kdata, scale, model, p)


@given(seed=seeds, noise=st.sampled_from([0.3, 1.0, 3.0]))
def test_picnn_properties_survive_perturbation(seed, noise):
    kmodel, kperturb, kdata, kp = jr.split(jr.key(seed), 4)
    model = picnn(kmodel, non_decreasing=True)
    final = klax.unwrap(klax.apply(perturb(model, kperturb, noise)))
    p = jr.normal(kp, (P,))
    assert_convex(call_picnn, kdata, 1.0, final, p)
    assert_non_decreasing(call_picnn, kdata, 1.0, final, p)


# --- shapes, batching, dtypes, transformations ----------------------------------------


run = eqx.filter_jit(lambda model, *args: model(*args))


def out_struct(model, *args):
    """Shape and dtype of `model(*args)`, by tracing only (nothing compiles)."""
    return jax.eval_shape(model, *args)


def test_batched_inputs(getkey):
    ficnn = klax.finalize(FICNN(X, OUT, WIDTHS, key=getkey()))
    x = jr.normal(getkey(), (7, 10, X))
    y = run(ficnn, x)
    assert y.shape == (7, 10, OUT)
    np.testing.assert_allclose(y[3, 4], run(ficnn, x[3, 4]), rtol=1e-5)

    model = klax.finalize(picnn(getkey()))
    p = jr.normal(getkey(), (7, 10, P))
    y = run(model, x, p)
    assert y.shape == (7, 10, OUT)
    np.testing.assert_allclose(y[3, 4], run(model, x[3, 4], p[3, 4]), rtol=1e-5)


def test_learnable_activations_in_picnn_reach_each_copy(getkey):
    act = Shifted(jnp.array(0.0))
    model = PICNN(
        X, P, "scalar", WIDTHS,
        activation_y=act, activation_u=act, activation_yu=act,
        activation_xu=act, final_activation_y=act,
        interconnect_weight_init=jax.nn.initializers.normal(1.0), key=getkey(),
    )  # fmt: skip
    x, p = jr.normal(getkey(), (X,)), jr.normal(getkey(), (P,))
    grads = eqx.filter_jit(eqx.filter_grad(lambda m: klax.unwrap(m)(x, p)))(model)
    first, middle, last = grads.layers
    assert first.activation_y.bias.shape == (4,)
    assert first.activation_u.bias.shape == (4,)
    assert first.activation_yu.bias.shape == (X,)
    assert first.activation_xu is None
    assert middle.activation_xu.bias.shape == (X,)
    assert last.activation_y.bias.shape == ()
    assert last.activation_u is None
    for g in (first.activation_y, first.activation_u, middle.activation_y):
        assert jnp.all(g.bias != 0)


def test_scalar_sizes(getkey):
    ficnn = klax.finalize(FICNN("scalar", "scalar", [4], key=getkey()))
    assert run(ficnn, 1.5) == run(ficnn, jnp.array(1.5))
    assert run(ficnn, 1.5).shape == ()
    model = klax.finalize(PICNN("scalar", "scalar", "scalar", [(4, 5)], key=getkey()))
    assert out_struct(model, jnp.array(0.5), jnp.array(1.0)).shape == ()
    assert out_struct(model, 0.5, 1.0).shape == ()
    mixed = klax.finalize(PICNN("scalar", P, 3, [4], key=getkey()))
    assert out_struct(mixed, 0.5, jnp.ones(P)).shape == (3,)


def _transform_cases(key, with_vector):
    k1, k2, k3 = jr.split(key, 3)
    ficnn = klax.finalize(FICNN("scalar", "scalar", [4], key=k1))
    picnn_s = klax.finalize(
        PICNN(
            "scalar", "scalar", "scalar", [(4, 3)],
            interconnect_weight_init=jax.nn.initializers.normal(1.0), key=k2,
        )
    )  # fmt: skip
    cases = [
        (lambda m, x, p: m(x), ficnn, (), ()),
        (lambda m, x, p: m(x, p), picnn_s, (), ()),
    ]
    if with_vector:
        cases.append((lambda m, x, p: m(x, p), klax.finalize(picnn(k3)), (X,), (P,)))
    return cases


@eqx.filter_jit
def transformed(call, model, x, p):
    """`vmap` and a Python loop over a batch of 3, and the parameter gradient."""
    batched = jax.vmap(call, in_axes=(None, 0, 0))(model, x, p)
    looped = jnp.stack([call(model, x[i], p[i]) for i in range(3)])
    grads = eqx.filter_grad(lambda m: jnp.sum(call(m, x[0], p[0]) ** 2))(model)
    return batched, looped, grads


@pytest.mark.parametrize("use_x64", [False, True], ids=["float32", "float64"])
def test_jit_vmap_grad(getkey, use_x64):
    with jax.enable_x64(use_x64):
        dtype = jnp.float64 if use_x64 else jnp.float32
        # Vector sizes in x64 only in the finite-difference check (compile time).
        cases = _transform_cases(getkey(), with_vector=not use_x64)
        for call, model, x_shape, p_shape in cases:
            params = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
            assert all(leaf.dtype == dtype for leaf in params)
            x = jr.normal(getkey(), (3, *x_shape), dtype)
            p = jr.normal(getkey(), (3, *p_shape), dtype)
            batched, looped, grads = transformed(call, model, x, p)
            assert batched.dtype == looped.dtype == dtype
            assert batched.shape == looped.shape
            np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6)
            leaves = jax.tree.leaves(grads)
            assert all(leaf.dtype == dtype for leaf in leaves)
            assert all(bool(jnp.isfinite(leaf).all()) for leaf in leaves)
            assert any(bool((leaf != 0).any()) for leaf in leaves)
        if use_x64:
            # Input gradient of the scalar PICNN vs central differences.
            @jax.jit
            def derivatives(x, p):
                f = lambda x: call(model, x, p)
                eps = 1e-6  # error O(eps**2) plus round-off 1e-16 / eps
                return jax.grad(f)(x), (f(x + eps) - f(x - eps)) / (2 * eps)

            grad, fd = derivatives(x[0], p[0])
            np.testing.assert_allclose(grad, fd, rtol=1e-7)


def test_eager_equals_jit(getkey):
    model = klax.finalize(picnn(getkey()))
    x, p = jr.normal(getkey(), (X,)), jr.normal(getkey(), (P,))
    np.testing.assert_allclose(model(x, p), run(model, x, p), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float32])
def test_dtype_preserved(getkey, dtype):
    def ficnn_out(key, x):
        return klax.finalize(FICNN(X, OUT, WIDTHS, dtype=dtype, key=key))(x)

    def picnn_out(key, x, p):
        return klax.finalize(PICNN(X, P, OUT, WIDTHS, dtype=dtype, key=key))(x, p)

    x, p = jnp.ones((2, X), dtype), jnp.ones((2, P), dtype)
    assert jax.eval_shape(ficnn_out, getkey(), x).dtype == dtype
    assert jax.eval_shape(picnn_out, getkey(), x, p).dtype == dtype


def test_legacy_key():
    a = abstract(FICNN, X, OUT, [4], key=jr.PRNGKey(0))
    b = abstract(PICNN, X, P, OUT, [4], key=jr.fold_in(jr.PRNGKey(0), 3))
    assert a.layers[0].linear_y.weight.shape == (X, 4)
    assert b.layers[0].linear_y.weights[0].shape == (X, 4)


# --- errors ---------------------------------------------------------------------------


def test_unfinalized_call_raises(getkey):
    with pytest.raises(klax.ContainsUnwrappablesError, match="klax.finalize"):
        FICNN(X, OUT, [4], key=getkey())(jnp.ones(X))
    with pytest.raises(klax.ContainsUnwrappablesError, match="klax.finalize"):
        PICNN(X, P, OUT, [4], key=getkey())(jnp.ones(X), jnp.ones(P))


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda k: FICNN("sclar", 1, [4], key=k), ValueError, r"FICNN\(in_size=...\)"),
        (lambda k: FICNN(2, -1, [4], key=k), ValueError, r"FICNN\(out_size=...\)"),
        (lambda k: FICNN(2, 1, 4, key=k), TypeError, r"width_sizes"),
        (lambda k: FICNN(2, 1, [4, "scalar"], key=k), ValueError, r"width_sizes\[1\]"),
        (lambda k: FICNN(2, 1, [2.5], key=k), ValueError, r"width_sizes\[0\]"),
        (lambda k: FICNN(2, 1, [4], activation=3, key=k), TypeError, "activation"),
        (lambda k: FICNN(2, 1, [4], non_decreasing="yes", key=k), TypeError,
         "non_decreasing"),
        (lambda k: FICNNLayer(2, "x", 3, key=k), ValueError, r"x_size"),
        (lambda k: PICNN(2, 2, 1, [(4, 5, 6)], key=k), ValueError, r"width_sizes\[0\]"),
        (lambda k: PICNN(2, 2, 1, [(4, "a")], key=k), ValueError, r"width_sizes\[0\]"),
        (lambda k: PICNN(2, 2, 1, [None], key=k), ValueError, r"width_sizes\[0\]"),
        (lambda k: PICNN(2, "p", 1, [4], key=k), ValueError, r"p_size"),
        (lambda k: PICNNLayer(2, 2, 2, 3, None, key=k), ValueError, "u_out_size"),
    ],
)  # fmt: skip
def test_bad_construction(getkey, build, error, match):
    with pytest.raises(error, match=match):
        build(getkey())


def test_bad_call_inputs(getkey):
    ficnn = klax.finalize(FICNN(X, OUT, [4], key=getkey()))
    with pytest.raises(ValueError, match=r"x of shape \(3,\).*got x of shape \(4,\)"):
        ficnn(jnp.ones(4))
    with pytest.raises(ValueError, match=r"got x of shape \(\)"):
        ficnn(1.0)
    scalar = klax.finalize(FICNN("scalar", OUT, [4], key=getkey()))
    with pytest.raises(ValueError, match="'scalar'"):
        scalar(jnp.ones(1))
    model = klax.finalize(PICNN(X, P, OUT, [4], key=getkey()))
    with pytest.raises(ValueError, match=r"p of shape \(2,\)"):
        model(jnp.ones(X), jnp.ones(3))
    with pytest.raises(ValueError, match="same leading batch axes"):
        model(jnp.ones((5, X)), jnp.ones(P))
    with pytest.raises(TypeError):
        model(jnp.ones(X))  # pyright: ignore[reportCallIssue]
