"""Tests of klax losses: `Loss`, `loss`, `mse`, `mae` (API.md §8)."""

import inspect

import equinox as eqx
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import klax


class Affine(eqx.Module):
    """y = w * x + b on scalars; `w` may be wrapped."""

    w: object
    b: jax.Array

    def __call__(self, x):
        return self.w * x + self.b


X = jnp.array([1.0, 2.0, 3.0])
Y = jnp.array([3.0, 4.0, 5.0])


def affine(w=1.0, b=0.0, dtype=jnp.float32):
    return Affine(jnp.asarray(w, dtype), jnp.asarray(b, dtype))


def test_spec_example_values():
    model = affine()
    mse = klax.mse(model, (X, Y), None)
    mae = klax.mae(model, (X, Y), None)
    assert isinstance(mse, jax.Array) and mse.shape == () and mse.dtype == jnp.float32
    assert isinstance(mae, jax.Array) and mae.shape == () and mae.dtype == jnp.float32
    assert float(mse) == 4.0
    assert float(mae) == 2.0


def test_mean_over_all_elements_of_vector_outputs():
    model = lambda x: jnp.stack([x, 2 * x])
    y = jnp.zeros((3, 2))
    # predictions [[1,2],[2,4],[3,6]]: squares sum to 70 over 6 elements.
    assert np.isclose(float(klax.mse(model, (X, y), None)), 70 / 6)
    assert np.isclose(float(klax.mae(model, (X, y), None)), 18 / 6)


def test_pytree_input_is_vmapped_over_axis_0_of_every_leaf():
    model = lambda inputs: inputs["a"] + inputs["b"][1]
    x = {"a": X, "b": jnp.stack([X, 2 * X], axis=1)}
    # prediction 3x = [3, 6, 9] against y = [3, 4, 5]: squares 0, 4, 16.
    assert np.isclose(float(klax.mse(model, (x, Y), None)), 20 / 3)


def test_numpy_data_accepted():
    out = klax.mse(affine(), (np.asarray(X), np.asarray(Y)), "ignored run state")
    assert float(out) == 4.0


def test_x64_dtype(x64):
    model = affine(dtype=jnp.float64)
    x, y = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)
    for fn, expected in ((klax.mse, 4.0), (klax.mae, 2.0)):
        out = fn(model, (x, y), None)
        assert out.dtype == jnp.float64
        assert float(out) == expected


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"equal shape.*\(3,\).*\(3, 1\)"):
        klax.mse(affine(), (X, Y[:, None]), None)
    with pytest.raises(ValueError, match="equal shape"):
        klax.mae(affine(), (X, Y[:2]), None)


@pytest.mark.parametrize("batch", [X, (X,), (X, Y, Y)], ids=["array", "1", "3"])
def test_batch_must_be_pair(batch):
    with pytest.raises(TypeError, match=r"pair `\(x, y\)`"):
        klax.mse(affine(), batch, None)


def test_call_unwraps_but_value_does_not():
    # w is stored as Parameterize(2 * p, p=0.5), which unwraps to 1.
    wrapped = Affine(klax.Parameterize(lambda p: 2 * p, jnp.array(0.5)), jnp.array(0.0))
    assert float(klax.mse(wrapped, (X, Y), None)) == 4.0
    assert float(klax.mse.value(klax.unwrap(wrapped), (X, Y), None)) == 4.0
    with pytest.raises(TypeError):
        klax.mse.value(wrapped, (X, Y), None)


def test_value_and_grad_matches_analytic_gradient():
    # residual w*x + b - y = -2 everywhere: d mse/dw = mean(-4 x) = -8, d/db = -4.
    value, grad = klax.mse.value_and_grad(affine(), (X, Y), None)
    assert float(value) == 4.0
    assert isinstance(grad, Affine)
    assert float(grad.w) == -8.0
    assert float(grad.b) == -4.0


def test_value_and_grad_through_wrapper():
    wrapped = Affine(klax.Parameterize(lambda p: 2 * p, jnp.array(0.5)), jnp.array(0.0))
    value, grad = klax.mae.value_and_grad(wrapped, (X, Y), None)
    assert float(value) == 2.0
    # mae = mean(|2p x + b - y|), residual < 0: d/dp = -2 mean(x) = -4, d/db = -1.
    assert isinstance(grad.w, klax.Parameterize)
    assert float(grad.w.args[0]) == -4.0
    assert float(grad.b) == -1.0


def test_jit_equals_eager():
    model = affine(0.5, 0.25)
    for fn in (klax.mse, klax.mae):
        eager = fn(model, (X, Y), None)
        jitted = eqx.filter_jit(fn)(model, (X, Y), None)
        assert jnp.array_equal(eager, jitted)
        value, grad = eqx.filter_jit(fn.value_and_grad)(model, (X, Y), None)
        assert jnp.array_equal(value, eager)
        assert jnp.isfinite(grad.w) and jnp.isfinite(grad.b)


