"""Physics of the PANN potentials: every row of the table in MECHANICS.md (c).

float64 throughout (module-wide x64). Models: freshly initialised networks
with several keys, randomly perturbed parameters, and one briefly trained
incompressible PANN. Tolerances: 1e-12 for exact identities (values of order
one), 1e-10 for convexity inequalities, 1e-6 (relative) for central finite
differences. The functions under test are compiled once per model structure
(`eqx.filter_jit`), so the many evaluations stay cheap.
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from _geometry import deformations, random_F, rotation, vectors
from hypothesis import given

import klax
import klax.mechanics as km


@pytest.fixture(autouse=True, scope="module")
def _x64():
    with jax.enable_x64(True):
        yield


KEYS = (0, 1, 2)
LAMBDAS = np.array([0.5, 0.7, 0.9, 1.0, 1.1, 1.5, 2.5, 4.0, 7.0])
FIBRE = np.array([0.6, 0.0, 0.8])
SCALE = (55.0, 7660.0)  # the Treloar input scales of klax-calibrate


def perturb(model, key, size=0.5):
    """Randomly change every network parameter, then enforce the constraints."""
    params, static = eqx.partition(model.network, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jr.split(key, len(leaves))
    leaves = [
        x + size * jr.normal(k, x.shape, x.dtype)
        for x, k in zip(leaves, keys, strict=True)
    ]
    network = klax.apply(eqx.combine(jax.tree.unflatten(treedef, leaves), static))
    return eqx.tree_at(lambda m: m.network, model, network)


def _trained_incompressible():
    curves = km.read_curves()
    data = km.stress_data(curves, ["uniaxial", "equibiaxial"])
    model = km.IncompressiblePANN([4, 4], input_scale=SCALE, key=jr.key(10))
    model, _ = klax.fit(
        model,
        tuple(jnp.asarray(a) for a in data),
        batch_size=32,
        steps=30,
        loss=km.stress_loss,
        optimizer=optax.adam(1e-2),
        make_logger=False,
        key=jr.key(11),
    )
    return model


@pytest.fixture(scope="module")
def incompressible():
    models = [
        km.IncompressiblePANN([4, 4], input_scale=SCALE, key=jr.key(k)) for k in KEYS
    ]
    models.append(perturb(models[0], jr.key(99)))
    models.append(_trained_incompressible())
    return [klax.finalize(m) for m in models]


@pytest.fixture(scope="module")
def compressible():
    models = [km.CompressiblePANN([4, 4], key=jr.key(k)) for k in KEYS]
    models.append(perturb(models[0], jr.key(98)))
    return [klax.finalize(m) for m in models]


@pytest.fixture(scope="module")
def transverse():
    G = km.structural_tensor(jnp.asarray(FIBRE))
    models = [km.TransverselyIsotropicPANN(G, [4, 4], key=jr.key(k)) for k in KEYS]
    models.append(perturb(models[0], jr.key(97)))
    return [klax.finalize(m) for m in models]


@pytest.fixture(scope="module")
def variants():
    """Other structures: reduced and classical-I5 transverse models."""
    G = km.structural_tensor(jnp.asarray(FIBRE))
    return [
        klax.finalize(
            km.TransverselyIsotropicPANN(G, [4], reduced=True, key=jr.key(5))
        ),
        klax.finalize(
            km.TransverselyIsotropicPANN(G, [4], polyconvex_i5=False, key=jr.key(6))
        ),
    ]


@pytest.fixture(scope="module")
def all_models(incompressible, compressible, transverse):
    return incompressible + compressible + transverse


# ---------------------------------------------------------------------------
# Compiled evaluations (fixed batch sizes: one compilation per model structure)

BATCH = 8


RANK_ONE = np.random.default_rng(30).normal(size=(2, 16, 3))  # directions a, b


@eqx.filter_jit
def evaluate(W, Fs, Q, directions):
    """At each F of a batch: energy and stress at F and QF, energy at FQ, and
    the second derivatives (a⊗b) : A(F) : (a⊗b) along rank-one directions."""
    a, b = directions

    def at(F):
        QF, FQ = Q @ F, F @ Q
        W_F, P = jax.value_and_grad(W)(F)
        W_QF, P_QF = jax.value_and_grad(W)(QF)

        def curvature(a, b):
            M = jnp.outer(a, b)
            return jax.jvp(
                lambda t: jax.jvp(lambda s: W(F + s * M), (t,), (1.0,))[1],
                (0.0,),
                (1.0,),
            )[1]

        rank_one = jax.vmap(curvature)(a, b)
        return dict(W=W_F, P=P, W_QF=W_QF, P_QF=P_QF, W_FQ=W(FQ), rank_one=rank_one)

    return jax.vmap(at)(Fs)


def run(W, Fs, Q=None):
    Q = jnp.eye(3) if Q is None else jnp.asarray(Q)
    return evaluate(W, Fs, Q, jnp.asarray(RANK_ONE))


@eqx.filter_jit
def strain_hessian(W):
    """∂²W/∂ε∂ε at F = I for symmetric strains in Voigt order (engineering shears)."""
    pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    basis = []
    for i, j in pairs:
        E = jnp.zeros((3, 3)).at[i, j].set(1.0).at[j, i].set(1.0)
        basis.append(E if i == j else 0.5 * E)
    basis = jnp.stack(basis)
    # C = I + 2ε: F = I + ε to first order; W along F = sqrtm(I + 2ε) has the same
    # second derivative at ε = 0 as along I + ε, since P(I) = 0 (tested separately).
    return jax.hessian(lambda e: W(jnp.eye(3) + jnp.einsum("a,aij->ij", e, basis)))(
        jnp.zeros(6)
    )


def batch_with_identity(Fs):
    """`[I, *Fs]`, padded with copies of the last entry to `BATCH` matrices."""
    Fs = [np.eye(3), *np.asarray(Fs).reshape(-1, 3, 3)]
    Fs += [Fs[-1]] * (BATCH - len(Fs))
    return jnp.asarray(np.stack(Fs[:BATCH]))


@eqx.filter_jit
def reference(W, Q):
    """Energy and stress at F = I, and the energy at a rotated state."""
    eye = jnp.eye(3)
    F = jnp.diag(jnp.array([1.3, 0.9, 1.1]))
    return W(eye), km.first_piola(W, eye), W(F), W(Q @ F)


N_ENERGIES = 4096


@eqx.filter_jit
def _energies(W, Fs):
    return jax.vmap(W)(Fs)


def energies(W, Fs):
    """Energies of up to `N_ENERGIES` matrices (padded: one compilation)."""
    Fs = np.asarray(Fs)
    padded = np.broadcast_to(np.eye(3), (N_ENERGIES, 3, 3)).copy()
    padded[: len(Fs)] = Fs
    return np.asarray(_energies(W, jnp.asarray(padded)))[: len(Fs)]


@eqx.filter_jit
def load_curves(W, lam):
    ad = jnp.stack([km.nominal_stress_11(W, c, lam) for c in km.LOAD_CASES])
    closed = jnp.stack(
        [
            km.isotropic_nominal_stress_11(W.isotropic_energy, c, lam)
            for c in km.LOAD_CASES
        ]
    )
    slopes = jnp.stack(
        [
            jax.grad(lambda l, c=c: km.nominal_stress_11(W, c, l))(1.0)
            for c in km.LOAD_CASES
        ]
    )
    return ad, closed, slopes, W.initial_shear_modulus()


def _lifted_inputs_batch(Fs):
    Fs = np.asarray(Fs)
    dets = np.linalg.det(Fs)
    cofs = dets[:, None, None] * np.linalg.inv(Fs).transpose(0, 2, 1)
    return jnp.asarray(Fs), jnp.asarray(cofs), jnp.asarray(dets)


@eqx.filter_jit
def lifted_check(W, a, b, t):
    """`t f(a) + (1 - t) f(b) - f(t a + (1 - t) b)` along segments in (X, Y, δ),
    and `f(a)`, for the lifted energy `f`."""

    def one(a, b, t):
        mix = jax.tree.map(lambda u, v: t * u + (1 - t) * v, a, b)
        fa = W.lifted_energy(*a)
        return t * fa + (1 - t) * W.lifted_energy(*b) - W.lifted_energy(*mix), fa

    return jax.vmap(one)(a, b, t)


# ---------------------------------------------------------------------------
# Network: convexity and monotonicity


@eqx.filter_jit
def network_checks(net, x, y, t):
    mix = jax.vmap(lambda a, b, s: net(s * a + (1 - s) * b))(x, y, t)
    chord = t * jax.vmap(net)(x) + (1 - t) * jax.vmap(net)(y)
    hessian_eigs = jax.vmap(lambda a: jnp.linalg.eigvalsh(jax.hessian(net)(a)))(x)
    gradients = jax.vmap(jax.grad(net))(x)
    return chord - mix, hessian_eigs, gradients


def _network_checks(network, n_inputs, monotone, rng):
    x = jnp.asarray(rng.normal(size=(64, n_inputs)) * 2.0)
    y = jnp.asarray(rng.normal(size=(64, n_inputs)) * 2.0)
    t = jnp.asarray(rng.uniform(size=(64,)))
    gap, eigs, grads = network_checks(network, x, y, t)
    assert float(jnp.min(gap)) >= -1e-10
    assert float(jnp.min(eigs)) >= -1e-10
    assert float(jnp.min(grads[:, np.asarray(monotone)])) >= -1e-12


def test_network_convexity_and_monotonicity(incompressible, compressible, transverse):
    rng = np.random.default_rng(0)
    for W in incompressible:
        _network_checks(W.network, 2, [True, True], rng)
    for W in compressible:
        _network_checks(W.network, 4, [True, True, False, False], rng)
    for W in transverse[:-1]:
        _network_checks(W.network, 6, [True, True, False, False, True, True], rng)


# ---------------------------------------------------------------------------
# Polyconvexity, rank-one convexity


def test_polyconvexity_in_lifted_space(all_models):
    rng = np.random.default_rng(1)
    n = 64
    # Independent X (for F), Y (for cof F) and δ > 0 (for det F).
    a = (
        rng.normal(size=(n, 3, 3)) + np.eye(3),
        rng.normal(size=(n, 3, 3)) + np.eye(3),
        rng.uniform(0.2, 3.0, size=n),
    )
    b = (
        rng.normal(size=(n, 3, 3)) + np.eye(3),
        rng.normal(size=(n, 3, 3)) + np.eye(3),
        rng.uniform(0.2, 3.0, size=n),
    )
    t = rng.uniform(size=n)
    a, b = jax.tree.map(jnp.asarray, (a, b))
    for W in all_models:
        gap, _ = lifted_check(W, a, b, jnp.asarray(t))
        assert float(jnp.min(gap)) >= -1e-10 * float(jnp.max(jnp.abs(gap)) + 1.0)


def test_lifted_energy_is_the_energy(all_models):
    """`W(F) == W.lifted_energy(F, cof F, det F)`."""
    rng = np.random.default_rng(2)
    Fs = random_F(rng, 64)
    other = _lifted_inputs_batch(random_F(rng, 64))
    for W in all_models:
        _, lifted = lifted_check(W, _lifted_inputs_batch(Fs), other, jnp.ones(64))
        np.testing.assert_allclose(lifted, energies(W, Fs), rtol=1e-12)


def test_rank_one_convexity(all_models):
    """Legendre–Hadamard: (a⊗b) : A(F) : (a⊗b) >= 0."""
    Fs = batch_with_identity(random_F(np.random.default_rng(3), BATCH - 1))
    for W in all_models:
        assert float(jnp.min(run(W, Fs)["rank_one"])) >= -1e-10


def test_tangent_major_symmetry(incompressible):
    W = incompressible[-1]
    F = jnp.asarray(random_F(np.random.default_rng(31), 1)[0])
    A = eqx.filter_jit(km.tangent)(W, F)
    np.testing.assert_allclose(A, A.transpose(2, 3, 0, 1), atol=1e-12)
    a, b = RANK_ONE[:, 0]
    value = np.einsum("i,J,iJkL,k,L->", a, b, np.asarray(A), a, b)
    expected = run(W, batch_with_identity(np.asarray(F)))["rank_one"][1, 0]
    np.testing.assert_allclose(value, expected, rtol=1e-10)


# ---------------------------------------------------------------------------
# Normalisation


def test_zero_energy_and_stress_at_reference(incompressible, compressible, transverse):
    eye_batch = batch_with_identity([])
    for W in incompressible + compressible + transverse:
        out = run(W, eye_batch)
        assert float(jnp.max(jnp.abs(out["W"]))) < 1e-12
        if W not in incompressible:
            assert float(jnp.max(jnp.abs(out["P"]))) < 1e-12
    for W in incompressible:
        ad, closed, _, _ = load_curves(W, LAMBDAS)
        np.testing.assert_allclose(ad[:, LAMBDAS == 1.0], 0.0, atol=1e-12)
        np.testing.assert_allclose(closed[:, LAMBDAS == 1.0], 0.0, atol=1e-12)


def test_variants(variants):
    """Reduced and classical-I5 transverse models: normalised and objective."""
    Q = jnp.asarray(rotation([0.3, -1.1, 0.5]))
    for W in variants:
        energy, P, W_F, W_QF = reference(W, Q)
        assert abs(float(energy)) < 1e-12 and float(jnp.max(jnp.abs(P))) < 1e-12
        np.testing.assert_allclose(W_QF, W_F, atol=1e-12)
        assert float(W_F) > 0


def test_normalisation_for_many_parameters(compressible, transverse):
    """Zero energy and stress at F = I hold for any parameters (spec B.4)."""
    for base in (compressible[0], transverse[0]):
        for k in range(4):
            model = perturb(base, jr.key(200 + k), size=2.0)
            out = run(model, batch_with_identity([]))
            assert float(jnp.max(jnp.abs(out["W"]))) < 1e-12
            assert float(jnp.max(jnp.abs(out["P"]))) < 1e-11


# ---------------------------------------------------------------------------
# Stress correctness and load cases


def test_stress_against_finite_differences(all_models):
    F = random_F(np.random.default_rng(4), 1)[0]
    h = 1e-6
    directions = np.eye(9).reshape(9, 3, 3) * h
    shifted = np.concatenate([F[None] + directions, F[None] - directions])
    for W in all_models:
        P = run(W, batch_with_identity(F))["P"][1]
        values = energies(W, shifted)
        fd = ((values[:9] - values[9:]) / (2 * h)).reshape(3, 3)
        np.testing.assert_allclose(P, fd, rtol=1e-6, atol=1e-8)


def test_closed_form_slopes_and_tension(incompressible):
    lam = LAMBDAS
    for W in incompressible:
        ad, closed, slopes, mu0 = load_curves(W, lam)
        np.testing.assert_allclose(ad, closed, atol=1e-10 * float(jnp.max(jnp.abs(ad))))
        assert float(mu0) > 0
        np.testing.assert_allclose(slopes, [3 * mu0, 6 * mu0, 4 * mu0], rtol=1e-9)
        # Tension gives tension (W_1, W_2 >= 0), compression gives compression.
        assert bool(jnp.all(ad[:, lam > 1] > 0)) and bool(jnp.all(ad[:, lam < 1] < 0))


# ---------------------------------------------------------------------------
# Symmetries


@given(deformations(), vectors)
def test_stress_symmetry_objectivity_isotropy(models, F, v):
    Q = jnp.asarray(rotation(v))
    for kind, W in models:
        out = jax.tree.map(
            lambda x: np.asarray(x[1]), run(W, batch_with_identity(F), Q)
        )
        Q = np.asarray(Q)
        P, J = out["P"], np.linalg.det(F)
        S = np.linalg.solve(F, P)  # S = F⁻¹ P, σ = J⁻¹ P Fᵀ (tested in kinematics)
        sigma = P @ F.T / J
        sigma_QF = out["P_QF"] @ (Q @ F).T / J
        scale = 1.0 + float(np.max(np.abs(P)))
        np.testing.assert_allclose(S, S.T, atol=1e-12 * scale)
        np.testing.assert_allclose(sigma, sigma.T, atol=1e-12 * scale)
        np.testing.assert_allclose(P @ F.T, F @ P.T, atol=1e-12 * scale)
        np.testing.assert_allclose(out["W_QF"], out["W"], atol=1e-12 * scale)
        np.testing.assert_allclose(out["P_QF"], Q @ P, atol=1e-12 * scale)
        np.testing.assert_allclose(sigma_QF, Q @ sigma @ Q.T, atol=1e-12 * scale)
        if kind == "isotropic":
            np.testing.assert_allclose(out["W_FQ"], out["W"], atol=1e-12 * scale)


@pytest.fixture(scope="module")
def models(incompressible, compressible, transverse):
    return [
        ("isotropic", incompressible[-1]),
        ("isotropic", compressible[0]),
        ("transverse", transverse[0]),
    ]


def test_transverse_isotropy(transverse):
    rng = np.random.default_rng(5)
    n = FIBRE / np.linalg.norm(FIBRE)
    normal = np.cross(n, [0.0, 1.0, 0.0])
    normal /= np.linalg.norm(normal)
    Fs = batch_with_identity(random_F(rng, BATCH - 1))
    for W in transverse:
        base = np.asarray(run(W, Fs)["W"])
        for angle in (0.3, 1.7, -2.5):
            about_fibre = jnp.asarray(rotation(angle * n))
            np.testing.assert_allclose(
                run(W, Fs, about_fibre)["W_FQ"], base, atol=1e-12
            )
        for axis in (normal, np.cross(n, normal)):  # 180° about normals to a
            flip = jnp.asarray(rotation(np.pi * axis))
            np.testing.assert_allclose(run(W, Fs, flip)["W_FQ"], base, atol=1e-12)
        generic = jnp.asarray(rotation([0.4, -0.9, 0.2]))
        assert np.max(np.abs(run(W, Fs, generic)["W_FQ"] - base)) > 1e-6


# ---------------------------------------------------------------------------
# Reference tangent, growth, non-negativity


def test_reference_tangent_positive(incompressible, compressible, transverse):
    for W in compressible + transverse:
        D = np.asarray(strain_hessian(W))
        assert np.linalg.eigvalsh(D).min() > 0
        if W in compressible:
            mu, lam = D[3, 3], D[0, 1]
            np.testing.assert_allclose(D[4, 4], mu, rtol=1e-10)  # isotropy
            assert mu > 0 and lam + 2 * mu / 3 > 0
    for W in incompressible:
        assert float(load_curves(W, LAMBDAS)[3]) > 0


def test_growth(compressible, transverse):
    small = np.array([1e-1, 1e-2, 1e-3, 1e-4])
    large = np.array([10.0, 1e2, 1e3, 1e4])
    factors = np.concatenate([small, large])
    scaled = factors[:, None, None] * np.eye(3)[None]
    for W in compressible + transverse:
        values = energies(W, scaled)
        w_small, w_large = values[:4], values[4:8]
        assert np.all(np.diff(w_small) > 0) and w_small[-1] > 1e10
        assert np.all(np.diff(w_large) > 0) and w_large[-1] > 1e10


def test_non_negativity(incompressible, compressible, transverse):
    rng = np.random.default_rng(6)
    general = random_F(rng, 2000)
    unimodular = random_F(rng, 2000, unimodular=True)
    both = np.concatenate([general, unimodular])
    for W in incompressible:
        assert energies(W, both).min() >= -1e-12
    # Not guaranteed for compressible potentials: checked by sampling, as
    # Linden et al. (2023) do.
    for W in compressible + transverse:
        assert energies(W, both).min() >= -1e-12


# ---------------------------------------------------------------------------
# Transformations, wrappers, errors


def test_jit_vmap_grad_wrt_parameters(incompressible):
    W = incompressible[-1]
    Fs = jnp.asarray(random_F(np.random.default_rng(7), 3))
    eager = jnp.stack([W(F) for F in Fs])  # eager (no jit) versus compiled
    # A few ulps: XLA fuses the compiled version differently (seen: 1.2e-14).
    np.testing.assert_allclose(energies(W, Fs), eager, rtol=1e-13)

    def loss(W):
        return jnp.sum(jax.vmap(lambda F: km.first_piola(W, F)[0, 0])(Fs) ** 2)

    grads = eqx.filter_jit(eqx.filter_grad(loss))(W)
    leaves = jax.tree.leaves(grads)
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


def test_softplus_reparametrisation_keeps_the_potential():
    model = km.IncompressiblePANN([4], input_scale=SCALE, key=jr.key(3))
    soft = km.reparametrize_nonnegative(model)
    assert not klax.contains_constraints(soft) and klax.contains_unwrappables(soft)
    F = random_F(np.random.default_rng(8), 4)
    np.testing.assert_allclose(
        energies(klax.finalize(soft), F), energies(klax.finalize(model), F), rtol=1e-9
    )
    assert np.all(
        np.asarray(klax.unwrap(soft.network.layers[1].linear_y.weights[0])) > 0
    )


def test_partially_monotone_network_free_inputs():
    net = km.PartiallyMonotoneFICNN((True, False), [4, 4], key=jr.key(0))
    assert klax.contains_constraints(net)
    final = klax.finalize(net)
    # The free input may act with either sign: its weights are unconstrained.
    free_weight = final.layers[0].weights[1]
    assert free_weight.shape == (1, 4) and float(jnp.min(free_weight)) < 0
    assert final(jnp.zeros(2)).shape == ()
    affine = klax.finalize(km.PartiallyMonotoneFICNN((True,), [], key=jr.key(1)))
    assert affine(jnp.ones(1)).shape == ()
    with pytest.raises(ValueError, match=r"input of shape \(2,\)"):
        final(jnp.zeros(3))
    with pytest.raises(TypeError, match="list/tuple of bools"):
        km.PartiallyMonotoneFICNN("ab", [4], key=jr.key(0))  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="non-empty"):
        km.PartiallyMonotoneFICNN((), [4], key=jr.key(0))


def test_construction_and_call_errors():
    with pytest.raises(ValueError, match="'incompressible', 'polyconvex', 'isochoric'"):
        km.IncompressiblePANN(invariants="other", key=jr.key(0))  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="input_scale"):
        km.IncompressiblePANN(input_scale=(1.0, -1.0), key=jr.key(0))
    with pytest.raises(ValueError, match="width_sizes"):
        km.CompressiblePANN([0], key=jr.key(0))
    with pytest.raises(ValueError, match="growth"):
        km.CompressiblePANN(growth=-1.0, key=jr.key(0))
    with pytest.raises(ValueError, match=r"structural tensor G of shape \(3, 3\)"):
        km.TransverselyIsotropicPANN(jnp.ones(3), key=jr.key(0))
    model = km.IncompressiblePANN([4], key=jr.key(0))
    with pytest.raises(klax.ContainsUnwrappablesError, match="klax.finalize"):
        model(jnp.eye(3))
    with pytest.raises(Exception, match="J = det F > 0"):
        eqx.filter_jit(lambda W, F: W(F))(klax.finalize(model), -jnp.eye(3))


# ---------------------------------------------------------------------------
# Input sets holding Ī2 (polyconvex on the incompressible manifold J = 1)

SCALE_3 = (5.8, 55.0, 17.0, 386.0)  # Treloar input scales of (√Ĩ1, Ĩ1, √Ī2, Ī2)
# Treloar input scales of the "power-sums" set (Σλ, Σλ⁻¹, Ĩ1, Ī2, Σλ⁴, Σλ⁻⁴, Σλ⁶, Σλ⁻⁶).
SCALE_PS = (6.0, 17.0, 55.0, 389.0, 3300.0, 1.5e5, 1.9e5, 6.0e7)


@pytest.fixture(scope="module")
def incompressible_j1():
    """PANNs on (√Ĩ1, Ĩ1, √Ī2, Ī2), the power sums and (Ī1, Ī2): fresh,
    perturbed, softplus."""
    models = [
        km.IncompressiblePANN(
            [4, 4], "incompressible", input_scale=SCALE_3, key=jr.key(k)
        )
        for k in KEYS
    ]
    models.append(perturb(models[0], jr.key(96)))
    power_sums = km.IncompressiblePANN(
        [4, 4], "power-sums", input_scale=SCALE_PS, key=jr.key(5)
    )
    models += [power_sums, perturb(power_sums, jr.key(97))]
    models.append(
        km.reparametrize_nonnegative(
            km.IncompressiblePANN([3], "isochoric", input_scale=2.0, key=jr.key(4))
        )
    )
    return [klax.finalize(m) for m in models]


def test_input_sets_at_j1(incompressible_j1):
    rng = np.random.default_rng(40)
    Fs = random_F(rng, 32, unimodular=True)
    Q = rotation(rng.normal(size=3))
    n = 32
    unimodular_pairs = []
    for _ in range(2):
        X = random_F(rng, n, unimodular=True)
        unimodular_pairs.append(_lifted_inputs_batch(X))
    a = unimodular_pairs[0]
    b = (unimodular_pairs[1][0], unimodular_pairs[1][1] + 0.3, jnp.ones(n))
    a = (a[0], a[1], jnp.ones(n))  # δ = 1: the incompressible manifold
    t = jnp.asarray(rng.uniform(size=n))
    for W in incompressible_j1:
        k = len(km.INVARIANT_SETS[W.invariants])
        _network_checks(W.network, k, [True] * k, rng)
        # Zero energy and stress-free reference in every load case.
        assert float(W(jnp.eye(3))) == 0.0
        for case in km.LOAD_CASES:
            assert abs(float(km.nominal_stress_11(W, case, 1.0))) < 1e-12
        # Convex in the lifted (F, cof F) at det = 1, with independent cof F.
        gap, _ = lifted_check(W, a, b, t)
        assert float(jnp.min(gap)) >= -1e-10 * float(jnp.max(jnp.abs(gap)) + 1.0)
        # Objective, isotropic, non-negative; isotropic_energy is the energy.
        e = energies(W, Fs)
        np.testing.assert_allclose(energies(W, Q @ Fs), e, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(energies(W, Fs @ Q), e, rtol=1e-12, atol=1e-14)
        assert e.min() >= -1e-12
        C = np.einsum("nki,nkj->nij", Fs, Fs)
        I1 = np.trace(C, axis1=1, axis2=2)
        I2 = 0.5 * (I1**2 - np.trace(C @ C, axis1=1, axis2=2))
        iso = eqx.filter_jit(jax.vmap(W.isotropic_energy))(I1, I2)
        np.testing.assert_allclose(iso, e, rtol=1e-10, atol=1e-12)
        # Tension gives tension; slopes 3 : 6 : 4.
        for case in km.LOAD_CASES:
            assert float(km.nominal_stress_11(W, case, 1.5)) > 0
            assert float(km.nominal_stress_11(W, case, 0.7)) < 0


def test_pann_inputs_match_the_invariants():
    lam = 1.7
    I1 = lam**2 + 2 / lam
    I2 = 2 * lam + lam**-2
    x = km.pann_inputs(jnp.asarray(I1), jnp.asarray(I2), "incompressible")
    expected = [I1**0.5 - 3**0.5, I1 - 3, I2**0.5 - 3**0.5, I2 - 3]
    np.testing.assert_allclose(x, expected, rtol=1e-14)
    x = km.pann_inputs(jnp.asarray([I1]), jnp.asarray([I2]), "polyconvex")
    assert x.shape == (1, 2)
    np.testing.assert_allclose(x[0], [I1 - 3, I2**1.5 - 3**1.5], rtol=1e-14)
    assert km.POLYCONVEX_AT_ANY_J == {
        "power-sums": False,
        "incompressible": False,
        "polyconvex": True,
        "isochoric": False,
    }
    with pytest.raises(ValueError, match="invariants"):
        km.pann_inputs(3.0, 3.0, "other")


@pytest.mark.parametrize("x64", [True, False])
def test_power_sum_inputs(x64):
    """The "power-sums" inputs are Σλ̄^a (a = 1, -1, 2, -2, 4, -4, 6, -6) minus 3,
    for stretches with repeated, distinct and extreme values, in both dtypes."""
    stretches = np.array([[1.0, 1.0], [1.7, 1.7**-0.5], [0.6, 1.3], [8.0, 0.9]])
    lam = np.concatenate([stretches, 1 / stretches.prod(1, keepdims=True)], axis=1)
    I1 = np.sum(lam**2, axis=1)
    I2 = np.sum(lam**-2, axis=1)
    expected = np.stack(
        [np.sum(lam**a, axis=1) - 3 for a in (1, -1, 2, -2, 4, -4, 6, -6)], axis=1
    )
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        x = jax.jit(km.pann_inputs, static_argnums=2)(
            jnp.asarray(I1, dtype), jnp.asarray(I2, dtype), "power-sums"
        )
        assert x.shape == (4, 8) and x.dtype == dtype
    scale = np.maximum(np.abs(expected), 1.0)
    np.testing.assert_allclose(x / scale, expected / scale, atol=1e-13 if x64 else 2e-6)
    assert km.INVARIANT_SETS["power-sums"][2:4] == ("Ĩ1", "Ī2")


def _passthrough_only(model, coefficients):
    """`model` finalised with zero hidden-to-output weights and the given
    passthrough weights: an energy linear in the scaled inputs."""
    last: Any = model.network.layers[-1].linear_y
    hidden, passthrough = last.weights[0], last.weights[1]
    model = eqx.tree_at(
        lambda m: (
            m.network.layers[-1].linear_y.weights[0].parameter,  # pyright: ignore
            m.network.layers[-1].linear_y.weights[1].parameter,  # pyright: ignore
        ),
        model,
        (
            jnp.zeros_like(hidden.parameter),
            jnp.asarray(coefficients).reshape(passthrough.parameter.shape),
        ),
    )
    return klax.finalize(model)


@eqx.filter_jit
def _load_curves(W):
    lam = jnp.asarray([0.6, 1.0, 1.8, 4.0])
    return jnp.stack([km.nominal_stress_11(W, case, lam) for case in km.LOAD_CASES])


def _assert_same_load_curves(W, reference):
    np.testing.assert_allclose(
        _load_curves(W), _load_curves(reference), rtol=1e-12, atol=1e-14
    )


def test_ogden_terms_are_inside_the_power_sums():
    """Passthrough weights alone give exactly an Ogden model with the set's
    exponents (μ_p α_p > 0): W = Σ (μ_p/α_p)(Σλ̄^α_p - 3), Mooney–Rivlin
    (α = 2, -2) included."""
    alphas = np.array([1.0, -1.0, 2.0, -2.0, 4.0, -4.0, 6.0, -6.0])
    mus = np.array([0.3, -0.05, 0.2, -0.02, 1e-3, -1e-4, 2e-5, -1e-6])
    model = km.IncompressiblePANN(
        [4], "power-sums", input_scale=SCALE_PS, key=jr.key(0)
    )
    W = _passthrough_only(model, mus / alphas * np.asarray(SCALE_PS))
    _assert_same_load_curves(W, km.Ogden(list(mus), list(alphas)))


def test_mooney_rivlin_is_inside_the_incompressible_input_set():
    """Passthrough weights (0, c10 s2, 0, c01 s4) give exactly Mooney–Rivlin
    (Ĩ1 = Ī1 and Ī2 enter linearly)."""
    c10, c01 = 0.2, 0.02
    model = km.IncompressiblePANN(
        [4], "incompressible", input_scale=SCALE_3, key=jr.key(0)
    )
    W = _passthrough_only(model, [0.0, c10 * SCALE_3[1], 0.0, c01 * SCALE_3[3]])
    _assert_same_load_curves(W, km.MooneyRivlin(c10, c01))


def test_energy_scale():
    base = km.IncompressiblePANN([3], "incompressible", key=jr.key(2))
    scaled = km.IncompressiblePANN(
        [3], "incompressible", energy_scale=1e-3, key=jr.key(2)
    )
    F = jnp.asarray(random_F(np.random.default_rng(41), 1, unimodular=True)[0])
    np.testing.assert_allclose(
        klax.finalize(scaled)(F), 1e-3 * klax.finalize(base)(F), rtol=1e-12
    )
    with pytest.raises(ValueError, match="energy_scale"):
        km.IncompressiblePANN(energy_scale=0.0, key=jr.key(0))
