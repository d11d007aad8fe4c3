"""Ensembles: building, splitting, evaluating, and training with `fit_ensemble`.

The multi-device tests (member and data parallel on 4 virtual CPU devices) are
in tests/test_sharding.py.
"""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from hypothesis import given, strategies as st

import klax

N = 3
X = jr.uniform(jr.key(0), (16, 2))
Y = jnp.sum(X**2, axis=-1)
SGD = optax.sgd(0.05)


def make_mlp(key):
    return klax.nn.MLP(2, "scalar", [4], key=key)


def max_diff(a, b):
    diffs = jax.tree.map(
        lambda u, v: float(jnp.max(jnp.abs(u - v))),
        eqx.filter(a, eqx.is_array),
        eqx.filter(b, eqx.is_array),
    )
    return max(jax.tree.leaves(diffs))


@pytest.fixture(scope="module")
def ensemble():
    return klax.make_ensemble(make_mlp, N, key=jr.key(1))


# ---------------------------------------------------------------------------
# Building and inspecting


def test_make_ensemble_members_are_independent_models(ensemble):
    keys = jr.split(jr.key(1), N)
    assert ensemble.layers[0].weight.shape == (N, 2, 4)
    assert ensemble.layers[0].weight.dtype == jnp.float32
    assert klax.ensemble_size(ensemble) == N
    for i in range(N):
        single = make_mlp(keys[i])
        # Built under vmap: equal to the single construction up to round-off.
        assert max_diff(klax.ensemble_member(ensemble, i), single) < 1e-6
    w = ensemble.layers[0].weight
    assert not jnp.allclose(w[0], w[1])


def test_make_ensemble_legacy_key_and_x64(x64):
    ens = klax.make_ensemble(make_mlp, 2, key=jr.PRNGKey(0))
    assert ens.layers[1].weight.shape == (2, 4, 1)
    assert ens.layers[1].weight.dtype == jnp.float64


class _Scaled(eqx.Module):
    weight: jax.Array
    scale: float  # a Python number computed from an array while building


def _needs_concrete_values(key):
    # float(...) of an array that does not depend on the key: concrete under
    # vmap, abstract under jit, so make_ensemble must fall back to eager vmap.
    scale = float(jnp.sum(jnp.arange(3.0)))
    return _Scaled(jr.normal(key, (2,)) * scale, scale)


def test_make_ensemble_falls_back_for_builders_needing_concrete_values():
    ens = klax.make_ensemble(_needs_concrete_values, 3, key=jr.key(2))
    assert ens.scale == 3.0 and ens.weight.shape == (3, 2)
    keys = jr.split(jr.key(2), 3)
    for i in range(3):
        np.testing.assert_allclose(
            ens.weight[i], _needs_concrete_values(keys[i]).weight, rtol=1e-6
        )


@pytest.mark.parametrize(
    ("n", "error", "match"),
    [
        (0, ValueError, "at least 1"),
        (2.5, TypeError, "positive int"),
        (True, TypeError, "positive int"),
    ],
)
def test_make_ensemble_rejects_bad_n(n, error, match):
    with pytest.raises(error, match=match):
        klax.make_ensemble(make_mlp, n, key=jr.key(0))


def test_make_ensemble_rejects_non_callable():
    with pytest.raises(TypeError, match="key -> model"):
        klax.make_ensemble("mlp", 2, key=jr.key(0))


def test_ensemble_size_rejects_non_ensembles():
    with pytest.raises(ValueError, match="no arrays"):
        klax.ensemble_size((1.0, "a"))
    with pytest.raises(ValueError, match="same leading"):
        klax.ensemble_size((jnp.zeros((2, 3)), jnp.zeros((3,))))
    with pytest.raises(ValueError, match="same leading"):
        klax.ensemble_size((jnp.zeros((2, 3)), jnp.zeros(())))


def test_member_split_stack_round_trip(ensemble):
    members = klax.split_ensemble(ensemble)
    assert len(members) == N
    for i, member in enumerate(members):
        assert eqx.tree_equal(member, klax.ensemble_member(ensemble, i))
    assert eqx.tree_equal(klax.ensemble_member(ensemble, -1), members[-1])
    assert eqx.tree_equal(klax.stack_ensemble(members), ensemble)


def test_member_index_errors(ensemble):
    with pytest.raises(ValueError, match="out of range"):
        klax.ensemble_member(ensemble, N)
    with pytest.raises(TypeError, match="int"):
        klax.ensemble_member(ensemble, 1.0)


