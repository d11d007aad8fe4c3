"""Tests of klax.make_step, klax.Callback and klax.run_training_loop.

Also the optimizer table of the spec (§11.1): every optimizer runs through
`make_step` and through `fit`, and the fused loop of `fit` gives the same
parameters as a `make_step` loop over the same batches.
"""

import dataclasses
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import klax

# One tiny model and dataset for the whole file (shared compilations).
X = np.asarray(jr.uniform(jr.key(0), (8, 2)), dtype=np.float32)
Y = np.sum(X**2, axis=-1)
SGD = optax.sgd(0.05)


def _model(key=1, dtype=None):
    return klax.nn.FICNN(2, "scalar", [3], dtype=dtype, key=jr.key(key))


def _arrays(tree):
    return eqx.filter(tree, eqx.is_array)


def _initial(model, optimizer, run_state=None):
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    state = klax.TrainingState(
        klax.apply(model), opt_state, run_state, jnp.array(0, jnp.int32)
    )
    return jax.tree.flatten(state)


def _per_step(model, optimizer, steps, key, batch_size=4, data=(X, Y)):
    """`steps` make_step updates over the batches `klax.fit` draws for `key`."""
    leaves, treedef = _initial(model, optimizer)
    # Some optimizers (optax.lbfgs) start with weakly typed scalars that are
    # strongly typed after one update, so the second `make_step` call would
    # compile again; start strongly typed (same values) to compile once.
    leaves = [jnp.asarray(x, x.dtype) if eqx.is_array(x) else x for x in leaves]
    bkey, _ = jr.split(key)
    batches = klax.batch_data(data, batch_size, key=bkey)
    for _ in range(steps):
        leaves, treedef = klax.make_step(
            leaves, treedef, next(batches), klax.mse, optimizer
        )
    return jax.tree.unflatten(treedef, leaves)


def _context(
    model, optimizer=SGD, batches=None, steps=3, run_state=None, loss=klax.mse
):
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    if batches is None:
        batches = klax.batch_data((X, Y), 4, key=jr.key(2))
    return klax.TrainingContext(
        klax.apply(model), optimizer, opt_state, batches, run_state, loss, steps
    )


class Recorder(klax.Callback):
    """Records the step seen by each hook (and optionally stops)."""

    def __init__(self, log, name="rec", stop_at=None, call_every=None):
        self.log = log
        self.name = name
        self.stop_at = stop_at
        if call_every is not None:
            self.call_every = call_every

    def on_training_start(self, context):
        self.log.append((self.name, "start", int(context.state.step)))

    def on_training_step(self, context):
        step = int(context.state.step)
        self.log.append((self.name, "step", step))
        return self.stop_at is not None and step >= self.stop_at

    def on_training_end(self, context):
        self.log.append((self.name, "end", int(context.state.step)))


def _steps(log, name="rec", hook="step"):
    return [s for n, h, s in log if n == name and h == hook]


# --------------------------------------------------------------------------
# make_step


