"""Tests of klax.fit: spec behaviour, fused == per-step, guard, resume, keys."""

import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from hypothesis import given, strategies as st

import klax

# One tiny model and dataset for the whole file (shared compilations).
X = np.asarray(jr.uniform(jr.key(0), (10, 2)), dtype=np.float32)
Y = np.sum(X**2, axis=-1)
SGD = optax.sgd(0.05)
ADAM = optax.adam(1e-2)


def _model(key=1, dtype=None):
    return klax.nn.FICNN(2, "scalar", [3], dtype=dtype, key=jr.key(key))


def _arrays(tree):
    return jax.tree.leaves(eqx.filter(tree, eqx.is_array))


def _assert_equal(a, b):
    for u, v in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(u, v)


def _per_step(model, optimizer, steps, key, batch_size, data=(X, Y), batch_axes=0):
    """`steps` make_step updates over the batches fit draws (the spec's loop)."""
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    state = klax.TrainingState(
        klax.apply(model), opt_state, None, jnp.array(0, jnp.int32)
    )
    leaves, treedef = jax.tree.flatten(state)
    bkey, _ = jr.split(key)
    batches = klax.batch_data(data, batch_size, batch_axes, key=bkey)
    for _ in range(steps):
        leaves, treedef = klax.make_step(
            leaves, treedef, next(batches), klax.mse, optimizer
        )
    return jax.tree.unflatten(treedef, leaves)


def _fit(model=None, steps=6, **kwargs):
    kwargs = {
        "batch_size": 3,
        "optimizer": SGD,
        "verbose": 0,
        "key": jr.key(4),
        **kwargs,
    }
    return klax.fit(_model() if model is None else model, (X, Y), steps=steps, **kwargs)


class Recorder(klax.Callback):
    def __init__(self, log, name="rec", stop_at=None):
        self.log, self.name, self.stop_at = log, name, stop_at

    def on_training_start(self, context):
        self.log.append((self.name, "start", int(context.state.step)))

    def on_training_step(self, context):
        step = int(context.state.step)
        self.log.append((self.name, "step", step))
        return self.stop_at is not None and step >= self.stop_at

    def on_training_end(self, context):
        self.log.append((self.name, "end", int(context.state.step)))


# --------------------------------------------------------------------------
# Spec behaviour


def test_spec_example():
    x = jr.uniform(jr.key(0), (100, 2))
    y = jnp.sum(x, axis=-1)
    model = klax.nn.FICNN(2, "scalar", [4, 4], key=jr.key(1))
    trained, history = klax.fit(
        model,
        (x, y),
        batch_size=5,
        steps=5,
        optimizer=optax.sgd(0.1),
        verbose=0,
        key=jr.key(2),
    )
    assert history.total_steps == 5
    steps, values = history["loss"]
    assert steps == [0] and len(values) == 1  # logged only at 0 (log_every=100)
    assert np.shape(values[0]) == () and np.isfinite(values[0])
    assert history.total_time >= 0.0
    assert history.stop_step is None and history.stop_reason is None
    assert isinstance(trained, klax.nn.FICNN)
    assert klax.contains_constraints(trained)  # not finalized


def test_logging_steps_and_final_opt_state():
    trained, history = _fit(steps=7, log_every=3, optimizer=ADAM)
    assert history["loss"][0] == [0, 3, 6]
    assert all(isinstance(s, int) for s in history["loss"][0])
    assert history.total_steps == 7
    count = [x for x in jax.tree.leaves(history.final_opt_state) if jnp.shape(x) == ()]
    assert int(count[0]) == 7  # adam's step counter