def test_stack_ensemble_errors():
    a = klax.nn.Linear(2, 3, jr.normal, key=jr.key(0))
    with pytest.raises(ValueError, match="at least one"):
        klax.stack_ensemble([])
    with pytest.raises(ValueError, match="shape or dtype"):
        klax.stack_ensemble([{"w": jnp.zeros(2)}, {"w": jnp.zeros(3)}])
    with pytest.raises(ValueError, match="non-array field"):
        klax.stack_ensemble([a, klax.nn.Linear(2, 4, jr.normal, key=jr.key(0))])


@given(
    n=st.integers(1, 3),
    shape=st.lists(st.sampled_from([0, 2]), max_size=2),
    seed=st.integers(0, 2**16),
)
def test_split_stack_property(n, shape, seed):
    tree = {
        "w": np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32),
        "i": np.arange(n, dtype=np.int32),
        "name": "fixed",
    }
    members = klax.split_ensemble(tree)
    assert len(members) == n == klax.ensemble_size(tree)
    assert all(m["name"] == "fixed" and m["w"].shape == tuple(shape) for m in members)
    assert [int(m["i"]) for m in members] == list(range(n))
    assert eqx.tree_equal(klax.stack_ensemble(members), tree)


# ---------------------------------------------------------------------------
# Evaluating and choosing


def test_evaluate_ensemble_statistics(ensemble):
    outputs = np.stack(
        [jax.vmap(klax.finalize(m))(X) for m in klax.split_ensemble(ensemble)]
    )
    out = klax.evaluate_ensemble(ensemble, X, batched=True)
    assert out.outputs.shape == (N, 16)
    np.testing.assert_allclose(out.outputs, outputs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.mean, outputs.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.std, outputs.std(0), rtol=1e-4, atol=1e-6)
    one = klax.evaluate_ensemble(ensemble, X[0])
    assert one.mean.shape == () and one.outputs.shape == (N,)
    np.testing.assert_allclose(one.outputs, outputs[:, 0], rtol=1e-5, atol=1e-6)


def test_evaluate_ensemble_under_jit_vmap_grad(ensemble):
    def mean_at(x):
        return klax.evaluate_ensemble(ensemble, x).mean

    xs = X[:4]
    eager = jnp.stack([mean_at(x) for x in xs])
    np.testing.assert_allclose(jax.jit(jax.vmap(mean_at))(xs), eager, rtol=1e-5)
    grad = jax.grad(mean_at)(xs[0])
    members = [klax.finalize(m) for m in klax.split_ensemble(ensemble)]
    expected = sum(jax.grad(lambda x, m=m: m(x))(xs[0]) for m in members) / N
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


def test_best_member_by_scores_and_function(ensemble):
    member, index = klax.best_member(ensemble, [0.3, 0.1, float("nan")])
    assert index == 1 and eqx.tree_equal(member, klax.ensemble_member(ensemble, 1))
    assert klax.best_member(ensemble, np.array([0.3, 0.1, 0.2]), minimize=False)[1] == 0
    losses = [float(klax.mse(m, (X, Y), None)) for m in klax.split_ensemble(ensemble)]
    _, index = klax.best_member(ensemble, lambda m: klax.mse(m, (X, Y), None))
    assert index == int(np.argmin(losses))


def test_best_member_errors(ensemble):
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        klax.best_member(ensemble, [1.0, 2.0])
    with pytest.raises(ValueError, match="no member has a finite score"):
        klax.best_member(ensemble, [float("nan")] * N)
    with pytest.raises(TypeError, match="one score per member"):
        klax.best_member(ensemble, ["a", "b", "c"])


# ---------------------------------------------------------------------------
# fit_ensemble


FIT = dict(batch_size=8, steps=12, log_every=4, optimizer=SGD, verbose=0)


@pytest.fixture(scope="module")
def trained(ensemble):
    return klax.fit_ensemble(
        ensemble, (X, Y), validation_data=(X[:8], Y[:8]), key=jr.key(7), **FIT
    )


def test_fit_ensemble_members_equal_single_fits(ensemble, trained):
    ens, history = trained
    member_keys = jr.split(jr.key(7), N)
    for i in range(N):
        single, single_history = klax.fit(
            klax.ensemble_member(ensemble, i),
            (X, Y),
            validation_data=(X[:8], Y[:8]),
            key=member_keys[i],
            **FIT,
        )
        assert max_diff(klax.ensemble_member(ens, i), single) < 1e-5
        if i == 0:  # the logged metrics use member 0's batches
            np.testing.assert_allclose(
                [v[0] for v in history["loss"][1]], single_history["loss"][1], rtol=1e-5
            )