def test_make_step_matches_manual_update():
    model = _model()
    leaves, treedef = _initial(model, SGD)
    batch = (X[:4], Y[:4])
    new_leaves, new_treedef = klax.make_step(
        state_leaves=leaves,
        state_treedef=treedef,
        batch=batch,
        loss=klax.mse,
        optimizer=SGD,
    )
    assert isinstance(new_leaves, list)
    assert new_treedef == treedef
    assert len(new_leaves) == len(leaves)
    state = jax.tree.unflatten(treedef, leaves)
    new = jax.tree.unflatten(new_treedef, new_leaves)
    assert int(new.step) == 1 and new.step.dtype == jnp.int32

    _, grad = klax.mse.value_and_grad(state.model, batch, None)
    params, static = eqx.partition(state.model, eqx.is_inexact_array)
    expected = klax.apply(
        eqx.combine(jax.tree.map(lambda p, g: p - 0.05 * g, params, grad), static)
    )
    for a, b in zip(
        jax.tree.leaves(_arrays(new.model)),
        jax.tree.leaves(_arrays(expected)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # f32 round-off


def test_make_step_applies_constraints():
    # A large step pushes NonNegative weights below zero; apply clamps them.
    model = _model()
    leaves, treedef = _initial(model, optax.sgd(100.0))
    for _ in range(2):
        leaves, treedef = klax.make_step(
            leaves, treedef, (X, Y), klax.mse, optax.sgd(100.0)
        )
    model = jax.tree.unflatten(treedef, leaves).model
    nonneg = [
        node.parameter
        for node in jax.tree.leaves(
            model, is_leaf=lambda x: isinstance(x, klax.NonNegative)
        )
        if isinstance(node, klax.NonNegative)
    ]
    assert nonneg
    assert all(bool(jnp.all(p >= 0)) for p in nonneg)


def test_make_step_accepts_optimizer_without_extra_args():
    sgd = optax.sgd(0.05)
    plain = optax.GradientTransformation(sgd.init, sgd.update)
    assert not isinstance(plain, optax.GradientTransformationExtraArgs)
    leaves, treedef = _initial(_model(), plain)
    out, _ = klax.make_step(leaves, treedef, (X, Y), klax.mse, plain)
    ref, _ = klax.make_step(leaves, treedef, (X, Y), klax.mse, SGD)
    for a, b in zip(
        jax.tree.leaves(_arrays(out)), jax.tree.leaves(_arrays(ref)), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_make_step_vmapped_over_an_ensemble():
    # Two models trained at once with filter_vmap equal two separate steps.
    models = [_model(key=k) for k in (1, 2)]
    flat = [_initial(m, SGD) for m in models]
    treedef = flat[0][1]
    singles = [
        klax.make_step(leaves, treedef, (X, Y), klax.mse, SGD)[0] for leaves, _ in flat
    ]
    dynamic = [[x if eqx.is_array(x) else None for x in leaves] for leaves, _ in flat]
    static = [None if eqx.is_array(x) else x for x in flat[0][0]]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *dynamic)

    @eqx.filter_vmap
    def step(dyn):
        leaves = [s if d is None else d for d, s in zip(dyn, static, strict=True)]
        return [x for x in klax.make_step(leaves, treedef, (X, Y), klax.mse, SGD)[0]]

    out = step(stacked)
    for i, single in enumerate(singles):
        for a, b in zip(out, single, strict=True):
            if eqx.is_array(b):
                np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7)


def test_make_step_returns_the_loss_it_computed():
    leaves, treedef = _initial(_model(), SGD)
    batch = (X[:4], Y[:4])
    new_leaves, new_treedef, value = klax.make_step(
        leaves, treedef, batch, klax.mse, SGD, return_loss=True
    )
    state = jax.tree.unflatten(treedef, leaves)
    expected = klax.mse(state.model, batch, None)  # before the update
    assert value.shape == () and value.dtype == expected.dtype
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    plain_leaves, plain_treedef = klax.make_step(leaves, treedef, batch, klax.mse, SGD)
    assert new_treedef == plain_treedef
    for a, b in zip(new_leaves, plain_leaves, strict=True):
        np.testing.assert_array_equal(a, b)


def test_make_step_x64(x64):
    model = _model()
    leaves, treedef = _initial(model, SGD)
    out, _ = klax.make_step(leaves, treedef, (X, Y), klax.mse, SGD)
    state = jax.tree.unflatten(treedef, out)
    assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(_arrays(state.model)))


# --------------------------------------------------------------------------
# Optimizer table (§11.1): make_step and fit, fused == per-step

with warnings.catch_warnings():
    # Listed in the spec; optax deprecates it in favour of optimistic_adam_v2.
    warnings.simplefilter("ignore", DeprecationWarning)
    _optimistic_adam = optax.optimistic_adam(1e-2)