def test_callbacks_in_order_and_logger_last():
    events = []

    class Event(klax.Callback):
        def __init__(self, name):
            self.name = name

        def on_training_start(self, context):
            events.append((self.name, int(context.state.step)))

        def on_training_step(self, context):
            events.append((self.name, int(context.state.step)))

    @klax.metric("probe")
    def probe(context):
        # Called by the logger: shows when the logger runs.
        events.append(("logger", int(context.state.step)))
        return 0.0

    _, history = _fit(
        steps=4, log_every=2, callbacks=[Event("a"), Event("b")], metrics=[probe]
    )
    assert events == [
        ("a", 0),
        ("b", 0),
        ("logger", 0),
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("b", 2),
        ("logger", 2),
        ("a", 3),
        ("b", 3),
        ("a", 4),
        ("b", 4),
        ("logger", 4),
    ]
    assert history["probe"][0] == [0, 2, 4]


def test_steps_zero(capsys):
    model = _model()
    trained, history = _fit(model, steps=0, verbose=1)
    _assert_equal(trained, klax.apply(model))
    assert history.total_steps == 0
    assert history["loss"][0] == [0]
    out = capsys.readouterr().out
    assert out.startswith("Step 0/0: loss: ")
    assert out.count("\n") == 1


def test_verbose_1_output(capsys):
    _fit(steps=4, log_every=2, verbose=1, validation_data=(X[:4], Y[:4]))
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "Step 0/4",
        "Step 2/4",
        "Step 4/4",
    ]
    for line in lines:
        assert ", validation_loss: " in line and "loss: " in line


def test_verbose_2_progress_bar(capsys):
    _, history = _fit(steps=4, log_every=2, verbose=2)
    err = capsys.readouterr().err
    assert "4/4" in err and "loss" in err
    assert history["loss"][0] == [0, 2, 4]


def test_metric_replaces_default_loss():
    @klax.metric("loss")
    def constant(context):
        return "A"

    _, history = _fit(steps=4, log_every=2, metrics=[constant])
    assert history.keys() == ["loss"]
    assert history["loss"] == ([0, 2, 4], ["A", "A", "A"])


def test_validation_loss_logged():
    _, history = _fit(steps=2, log_every=1, validation_data=(X[:6], Y[:6]))
    assert history.keys() == ["loss", "validation_loss"]
    assert history["validation_loss"][0] == [0, 1, 2]


def test_make_logger_false_returns_none():
    trained, history = _fit(steps=2, make_logger=False, metrics=["ignored"])
    assert history is None
    _assert_equal(trained, _per_step(_model(), SGD, 2, jr.key(4), 3).model)


def test_stop_request_and_step_numbers():
    log = []
    _, history = _fit(steps=10, callbacks=[Recorder(log, stop_at=1)])
    assert [s for _, h, s in log if h == "step"] == [1]
    assert [s for _, h, s in log if h == "end"] == [1]
    assert history.total_steps == 1


@klax.loss
def _l2(model, batch, run_state):
    del batch
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    return run_state * sum(jnp.sum(x**2) for x in leaves)


def test_data_none_with_batch_axes_none():
    model = _model()
    trained, history = klax.fit(
        model,
        None,
        batch_axes=None,
        run_state=jnp.array(1.0),
        loss=_l2,
        steps=5,
        log_every=5,
        optimizer=SGD,
        verbose=0,
        key=jr.key(0),
    )
    before, after = history["loss"][1]
    assert after < before
    # Equals five make_step updates with batch None.
    opt_state = SGD.init(eqx.filter(model, eqx.is_inexact_array))
    state = klax.TrainingState(
        klax.apply(model), opt_state, jnp.array(1.0), jnp.array(0)
    )
    leaves, treedef = jax.tree.flatten(state)
    for _ in range(5):
        leaves, treedef = klax.make_step(leaves, treedef, None, _l2, SGD)
    for u, v in zip(
        _arrays(trained),
        _arrays(jax.tree.unflatten(treedef, leaves).model),
        strict=True,
    ):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)  # f32 round-off


def test_init_opt_state_resumes():
    _, history = _fit(steps=3, optimizer=ADAM)
    model2, history2 = _fit(
        steps=2, optimizer=ADAM, init_opt_state=history.final_opt_state
    )
    counts = [
        x for x in jax.tree.leaves(history2.final_opt_state) if jnp.shape(x) == ()
    ]
    assert int(counts[0]) == 5