def test_fit_ensemble_across_permutation_tables(ensemble, trained, monkeypatch):
    from klax import _loop

    # Tables of 2 epochs: the 12 steps draw their batches from two tables and
    # must give what one table gave.
    monkeypatch.setattr(_loop, "_TABLE_STEPS", 1)
    ens, _ = klax.fit_ensemble(
        ensemble, (X, Y), validation_data=(X[:8], Y[:8]), key=jr.key(7), **FIT
    )
    assert max_diff(ens, trained[0]) < 1e-6


def test_fit_ensemble_history_has_one_value_per_member(trained):
    ens, history = trained
    assert history.keys() == ["loss", "validation_loss"]
    steps, values = history["loss"]
    assert steps == [0, 4, 8, 12]
    assert all(isinstance(v, np.ndarray) and v.shape == (N,) for v in values)
    assert values[-1].mean() < values[0].mean()
    assert history.total_steps == 12
    assert history.stop_step == [None] * N and history.stop_reason == [None] * N
    opt_count = jax.tree.leaves(history.final_opt_state)
    assert all(x.shape[0] == N for x in opt_count if eqx.is_array(x) and x.ndim)
    assert ens.layers[0].weight.shape == (N, 2, 4)


def test_fit_ensemble_resume_equals_uninterrupted(ensemble, trained):
    ens, _ = trained
    kwargs = dict(FIT, validation_data=(X[:8], Y[:8]), key=jr.key(7))
    first, h1 = klax.fit_ensemble(ensemble, (X, Y), **dict(kwargs, steps=5))
    second, h2 = klax.fit_ensemble(
        first,
        (X, Y),
        init_opt_state=h1.final_opt_state,
        batch_offset=h1.total_steps,
        **dict(kwargs, steps=7),
    )
    assert max_diff(second, ens) < 1e-6
    h1.extend(h2)
    assert h1.total_steps == 12 and h1.stop_step == [None] * N


def test_fit_ensemble_x64(x64):
    ens = klax.make_ensemble(make_mlp, 2, key=jr.key(3))
    x, y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    out, _ = klax.fit_ensemble(
        ens, (x, y), key=jr.key(4), **dict(FIT, steps=5, make_logger=False)
    )
    assert out.layers[0].weight.dtype == jnp.float64
    before = klax.evaluate_ensemble(ens, x, batched=True).outputs
    after = klax.evaluate_ensemble(out, x, batched=True).outputs
    assert after.dtype == jnp.float64
    # Every member improved on the training data.
    y64 = jnp.asarray(y)[None, :]
    assert jnp.all(jnp.mean((after - y64) ** 2, 1) < jnp.mean((before - y64) ** 2, 1))


class AllNetworks(eqx.Module):
    """Every network of klax.nn in one model, so that one compilation covers all."""

    linear: klax.nn.Linear
    split: klax.nn.InputSplitLinear
    mlp: klax.nn.MLP
    ficnn: klax.nn.FICNN
    picnn: klax.nn.PICNN
    matrix: klax.nn.Matrix
    constant: klax.nn.ConstantMatrix
    skew: klax.nn.SkewSymmetricMatrix
    constant_skew: klax.nn.ConstantSkewSymmetricMatrix
    spd: klax.nn.SPDMatrix
    constant_spd: klax.nn.ConstantSPDMatrix

    def __init__(self, key):
        k = jr.split(key, 11)
        self.linear = klax.nn.Linear(2, "scalar", jr.normal, key=k[0])
        self.split = klax.nn.InputSplitLinear((1, 1), "scalar", jr.normal, key=k[1])
        self.mlp = klax.nn.MLP(2, "scalar", [3], key=k[2])
        self.ficnn = klax.nn.FICNN(2, "scalar", [3], key=k[3])
        self.picnn = klax.nn.PICNN(1, 1, "scalar", [3], key=k[4])
        self.matrix = klax.nn.Matrix(2, (2, 2), [3], key=k[5])
        self.constant = klax.nn.ConstantMatrix((2, 2), key=k[6])
        self.skew = klax.nn.SkewSymmetricMatrix(2, (2, 2), [3], key=k[7])
        self.constant_skew = klax.nn.ConstantSkewSymmetricMatrix((2, 2), key=k[8])
        self.spd = klax.nn.SPDMatrix(2, (2, 2), [3], key=k[9])
        self.constant_spd = klax.nn.ConstantSPDMatrix((2, 2), key=k[10])

    def __call__(self, x):
        a, b = x[:1], x[1:]
        scalars = (
            self.linear(x)
            + self.split(a, b)
            + self.mlp(x)
            + self.ficnn(x)
            + self.picnn(a, b)
        )
        matrices = (
            self.matrix(x)
            + self.constant(x)
            + self.skew(x)
            + self.constant_skew(x)
            + self.spd(x)
            + self.constant_spd(x)
        )
        return scalars + jnp.sum(matrices)


