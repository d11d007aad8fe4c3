"""Tests of klax logging: `metric`, `BatchMetric`, `History`, `MetricLogger` (§12)."""

import pickle
import sys
import types

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import matplotlib
import numpy as np
import optax
import pytest
from hypothesis import given

import klax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class Affine(eqx.Module):
    w: jax.Array
    b: jax.Array

    def __call__(self, x):
        return self.w * x + self.b


X = jnp.arange(10.0)
Y = 2.0 * X + 1.0


def context(step, steps=10, model=None, run_state=None, opt_state=None):
    """A duck-typed training context: only what the logger and metrics read."""
    state = types.SimpleNamespace(
        step=step, model=model, run_state=run_state, opt_state=opt_state
    )
    return types.SimpleNamespace(steps=steps, state=state)


def constant(name, value, verbose=True):
    @klax.metric(name, verbose)
    def m(ctx):
        return value

    return m


# --------------------------------------------------------------------- metric


def test_metric_decorator_returns_same_function():
    def my_metric(ctx):
        """Doc."""
        return ctx.state.step

    out = klax.metric("steps", verbose=True)(my_metric)
    assert out is my_metric
    assert out.name == "steps" and out.verbose is True
    assert out.__doc__ == "Doc." and out.__name__ == "my_metric"
    assert klax.metric("quiet")(lambda c: 0).verbose is False
    assert isinstance(out, klax.Metric)
    assert out(context(3)) == 3
    with pytest.raises(TypeError, match="must be a string"):
        klax.metric(3)  # pyright: ignore[reportArgumentType]


# --------------------------------------------------------------------- BatchMetric


@pytest.mark.parametrize("key", [jr.key(0), jr.PRNGKey(0)], ids=["key", "PRNGKey"])
def test_batch_metric(key):
    model = Affine(jnp.array(2.0), jnp.array(0.0))  # error -1 everywhere: mse 1
    m = klax.BatchMetric("val", klax.mse, (X, Y), klax.batch_data, 5, key=key)
    assert m.name == "val" and m.verbose is False
    assert isinstance(m, klax.Metric)
    assert m.func is not klax.mse  # wrapped in filter_jit
    ctx = types.SimpleNamespace(
        state=types.SimpleNamespace(model=model, run_state=None)
    )
    for _ in range(3):
        value = m(ctx)
        assert isinstance(value, jax.Array) and value.shape == ()
        assert value.dtype == jnp.float32
        assert float(value) == 1.0


def test_batch_metric_without_jit_and_custom_batcher():
    seen = []

    class WholeData:
        def __call__(self, data, batch_size, batch_axes, *, key):
            seen.append((batch_size, batch_axes))

            def forever():
                while True:
                    yield data

            return forever()

    def run_state_metric(model, batch, run_state):
        return run_state * klax.mse(model, batch, None)

    m = klax.BatchMetric(
        "scaled",
        run_state_metric,
        (X, Y),
        WholeData(),
        7,
        None,
        True,
        False,
        key=jr.key(1),
    )
    assert m.func is run_state_metric and m.verbose is True
    assert seen == [(7, None)]  # batcher called once, in the constructor
    model = Affine(jnp.array(2.0), jnp.array(3.0))  # error +2: mse 4
    assert float(m(context(0, model=model, run_state=3.0))) == 12.0
    m2 = klax.BatchMetric(
        "loss", klax.mse, (X, Y), klax.batch_data, 4, jit_compile=False, key=jr.key(0)
    )
    assert m2.func is klax.mse


def test_batch_metric_errors_are_lazy():
    m = klax.BatchMetric("bad", klax.mse, (X, Y[:3]), klax.batch_data, 2, key=jr.key(0))
    with pytest.raises(ValueError, match="equal batch sizes"):
        m(context(0, model=Affine(jnp.array(1.0), jnp.array(0.0))))
    with pytest.raises(TypeError, match="must be callable"):
        klax.BatchMetric("x", 3, (X, Y), klax.batch_data, 2, key=jr.key(0))


def test_batch_metric_x64(x64):
    model = Affine(jnp.array(2.0, jnp.float64), jnp.array(0.0, jnp.float64))
    x, y = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)
    m = klax.BatchMetric("val", klax.mae, (x, y), klax.batch_data, 10, key=jr.key(0))
    value = m(context(0, model=model))
    assert value.dtype == jnp.float64 and float(value) == 1.0


# --------------------------------------------------------------------- History