# --------------------------------------------------------------------------
# Fused loop == per-step loop, batches, determinism, keys


@pytest.mark.parametrize("batch_size", [3, 10, 32], ids=["3-of-10", "all-10", "32>10"])
def test_fused_equals_per_step(batch_size):
    # 3 of 10: three batches per epoch (one sample dropped), reshuffled.
    trained, _ = _fit(steps=8, batch_size=batch_size, log_every=3)
    reference = _per_step(_model(), SGD, 8, jr.key(4), batch_size)
    for u, v in zip(_arrays(trained), _arrays(reference.model), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)  # f32 round-off


@klax.loss
def _first_sample_loss(model, batch, run_state):
    x, y = batch
    return (model(x[0]) - y[0]) ** 2


def test_full_batches_use_the_data_as_stored():
    # batch_size >= n: every step sees all samples in their stored order (a
    # shuffled full batch differs only by the round-off of a sum over samples).
    for batch_size in (10, 32):
        trained, _ = _fit(
            steps=4, batch_size=batch_size, loss=_first_sample_loss, log_every=2
        )
        leaves, treedef = jax.tree.flatten(
            klax.TrainingState(
                klax.apply(_model()),
                SGD.init(eqx.filter(_model(), eqx.is_inexact_array)),
                None,
                jnp.array(0, jnp.int32),
            )
        )
        for _ in range(4):
            leaves, treedef = klax.make_step(
                leaves, treedef, (X, Y), _first_sample_loss, SGD
            )
        reference = jax.tree.unflatten(treedef, leaves).model
        for u, v in zip(_arrays(trained), _arrays(reference), strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)


def test_fused_equals_per_step_large_dataset():
    # 130 samples: the device permutations take the sort-based path of
    # jr.permutation (small datasets use an equivalent ranking).
    x = np.asarray(jr.uniform(jr.key(7), (130, 2)), dtype=np.float32)
    data = (x, np.sum(x**2, axis=-1))
    trained, _ = klax.fit(
        _model(),
        data,
        batch_size=64,
        steps=5,
        optimizer=SGD,
        make_logger=False,
        key=jr.key(4),
    )
    reference = _per_step(_model(), SGD, 5, jr.key(4), 64, data=data)
    for u, v in zip(_arrays(trained), _arrays(reference.model), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)  # f32 round-off


@klax.loss
def _mse_columns(model, batch, run_state):
    x_columns, y = batch
    return klax.mse.value(model, (x_columns.T, y), run_state)


def test_batch_axes_are_honoured():
    data = (X.T, Y)  # samples along axis 1 of the first array
    trained, _ = klax.fit(
        _model(),
        data,
        batch_size=3,
        batch_axes=(1, 0),
        steps=5,
        loss=_mse_columns,
        optimizer=SGD,
        verbose=0,
        key=jr.key(4),
    )
    reference, _ = _fit(steps=5)
    for u, v in zip(_arrays(trained), _arrays(reference), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)  # f32 round-off


def _custom_batcher(data, batch_size, batch_axes, *, key):
    # Same sequence as batch_data, but not batch_data: drained on the host.
    yield from klax.batch_data(data, batch_size, batch_axes, key=key)


def test_custom_batcher_equals_per_step():
    trained, history = _fit(steps=7, batcher=_custom_batcher, log_every=3)
    reference = _per_step(_model(), SGD, 7, jr.key(4), 3)
    for u, v in zip(_arrays(trained), _arrays(reference.model), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)  # f32 round-off
    assert history["loss"][0] == [0, 3, 6]


def test_deterministic():
    a, ha = _fit(steps=6, optimizer=ADAM)
    b, hb = _fit(steps=6, optimizer=ADAM)
    _assert_equal(a, b)
    assert [float(v) for v in ha["loss"][1]] == [float(v) for v in hb["loss"][1]]