def test_fit_ensemble_trains_every_network_with_constraints():
    ens = klax.make_ensemble(AllNetworks, 2, key=jr.key(5))
    assert klax.contains_constraints(ens)
    out, history = klax.fit_ensemble(
        ens,
        (X, Y),
        batch_size=8,
        steps=4,
        optimizer=optax.sgd(1e-3),
        make_logger=False,
        key=jr.key(6),
    )
    assert history is None
    assert not eqx.tree_equal(out, ens)
    # Constraints hold for every member after training.
    is_constraint = lambda n: isinstance(n, klax.NonNegative)
    constraints = [
        c for c in jax.tree.leaves(out, is_leaf=is_constraint) if is_constraint(c)
    ]
    assert constraints and all(jnp.all(c.parameter >= 0) for c in constraints)
    outputs = klax.evaluate_ensemble(out, X, batched=True).outputs
    assert outputs.shape == (2, 16) and jnp.all(jnp.isfinite(outputs))


class Scalar(eqx.Module):
    p: jax.Array


@klax.loss
def log_barrier(model, batch, run_state):
    """Loss c * p, NaN once p < 0 (through the log)."""
    return run_state * model.p + 0.0 * jnp.log(model.p)


@pytest.mark.parametrize("log_every", [1, 100])
def test_nonfinite_guard_freezes_only_that_member(log_every):
    # p decreases by lr * c = 1 per step: member 1 starts at 2.5, is at -0.5
    # after 3 updates, and its 4th update sees a NaN loss and is rejected.
    # log_every=1: one step per compiled chunk; 100: the whole run in one
    # chunk, run unguarded and replayed guarded when the NaN shows.
    ens = Scalar(jnp.array([10.0, 2.5, 7.0]))
    kwargs = dict(
        batch_axes=None,
        steps=6,
        optimizer=optax.sgd(1.0),
        log_every=log_every,
        verbose=0,
    )
    with pytest.warns(
        RuntimeWarning, match=r"1 of 3 ensemble members.*member 1 at step 4"
    ):
        out, history = klax.fit_ensemble(
            ens,
            None,
            run_state=jnp.array(1.0),
            loss=log_barrier,
            key=jr.key(0),
            **kwargs,
        )
    np.testing.assert_allclose(out.p, [4.0, -0.5, 1.0])
    assert history.stop_step == [None, 4, None]
    assert history.stop_reason == [None, "non-finite loss", None]
    assert history.total_steps == 6
    if log_every == 1:  # logged every step: the frozen member's loss is NaN
        assert np.isnan(history["loss"][1][-1][1])
        assert history["loss"][1][-1][0] == 4.0
    # The single fit stops at the same step.
    with pytest.warns(RuntimeWarning, match="step 4"):
        single, single_history = klax.fit(
            Scalar(jnp.array(2.5)),
            None,
            run_state=jnp.array(1.0),
            loss=log_barrier,
            key=jr.key(0),
            **kwargs,
        )
    assert single_history.stop_step == 4 and float(single.p) == -0.5


def test_all_members_frozen_stops_training():
    ens = Scalar(jnp.array([1.5, 2.5]))
    with pytest.warns(RuntimeWarning, match="2 of 2"):
        out, history = klax.fit_ensemble(
            ens,
            None,
            batch_axes=None,
            run_state=jnp.array(1.0),
            loss=log_barrier,
            steps=10,
            optimizer=optax.sgd(1.0),
            make_logger=True,
            verbose=0,
            log_every=100,
            key=jr.key(0),
        )
    np.testing.assert_allclose(out.p, [-0.5, -0.5])
    assert history.stop_step == [3, 4]
    assert history.total_steps == 3