def test_history_fresh_dict_and_given_dict():
    a, b = klax.History(), klax.History()
    a.append(0, "loss", 1.0)
    assert b.content == {} and b.keys() == []
    assert (a.total_time, a.total_steps, a.final_opt_state) == (-1.0, -1, None)
    given_dict = {"loss": ([0], [2.0])}
    h = klax.History(
        content=given_dict, total_time=1.5, total_steps=3, final_opt_state="s"
    )
    assert h.content is given_dict
    assert (h.total_time, h.total_steps, h.final_opt_state) == (1.5, 3, "s")


def test_history_append_getitem_keys():
    h = klax.History()
    h.append(0, "b", 1.0)
    h.append(0, "a", "text")
    h.append(5, "b", np.array([1, 2]))
    assert h.keys() == ["b", "a"]
    steps, values = h["b"]
    assert isinstance(h["b"], tuple)
    assert steps == [0, 5] and values[0] == 1.0
    np.testing.assert_array_equal(values[1], [1, 2])
    assert h["a"] == ([0], ["text"])
    with pytest.raises(KeyError, match="Metric 'nope' not found in history."):
        h["nope"]


def test_history_save_load_round_trip(tmp_path):
    params = {"w": jnp.ones(3), "b": jnp.zeros(())}
    opt_state = optax.adam(1e-3).init(params)
    h = klax.History(total_time=2.5, total_steps=20, final_opt_state=opt_state)
    h.append(0, "loss", np.asarray(1.5, np.float32))
    h.append(10, "loss", np.asarray(0.5, np.float32))
    h.append(10, "note", "hello")
    path = tmp_path / "deep" / "er" / "history.pkl"
    h.save(path)
    loaded = klax.History.load(path)
    assert isinstance(loaded, klax.History)
    assert loaded.keys() == ["loss", "note"]
    assert loaded["loss"][0] == [0, 10] and loaded["note"] == ([10], ["hello"])
    np.testing.assert_array_equal(loaded["loss"][1], [1.5, 0.5])
    assert loaded.total_time == 2.5 and loaded.total_steps == 20
    assert jax.tree.structure(loaded.final_opt_state) == jax.tree.structure(opt_state)
    assert eqx.tree_equal(loaded.final_opt_state, opt_state)
    # Also from a string path.
    h.save(str(tmp_path / "h2.pkl"))
    assert klax.History.load(str(tmp_path / "h2.pkl")).total_steps == 20


def test_history_load_uses_defaults_for_missing_keys(tmp_path):
    path = tmp_path / "partial.pkl"
    path.write_bytes(pickle.dumps({"content": {"loss": ([0], [1.0])}}))
    with pytest.raises(ValueError, match="allow_pickle=True"):
        klax.History.load(path)
    h = klax.History.load(path, allow_pickle=True)
    assert h["loss"] == ([0], [1.0])
    assert (h.total_time, h.total_steps, h.final_opt_state) == (-1.0, -1, None)
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="does not hold a saved klax.History"):
        klax.History.load(path, allow_pickle=True)


def test_history_extend_spec_example():
    h1 = klax.History(total_time=5.0, total_steps=10, final_opt_state="old")
    h1.append(0, "loss", 1.0)
    h1.append(10, "loss", 0.5)
    h1.append(0, "only_self", 7)
    h2 = klax.History(total_time=3.0, total_steps=15, final_opt_state="new")
    h2.append(0, "loss", 0.4)
    h2.append(10, "loss", 0.3)
    h2.append(10, "hist2_metric", 9)
    h1.extend(h2)
    assert h1["loss"] == ([0, 10, 10, 20], [1.0, 0.5, 0.4, 0.3])
    assert h1["hist2_metric"] == ([20], [9])
    assert h1["only_self"] == ([0], [7])
    assert h1.total_steps == 25 and h1.total_time == 8.0
    assert h1.final_opt_state == "new"
    assert h2["loss"] == ([0, 10], [0.4, 0.3])  # other untouched


def test_history_extend_fresh_history_sentinels():
    other = klax.History(total_time=3.0, total_steps=15, final_opt_state="s")
    other.append(0, "loss", 1.0)
    other.append(15, "loss", 0.5)
    h = klax.History()
    h.extend(other)
    assert h["loss"] == ([0, 15], [1.0, 0.5])
    assert h.total_steps == 15 and h.total_time == 3.0 and h.final_opt_state == "s"


def _history():
    h = klax.History()
    for s, v in [(0, 1.0), (10, 0.1), (20, 0.01)]:
        h.append(s, "loss", v)
        h.append(s, "validation_loss", 2 * v)
    return h