@pytest.mark.parametrize(
    "key",
    [jr.key(4), jr.PRNGKey(4), jr.fold_in(jr.PRNGKey(0), 1)],
    ids=["typed", "legacy", "legacy-fold-in"],
)
def test_key_kinds(key):
    trained, _ = _fit(steps=5, key=key)
    reference = _per_step(_model(), SGD, 5, key, 3)
    for u, v in zip(_arrays(trained), _arrays(reference.model), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)  # f32 round-off


def test_typed_and_legacy_keys_agree():
    a, _ = _fit(steps=5, key=jr.key(4))
    b, _ = _fit(steps=5, key=jr.PRNGKey(4))
    _assert_equal(a, b)


def test_fit_x64(x64):
    model = _model()
    trained, history = _fit(model, steps=4)
    assert all(
        x.dtype == jnp.float64
        for x in _arrays(trained)
        if jnp.issubdtype(x.dtype, jnp.floating)
    )
    reference = _per_step(model, SGD, 4, jr.key(4), 3)
    for u, v in zip(_arrays(trained), _arrays(reference.model), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)  # f64 round-off


# --------------------------------------------------------------------------
# Exact resume


@pytest.mark.parametrize("first", [4, 5], ids=["epoch-boundary", "mid-epoch"])
def test_exact_resume_x64(x64, first):
    # batch_size 3 of 10 samples: 3 batches per epoch, so 4 resp. 5 steps end
    # inside an epoch; log_every differs so the chunks are cut differently.
    total = 11
    model = _model()
    full, full_history = _fit(model, steps=total, optimizer=ADAM, log_every=4)
    part, history = _fit(model, steps=first, optimizer=ADAM, log_every=3)
    rest, history2 = _fit(
        part,
        steps=total - first,
        optimizer=ADAM,
        log_every=5,
        init_opt_state=history.final_opt_state,
        batch_offset=history.total_steps,
    )
    _assert_equal(rest, full)  # bit for bit
    _assert_equal(history2.final_opt_state, full_history.final_opt_state)
    history.extend(history2)
    assert history.total_steps == total


def test_batch_offset_with_custom_batcher():
    full, _ = _fit(steps=7, batcher=_custom_batcher, optimizer=ADAM)
    part, history = _fit(steps=3, batcher=_custom_batcher, optimizer=ADAM)
    rest, _ = _fit(
        part,
        steps=4,
        batcher=_custom_batcher,
        optimizer=ADAM,
        init_opt_state=history.final_opt_state,
        batch_offset=3,
    )
    for u, v in zip(_arrays(rest), _arrays(full), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)  # f32 round-off


@given(st.integers(min_value=0, max_value=9))
def test_batch_offset_skips_batches(offset):
    # Training 1 step after skipping `offset` batches equals the step the
    # per-step loop takes with batch number `offset`.
    model = klax.apply(_model())
    trained, _ = _fit(model, steps=1, batch_offset=offset, make_logger=False)
    bkey, _ = jr.split(jr.key(4))
    batches = klax.batch_data((X, Y), 3, key=bkey)
    for _ in range(offset):
        next(batches)
    opt_state = SGD.init(eqx.filter(model, eqx.is_inexact_array))
    state = klax.TrainingState(model, opt_state, None, jnp.array(0, jnp.int32))
    leaves, treedef = jax.tree.flatten(state)
    leaves, treedef = klax.make_step(leaves, treedef, next(batches), klax.mse, SGD)
    for u, v in zip(
        _arrays(trained),
        _arrays(jax.tree.unflatten(treedef, leaves).model),
        strict=True,
    ):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)  # f32 round-off


# --------------------------------------------------------------------------
# Non-finite guard


def _first_batch_containing(sample, batch_size=3):
    bkey, _ = jr.split(jr.key(4))
    batches = klax.batch_data((np.arange(len(X)),), batch_size, key=bkey)
    for k in range(1, 100):
        (indices,) = next(batches)
        if sample in indices:
            return k
    raise AssertionError("sample never drawn")