def test_vmap_over_models_equals_loop():
    ws = jnp.array([0.0, 1.0, 2.0])
    batched = jax.vmap(lambda w: klax.mse(Affine(w, jnp.array(0.0)), (X, Y), None))(ws)
    looped = jnp.stack([klax.mse(Affine(w, jnp.array(0.0)), (X, Y), None) for w in ws])
    assert batched.shape == (3,)
    assert jnp.allclose(batched, looped)


def test_partitioned_value_equals_call():
    model = affine(0.5, 0.25)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    direct = klax.mse(model, (X, Y), None)
    assert jnp.array_equal(
        klax.mse.partitioned_value(params, static, (X, Y), None), direct
    )
    # make_step binds the last three by keyword.
    value_fn = jax.tree_util.Partial(
        klax.mse.partitioned_value, static=static, batch=(X, Y), run_state=None
    )
    assert jnp.array_equal(value_fn(params), direct)


def test_signatures():
    assert list(inspect.signature(klax.mse).parameters) == [
        "model",
        "data",
        "run_state",
    ]
    assert list(inspect.signature(klax.mae).parameters) == [
        "model",
        "data",
        "run_state",
    ]
    assert list(inspect.signature(klax.Loss.partitioned_value).parameters) == [
        "self",
        "params",
        "static",
        "batch",
        "run_state",
    ]
    assert isinstance(klax.mse, klax.Loss) and isinstance(klax.mae, klax.Loss)
    assert klax.mse.__name__ == "mse" and "squared" in klax.mse.__doc__
    assert klax.mae.__name__ == "mae" and "absolute" in klax.mae.__doc__


def test_loss_is_abstract():
    with pytest.raises(TypeError):
        klax.Loss()  # pyright: ignore[reportAbstractUsage]


def test_subclass_with_only_value_and_own_parameter_names():
    class Weighted(klax.Loss):
        def value(self, m, data, factor):
            return factor * jnp.sum(m(data))

    loss = Weighted()
    model = affine(2.0, 1.0)
    assert float(loss(model, X, 2.0)) == 2.0 * (3 + 5 + 7)
    value, grad = loss.value_and_grad(model, X, 2.0)
    assert float(value) == 30.0
    assert float(grad.w) == 2.0 * 6.0 and float(grad.b) == 2.0 * 3.0
    # Hashable (by identity), so it can be a static argument of filter_jit.
    assert hash(loss) == hash(loss) and loss != Weighted()
    assert float(eqx.filter_jit(lambda lo, m: lo(m, X, 2.0))(loss, model)) == 30.0


def test_loss_decorator_wraps_function():
    def my_loss(model_arg, some_batch, whatever):
        """My docstring."""
        return jnp.sum(model_arg(some_batch)) + whatever

    decorated = klax.loss(my_loss)
    assert isinstance(decorated, klax.Loss)
    assert decorated.__name__ == "my_loss"
    assert decorated.__doc__ == "My docstring."
    assert decorated.__wrapped__ is my_loss
    assert float(decorated(affine(), X, 1.0)) == 7.0
    assert float(decorated.value(affine(), X, 1.0)) == 7.0
    assert list(inspect.signature(decorated).parameters) == [
        "model_arg",
        "some_batch",
        "whatever",
    ]
    assert hash(decorated) == hash(decorated)


def test_loss_decorator_on_staticmethod():
    class Holder:
        @klax.loss
        @staticmethod
        def total(model, batch, run_state):
            """Sum of outputs."""
            return jnp.sum(model(batch))

    assert isinstance(Holder.total, klax.Loss)
    assert isinstance(Holder().total, klax.Loss)
    assert Holder.total.__name__ == "total"
    assert float(Holder.total(affine(), X, None)) == 6.0


def test_loss_decorator_rejects_non_callables():
    with pytest.raises(TypeError, match="expects a callable"):
        klax.loss(3.0)  # pyright: ignore[reportArgumentType]


@given(
    pred=hnp.arrays(np.float32, 4, elements=st.floats(-10, 10, width=32)),
    y=hnp.arrays(np.float32, 4, elements=st.floats(-10, 10, width=32)),
)
def test_properties_of_mse_and_mae(pred, y):
    x = jnp.asarray(pred)
    identity = lambda v: v
    mse = float(klax.mse(identity, (x, jnp.asarray(y)), None))
    mae = float(klax.mae(identity, (x, jnp.asarray(y)), None))
    assert mse >= 0 and mae >= 0
    # Jensen: mean(r^2) >= mean(|r|)^2 (float32 round-off allowance).
    assert mse >= mae**2 * (1 - 1e-5) - 1e-6
    # Symmetric in prediction and target; zero against itself.
    assert float(klax.mse(identity, (jnp.asarray(y), x), None)) == pytest.approx(mse)
    assert float(klax.mae(identity, (x, x), None)) == 0.0
    assert np.isclose(mse, np.mean((pred.astype(np.float64) - y) ** 2), rtol=1e-5)
