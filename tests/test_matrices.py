"""Tests of the matrix-valued modules of klax.nn."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, strategies as st

import klax
from klax.nn import (
    MLP,
    ConstantMatrix,
    ConstantSkewSymmetricMatrix,
    ConstantSPDMatrix,
    Matrix,
    SkewSymmetricMatrix,
    SPDMatrix,
)

IN = 2
seeds = st.integers(0, 2**32 - 1)

run = eqx.filter_jit(lambda model, *args: model(*args))


def abstract(cls, *args, **kwargs):
    """Build a module with shape-only leaves: structure checks without computing."""
    return eqx.filter_eval_shape(cls, *args, **kwargs)


def out_shape(build, x):
    """Output shape of `build(key)(x)`, by tracing only."""
    return jax.eval_shape(lambda k: klax.finalize(build(k))(x), jr.key(0)).shape


SHAPES = [
    (3, (3, 3)),
    ((2, 3), (2, 3)),
    ([4, 1], (4, 1)),
    ((1, 2, 3), (1, 2, 3)),
    ((2, 0, 3), (2, 0, 3)),
    ((np.int64(2), 2), (2, 2)),
    ((2, 3, 3), (2, 3, 3)),
]


@pytest.mark.parametrize(("shape", "expected"), SHAPES)
def test_matrix_shapes(shape, expected):
    init = jax.nn.initializers.normal()  # he_normal fails for zero sizes
    build = lambda k: Matrix(IN, shape, [4], init, key=k)
    model = abstract(build, jr.key(0))
    assert model.shape == expected
    assert all(type(d) is int for d in model.shape)
    assert model.mlp.out_size == int(np.prod(expected))
    assert out_shape(build, jnp.ones(IN)) == expected
    build = lambda k: ConstantMatrix(shape, init, key=k)
    assert out_shape(build, None) == expected


@pytest.mark.parametrize(
    ("shape", "expected"), [s for s in SHAPES if s[1][-1] == s[1][-2]]
)
def test_square_shapes(shape, expected):
    init = jax.nn.initializers.normal()
    for build in (
        lambda k: SkewSymmetricMatrix(IN, shape, [4], key=k),
        lambda k: SPDMatrix(IN, shape, [4], key=k),
    ):
        assert out_shape(build, jnp.ones(IN)) == expected
    for build in (
        lambda k: ConstantSkewSymmetricMatrix(shape, init, key=k),
        lambda k: ConstantSPDMatrix(shape, init=init, key=k),
    ):
        assert out_shape(build, None) == expected


def test_matrix_is_reshaped_mlp(getkey):
    key = getkey()
    model = Matrix(
        IN, (2, 3), [4], final_activation=jnp.tanh, use_final_bias=False, key=key
    )
    mlp = MLP(IN, 6, [4], final_activation=jnp.tanh, use_final_bias=False, key=key)
    assert eqx.tree_equal(model.mlp.layers, mlp.layers)
    x = jr.normal(getkey(), (IN,))
    np.testing.assert_allclose(run(model, x), run(mlp, x).reshape(2, 3), rtol=1e-6)


def test_scalar_input_accepts_python_number(getkey):
    for cls in (Matrix, SkewSymmetricMatrix, SPDMatrix):
        model = cls("scalar", (5, 5), [4], key=getkey())
        assert run(model, 0.0).shape == (5, 5)
        np.testing.assert_array_equal(run(model, 0.0), run(model, jnp.array(0.0)))


@given(seed=seeds, scale=st.sampled_from([0.1, 1.0, 10.0]))
def test_skew_symmetric(seed, scale):
    kmodel, kx = jr.split(jr.key(seed))
    model = SkewSymmetricMatrix(IN, (2, 3, 3), [4], key=kmodel)
    a = run(model, scale * jr.normal(kx, (IN,)))
    np.testing.assert_array_equal(a.mT, -a)
    constant = klax.finalize(ConstantSkewSymmetricMatrix((2, 3, 3), key=kmodel))
    c = run(constant, None)
    np.testing.assert_array_equal(c.mT, -c)


def test_skew_symmetric_values(getkey):
    key = getkey()
    model = SkewSymmetricMatrix(IN, 3, [4], key=key)
    x = jr.normal(getkey(), (IN,))
    m = run(model.mlp, x).reshape(3, 3)
    np.testing.assert_allclose(run(model, x), m - m.T, rtol=1e-6)  # no factor 1/2
    constant = ConstantSkewSymmetricMatrix(3, key=key)
    assert isinstance(constant.array, klax.SkewSymmetric)
    raw = constant.array.parameter
    np.testing.assert_allclose(run(klax.finalize(constant), None), 0.5 * (raw - raw.T))


@eqx.filter_jit
def _spd_eigs(model, x):
    a = model(x)
    return a, jnp.linalg.eigvalsh(a)


@given(
    seed=seeds,
    scale=st.sampled_from([0.1, 1.0, 10.0]),
    epsilon=st.sampled_from([0.0, 1e-6, 0.5]),
)
def test_spd_x64(seed, scale, epsilon):
    with jax.enable_x64(True):
        kmodel, kx = jr.split(jr.key(seed))
        model = SPDMatrix(IN, (2, 3, 3), [4], epsilon, key=kmodel)
        constant = ConstantSPDMatrix((2, 3, 3), epsilon, key=kmodel)
        for m, x in ((model, scale * jr.normal(kx, (IN,))), (constant, None)):
            a, eigs = _spd_eigs(m, x)
            assert a.dtype == jnp.float64
            np.testing.assert_allclose(a, a.mT, rtol=1e-12, atol=1e-14)
            # Round-off of the eigenvalues is relative to the largest one.
            tol = 1e-12 * jnp.max(jnp.abs(eigs))
            assert jnp.min(eigs) >= epsilon - tol


@given(seed=seeds)
def test_spd_float32(seed):
    kmodel, kx = jr.split(jr.key(seed))
    model = SPDMatrix(IN, 3, [4], 0.1, key=kmodel)
    a, eigs = _spd_eigs(model, jr.normal(kx, (IN,)))
    assert a.dtype == jnp.float32
    np.testing.assert_allclose(a, a.T, rtol=1e-6, atol=1e-6)
    assert jnp.min(eigs) >= 0.1 - 1e-6 * jnp.max(jnp.abs(eigs))  # float32 round-off


def test_spd_values(getkey):
    key = getkey()
    model = SPDMatrix(IN, 3, [4], 0.25, key=key)
    assert model.epsilon == 0.25
    x = jr.normal(getkey(), (IN,))
    b = run(model.mlp, x).reshape(3, 3)
    np.testing.assert_allclose(run(model, x), b @ b.T + 0.25 * jnp.eye(3), rtol=1e-5)
    constant = ConstantSPDMatrix(3, 0.25, key=key)
    b = constant.b_matrix
    np.testing.assert_allclose(
        run(constant, None), b @ b.T + 0.25 * jnp.eye(3), rtol=1e-5
    )


def test_spd_complex(getkey):
    model = SPDMatrix(IN, 3, [4], dtype=jnp.complex64, key=getkey())
    a, eigs = _spd_eigs(model, jnp.ones(IN, jnp.complex64))
    assert a.dtype == jnp.complex64
    np.testing.assert_allclose(a, jnp.conj(a).T, rtol=1e-6, atol=1e-6)
    assert jnp.all(eigs > 0)
    constant = ConstantSPDMatrix(3, dtype=jnp.complex64, key=getkey())
    assert jnp.iscomplexobj(constant.b_matrix)
    a, eigs = _spd_eigs(constant, None)
    np.testing.assert_allclose(a, jnp.conj(a).T, rtol=1e-6, atol=1e-6)
    assert jnp.all(eigs > 0)


def test_dtypes():
    f16 = jnp.float16
    build = lambda k: SPDMatrix(IN, 3, [4], dtype=f16, key=k)
    out = jax.eval_shape(lambda k: build(k)(jnp.ones(IN, f16)), jr.key(0))
    assert out.dtype == f16  # the identity is built in the output dtype
    out = jax.eval_shape(
        lambda k: ConstantSPDMatrix(3, dtype=f16, key=k)(None), jr.key(0)
    )
    assert out.dtype == f16
    # dtype=None means the default floating dtype, for every constant variant.
    for cls in (ConstantMatrix, ConstantSPDMatrix, ConstantSkewSymmetricMatrix):
        leaves = jax.tree.leaves(abstract(cls, 3, key=jr.key(0)))
        assert leaves[0].dtype == jnp.float32
        with jax.enable_x64(True):
            leaves = jax.tree.leaves(abstract(cls, 3, key=jr.key(0)))
            assert leaves[0].dtype == jnp.float64


def test_constant_init_receives_fan_in():
    seen = []

    def init(key, shape, fan_in, dtype=jnp.float32):
        seen.append((tuple(shape), fan_in))
        return jnp.ones(shape, dtype)

    ConstantMatrix((2, 4, 3), init, key=jr.key(0))
    ConstantSPDMatrix((4, 4), init=init, key=jr.key(0))
    ConstantSkewSymmetricMatrix(5, init, key=jr.key(0))
    assert seen == [((2, 4, 3), 3), ((4, 4), 4), ((5, 5), 5)]


def test_constant_skew_needs_finalize():
    model = ConstantSkewSymmetricMatrix(3, key=jr.key(0))
    with pytest.raises(klax.ContainsUnwrappablesError, match="klax.finalize"):
        model(None)


@pytest.mark.parametrize("use_x64", [False, True], ids=["float32", "float64"])
def test_jit_vmap_grad(getkey, use_x64):
    with jax.enable_x64(use_x64):
        dtype = jnp.float64 if use_x64 else jnp.float32
        models = [
            Matrix("scalar", (2, 3), [4], key=getkey()),
            SkewSymmetricMatrix("scalar", 3, [4], key=getkey()),
            SPDMatrix("scalar", 3, [4], key=getkey()),
        ]
        x = jr.normal(getkey(), (4,), dtype)

        @eqx.filter_jit
        def transformed(model, x):
            batched = jax.vmap(model)(x)
            looped = jnp.stack([model(x[i]) for i in range(x.shape[0])])
            grads = eqx.filter_grad(lambda m: jnp.sum(m(x[0]) ** 2))(model)
            return batched, looped, grads

        for model in models:
            batched, looped, grads = transformed(model, x)
            assert batched.shape == (4, *model.shape) and batched.dtype == dtype
            np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-6)
            leaves = jax.tree.leaves(grads)
            assert all(leaf.dtype == dtype for leaf in leaves)
            assert all(bool(jnp.isfinite(leaf).all()) for leaf in leaves)
            assert any(bool((leaf != 0).any()) for leaf in leaves)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: Matrix(IN, (3,), [4], key=jr.key(0)), ValueError, "at least two"),
        (lambda: Matrix(IN, [], [4], key=jr.key(0)), ValueError, "at least two"),
        (lambda: Matrix(IN, "3", [4], key=jr.key(0)), TypeError, r"shape=..."),
        (lambda: Matrix(IN, (2, -1), [4], key=jr.key(0)), ValueError, "non-negative"),
        (lambda: Matrix(IN, (2, 1.5), [4], key=jr.key(0)), ValueError, r"shape=..."),
        (lambda: ConstantMatrix(2.5, key=jr.key(0)), ValueError, r"shape=..."),
        (lambda: Matrix("x", 3, [4], key=jr.key(0)), ValueError, r"in_size=..."),
        (lambda: Matrix(IN, 3, 4, key=jr.key(0)), TypeError, r"width_sizes=..."),
        (
            lambda: SkewSymmetricMatrix(IN, (2, 3), [4], key=jr.key(0)),
            ValueError,
            "must be equal for skew-symmetric matrices",
        ),
        (
            lambda: SPDMatrix(IN, (3, 2), [4], key=jr.key(0)),
            ValueError,
            "must be equal for symmetric matrices",
        ),
        (
            lambda: ConstantSPDMatrix((1, 3, 2), key=jr.key(0)),
            ValueError,
            "must be equal for symmetric matrices",
        ),
        (
            lambda: ConstantSkewSymmetricMatrix((3, 2), key=jr.key(0)),
            ValueError,
            r"shape \(..., N, N\)",
        ),
        (lambda: SPDMatrix(IN, 3, [4], -1.0, key=jr.key(0)), ValueError, "epsilon"),
        (lambda: SPDMatrix(IN, 3, [4], "small", key=jr.key(0)), ValueError, "epsilon"),
        (
            lambda: ConstantSPDMatrix(3, float("nan"), key=jr.key(0)),
            ValueError,
            "epsilon",
        ),
    ],
)
def test_bad_construction(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_bad_call_inputs():
    model = abstract(SPDMatrix, IN, 3, [4], key=jr.key(0))
    with pytest.raises(ValueError, match=r"SPDMatrix` expects x of shape \(2,\)"):
        model(jnp.ones(3))
    with pytest.raises(ValueError, match=r"unbatched x.*jax.vmap"):
        model(jnp.ones((4, 2)))
    scalar = abstract(Matrix, "scalar", 3, [4], key=jr.key(0))
    with pytest.raises(ValueError, match="'scalar'"):
        scalar(jnp.ones(1))