@pytest.mark.parametrize("log_every", [1, 100], ids=["per-step", "fused"])
def test_guard_nonfinite_loss(log_every):
    y = Y.copy()
    y[7] = np.nan  # update k, the first whose batch holds sample 7, is bad
    k = _first_batch_containing(7)
    assert k > 1
    log = []
    callbacks = [Recorder(log)] if log_every == 1 else []
    with pytest.warns(RuntimeWarning, match=f"step {k} of 20"):
        trained, history = klax.fit(
            _model(),
            (X, y),
            batch_size=3,
            steps=20,
            optimizer=ADAM,
            verbose=0,
            log_every=log_every,
            callbacks=callbacks,
            key=jr.key(4),
        )
    assert history.stop_step == k
    assert history.stop_reason == "non-finite loss"
    assert history.total_steps == k - 1
    reference = _per_step(_model(), ADAM, k - 1, jr.key(4), 3, data=(X, y))
    for u, v in zip(_arrays(trained), _arrays(reference.model), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)  # f32 round-off
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in _arrays(trained))
    counts = [x for x in jax.tree.leaves(history.final_opt_state) if jnp.shape(x) == ()]
    assert int(counts[0]) == k - 1
    if log_every == 1:
        assert [s for _, h, s in log if h == "step"] == list(range(1, k))


def test_guard_nonfinite_parameters(tmp_path):
    # Finite loss, but update 4 turns the parameters into inf.
    blow_up = optax.chain(
        optax.sgd(0.05),
        optax.scale_by_schedule(lambda count: jnp.where(count == 3, jnp.inf, 1.0)),
    )
    with pytest.warns(RuntimeWarning, match="step 4 of 9"):
        trained, history = _fit(steps=9, optimizer=blow_up)
    assert history.stop_step == 4
    assert history.stop_reason == "non-finite parameters"
    reference = _per_step(_model(), blow_up, 3, jr.key(4), 3)
    for u, v in zip(_arrays(trained), _arrays(reference.model), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)  # f32 round-off
    # The stop is kept through save/load.
    path = tmp_path / "sub" / "history.pkl"
    history.save(path)
    loaded = klax.History.load(path)
    assert loaded.stop_step == 4 and loaded.stop_reason == "non-finite parameters"
    assert loaded.total_steps == 3


def test_guard_without_logger_still_warns():
    y = Y.copy()
    y[7] = np.nan
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        trained, history = klax.fit(
            _model(),
            (X, y),
            batch_size=3,
            steps=20,
            optimizer=ADAM,
            make_logger=False,
            key=jr.key(4),
        )
    assert history is None
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in _arrays(trained))


# --------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": -1}, ValueError, "steps"),
        ({"steps": 2.5}, TypeError, "steps"),
        ({"batch_offset": -1}, ValueError, "batch_offset"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"log_every": 0}, ValueError, "log_every"),
        ({"loss": lambda m, b, r: 0.0}, TypeError, "klax.Loss"),
        ({"optimizer": "adam"}, TypeError, "optax optimizer"),
        ({"callbacks": [object()]}, TypeError, "Callback"),
        ({"init_opt_state": (jnp.zeros(3),)}, ValueError, "init_opt_state"),
    ],
    ids=lambda v: str(v)[:20] if not isinstance(v, dict) else next(iter(v)),
)
def test_fit_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        _fit(steps=kwargs.pop("steps", 2), **kwargs)


def test_fit_validation_data_of_another_structure():
    with pytest.raises(
        ValueError, match=r"validation_data=\.\.\.\)` must be structured"
    ):
        klax.fit(
            _model(), (X, Y), validation_data=(X,), steps=1, verbose=0, key=jr.key(0)
        )
    with pytest.raises(ValueError, match=r"validation_data=.*equal batch sizes"):
        klax.fit(
            _model(),
            (X, Y),
            validation_data=(X[:4], Y[:3]),
            steps=1,
            verbose=0,
            key=jr.key(0),
        )


