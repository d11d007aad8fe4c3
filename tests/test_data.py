"""Tests of klax data handling: batch axes, `batch_data`, `split_data` (API.md §9)."""

import warnings

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given

import klax
from klax._datahandler import broadcast_and_get_size

KEYS = {
    "key": lambda: jr.key(0),
    "PRNGKey": lambda: jr.PRNGKey(0),
    "fold_in_PRNGKey": lambda: jr.fold_in(jr.PRNGKey(0), 7),
}


@pytest.fixture(params=list(KEYS), ids=list(KEYS))
def anykey(request):
    return KEYS[request.param]()


# --------------------------------------------------------------------- batch axes


def test_broadcast_prefix_trees():
    x = jnp.arange(10.0)
    data = (x, {"a": x, "b": jnp.ones((3, 10)), "c": np.ones((10, 2))})
    axes, n = broadcast_and_get_size(data, (0, {"a": None, "b": 1, "c": 0}))
    assert axes == (0, {"a": None, "b": 1, "c": 0})
    assert n == 10
    axes, n = broadcast_and_get_size(data, (None, {"a": 0, "b": 1, "c": None}))
    assert axes == (None, {"a": 0, "b": 1, "c": None})
    assert n == 10
    # A single 0 broadcasts over the whole dict: "b" then has length 3.
    with pytest.raises(ValueError, match=r"equal batch sizes.*\[10, 3, 10\]"):
        broadcast_and_get_size(data, (None, 0))


def test_broadcast_single_int_and_unequal_sizes_message():
    x = jnp.arange(10.0)
    data = (x, {"b": jnp.ones((3, 10))})
    with pytest.raises(
        ValueError, match=r"All batched arrays must have equal batch sizes.*\[10, 3\]"
    ):
        broadcast_and_get_size(data, 0)
    axes, n = broadcast_and_get_size(data, (0, 1))
    assert axes == (0, {"b": 1}) and n == 10


def test_non_array_leaves_get_none():
    x = np.arange(4.0)
    data = (x, 1.0, "abc", 3, object(), None)
    axes, n = broadcast_and_get_size(data, 0)
    assert axes == (0, None, None, None, None, None)
    assert n == 4


@pytest.mark.parametrize(
    "data, batch_axes",
    [
        (None, 0),
        (None, (0, 0)),
        (None, None),
        ((np.ones(3), np.ones(5)), None),
        ((np.ones(3), 2.0), (None, 0)),
    ],
)
def test_size_one_without_batched_leaves(data, batch_axes):
    _, n = broadcast_and_get_size(data, batch_axes)
    assert n == 1


def test_not_a_prefix():
    x = jnp.arange(3.0)
    for data, axes in [((x, x), (0, 0, 0)), ([x, x], (0, 0)), ((x,), (0, (0, 0)))]:
        with pytest.raises(ValueError, match="batch_axes must be a prefix of data."):
            broadcast_and_get_size(data, axes)


def test_axis_out_of_range_and_bad_axis_type():
    x = jnp.ones((3, 4))
    with pytest.raises(ValueError, match="out of range"):
        broadcast_and_get_size(x, 2)
    with pytest.raises(ValueError, match="out of range"):
        broadcast_and_get_size((x, jnp.array(1.0)), 0)
    _, n = broadcast_and_get_size(x, -1)
    assert n == 4
    with pytest.raises(TypeError, match="ints"):
        broadcast_and_get_size(x, 0.5)
    with pytest.raises(TypeError, match="ints"):
        broadcast_and_get_size(x, True)


# --------------------------------------------------------------------- batch_data


def test_is_lazy_generator():
    x, y = np.arange(10.0), np.arange(5.0)
    gen = klax.batch_data((x, y), 2, key=jr.key(0))  # nothing raised yet
    with pytest.raises(ValueError, match="equal batch sizes"):
        next(gen)
    gen = klax.batch_data(x, 0, key=jr.key(0))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(gen)
    with pytest.raises(TypeError, match="batch_size must be a positive int"):
        next(klax.batch_data(x, 2.5, key=jr.key(0)))
    with pytest.raises(ValueError, match="prefix"):
        next(klax.batch_data((x, x), 2, (0, 0, 0), key=jr.key(0)))


