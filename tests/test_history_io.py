"""Tests of `History.save` / `History.load`: a history file runs no code (§12.4)."""

import collections
import json
import math
import pathlib
import pickle
import sys
import typing
import zipfile

import equinox as eqx
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from hypothesis import given

import klax

X = np.asarray(jr.uniform(jr.key(0), (10, 2)), dtype=np.float32)
Y = np.sum(X**2, axis=-1)


def same(a, b, where="x"):
    """Strict equality: same types everywhere, arrays bit for bit (NaN == NaN)."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, jax.Array):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            assert a.dtype == b.dtype, where
            return same(jr.key_data(a), jr.key_data(b), where)
        assert a.weak_type == b.weak_type, f"{where}: weak type"
        a, b = np.asarray(a), np.asarray(b)
    if isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a!r} != {b!r}"
        assert a.tobytes() == b.tobytes(), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, float):
        assert math.copysign(1, a) == math.copysign(1, b), where
        assert a == b or (math.isnan(a) and math.isnan(b)), f"{where}: {a} != {b}"
    elif isinstance(a, complex):
        same(a.real, b.real, where)
        same(a.imag, b.imag, where)
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            same(u, v, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def round_trip(history, tmp_path, name="history.klax"):
    path = tmp_path / name
    history.save(path)
    return klax.History.load(path)


def assert_same_history(a, b):
    for name in (
        "content",
        "total_time",
        "total_steps",
        "final_opt_state",
        "stop_step",
        "stop_reason",
    ):
        same(getattr(a, name), getattr(b, name), name)


# --------------------------------------------------------------------- round trip


def test_every_attribute_round_trips(tmp_path):
    h = klax.History(total_time=1.25, total_steps=30)
    values = [
        3,
        -(2**70),
        1.5,
        -0.0,
        float("nan"),
        float("-inf"),
        True,
        None,
        "text ✓",
        1 - 2j,
        np.float32(0.25),
        np.int64(7),
        np.bool_(False),
        np.asarray(0.5),  # a 0-d array, not a NumPy scalar
        np.asarray([[1.0, np.nan], [-0.0, np.inf]], np.float64),
        np.arange(6, dtype=np.int8).reshape(3, 2),
        np.asarray([1, 2], np.dtype(">u2")),  # byte order kept
        np.zeros((0, 3), np.float32),
        np.asarray([1 + 1j], np.complex64),
        np.asarray(["ab", "c"]),
        np.asarray([True, False]),
        np.asarray([1.5, -2.0], jnp.bfloat16),
        np.asarray([3.0], jnp.bfloat16)[0],  # an ml_dtypes scalar
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    ]
    for step, value in enumerate(values):
        h.append(10 * step, "mixed", value)
    h.append(0, "loss", np.float32(2.0))
    h.append(10, "loss", np.float32(1.0))
    for step in range(4):  # lists of one dtype and shape are stored as one block
        h.append(step, "0-d", np.asarray(step / 3, np.float32))
        h.append(step, "members", np.full((2, 3), step, np.int16))
    h.append(0, "single", np.zeros(2))
    h.final_opt_state = {
        "jax": jnp.arange(3.0),
        "weak": jnp.asarray(2.0),  # weakly typed
        "weak_vec": jnp.full((3,), 1.0).at[1:].set(jnp.asarray([-0.0, jnp.nan])),
        "strong": jnp.asarray(2.0, jnp.float32),
        "key": jr.key(3),
        "raw_key": jr.PRNGKey(3),
        1: [None, (), (1,), {}],
        (2, "a"): {"nested": (np.int32(1), [2.5])},
        None: "none key",
    }
    h.stop_step = [None, 12, None]
    h.stop_reason = [None, "loss is nan", None]
    loaded = round_trip(h, tmp_path)
    assert_same_history(loaded, h)
    assert type(loaded.content) is dict
    assert loaded.keys() == ["mixed", "loss", "0-d", "members", "single"]
    members = loaded["members"][1]
    assert all(m.flags.owndata for m in members)  # independent arrays
    assert all(type(entry) is tuple for entry in loaded.content.values())
    assert loaded.final_opt_state["weak"].weak_type
    assert not loaded.final_opt_state["strong"].weak_type


def test_defaults_and_scalar_stop_round_trip(tmp_path):
    same_default = round_trip(klax.History(), tmp_path)
    assert_same_history(same_default, klax.History())
    h = klax.History(stop_step=4, stop_reason="update not finite")
    assert_same_history(round_trip(h, tmp_path), h)


def _optimizers():
    return {
        "adam": optax.adam(1e-2),
        "lbfgs": optax.lbfgs(),
        "adam+plateau": optax.chain(
            optax.adam(1e-2), optax.contrib.reduce_on_plateau(patience=1)
        ),
    }


_PARAMS = {"w": jnp.ones(3), "b": jnp.zeros(())}
_GRADS = {"w": jnp.asarray([0.5, -1.0, 2.0]), "b": jnp.asarray(0.25)}
_VALUE = {"value": jnp.asarray(1.0)}
_LINE_SEARCH = {
    **_VALUE,
    "grad": _GRADS,
    "value_fn": lambda p: jnp.sum(p["w"] ** 2) + p["b"] ** 2,
}
_STATE_CASES = {
    "adam": (optax.adam(1e-2), {}),
    "lbfgs": (optax.lbfgs(), _LINE_SEARCH),
    "adam+plateau": (_optimizers()["adam+plateau"], _VALUE),
    "masked": (optax.masked(optax.adam(1e-2), {"w": True, "b": False}), {}),
    "add_noise": (optax.add_noise(0.1, 0.5, 0), {}),  # holds a typed PRNG key
    "inject": (optax.inject_hyperparams(optax.sgd)(learning_rate=0.1), {}),
    "multisteps": (optax.MultiSteps(optax.adam(1e-2), 2), {}),
}


@pytest.mark.parametrize("name", list(_STATE_CASES))
def test_optax_states_round_trip(tmp_path, name):
    optimizer, extra = _STATE_CASES[name]
    state = optimizer.init(_PARAMS)
    loaded = round_trip(klax.History(final_opt_state=state), tmp_path).final_opt_state
    same(loaded, state)
    assert jax.tree.structure(loaded) == jax.tree.structure(state)
    if name == "lbfgs":
        return  # its (slow to compile) update is checked by the resume test
    # The loaded state gives the same update as the original.
    update = jax.jit(lambda s: optimizer.update(_GRADS, s, _PARAMS, **extra))
    same(update(loaded), update(state))


def test_ensemble_history_round_trips(tmp_path):
    ensemble = klax.make_ensemble(
        lambda key: klax.nn.MLP(2, "scalar", [3], key=key), 2, key=jr.key(1)
    )
    _, history = klax.fit_ensemble(
        ensemble, (X, Y), batch_size=5, steps=4, log_every=2, verbose=0, key=jr.key(2)
    )
    values = history["loss"][1]
    assert all(isinstance(v, np.ndarray) and v.shape == (2,) for v in values)
    assert history.stop_step == [None, None]
    loaded = round_trip(history, tmp_path)
    assert_same_history(loaded, history)


# ------------------------------------------------------------ exact resume (x64)


@pytest.mark.parametrize("name", list(_optimizers()))
def test_resume_from_loaded_history_is_bit_identical(x64, tmp_path, name):
    optimizer = _optimizers()[name]
    x, y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    model = klax.nn.FICNN(2, "scalar", [3], key=jr.key(1))
    # log_every=1: every run reuses the same one-step compilation (fast test).
    options = dict(
        batch_size=3, optimizer=optimizer, log_every=1, verbose=0, key=jr.key(4)
    )
    full, full_history = klax.fit(model, (x, y), steps=5, **options)
    part, history = klax.fit(model, (x, y), steps=2, **options)
    history.save(tmp_path / "part")
    loaded = klax.History.load(tmp_path / "part")
    rest, more = klax.fit(
        part,
        (x, y),
        steps=3,
        init_opt_state=loaded.final_opt_state,
        batch_offset=loaded.total_steps,
        **options,
    )
    leaves = jax.tree.leaves(eqx.filter(rest, eqx.is_array))
    ref = jax.tree.leaves(eqx.filter(full, eqx.is_array))
    assert leaves[0].dtype == jnp.float64
    for u, v in zip(leaves, ref, strict=True):
        assert np.asarray(u).tobytes() == np.asarray(v).tobytes()
    same(more.final_opt_state, full_history.final_opt_state)


def test_float64_arrays_loaded_without_x64_warn(tmp_path):
    with jax.enable_x64(True):
        klax.History(final_opt_state=jnp.arange(2.0)).save(tmp_path / "h")
    with pytest.warns(UserWarning, match="64-bit mode is off"):
        loaded = klax.History.load(tmp_path / "h")
    assert loaded.final_opt_state.dtype == jnp.float32


# ------------------------------------------------------------ refused at save


class Custom:
    pass


class LocalState(typing.NamedTuple):
    count: int


class LocalModel(eqx.Module):
    weight: jax.Array


@pytest.mark.parametrize(
    "attribute, value, match",
    [
        ("final_opt_state", {"a": [1, Custom()]}, r"final_opt_state\['a'\]\[1\]"),
        ("final_opt_state", (LocalModel(jnp.ones(2)),), r"final_opt_state\[0\]"),
        ("final_opt_state", LocalState(1), "only NamedTuples and Equinox"),
        ("final_opt_state", collections.OrderedDict(a=1), "OrderedDict"),
        ("final_opt_state", {Custom(): 1}, "dict key"),
        ("final_opt_state", np.asarray([object()]), "dtype object"),
        ("stop_reason", b"bytes", "stop_reason"),
        ("total_time", np.datetime64("2020-01-01"), "datetime64"),
    ],
)
def test_unsupported_values_are_refused_at_save(tmp_path, attribute, value, match):
    h = klax.History()
    setattr(h, attribute, value)
    with pytest.raises(TypeError, match=match):
        h.save(tmp_path / "h")
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file


def test_refusal_names_the_metric_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "h"
    h = klax.History()
    h.append(0, "loss", 1.0)
    h.save(path)
    before = path.read_bytes()
    h.append(20, "loss", Custom())
    with pytest.raises(TypeError, match=r"metric 'loss' \(value 1, at step 20\)"):
        h.save(path)
    assert path.read_bytes() == before
    cyclic = []
    cyclic.append(cyclic)
    with pytest.raises(TypeError, match="contains itself"):
        klax.History(final_opt_state=cyclic).save(path)


# ------------------------------------------------------------ pickles


class _Touch:
    """Unpickling this creates the file `marker`: stands for an attacker's code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, 5])