def test_plot_returns_configured_axes():
    h = _history()
    ax = h.plot()
    try:
        assert isinstance(ax, matplotlib.axes.Axes)
        assert ax.get_xlabel() == "Step" and ax.get_ylabel() == "Metric"
        assert ax.get_yscale() == "log" and ax.get_title() == "Training History"
        assert all(line.get_visible() for line in ax.get_xgridlines())
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels == ["loss", "validation_loss"]
        np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [0, 10, 20])
        np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), [2.0, 0.2, 0.02])
        legend = ax.get_legend()
        assert legend is not None
        assert [t.get_text() for t in legend.get_texts()] == labels
    finally:
        plt.close("all")


def test_plot_selected_keys_into_given_axes():
    h = _history()
    _, ax = plt.subplots()
    try:
        out = h.plot("validation_loss", ax=ax, label="ignored", color="red")
        assert out is ax
        (line,) = ax.get_lines()
        assert line.get_label() == "validation_loss" and line.get_color() == "red"
        assert ax.get_title() == "" and ax.get_yscale() == "linear"
        with pytest.raises(KeyError, match="not found in history"):
            h.plot("missing", ax=ax)
    finally:
        plt.close("all")


def test_plot_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"matplotlib.*klax\[plot\]"):
        _history().plot()


# --------------------------------------------------------------------- MetricLogger


def test_logger_defaults_and_validation():
    logger = klax.MetricLogger()
    assert logger.log_every == 100 and logger.call_every == 100
    assert logger.verbose == 2 and logger.metrics == {}
    assert isinstance(logger.history, klax.History) and logger.history.content == {}
    assert logger.steps_str_length == 0 and logger.start_time == 0.0
    assert logger.tqdm_bar is None
    assert isinstance(logger, klax.Callback)
    assert klax.MetricLogger().history is not logger.history
    h = klax.History()
    assert klax.MetricLogger(history=h).history is h
    assert klax.MetricLogger(log_every=7).call_every == 7
    for bad in (0, -3):
        with pytest.raises(ValueError, match="log_every must be at least 1"):
            klax.MetricLogger(log_every=bad)
    with pytest.raises(TypeError, match="log_every must be a positive int"):
        klax.MetricLogger(log_every=2.5)
    with pytest.raises(ValueError, match="must be 0, 1 or 2"):
        klax.MetricLogger(verbose=3)


def test_logger_metric_replacement_keeps_first_position():
    a1, b, a2 = constant("loss", "A1"), constant("other", 0), constant("loss", "A2")
    logger = klax.MetricLogger(1, [a1, b, a2], verbose=0)
    assert len(logger.metrics) == 2
    assert list(logger.metrics) == ["loss", "other"]
    assert logger.metrics["loss"] is a2
    c = constant("other", "C")
    logger.add_metric(c)
    assert logger.metrics["other"] is c and len(logger.metrics) == 2
    logger.on_training_start(context(0))
    assert logger.history["loss"] == ([0], ["A2"])
    assert logger.history["other"] == ([0], ["C"])


def test_verbose_1_exact_output(capsys):
    metrics = [
        constant("loss", 4.8794),
        constant("validation_loss", jnp.array(4.779)),
        constant("hidden", 1.0, verbose=False),
    ]
    logger = klax.MetricLogger(50, metrics, verbose=1)
    logger.on_training_start(context(jnp.array(0, jnp.int32), steps=250))
    assert capsys.readouterr().out == (
        "Step   0/250: loss: 4.8794e+00, validation_loss: 4.7790e+00\n"
    )
    for step in range(1, 251):
        logger.on_training_step(context(jnp.array(step, jnp.int32), steps=250))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("Step  50/250: loss: ")
    assert lines[-1] == "Step 250/250: loss: 4.8794e+00, validation_loss: 4.7790e+00"
    assert logger.history["hidden"][0] == [0, 50, 100, 150, 200, 250]
    assert all(type(s) is int for s in logger.history["loss"][0])
    value = logger.history["validation_loss"][1][0]
    assert isinstance(value, np.ndarray) and not isinstance(value, jax.Array)


def test_verbose_1_without_start_and_fallback_formats(capsys):
    logger = klax.MetricLogger(5, [constant("loss", 1.23)], verbose=1)
    logger.on_training_step(context(0, steps=10))
    assert capsys.readouterr().out == "Step 0/10: loss: 1.2300e+00\n"

    quiet = klax.MetricLogger(5, [constant("q", 1.0, verbose=False)], verbose=1)
    quiet.on_training_step(context(5, steps=10))
    assert capsys.readouterr().out == "Step 5/10: \n"

    odd = [constant("vec", np.array([1.0, 2.0])), constant("txt", "abc")]
    klax.MetricLogger(1, odd, verbose=1).on_training_step(context(3, steps=10))
    assert capsys.readouterr().out == "Step 3/10: vec: [1. 2.], txt: abc\n"