def test_spec_examples():
    anykey = jr.key(0)
    x33 = jnp.arange(33.0)
    assert next(klax.batch_data(x33, 32, key=anykey)).shape == (32,)

    x = jnp.arange(10.0)
    batch = next(klax.batch_data((x, (x, x)), 2, (0, (None, 0)), key=anykey))
    assert jax.tree.structure(batch) == jax.tree.structure((x, (x, x)))
    assert [leaf.shape for leaf in jax.tree.leaves(batch)] == [(2,), (10,), (2,)]
    assert batch[1][0] is x


def test_small_dataset_shrinks_batch():
    x = np.arange(10.0)
    gen = klax.batch_data(x, 128, key=jr.key(0))
    for _ in range(3):
        batch = next(gen)
        assert batch.shape == (10,)
        assert sorted(batch.tolist()) == x.tolist()


def test_unbatched_leaves_are_identical_objects():
    x = jnp.arange(4.0)
    gen = klax.batch_data((x,), 2, None, key=jr.key(0))
    for _ in range(3):
        batch = next(gen)
        assert isinstance(batch, tuple) and batch[0] is x
    obj, z = object(), np.ones(3)
    batch = next(klax.batch_data((x, obj, "s", z), 2, (0, 0, 0, None), key=jr.key(0)))
    assert batch[1] is obj and batch[2] == "s" and batch[3] is z


def test_data_none_yields_none():
    for axes in (0, None, (0, 0)):
        gen = klax.batch_data(None, 4, axes, key=jr.key(0))
        assert [next(gen) for _ in range(3)] == [None, None, None]


@pytest.mark.parametrize("convert", [True, False])
def test_convert_to_numpy(convert):
    x = jnp.arange(12.0).reshape(6, 2)
    batch = next(klax.batch_data(x, 3, convert_to_numpy=convert, key=jr.key(0)))
    assert isinstance(batch, np.ndarray) == convert
    assert isinstance(batch, jax.Array) == (not convert)
    assert batch.shape == (3, 2) and batch.dtype == np.float32


def test_exact_key_schedule_and_epochs(anykey):
    n, bs = 10, 3
    x = np.arange(n) * 10
    gen = klax.batch_data(x, bs, key=anykey)
    key = anykey
    for _ in range(3):  # three epochs
        perm = np.asarray(jr.permutation(key, jnp.arange(n)))
        (key,) = jr.split(key, 1)
        for i in range(n // bs):  # incomplete remainder dropped
            np.testing.assert_array_equal(next(gen), x[perm[i * bs : (i + 1) * bs]])


def test_reshuffles_every_epoch():
    x = np.arange(10)
    gen = klax.batch_data(x, 10, key=jr.key(0))
    epochs = [next(gen) for _ in range(3)]
    for e in epochs:
        assert sorted(e.tolist()) == x.tolist()
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])


def test_same_key_same_batches():
    x = np.arange(16.0)
    a = klax.batch_data(x, 4, key=jr.fold_in(jr.PRNGKey(1), 2))
    b = klax.batch_data(x, 4, key=jr.fold_in(jr.PRNGKey(1), 2))
    for _ in range(6):
        np.testing.assert_array_equal(next(a), next(b))