def test_pickle_runs_only_with_allow_pickle(tmp_path, protocol):
    marker = tmp_path / "marker"
    path = tmp_path / "history.klax"  # the extension does not matter
    state = {"content": {"loss": ([0], [1.0])}, "total_steps": 5, "x": _Touch(marker)}
    path.write_bytes(pickle.dumps(state, protocol=protocol))
    with pytest.raises(ValueError, match="pickle file") as info:
        klax.History.load(path)
    assert "allow_pickle=True" in str(info.value) and str(path) in str(info.value)
    assert not marker.exists()
    h = klax.History.load(path, allow_pickle=True)
    assert marker.exists()
    assert h["loss"] == ([0], [1.0]) and h.total_steps == 5


def test_old_pickled_history_loads_on_request(tmp_path):
    # What History.save wrote before: a pickled dict of the attributes.
    path = tmp_path / "old.pkl"
    state = {
        "content": {"loss": ([0, 10], [np.float32(1.5), np.float32(0.5)])},
        "total_time": 2.0,
        "total_steps": 10,
        "final_opt_state": optax.adam(1e-3).init(jnp.ones(2)),
    }
    path.write_bytes(pickle.dumps(state))
    h = klax.History.load(path, allow_pickle=True)
    same(h.content, state["content"])
    same(h.final_opt_state, state["final_opt_state"])
    assert (h.stop_step, h.stop_reason) == (None, None)
    # Saving again converts it; the new file loads without allow_pickle.
    h.save(path)
    assert_same_history(klax.History.load(path), h)
    # A pickled History object (rather than a dict) loads as well.
    path.write_bytes(pickle.dumps(h))
    assert_same_history(klax.History.load(path, allow_pickle=True), h)


