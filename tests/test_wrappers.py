"""Tests of the wrappers (API §7): unwrappables, constraints and the tree functions."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import paramax
import pytest
from jaxtyping import Array

import klax

# NumPy draws need no compilation (jax.random would compile per shape).
RNG = np.random.default_rng(0)
# ---------------------------------------------------------------------------
# User-defined wrappers, as described in API §7.1 and §7.7.


class Zero(klax.Unwrappable[Array]):
    parameter: Array

    def unwrap(self):
        return jnp.zeros_like(self.parameter)


class Scaled(klax.Constraint):
    """A single-field constraint whose `apply` halves the parameter."""

    parameter: Array

    def unwrap(self):
        return self.parameter

    def apply(self):
        return eqx.tree_at(lambda c: c.parameter, self, 0.5 * self.parameter)


class AtLeast(klax.Constraint):
    """A two-field constraint (neither field is called `parameter`)."""

    value: Array
    lower: Array

    def unwrap(self):
        return self.value

    def apply(self):
        return eqx.tree_at(lambda c: c.value, self, jnp.maximum(self.value, self.lower))


class Model(eqx.Module):
    weight: Array | klax.Unwrappable[Array]
    count: int


class ChildFirst(klax.Unwrappable[Array]):
    """Checks that nested wrappers are resolved before its own `unwrap`."""

    inner: Array

    def unwrap(self):
        assert isinstance(self.inner, jax.Array), type(self.inner)
        return self.inner + 1


# ---------------------------------------------------------------------------
# Unwrappable


def test_user_unwrappable_construction_and_unwrap():
    w = jnp.arange(3.0)
    for zero in (Zero(w), Zero(parameter=w)):
        assert isinstance(zero, klax.Unwrappable)
        assert isinstance(zero, paramax.AbstractUnwrappable)
        out = klax.unwrap(zero)
        np.testing.assert_array_equal(out, jnp.zeros(3))
        assert out.dtype == jnp.float32


def test_base_classes_declare_no_fields():
    assert dataclasses.fields(klax.Unwrappable) == ()
    assert dataclasses.fields(klax.Constraint) == ()
    assert [f.name for f in dataclasses.fields(AtLeast)] == ["value", "lower"]


def test_unwrappable_is_subscriptable_and_abstract():
    assert klax.Unwrappable[Array] is not None

    class NoUnwrap(klax.Unwrappable[Array]):
        parameter: Array

    with pytest.raises(TypeError, match="abstract"):
        NoUnwrap(jnp.ones(2))

    class NoApply(klax.Constraint):
        parameter: Array

        def unwrap(self):
            return self.parameter

    with pytest.raises(TypeError, match="abstract"):
        NoApply(jnp.ones(2))


def test_user_unwrappable_in_linear_layer():
    layer = klax.nn.Linear(
        3,
        2,
        jax.nn.initializers.normal(),
        jax.nn.initializers.normal(),
        weight_wrap=Zero,
        bias_wrap=Zero,
        key=jr.key(0),
    )
    assert isinstance(layer.weight, Zero)
    assert klax.contains_unwrappables(layer)
    assert not klax.contains_constraints(layer)
    with pytest.raises(klax.ContainsUnwrappablesError, match="klax.finalize"):
        layer(jnp.ones(3))
    out = klax.finalize(layer)(jnp.ones(3))
    np.testing.assert_array_equal(out, jnp.zeros(2))


# ---------------------------------------------------------------------------
# unwrap and Parameterize


def test_unwrap_spec_examples():
    nested = klax.Parameterize(
        jnp.square, klax.Parameterize(jnp.square, klax.Parameterize(jnp.square, 2))
    )
    assert klax.unwrap(nested) == 256
    out = klax.unwrap(("abc", 1, klax.Parameterize(jnp.exp, jnp.zeros(3))))
    assert out[:2] == ("abc", 1)
    np.testing.assert_array_equal(out[2], jnp.ones(3))
    np.testing.assert_array_equal(
        klax.unwrap(klax.Parameterize(jnp.diag, jnp.ones(3))), jnp.eye(3)
    )


def test_unwrap_innermost_first_and_leaves_other_nodes():
    tree = {"a": ChildFirst(klax.Parameterize(jnp.ones, 2)), "b": "text", "c": None}
    out = klax.unwrap(tree)
    np.testing.assert_array_equal(out["a"], 2 * jnp.ones(2))
    assert out["b"] == "text" and out["c"] is None
    plain = (jnp.ones(2), 3)
    assert klax.unwrap(plain)[1] == 3


def test_parameterize_fields_and_kwargs():
    p = klax.Parameterize(jnp.clip, jnp.arange(4.0), min=1.0, max=2.0)
    assert [f.name for f in dataclasses.fields(p)] == ["fn", "args", "kwargs"]
    assert isinstance(p.args, tuple)
    np.testing.assert_array_equal(klax.unwrap(p), jnp.array([1.0, 1.0, 2.0, 2.0]))


def test_parameterize_built_under_filter_vmap():
    """Vectorisation invariance: a stacked wrapper unwraps to the stacked values."""
    stacked = jnp.arange(6.0).reshape(2, 3)
    batched = eqx.filter_vmap(lambda a: klax.Parameterize(jnp.exp, a))(stacked)
    np.testing.assert_allclose(klax.unwrap(batched), jnp.exp(stacked), rtol=1e-6)
    single = klax.unwrap(klax.Parameterize(jnp.exp, stacked[0]))
    np.testing.assert_allclose(klax.unwrap(batched)[0], single, rtol=1e-6)


def test_unwrap_under_jit_vmap_grad():
    tree = (klax.Parameterize(jnp.exp, jnp.zeros(3)), klax.NonNegative(-jnp.ones(3)))
    jitted = eqx.filter_jit(klax.unwrap)(tree)
    np.testing.assert_array_equal(jitted[0], jnp.ones(3))
    np.testing.assert_array_equal(jitted[1], -jnp.ones(3))

    def loss(t):
        a, b = klax.unwrap(t)
        return jnp.sum(a * b)

    grads = eqx.filter_grad(loss)(tree)
    # d/dx sum(exp(x) * p) = exp(x) * p; d/dp = exp(x).
    np.testing.assert_allclose(grads[0].args[0], -jnp.ones(3))
    np.testing.assert_allclose(grads[1].parameter, jnp.ones(3))
    xs = jnp.stack([jnp.zeros(3), jnp.ones(3)])
    out = jax.vmap(lambda x: klax.unwrap(klax.Parameterize(jnp.exp, x)))(xs)
    np.testing.assert_allclose(out, jnp.exp(xs), rtol=1e-6)


def test_unwrap_keeps_dtype_x64(x64):
    out = klax.unwrap(klax.Parameterize(jnp.exp, jnp.zeros(2)))
    assert out.dtype == jnp.float64
    sym = klax.unwrap(klax.Symmetric(jnp.ones((2, 2), jnp.float32)))
    assert sym.dtype == jnp.float32


# ---------------------------------------------------------------------------
# NonTrainable and non_trainable


def test_non_trainable_class_stops_gradients():
    tree = klax.NonTrainable((jnp.ones(3), 2, "name"))
    out = klax.unwrap(tree)
    assert out[1] == 2 and out[2] == "name"
    grads = eqx.filter_grad(lambda t: jnp.sum(klax.unwrap(t)[0] ** 2))(tree)
    np.testing.assert_array_equal(grads.tree[0], jnp.zeros(3))


def test_non_trainable_function_spec_example():
    wrapped = klax.non_trainable((jnp.ones(3), 1))
    assert isinstance(wrapped[0], klax.NonTrainable)
    assert wrapped[1] == 1
    grads = eqx.filter_grad(lambda t: klax.unwrap(t)[0].sum())(wrapped)
    assert isinstance(grads[0], klax.NonTrainable)
    np.testing.assert_array_equal(grads[0].tree, jnp.zeros(3))


def test_non_trainable_leaf_rules():
    already = klax.NonTrainable(jnp.ones(2))
    frozen_by_paramax = paramax.NonTrainable(jnp.ones(2))
    constraint = klax.NonNegative(jnp.ones(2))
    other = klax.Parameterize(jnp.exp, jnp.ones(2))
    tree = (
        already,
        frozen_by_paramax,
        constraint,
        other,
        jnp.arange(3),  # integer array
        np.ones(2),  # NumPy floating array
        1.5,  # Python float
        "text",
    )
    out = klax.non_trainable(tree)
    assert out[0] is already  # not double-wrapped, not entered
    assert out[1] is frozen_by_paramax
    assert isinstance(out[2], klax.NonTrainable)  # constraint wrapped as a whole
    assert out[2].tree is constraint
    assert isinstance(out[3], klax.Parameterize)  # other wrappers are traversed
    assert isinstance(out[3].args[0], klax.NonTrainable)
    assert out[4] is tree[4]
    assert isinstance(out[5], klax.NonTrainable)
    assert out[6:] == (1.5, "text")


def test_non_trainable_constraint_gradient_is_zero():
    model = klax.non_trainable(klax.NonNegative(jnp.ones(3)))
    grads = eqx.filter_grad(lambda m: jnp.sum(klax.unwrap(m) ** 2))(model)
    np.testing.assert_array_equal(grads.tree.parameter, jnp.zeros(3))


# ---------------------------------------------------------------------------
# Symmetric and SkewSymmetric


@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 3, 3)])
def test_symmetric_and_skew_symmetric_bitwise(shape):
    a = jnp.asarray(RNG.standard_normal(shape), jnp.float32)
    sym = klax.unwrap(klax.Symmetric(a))
    skew = klax.unwrap(klax.SkewSymmetric(a))
    assert sym.shape == skew.shape == shape
    np.testing.assert_array_equal(sym, jnp.swapaxes(sym, -1, -2))
    np.testing.assert_array_equal(skew, -jnp.swapaxes(skew, -1, -2))
    np.testing.assert_allclose(sym + skew, a, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sym, 0.5 * (a + jnp.swapaxes(a, -1, -2)), rtol=1e-6)


def test_symmetric_of_wrapped_parameter():
    a = jnp.arange(4.0).reshape(2, 2)
    sym = klax.unwrap(klax.Symmetric(klax.Parameterize(jnp.exp, a)))
    ea = jnp.exp(a)
    np.testing.assert_allclose(sym, 0.5 * (ea + ea.T), rtol=1e-6)


def test_symmetric_dtypes(x64):
    for dtype in (jnp.float16, jnp.float32, jnp.float64, jnp.complex64):
        out = klax.unwrap(klax.SkewSymmetric(jnp.ones((2, 2), dtype)))
        assert out.dtype == dtype


def test_symmetric_jit_vmap_grad():
    a = jnp.asarray(RNG.standard_normal((3, 3)), jnp.float32)
    b = jnp.asarray(RNG.standard_normal((3, 3)), jnp.float32)
    f = eqx.filter_jit(lambda m: klax.unwrap(m))
    np.testing.assert_array_equal(f(klax.Symmetric(a)), klax.unwrap(klax.Symmetric(a)))
    grads = eqx.filter_grad(lambda m: jnp.sum(klax.unwrap(m) * b))(klax.Symmetric(a))
    np.testing.assert_allclose(grads.parameter, 0.5 * (b + b.T), rtol=1e-6)
    grads = eqx.filter_grad(lambda m: jnp.sum(klax.unwrap(m) * b))(
        klax.SkewSymmetric(a)
    )
    np.testing.assert_allclose(grads.parameter, 0.5 * (b - b.T), rtol=1e-6)
    stacked = jnp.stack([a, b])
    out = jax.vmap(lambda x: klax.unwrap(klax.SkewSymmetric(x)))(stacked)
    np.testing.assert_allclose(out[1], 0.5 * (b - b.T), rtol=1e-6)


@pytest.mark.parametrize("cls", [klax.Symmetric, klax.SkewSymmetric])
@pytest.mark.parametrize("shape", [(2, 3), (3,), ()])
def test_symmetric_rejects_non_square(cls, shape):
    with pytest.raises(ValueError, match=r"shape \(\.\.\., N, N\) but has shape"):
        cls(jnp.ones(shape))


def test_symmetric_checks_the_unwrapped_value():
    with pytest.raises(ValueError, match=r"has shape \(2, 3\)"):
        klax.Symmetric(klax.Parameterize(jnp.ones, (2, 3)))


# ---------------------------------------------------------------------------
# Constraints, apply, NonNegative, finalize


def test_apply_spec_example():
    out = klax.apply(("abc", 1, klax.NonNegative(-jnp.ones(3))))
    assert out[:2] == ("abc", 1)
    assert isinstance(out[2], klax.NonNegative)  # still a constraint
    np.testing.assert_array_equal(out[2].parameter, jnp.zeros(3))


def test_non_negative():
    p = jnp.array([-1.0, 0.5, 2.0])
    for c in (klax.NonNegative(p), klax.NonNegative(parameter=p)):
        np.testing.assert_array_equal(klax.unwrap(c), p)  # unchanged by unwrap
        np.testing.assert_array_equal(klax.apply(c).parameter, jnp.maximum(p, 0))
        np.testing.assert_array_equal(klax.finalize(c), jnp.maximum(p, 0))
    grads = eqx.filter_grad(lambda c: jnp.sum(3.0 * klax.unwrap(c)))(
        klax.NonNegative(p)
    )
    np.testing.assert_array_equal(grads.parameter, jnp.full(3, 3.0))


def test_non_negative_dtypes(x64):
    for dtype in (jnp.float16, jnp.float32, jnp.float64):
        out = klax.finalize(klax.NonNegative(-jnp.ones(2, dtype)))
        assert out.dtype == dtype


def test_user_constraint_single_field():
    c = Scaled(jnp.full(2, 4.0))
    assert klax.contains_constraints(c)
    np.testing.assert_array_equal(klax.apply(c).parameter, jnp.full(2, 2.0))
    np.testing.assert_array_equal(klax.finalize(c), jnp.full(2, 2.0))
    layer = klax.nn.Linear(
        2, 2, jax.nn.initializers.ones, weight_wrap=Scaled, key=jr.key(0)
    )
    np.testing.assert_array_equal(klax.finalize(layer).weight, jnp.full((2, 2), 0.5))


def test_user_constraint_two_fields_with_keywords():
    model = Model(
        weight=AtLeast(value=jnp.array([-2.0, 3.0]), lower=jnp.array([0.0, 1.0])),
        count=4,
    )
    assert klax.contains_constraints(model) and klax.contains_unwrappables(model)
    unwrapped = klax.unwrap(model)
    assert isinstance(unwrapped.weight, jax.Array)
    np.testing.assert_array_equal(unwrapped.weight, jnp.array([-2.0, 3.0]))
    assert unwrapped.count == 4
    applied = klax.apply(model)
    assert isinstance(applied.weight, AtLeast)
    np.testing.assert_array_equal(applied.weight.value, jnp.array([0.0, 3.0]))
    np.testing.assert_array_equal(applied.weight.lower, jnp.array([0.0, 1.0]))
    np.testing.assert_array_equal(klax.finalize(model).weight, jnp.array([0.0, 3.0]))
    # Gradients through the unwrapped model reach the value, not the bound.
    grads = eqx.filter_grad(lambda m: jnp.sum(klax.unwrap(m).weight))(model)
    np.testing.assert_array_equal(grads.weight.value, jnp.ones(2))
    np.testing.assert_array_equal(grads.weight.lower, jnp.zeros(2))


def test_apply_inside_other_wrappers_and_innermost_first():
    tree = klax.NonTrainable(klax.NonNegative(-jnp.ones(2)))
    out = klax.apply(tree)
    assert isinstance(out, klax.NonTrainable)
    np.testing.assert_array_equal(out.tree.parameter, jnp.zeros(2))
    inside = klax.apply(klax.Parameterize(jnp.exp, klax.NonNegative(-jnp.ones(2))))
    np.testing.assert_array_equal(inside.args[0].parameter, jnp.zeros(2))


def test_apply_and_finalize_under_jit_vmap_grad():
    tree = {"w": klax.NonNegative(jnp.array([-1.0, 1.0])), "n": 3}
    out = eqx.filter_jit(klax.finalize)(tree)
    np.testing.assert_array_equal(out["w"], jnp.array([0.0, 1.0]))
    assert out["n"] == 3
    # The clamp passes gradients only where the parameter is positive.
    grads = eqx.filter_grad(lambda t: jnp.sum(klax.finalize(t)["w"]))(tree)
    np.testing.assert_array_equal(grads["w"].parameter, jnp.array([0.0, 1.0]))
    # The tree predicates only look at the structure: they work on traced trees.
    flags = eqx.filter_jit(
        lambda t: (klax.contains_unwrappables(t), klax.contains_constraints(t))
    )(tree)
    assert flags == (True, True)
    stacked = jnp.array([[-1.0, 1.0], [2.0, -2.0]])
    out = jax.vmap(lambda p: klax.finalize(klax.NonNegative(p)))(stacked)
    np.testing.assert_array_equal(out, jnp.maximum(stacked, 0))


def test_finalize_makes_layer_callable():
    layer = klax.nn.Linear(
        3, 2, jax.nn.initializers.normal(), weight_wrap=klax.NonNegative, key=jr.key(0)
    )
    with pytest.raises(klax.ContainsUnwrappablesError):
        layer(jnp.ones(3))
    final = klax.finalize(layer)
    assert not klax.contains_unwrappables(final)
    assert isinstance(final.weight, jax.Array)
    assert bool(jnp.all(final.weight >= 0))
    np.testing.assert_allclose(
        final(jnp.ones(3)), jnp.ones(3) @ jnp.maximum(layer.weight.parameter, 0)
    )


# ---------------------------------------------------------------------------
# contains_* and the error


def test_contains_spec_examples():
    plain = (1, "abc", jnp.ones(3))
    assert not klax.contains_unwrappables(plain)
    assert not klax.contains_constraints(plain)
    param = (*plain, klax.Parameterize(jnp.exp, jnp.ones(2)))
    assert klax.contains_unwrappables(param)
    assert not klax.contains_constraints(param)
    constrained = (*plain, klax.NonNegative(jnp.ones(2)))
    assert klax.contains_unwrappables(constrained)
    assert klax.contains_constraints(constrained)
    # The tree itself, and a constraint hidden in another wrapper.
    assert klax.contains_constraints(klax.NonNegative(jnp.ones(2)))
    assert klax.contains_constraints(klax.NonTrainable(klax.NonNegative(jnp.ones(2))))
    assert klax.contains_unwrappables(paramax.NonTrainable(jnp.ones(2)))
    assert not klax.contains_unwrappables(None)


def test_contains_unwrappables_error():
    assert issubclass(klax.ContainsUnwrappablesError, RuntimeError)
    split = klax.nn.InputSplitLinear(
        (2, 1),
        2,
        jax.nn.initializers.normal(),
        weight_wraps=[klax.NonNegative, None],
        key=jr.key(0),
    )
    message = r"Model must be finalized before calling, see `klax\.finalize`\."
    with pytest.raises(klax.ContainsUnwrappablesError, match=message):
        split(jnp.ones(2), jnp.ones(1))
    with pytest.raises(klax.ContainsUnwrappablesError, match=message):
        eqx.filter_jit(split)(jnp.ones(2), jnp.ones(1))
    assert klax.finalize(split)(jnp.ones(2), jnp.ones(1)).shape == (2,)


# ---------------------------------------------------------------------------
# paramax interoperability


def test_paramax_interop_mixed_trees():
    a = jnp.array([[0.0, 1.0], [2.0, 3.0]])
    tree = {
        "klax_outside": klax.Symmetric(paramax.Parameterize(jnp.exp, a)),
        "paramax_outside": paramax.Parameterize(
            jnp.square, klax.Parameterize(jnp.exp, a)
        ),
        "frozen": paramax.NonTrainable(klax.NonNegative(-a)),
        "plain": 1,
    }
    ea = jnp.exp(a)
    for unwrapped in (klax.unwrap(tree), paramax.unwrap(tree)):
        np.testing.assert_allclose(unwrapped["klax_outside"], 0.5 * (ea + ea.T))
        np.testing.assert_allclose(unwrapped["paramax_outside"], ea**2, rtol=1e-6)
        np.testing.assert_array_equal(unwrapped["frozen"], -a)
        assert unwrapped["plain"] == 1
    assert paramax.contains_unwrappables(klax.NonNegative(a))
    assert klax.contains_constraints(tree)
    # klax.apply reaches constraints inside paramax wrappers.
    applied = klax.apply(tree)
    np.testing.assert_array_equal(applied["frozen"].tree.parameter, jnp.zeros((2, 2)))
    np.testing.assert_array_equal(klax.finalize(tree)["frozen"], jnp.zeros((2, 2)))
    # paramax.NonTrainable freezes klax wrappers too.
    grads = eqx.filter_grad(lambda t: jnp.sum(paramax.unwrap(t)["frozen"]))(tree)
    np.testing.assert_array_equal(grads["frozen"].tree.parameter, jnp.zeros((2, 2)))


def test_wrappers_with_rank_promotion_raise():
    with jax.numpy_rank_promotion("raise"):
        out = klax.unwrap(klax.Symmetric(jnp.ones((2, 3, 3))))
        assert out.shape == (2, 3, 3)
        out = klax.finalize(klax.NonNegative(-jnp.ones((2, 3))))
        assert out.shape == (2, 3)