def test_fit_data_errors():
    with pytest.raises(ValueError, match="equal batch sizes"):
        klax.fit(_model(), (X, Y[:5]), steps=1, verbose=0, key=jr.key(0))
    with pytest.raises(ValueError, match="prefix"):
        klax.fit(
            _model(), (X, Y), batch_axes=(0, 0, 0), steps=1, verbose=0, key=jr.key(0)
        )


@pytest.mark.parametrize("legacy", [False, True], ids=["typed", "legacy"])
@pytest.mark.parametrize("n", [1, 7, 130], ids=["n=1", "ranked", "sorted"])
def test_batch_data_key_schedule_equals_jax_permutation(n, legacy):
    # The one key schedule of klax.batch_data (also behind the device tables
    # of klax.fit): epoch e permutes by jr.permutation(k_e, arange(n)) with
    # k_0 = key and k_{e+1} = jr.split(k_e, 1)[0]. Small datasets take the
    # ranking path, large ones the sort.
    key = jr.PRNGKey(3) if legacy else jr.key(3)
    batches = klax.batch_data(np.arange(n), n, key=key)
    for _ in range(3):
        np.testing.assert_array_equal(next(batches), jr.permutation(key, jnp.arange(n)))
        (key,) = jr.split(key, 1)


@pytest.mark.parametrize("n", [7, 130], ids=["ranked", "sorted"])
def test_fused_equals_per_step_legacy_key_over_epochs(n):
    # The device tables follow the same schedule over several epochs.
    x = np.asarray(jr.uniform(jr.key(7), (n, 2)), dtype=np.float32)
    data = (x, np.sum(x**2, axis=-1))
    batch_size = max(1, n // 3)
    trained, _ = klax.fit(
        _model(),
        data,
        batch_size=batch_size,
        steps=7,
        optimizer=SGD,
        make_logger=False,
        key=jr.PRNGKey(4),
    )
    reference = _per_step(_model(), SGD, 7, jr.PRNGKey(4), batch_size, data=data)
    for u, v in zip(_arrays(trained), _arrays(reference.model), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)  # f32 round-off


def test_fused_equals_per_step_across_permutation_tables(monkeypatch):
    from klax import _loop

    # Tables of 2 epochs (6 batches of 3): 8 steps need a second table.
    monkeypatch.setattr(_loop, "_TABLE_STEPS", 4)
    assert _loop.table_epochs(10, 3, 8) == 2
    trained, _ = _fit(steps=8, batch_size=3, log_every=8)
    reference = _per_step(_model(), SGD, 8, jr.key(4), 3)
    for u, v in zip(_arrays(trained), _arrays(reference.model), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)  # f32 round-off


def test_table_epochs():
    from klax import _loop

    # What the run needs, rounded up to a power of two; at least 2 epochs.
    assert _loop.table_epochs(10, 3, 8) == 4
    assert _loop.table_epochs(10, 3, 1) == 2
    # At most _TABLE_STEPS steps' worth, and _TABLE_ENTRIES over all members.
    assert _loop.table_epochs(10, 1, 10**9) == _loop._TABLE_STEPS
    assert _loop.table_epochs(1000, 1, 10**9, members=8) == 2**22 // (8 * 1000)
    assert _loop.table_epochs(10**6, 1, 10**9, members=8) == 2  # the floor


@pytest.mark.parametrize("func", [klax.fit, klax.fit_ensemble, klax.run_training_loop])
def test_shared_documentation_is_filled_in(func):
    # fit and fit_ensemble share their keyword documentation (written once and
    # filled into both docstrings): every parameter is documented, no
    # placeholder is left.
    doc = inspect.getdoc(func)
    assert doc is not None and "{{" not in doc
    for name in inspect.signature(func).parameters:
        assert f"- `{name}`" in doc, name
    assert "**Non-finite guard" in doc