@pytest.mark.parametrize("convert", [True, False])
def test_slices_along_declared_batch_axis(convert):
    x = np.arange(10.0)
    m = np.stack([x, -x, 2 * x])  # (3, 10): batch axis 1
    d = {"m": m, "x": x, "const": np.ones((2, 2))}
    axes = {"m": 1, "x": 0, "const": None}
    gen = klax.batch_data(d, 4, axes, convert_to_numpy=convert, key=jr.key(5))
    for _ in range(4):
        batch = next(gen)
        assert batch["m"].shape == (3, 4) and batch["x"].shape == (4,)
        np.testing.assert_array_equal(batch["m"][0], batch["x"])
        np.testing.assert_array_equal(batch["m"][1], -np.asarray(batch["x"]))
        assert batch["const"] is d["const"]


def test_negative_axis():
    m = np.arange(30.0).reshape(3, 10)
    batch = next(klax.batch_data(m, 4, -1, key=jr.key(0)))
    assert batch.shape == (3, 4)
    np.testing.assert_array_equal(batch[1], batch[0] + 10)


def test_x64_keeps_dtype(x64):
    x = jnp.arange(8.0, dtype=jnp.float64)
    batch = next(klax.batch_data((x, x), 4, convert_to_numpy=False, key=jr.key(0)))
    assert batch[0].dtype == jnp.float64
    assert next(klax.batch_data(x, 4, key=jr.key(0))).dtype == np.float64


def test_batches_feed_jit_vmap_grad():
    x = np.linspace(0.0, 1.0, 10, dtype=np.float32)
    xb, yb = next(klax.batch_data((x, 2 * x), 4, key=jr.key(0)))
    loss = lambda w: jnp.mean((jax.vmap(lambda xi: w * xi)(xb) - yb) ** 2)
    assert jnp.allclose(jax.jit(loss)(2.0), 0.0)
    g = jax.grad(loss)(jnp.float32(1.0))
    assert jnp.allclose(g, -2.0 * np.mean(xb**2))


def test_batcher_protocol():
    assert isinstance(klax.batch_data, klax.Batcher)

    class Mine:
        def __call__(self, data, batch_size, batch_axes, *, key):
            while True:
                yield data

    assert isinstance(Mine(), klax.Batcher)
    assert not isinstance(3, klax.Batcher)