def test_run_state_per_member_and_custom_batcher():
    # Per-member run_state scales the loss; a custom batcher runs on the host.
    ens = Scalar(jnp.array([5.0, 5.0]))

    def batcher(data, batch_size, batch_axes, *, key):
        del data, batch_size, batch_axes
        rng = np.random.default_rng(np.asarray(jr.key_data(key)).ravel())
        while True:
            yield np.float32(rng.uniform())

    @klax.loss
    def weighted(model, batch, run_state):
        return run_state * batch * model.p

    out, history = klax.fit_ensemble(
        ens,
        None,
        batch_axes=None,
        run_state=jnp.array([1.0, 2.0]),
        run_state_per_member=True,
        loss=weighted,
        batcher=batcher,
        steps=4,
        optimizer=optax.sgd(1.0),
        log_every=2,
        verbose=0,
        key=jr.key(2),
    )
    member_keys = jr.split(jr.key(2), 2)
    for i, c in enumerate([1.0, 2.0]):
        single, _ = klax.fit(
            Scalar(jnp.array(5.0)),
            None,
            batch_axes=None,
            run_state=jnp.array(c),
            loss=weighted,
            batcher=batcher,
            steps=4,
            optimizer=optax.sgd(1.0),
            make_logger=False,
            key=member_keys[i],
        )
        np.testing.assert_allclose(out.p[i], single.p, rtol=1e-6)
    assert history["loss"][1][0].shape == (2,)


def test_callbacks_see_the_whole_ensemble(ensemble, capsys):
    seen = []

    class Record(klax.Callback):
        call_every = 2

        def on_training_step(self, context):
            seen.append(
                (int(context.state.step), context.state.model.layers[0].weight.shape)
            )

    klax.fit_ensemble(
        ensemble, (X, Y), callbacks=[Record()], key=jr.key(7), **dict(FIT, verbose=1)
    )
    assert seen == [(s, (N, 2, 4)) for s in (2, 4, 6, 8, 10, 12)]
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert (
        lines[0].startswith("Step  0/12: loss: ")
        and "(min " in lines[0]
        and ", max " in lines[0]
    )


def test_fit_ensemble_argument_errors(ensemble, trained):
    data = (X, Y)
    with pytest.raises(ValueError, match="Not an ensemble"):
        klax.fit_ensemble((1.0,), data, key=jr.key(0))
    with pytest.raises(TypeError, match="klax.Loss"):
        klax.fit_ensemble(ensemble, data, loss=lambda *a: 0.0, key=jr.key(0))
    with pytest.raises(TypeError, match="optax optimizer"):
        klax.fit_ensemble(ensemble, data, optimizer="adam", key=jr.key(0))
    with pytest.raises(ValueError, match="non-negative"):
        klax.fit_ensemble(ensemble, data, steps=-1, key=jr.key(0))
    with pytest.raises(ValueError, match="leading member axis of length 3"):
        klax.fit_ensemble(
            ensemble,
            data,
            run_state=jnp.ones(2),
            run_state_per_member=True,
            key=jr.key(0),
        )
    with pytest.raises(ValueError, match="validation_data"):
        klax.fit_ensemble(ensemble, data, validation_data=[X, Y], key=jr.key(0))
    single_state = optax.sgd(0.1).init(
        eqx.filter(klax.ensemble_member(ensemble, 0), eqx.is_inexact_array)
    )
    with pytest.raises(ValueError, match="init_opt_state"):
        klax.fit_ensemble(
            ensemble,
            data,
            optimizer=optax.adam(0.1),
            init_opt_state=single_state,
            key=jr.key(0),
        )
    with pytest.raises(ValueError, match=r'"members", "batch"'):
        klax.fit_ensemble(ensemble, data, mesh="all", shard="rows", key=jr.key(0))
    with pytest.raises(ValueError, match="mesh"):
        klax.fit_ensemble(ensemble, data, mesh="gpu", key=jr.key(0))
    with pytest.raises(TypeError, match="jax.sharding.Mesh"):
        klax.fit(klax.ensemble_member(ensemble, 0), data, mesh=4, key=jr.key(0))


def test_steps_zero_logs_once(ensemble):
    out, history = klax.fit_ensemble(
        ensemble, (X, Y), key=jr.key(0), **dict(FIT, steps=0)
    )
    assert history["loss"][0] == [0] and history.total_steps == 0
    assert eqx.tree_equal(out, eqx.filter_vmap(klax.apply)(ensemble))
    assert (
        klax.fit_ensemble(
            ensemble, (X, Y), make_logger=False, key=jr.key(0), **dict(FIT, steps=0)
        )[1]
        is None
    )


def test_history_extend_shifts_member_stop_steps():
    a = klax.History(total_steps=10, stop_step=[None, 4])
    b = klax.History(total_steps=5, stop_step=[2, None], stop_reason=["x", None])
    a.extend(b)
    assert a.stop_step == [12, None] and a.stop_reason == ["x", None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a.extend(klax.History(total_steps=1))
    assert a.stop_step is None