def test_verbose_0_is_silent_and_end_records_totals(capsys):
    opt_state = object()
    logger = klax.MetricLogger(4, [constant("loss", 1.0)], verbose=0)
    logger.on_training_start(context(0, steps=10, opt_state=opt_state))
    for step in range(1, 11):
        assert logger.on_training_step(context(step, steps=10)) is None
    logger.on_training_end(context(jnp.array(10), steps=10, opt_state=opt_state))
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    h = logger.history
    assert h["loss"][0] == [0, 4, 8]  # the final step 10 is not divisible by 4
    assert type(h.total_steps) is int and h.total_steps == 10
    assert type(h.total_time) is float and h.total_time >= 0.0
    assert h.final_opt_state is opt_state


def test_logger_reads_only_duck_typed_context():
    seen = []

    @klax.metric("ctx")
    def record(ctx):
        seen.append(ctx)
        return 0

    logger = klax.MetricLogger(1, [record], verbose=0)
    ctx = types.SimpleNamespace(steps=3, state=types.SimpleNamespace(step=0))
    logger.on_training_start(ctx)
    ctx.state.step = 1  # replaced by a plain int between calls
    logger.on_training_step(ctx)
    ctx.state = types.SimpleNamespace(step=np.int64(2), opt_state="o")
    logger.on_training_step(ctx)
    logger.on_training_end(ctx)
    assert all(c is ctx for c in seen) and len(seen) == 3
    assert logger.history["ctx"][0] == [0, 1, 2]
    assert logger.history.final_opt_state == "o"


def test_verbose_2_progress_bar(capsys):
    logger = klax.MetricLogger(10, [constant("loss", 1.0)], verbose=2)
    logger.on_training_start(context(0, steps=35))
    bar = logger.tqdm_bar
    assert bar is not None and bar.total == 35 and bar.n == 0
    assert bar.postfix == "loss: 1.0000e+00"
    logger.on_training_step(context(10, steps=35))
    assert bar.n == 10
    # A fused loop may skip step 20: the bar still advances to the step shown.
    logger.on_training_step(context(30, steps=35))
    assert bar.n == 30
    logger.on_training_step(context(33, steps=35))  # not a logging step
    assert bar.n == 30
    logger.on_training_end(context(35, steps=35))
    assert bar.n == 35 and bar.disable  # advanced to the final step and closed
    assert logger.history["loss"][0] == [0, 10, 30]
    err = capsys.readouterr().err
    assert "35/35" in err and "loss: 1.0000e+00" in err


def test_verbose_2_creates_bar_lazily(capsys):
    logger = klax.MetricLogger(5, [constant("loss", 2.0)], verbose=2)
    logger.on_training_step(context(5, steps=20))
    assert logger.tqdm_bar.total == 20 and logger.tqdm_bar.n == 5
    logger.on_training_end(context(20, steps=20))
    assert logger.tqdm_bar.n == 20
    capsys.readouterr()


def test_verbose_2_without_tqdm_falls_back(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.warns(UserWarning, match="tqdm"):
        logger = klax.MetricLogger(1, [constant("loss", 1.0)], verbose=2)
    assert logger.verbose == 1
    logger.on_training_start(context(0, steps=2))
    assert capsys.readouterr().out == "Step 0/2: loss: 1.0000e+00\n"


@given(
    log_every=st.integers(1, 7),
    steps=st.integers(0, 30),
    stride=st.integers(1, 7),
)
def test_logged_steps_property(log_every, steps, stride):
    logger = klax.MetricLogger(log_every, [constant("loss", 0.5)], verbose=2)
    logger.on_training_start(context(0, steps=steps))
    # Calls at a coarser cadence than every step (as a fused loop makes them),
    # always including the multiples of log_every.
    strided = set(range(stride, steps + 1, stride))
    calls = sorted(strided | set(range(log_every, steps + 1, log_every)))
    for step in calls:
        logger.on_training_step(context(step, steps=steps))
    logger.on_training_end(context(steps, steps=steps))
    assert logger.history["loss"][0] == list(range(0, steps + 1, log_every))
    assert logger.history.total_steps == steps
    assert logger.tqdm_bar.n == steps