OPTIMIZERS = {
    "adabelief": optax.adabelief(1e-2),
    "adadelta": optax.adadelta(1e-1),
    "adan": optax.adan(1e-2),
    "adafactor": optax.adafactor(1e-2),
    "adagrad": optax.adagrad(1e-2),
    "adam": optax.adam(1e-2),
    "adamw": optax.adamw(1e-2),
    "adamax": optax.adamax(1e-2),
    "adamaxw": optax.adamaxw(1e-2),
    "amsgrad": optax.amsgrad(1e-2),
    "fromage": optax.fromage(1e-2),
    "lamb": optax.lamb(1e-2),
    "lars": optax.lars(1e-2),
    "lbfgs": optax.lbfgs(),
    "lion": optax.lion(1e-3),
    "nadam": optax.nadam(1e-2),
    "nadamw": optax.nadamw(1e-2),
    "noisy_sgd": optax.noisy_sgd(1e-2, key=jr.key(0)),
    "novograd": optax.novograd(1e-2),
    "optimistic_gradient_descent": optax.optimistic_gradient_descent(1e-2),
    "optimistic_adam": _optimistic_adam,
    "polyak_sgd": optax.polyak_sgd(0.1),
    "radam": optax.radam(1e-2),
    "rmsprop": optax.rmsprop(1e-2),
    "sgd": optax.sgd(1e-2),
    "sign_sgd": optax.sign_sgd(1e-2),
    "sm3": optax.sm3(1e-2),
    "yogi": optax.yogi(1e-2),
    "reduce_on_plateau": optax.chain(
        optax.adam(1e-2), optax.contrib.reduce_on_plateau(patience=1)
    ),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS), ids=list(OPTIMIZERS))