def test_saved_file_has_the_usual_permissions(tmp_path):
    klax.History().save(tmp_path / "h")
    (tmp_path / "plain").write_bytes(b"")  # created as any file is (umask)
    mode = (tmp_path / "h").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain").stat().st_mode & 0o777
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h", "plain"]


def test_damaged_pickle_with_allow_pickle(tmp_path):
    path = tmp_path / "h"
    path.write_bytes(pickle.dumps({"content": {}})[:-3])
    with pytest.raises(ValueError, match="cannot be unpickled"):
        klax.History.load(path, allow_pickle=True)


# ------------------------------------------------------------ bad files


def _saved(tmp_path):
    h = klax.History(final_opt_state=optax.adam(1e-3).init(jnp.ones(4)))
    h.append(0, "loss", np.float32(1.0))
    path = tmp_path / "good"
    h.save(path)
    return path


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        klax.History.load(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match="is a directory"):
        klax.History.load(tmp_path)


def test_truncated_files_are_refused(tmp_path):
    data = _saved(tmp_path).read_bytes()
    path = tmp_path / "cut"
    for size in sorted({0, 1, 3, 5, 30, 100, len(data) // 2, len(data) - 1}):
        path.write_bytes(data[:size])
        for allow_pickle in (False, True):
            with pytest.raises(ValueError, match="cut"):
                klax.History.load(path, allow_pickle=allow_pickle)


def test_corrupted_bytes_are_refused(tmp_path):
    data = bytearray(_saved(tmp_path).read_bytes())
    path = tmp_path / "flipped"
    for position in range(40, len(data) - 30, 37):
        damaged = data.copy()
        damaged[position] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            loaded = klax.History.load(path)
        except ValueError as error:
            assert "flipped" in str(error)
        else:  # a flip in a field the reader ignores (e.g. a timestamp)
            assert loaded.keys() == ["loss"]


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"loss,step\n1.0,0\n", "not a klax.History file"),
        (b"", "not a klax.History file"),
        (b"(dp0\nS'a'\np1\nI1\ns.", "not a klax.History file"),  # protocol-0 pickle
    ],
)
def test_files_of_other_programs(tmp_path, content, match):
    path = tmp_path / "other.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        klax.History.load(path, allow_pickle=True)


