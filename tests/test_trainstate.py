"""Tests of klax.TrainingState and klax.TrainingContext."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from hypothesis import given, strategies as st

import klax


def _model():
    return klax.nn.MLP(2, "scalar", [3], key=jr.key(0))


def _context(model=None, optimizer=None, steps=5):
    model = _model() if model is None else model
    optimizer = optax.sgd(0.1) if optimizer is None else optimizer
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    return klax.TrainingContext(
        model, optimizer, opt_state, iter(()), None, klax.mse, steps
    )


# --------------------------------------------------------------------------
# TrainingState


def test_state_fields_and_leaf_order():
    state = klax.TrainingState(
        model=jnp.array(1.0),
        opt_state=(jnp.array(2.0),),
        run_state=jnp.array(3.0),
        step=jnp.array(4),
    )
    assert [f.name for f in dataclasses.fields(state)] == [
        "model",
        "opt_state",
        "run_state",
        "step",
    ]
    leaves = jax.tree.leaves(state)
    assert [float(x) for x in leaves] == [1.0, 2.0, 3.0, 4.0]
    # Mutable dataclass.
    state.step = jnp.array(5)
    assert int(state.step) == 5
    # Positional construction equals keyword construction.
    same = klax.TrainingState(
        jnp.array(1.0), (jnp.array(2.0),), jnp.array(3.0), jnp.array(5)
    )
    assert jax.tree.structure(same) == jax.tree.structure(state)


def test_state_through_jit_vmap_grad():
    state = klax.TrainingState(
        jnp.arange(3.0), {"m": jnp.zeros(3)}, None, jnp.array(0, jnp.int32)
    )

    @jax.jit
    def advance(s):
        return dataclasses.replace(s, model=s.model * 2, step=s.step + 1)

    out = advance(state)
    assert isinstance(out, klax.TrainingState)
    np.testing.assert_array_equal(out.model, [0.0, 2.0, 4.0])
    assert out.step.dtype == jnp.int32 and int(out.step) == 1

    stacked = jax.tree.map(lambda x: jnp.stack([x, x + 1]), state)
    batched = jax.vmap(advance)(stacked)
    np.testing.assert_array_equal(batched.step, [1, 2])

    grad = jax.grad(lambda s: jnp.sum(s.model**2))(
        dataclasses.replace(state, step=jnp.array(0.0))
    )
    np.testing.assert_allclose(grad.model, [0.0, 2.0, 4.0])


# --------------------------------------------------------------------------
# TrainingContext


def test_context_initial_state_and_attributes():
    model = _model()
    context = _context(model)
    state = context.state
    assert isinstance(state, klax.TrainingState)
    assert state.model is model
    assert state.run_state is None
    assert state.step.shape == () and state.step.dtype == jnp.int32
    assert int(state.step) == 0
    assert context.loss is klax.mse
    assert context.steps == 5
    assert context.stop_step is None and context.stop_reason is None
    leaves, treedef = jax.tree.flatten(state)
    assert context._state_treedef == treedef
    assert len(context._state_leaves) == len(leaves)


def test_context_step_dtype_with_x64(x64):
    context = _context()
    assert context.state.step.dtype == jnp.int32
    assert jax.tree.leaves(context.state.model)[0].dtype == jnp.float64


def test_context_wraps_plain_optimizer_only():
    plain = optax.GradientTransformation(
        lambda params: (), lambda updates, state, params=None: (updates, state)
    )
    context = _context(optimizer=plain)
    assert isinstance(context.optimizer, optax.GradientTransformationExtraArgs)
    assert context.optimizer is not plain
    extra = optax.with_extra_args_support(optax.sgd(0.1))
    assert _context(optimizer=extra).optimizer is extra


def test_context_setter_checks_structure():
    context = _context()
    state = context.state
    with pytest.raises(ValueError, match="PyTree structure of state changed"):
        context.state = dataclasses.replace(state, run_state=(jnp.array(1.0),))
    # Same structure: accepted, and the leaves follow.
    new_model = jax.tree.map(lambda x: x + 1 if eqx.is_array(x) else x, state.model)
    context.state = dataclasses.replace(state, model=new_model)
    assert context.state.model is new_model
    expected = jax.tree.leaves(new_model)
    for a, b in zip(expected, context._state_leaves[: len(expected)], strict=True):
        assert a is b


def test_context_in_place_edits_take_effect():
    context = _context()
    new_model = jax.tree.map(
        lambda x: x * 0 if eqx.is_array(x) else x, context.state.model
    )
    context.state.model = new_model
    leaves = jax.tree.leaves(new_model)
    assert all(
        a is b
        for a, b in zip(leaves, context._state_leaves[: len(leaves)], strict=True)
    )
    context.state.step = jnp.array(7, jnp.int32)
    assert int(context._state_leaves[-1]) == 7
    # A structural change made in place is caught on the next access.
    context.state.run_state = (jnp.array(1.0),)
    with pytest.raises(ValueError, match="PyTree structure of state changed"):
        context._state_leaves  # noqa: B018


def test_context_update_state_is_lazy_and_checked():
    context = _context()
    leaves = list(context._state_leaves)
    leaves[-1] = jnp.array(3, jnp.int32)
    context.update_state(leaves)
    assert int(context.state.step) == 3
    with pytest.raises(ValueError, match="expects"):
        context.update_state(leaves[:-1])


@given(st.integers(min_value=0, max_value=2**20))
def test_context_step_round_trip(step):
    context = _context()
    leaves = list(context._state_leaves)
    leaves[-1] = jnp.array(step, jnp.int32)
    context.update_state(leaves)
    assert int(context.state.step) == step
    context.state.step = context.state.step + 1
    assert int(context._state_leaves[-1]) == step + 1