def test_optimizer_through_make_step_and_fit(name):
    optimizer = OPTIMIZERS[name]
    model = _model()
    key = jr.key(5)
    steps = 3
    reference = _per_step(model, optimizer, steps, key)
    trained, history = klax.fit(
        model,
        (X, Y),
        batch_size=4,
        steps=steps,
        optimizer=optimizer,
        make_logger=False,
        key=key,
    )
    assert history is None
    ref_leaves = jax.tree.leaves(_arrays(reference.model))
    fit_leaves = jax.tree.leaves(_arrays(trained))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in fit_leaves)
    # Something was learned (sign_sgd, lion etc. move every parameter).
    init_leaves = jax.tree.leaves(_arrays(klax.apply(model)))
    assert any(
        not np.array_equal(a, b) for a, b in zip(fit_leaves, init_leaves, strict=True)
    )
    # Fused loop == make_step loop up to float32 round-off of two compilations.
    for a, b in zip(fit_leaves, ref_leaves, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Constraints hold after every update, in particular the last.
    for node in jax.tree.leaves(
        trained, is_leaf=lambda x: isinstance(x, klax.NonNegative)
    ):
        if isinstance(node, klax.NonNegative):
            assert bool(jnp.all(node.parameter >= 0))


# --------------------------------------------------------------------------
# Callback and run_training_loop


def test_callback_defaults_are_no_ops():
    callback = klax.Callback()
    assert callback.on_training_start(None) is None
    assert callback.on_training_step(None) is None
    assert callback.on_training_end(None) is None
    assert callback.call_every is None

    class OnlyEnd(klax.Callback):
        def __init__(self):  # no super().__init__() needed
            self.ended = False

        def on_training_end(self, context):
            self.ended = True

    only_end = OnlyEnd()
    assert only_end.on_training_step(None) is None


@pytest.mark.parametrize(
    ("steps", "stop_at", "expected_steps", "expected_end"),
    [(3, None, [1, 2, 3], 3), (0, None, [], 0), (10, 1, [1], 1)],
    ids=["steps=3", "steps=0", "stop-at-1"],
)
def test_run_training_loop_step_numbers(steps, stop_at, expected_steps, expected_end):
    log = []
    model = _model()
    context = _context(model, steps=steps)
    before = context.state.model
    out = klax.run_training_loop(context, [Recorder(log, stop_at=stop_at)])
    assert out is context
    assert _steps(log, hook="start") == [0]
    assert _steps(log) == expected_steps
    assert _steps(log, hook="end") == [expected_end]
    assert int(context.state.step) == expected_end
    if steps == 0:
        assert context.state.model is before


def test_run_training_loop_calls_every_callback_in_order():
    log = []
    callbacks = [Recorder(log, "a", stop_at=2), Recorder(log, "b")]
    klax.run_training_loop(_context(_model(), steps=10), callbacks)
    assert [(n, h) for n, h, _ in log] == [
        ("a", "start"),
        ("b", "start"),
        ("a", "step"),
        ("b", "step"),
        ("a", "step"),
        ("b", "step"),  # still called after "a" asked to stop
        ("a", "end"),
        ("b", "end"),
    ]
    assert _steps(log, "b") == [1, 2]


def test_run_training_loop_equals_make_step_loop():
    model = _model()
    context = _context(model, steps=5)
    klax.run_training_loop(context, [])
    leaves, treedef = _initial(model, SGD)
    batches = klax.batch_data((X, Y), 4, key=jr.key(2))
    for _ in range(5):
        leaves, treedef = klax.make_step(leaves, treedef, next(batches), klax.mse, SGD)
    reference = jax.tree.unflatten(treedef, leaves)
    for a, b in zip(
        jax.tree.leaves(_arrays(context.state)),
        jax.tree.leaves(_arrays(reference)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # f32 round-off


def test_run_training_loop_call_every():
    log = []
    callbacks = [
        Recorder(log, "every3", call_every=3),
        Recorder(log, "every4", call_every=4),
    ]
    klax.run_training_loop(_context(_model(), steps=12), callbacks)
    assert _steps(log, "every3") == [3, 6, 9, 12]
    assert _steps(log, "every4") == [4, 8, 12]
    assert _steps(log, "every3", "end") == [12]


@pytest.mark.parametrize("bad", [0, -2, 1.5, "3"])
def test_run_training_loop_rejects_bad_call_every(bad):
    class Bad(klax.Callback):
        call_every = bad

        def on_training_step(self, context):
            return None

    error = ValueError if isinstance(bad, int) else TypeError
    with pytest.raises(error, match="call_every"):
        klax.run_training_loop(_context(_model()), [Bad()])


def test_run_training_loop_rejects_non_callbacks():
    with pytest.raises(TypeError, match="Callback"):
        klax.run_training_loop(_context(_model()), [object()])


def test_run_training_loop_ends_when_batches_run_out():
    log = []
    batches = iter([(X[:4], Y[:4]), (X[4:], Y[4:])])
    context = _context(_model(), batches=batches, steps=10)
    klax.run_training_loop(context, [Recorder(log)])
    assert _steps(log) == [1, 2]
    assert _steps(log, hook="end") == [2]


def test_run_training_loop_batches_of_varying_shape():
    # Batches of different sizes cannot be stacked together; each group runs
    # on its own and the result equals the make_step loop.
    sizes = [4, 4, 2, 2, 4]
    starts = np.cumsum([0, *sizes])

    def batches():
        for s, e in zip(starts[:-1], starts[1:], strict=True):
            idx = np.arange(s, e) % len(X)
            yield X[idx], Y[idx]

    model = _model()
    context = _context(model, batches=batches(), steps=5)
    klax.run_training_loop(context, [])
    leaves, treedef = _initial(model, SGD)
    for batch in batches():
        leaves, treedef = klax.make_step(leaves, treedef, batch, klax.mse, SGD)
    reference = jax.tree.unflatten(treedef, leaves)
    assert int(context.state.step) == 5
    for a, b in zip(
        jax.tree.leaves(_arrays(context.state)),
        jax.tree.leaves(_arrays(reference)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # f32 round-off


@klax.loss
def _scaled_mse(model, batch, run_state):
    return run_state * klax.mse.value(model, batch, None)


def test_callback_modifications_take_effect():
    # Setting run_state to 0 turns the loss off: later updates change nothing.
    class Freeze(klax.Callback):
        def on_training_step(self, context):
            if int(context.state.step) == 2:
                context.state = dataclasses.replace(
                    context.state, run_state=jnp.array(0.0)
                )
                self.frozen = context.state.model

    class ResetModel(klax.Callback):
        def __init__(self, model):
            self.model = model

        def on_training_step(self, context):
            if int(context.state.step) == 1:
                context.state.model = self.model  # assigned in place

    model = klax.apply(_model())
    freeze = Freeze()
    context = _context(model, steps=4, run_state=jnp.array(1.0), loss=_scaled_mse)
    klax.run_training_loop(context, [ResetModel(model), freeze])
    final = context.state.model
    for a, b in zip(
        jax.tree.leaves(_arrays(final)),
        jax.tree.leaves(_arrays(freeze.frozen)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert int(context.state.step) == 4

    # The in-place reset at step 1: training from the reset model for one
    # step equals a single update from the initial model.
    log_context = _context(model, steps=2, run_state=jnp.array(1.0), loss=_scaled_mse)
    klax.run_training_loop(log_context, [ResetModel(model)])
    one_step = _context(model, steps=1, run_state=jnp.array(1.0), loss=_scaled_mse)
    one_step.batch_generator = klax.batch_data((X, Y), 4, key=jr.key(2))
    next(one_step.batch_generator)  # the second batch is used after the reset
    klax.run_training_loop(one_step, [])
    for a, b in zip(
        jax.tree.leaves(_arrays(log_context.state.model)),
        jax.tree.leaves(_arrays(one_step.state.model)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_run_training_loop_guard():
    # The third batch holds a NaN target: update 3 is rejected.
    bad_y = Y[:4].copy()
    bad_y[0] = np.nan
    batches = iter([(X[:4], Y[:4]), (X[4:], Y[4:]), (X[:4], bad_y), (X[4:], Y[4:])])
    log = []
    context = _context(_model(), batches=batches, steps=4)
    with pytest.warns(RuntimeWarning, match="step 3"):
        klax.run_training_loop(context, [Recorder(log)])
    assert context.stop_step == 3
    assert context.stop_reason == "non-finite loss"
    assert int(context.state.step) == 2
    assert _steps(log) == [1, 2]
    assert _steps(log, hook="end") == [2]


# --------------------------------------------------------------------------
# One message style for bad arguments across the package


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: klax.fit(_model(), (X, Y), steps=-1, key=jr.key(0)), ValueError,
         "`klax.fit(steps=...)` must be non-negative, but got -1."),
        (lambda: klax.fit(_model(), (X, Y), steps=1.5, key=jr.key(0)), TypeError,
         "`klax.fit(steps=...)` must be a non-negative int, but got 1.5 of type "
         "float."),
        (lambda: next(klax.batch_data(X, 0, key=jr.key(0))), ValueError,
         "batch_size must be at least 1, but got 0."),
        (lambda: klax.MetricLogger(log_every=True), TypeError,
         "log_every must be a positive int, but got True."),
        (lambda: klax.make_ensemble(_model, 0, key=jr.key(0)), ValueError,
         "`klax.make_ensemble(n=...)` must be at least 1, but got 0."),
        (lambda: klax.nn.Linear(-1, 2, jr.normal, key=jr.key(0)), ValueError,
         "in_features must be non-negative, but got -1."),
        (lambda: klax.nn.FICNN(2, 1, [4], use_passthrough=1, key=jr.key(0)),
         TypeError, "`klax.nn.FICNN(use_passthrough=...)` must be a bool, but got 1."),
    ],
)  # fmt: skip
def test_argument_errors_share_one_message_style(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert str(info.value).startswith(message)