# Few distinct n: each new dataset size compiles a permutation.
@given(n=st.sampled_from([1, 3, 10]), bs=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_epoch_properties(n, bs, seed):
    x = np.arange(n, dtype=np.float32)
    gen = klax.batch_data((x, x**2), bs, key=jr.key(seed))
    size = min(bs, n)
    per_epoch = n // size
    seen = []
    for _ in range(per_epoch):
        xb, yb = next(gen)
        assert xb.shape == (size,) and yb.shape == (size,)
        np.testing.assert_array_equal(yb, xb**2)  # leaves stay aligned
        seen.extend(xb.tolist())
    # One epoch draws without replacement.
    assert len(set(seen)) == len(seen) == per_epoch * size


# --------------------------------------------------------------------- split_data


def test_split_spec_example(anykey):
    a = np.arange(20.0)
    b = np.arange(40.0).reshape(2, 20)
    subsets = klax.split_data((a, b), (2, 1, 1), (0, 1), key=anykey)
    assert len(subsets) == 3
    assert [s[0].shape for s in subsets] == [(10,), (5,), (5,)]
    assert [s[1].shape for s in subsets] == [(2, 10), (2, 5), (2, 5)]
    for sa, sb in subsets:
        assert isinstance(sa, jax.Array) and isinstance(sb, jax.Array)
        np.testing.assert_array_equal(sb[0], sa)  # aligned along axis 1
        np.testing.assert_array_equal(sb[1], sa + 20)
    together = np.concatenate([np.asarray(s[0]) for s in subsets])
    assert sorted(together.tolist()) == a.tolist()


def test_split_single_proportion_is_permutation():
    (subset,) = klax.split_data(np.arange(10), (1,), key=jr.key(0))
    assert isinstance(subset, jax.Array)
    assert sorted(subset.tolist()) == list(range(10))


def test_split_exact_permutation_and_rounding():
    key = jr.key(4)
    # n = 10, props (0.25, 0.75): split point round(2.5) = 2 (half to even).
    first, second = klax.split_data(np.arange(10), (1.0, 3.0), key=key)
    perm = np.asarray(jr.permutation(key, jnp.arange(10)))
    np.testing.assert_array_equal(first, perm[:2])
    np.testing.assert_array_equal(second, perm[2:])


def test_split_non_array_leaves_unchanged():
    x = np.arange(10.0)
    subsets = klax.split_data((x, 100.0, "abc"), (1, 1), key=jr.key(0))
    for s in subsets:
        assert s[0].shape == (5,) and s[1] == 100.0 and s[2] == "abc"


def test_split_empty_subset_warns():
    with pytest.warns(UserWarning, match="Proportions result in one or more empty"):
        subsets = klax.split_data(np.arange(10.0), (1.0, 0.0), key=jr.key(0))
    assert subsets[0].shape == (10,) and subsets[1].shape == (0,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        klax.split_data(np.arange(10.0), (1.0, 1.0), key=jr.key(0))


@pytest.mark.parametrize(
    "proportions, error, match",
    [
        ((-1.0,), ValueError, "Proportions must be non-negative."),
        ((1.0, -0.5), ValueError, "Proportions must be non-negative."),
        (((1, 2), (3, 4)), ValueError, "Proportions must be a 1D Sequence."),
        (0.5, ValueError, "Proportions must be a 1D Sequence."),
        ((0, 0), ValueError, "must not all be zero"),
        ((), ValueError, "at least one"),
        ((1.0, float("nan")), ValueError, "finite"),
        (("a", "b"), TypeError, "1D sequence of non-negative numbers"),
    ],
)
def test_split_errors(proportions, error, match):
    with pytest.raises(error, match=match):
        klax.split_data(np.arange(4.0), proportions, key=jr.key(0))


def test_split_batch_axes_errors():
    with pytest.raises(ValueError, match="equal batch sizes"):
        klax.split_data((np.ones(3), np.ones(4)), (1, 1), key=jr.key(0))
    with pytest.raises(ValueError, match="prefix"):
        klax.split_data((np.ones(3),), (1, 1), (0, 0), key=jr.key(0))


def test_split_deterministic_and_x64(x64):
    x = jnp.arange(10.0, dtype=jnp.float64)
    a = klax.split_data(x, (3, 2), key=jr.PRNGKey(3))
    b = klax.split_data(x, (3, 2), key=jr.PRNGKey(3))
    for sa, sb in zip(a, b, strict=True):
        assert sa.dtype == jnp.float64
        np.testing.assert_array_equal(sa, sb)
    assert [s.shape for s in a] == [(6,), (4,)]


def test_split_under_jit_vmap_grad():
    x = jnp.arange(10.0)
    key = jr.key(2)
    eager = klax.split_data(x, (1, 1), key=key)[0]
    jitted = jax.jit(lambda d: klax.split_data(d, (1, 1), key=key)[0])(x)
    np.testing.assert_array_equal(eager, jitted)
    # Gradient: one for each sample that lands in the first subset.
    g = jax.grad(lambda d: jnp.sum(klax.split_data(d, (1, 1), key=key)[0]))(x)
    expected = np.zeros(10, np.float32)
    expected[np.asarray(eager, int)] = 1.0
    np.testing.assert_array_equal(g, expected)
    keys = jr.split(key, 3)
    batched = jax.vmap(lambda k: klax.split_data(x, (1, 1), key=k)[0])(keys)
    looped = jnp.stack([klax.split_data(x, (1, 1), key=k)[0] for k in keys])
    np.testing.assert_array_equal(batched, looped)


def test_split_2d_data_under_rank_promotion_raise():
    # conftest sets rank promotion to "raise"; a split over 2-D data must work.
    m = np.ones((10, 3))
    a, b = klax.split_data(m, (3, 7), key=jr.key(0))
    assert a.shape == (3, 3) and b.shape == (7, 3)