def test_zip_files_that_are_not_histories(tmp_path):
    npz = tmp_path / "arrays.npz"
    np.savez(npz, a=np.ones(2))
    with pytest.raises(ValueError, match="another program"):
        klax.History.load(npz)
    for text, match in [
        (b"{not json", "not valid JSON"),
        (b'{"format": "something else"}', "does not say"),
        (b'{"format": "klax.History", "version": 99, "attributes": {}}', "newer"),
    ]:
        _zip(tmp_path / "z", {"klax-history.json": text})
        with pytest.raises(ValueError, match=match):
            klax.History.load(tmp_path / "z")


def _crafted(tmp_path, node, arrays=b""):
    header = {"format": "klax.History", "version": 1, "attributes": node}
    path = tmp_path / "crafted"
    _zip(path, {"klax-history.json": json.dumps(header), "arrays.bin": arrays})
    return path


def _namedtuple(module, name, fields=(), items=()):
    node = {
        "module": module,
        "name": name,
        "fields": list(fields),
        "items": list(items),
    }
    return {"type": "namedtuple", **node}


def test_crafted_content_that_is_not_a_dict(tmp_path):
    path = _crafted(tmp_path, {"content": [1, 2]})
    with pytest.raises(ValueError, match="content is not a dict"):
        klax.History.load(path)


@pytest.mark.parametrize(
    "node, match",
    [
        (_namedtuple("this", "Anything"), "not in the allowed packages"),
        (_namedtuple("os", "system"), "not in the allowed packages"),
        (_namedtuple("optax.__main__", "X"), "not in the allowed packages"),
        (_namedtuple("optax", "__class__"), "not a plain class name"),
        (_namedtuple("optax", "adam"), "no NamedTuple class"),  # a function
        ({**_namedtuple("klax", "History"), "type": "module"}, "no Equinox module"),
        ({**_namedtuple("klax.nn", "MLP"), "type": "module"}, "now has the fields"),
        (_namedtuple("optax", "EmptyState", ["x"], [1]), "now has the fields"),
        ({"type": "ndarray", "dtype": "O", "shape": [1], "offset": 0}, "dtype"),
        ({"type": "ndarray", "dtype": "<f8", "shape": [4], "offset": 0}, "beyond"),
        ({"type": "ndarray", "dtype": "<f8", "shape": [-1], "offset": 0}, "shape"),
        ({"type": "eval", "code": "1"}, "unknown node type"),
        (
            {"type": "ndarray_list", "dtype": "<f8", "shape": [], "offset": 0},
            "without a list axis",
        ),
        ({"type": "tuple"}, "missing 'items'"),
        ({"type": "float", "value": "1e5"}, "bad float"),
        ({"type": "prng_key", "impl": "no such", "data": None}, "PRNG"),
    ],
)
def test_crafted_files_are_refused(tmp_path, node, match):
    path = _crafted(tmp_path, {"final_opt_state": node}, arrays=b"\0" * 16)
    with pytest.raises(ValueError, match=match) as info:
        klax.History.load(path)
    assert "crafted" in str(info.value) and "final_opt_state" in str(info.value)
    assert "this" not in sys.modules  # the module named by the file was not imported


# ------------------------------------------------------------ property


_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(allow_nan=False),
    st.text(max_size=5),
    hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int16, np.uint8, np.bool_]),
        hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
    ),
    hnp.from_dtype(np.dtype(np.float32)).map(np.float32),
)
_keys = st.one_of(st.text(max_size=3), st.integers(), st.tuples(st.integers()))
_trees = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(_keys, inner, max_size=3),
    ),
    max_leaves=12,
)


@given(tree=_trees)
def test_nested_plain_containers_round_trip(tmp_path_factory, tree):
    tmp_path = tmp_path_factory.mktemp("h")
    loaded = round_trip(klax.History(final_opt_state=tree), tmp_path)
    same(loaded.final_opt_state, tree)
