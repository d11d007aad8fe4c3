"""Kinematics, invariants and stress measures of `klax.mechanics` (spec A.1, A.5).

All checks run in float64 (module-wide x64); tolerances are 1e-12 for
identities that only suffer rounding and 1e-6 (relative) for central finite
differences with step 1e-6.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _geometry import deformations, vectors
from hypothesis import given

import klax.mechanics as km


@pytest.fixture(autouse=True, scope="module")
def _x64():
    with jax.enable_x64(True):
        yield


def neo_hooke_compressible(F):
    J = jnp.linalg.det(F)
    return 0.5 * (jnp.sum(F * F) - 3.0) - jnp.log(J) + 0.4 * (J - 1.0) ** 2


def st_venant(F, lam=1.2, mu=0.7):
    E = 0.5 * (F.T @ F - jnp.eye(3))
    return 0.5 * lam * jnp.trace(E) ** 2 + mu * jnp.sum(E * E)


# The functions under test, compiled once (eager dispatch of many tiny ops is
# slow on CPU); `test_jit_vmap_and_dtype` checks that eager and jit agree.
invariants = jax.jit(km.invariants)
isochoric = jax.jit(km.isochoric_invariants)
polyconvex = jax.jit(km.polyconvex_isochoric_invariants)
cofactor = jax.jit(km.cofactor)
transverse = jax.jit(km.transverse_invariants, static_argnames="polyconvex")
stresses = jax.jit(
    lambda F: (
        km.first_piola(neo_hooke_compressible, F),
        km.second_piola(neo_hooke_compressible, F),
        km.kirchhoff(neo_hooke_compressible, F),
        km.cauchy(neo_hooke_compressible, F),
    )
)
first_piola = jax.jit(lambda F: km.first_piola(neo_hooke_compressible, F))


@jax.jit
@jax.grad
def dW_dC(C):
    """The test potential written in C, differentiated."""
    return (
        0.5 * (jnp.trace(C) - 3.0)
        - 0.5 * jnp.log(jnp.linalg.det(C))
        + 0.4 * (jnp.sqrt(jnp.linalg.det(C)) - 1.0) ** 2
    )


voigt_svk = jax.jit(lambda F: km.voigt_tangent(st_venant, F))

F_GENERIC = np.array([[1.1, 0.2, 0.05], [0.1, 0.9, 0.3], [-0.1, 0.15, 1.2]])


def test_reference_values():
    eye = jnp.eye(3)
    assert [float(v) for v in km.invariants(eye)] == [3.0, 3.0, 1.0, 1.0]
    I1, I2 = km.polyconvex_isochoric_invariants(eye)
    assert float(I1) == 3.0 and abs(float(I2) - 3.0**1.5) < 1e-14
    assert [float(v) for v in km.isochoric_invariants(eye)] == [3.0, 3.0]
    G = km.structural_tensor(jnp.array([0.0, 3.0, 4.0]))
    assert np.allclose(km.transverse_invariants(eye, G), (1.0, 1.0), atol=1e-15)
    assert np.allclose(
        km.transverse_invariants(eye, G, polyconvex=False), (1.0, 1.0), atol=1e-15
    )
    assert km.right_cauchy_green(eye).dtype == jnp.float64


@given(deformations())
def test_invariant_identities(F):
    F = jnp.asarray(F)
    C = F.T @ F
    cof = cofactor(F)
    I1, I2, I3, J = invariants(F)
    np.testing.assert_allclose(cof, J * jnp.linalg.inv(F).T, atol=1e-12)
    np.testing.assert_allclose(cof.T @ cof, I3 * jnp.linalg.inv(C), atol=1e-11)
    np.testing.assert_allclose(I1, jnp.trace(C), rtol=1e-13)
    np.testing.assert_allclose(
        I2, 0.5 * (jnp.trace(C) ** 2 - jnp.trace(C @ C)), rtol=1e-12
    )
    np.testing.assert_allclose(I3, jnp.linalg.det(C), rtol=1e-12)
    np.testing.assert_allclose(J, jnp.linalg.det(F), rtol=1e-12)
    I1b, I2b = isochoric(F)
    I1t, I2t = polyconvex(F)
    np.testing.assert_allclose(I1b, J ** (-2 / 3) * I1, rtol=1e-12)
    np.testing.assert_allclose(I2b, J ** (-4 / 3) * I2, rtol=1e-12)
    np.testing.assert_allclose(I1t, I1b, rtol=1e-12)
    np.testing.assert_allclose(I2t, I2b**1.5, rtol=1e-12)
    # Isochoric invariants are invariant under volumetric scaling.
    np.testing.assert_allclose(isochoric(1.7 * F), (I1b, I2b), rtol=1e-12)


@given(deformations(), vectors)
def test_transverse_invariants(F, a):
    a = np.asarray(a) + np.array([0.1, 0.0, 0.0])  # never zero
    G = km.structural_tensor(a)
    assert abs(float(jnp.trace(G)) - 1.0) < 1e-14
    n = a / np.linalg.norm(a)
    F = jnp.asarray(F)
    I4, I5 = transverse(F, G)
    np.testing.assert_allclose(I4, np.sum((F @ n) ** 2), rtol=1e-12)
    np.testing.assert_allclose(I5, np.sum((cofactor(F) @ n) ** 2), rtol=1e-12)
    C = F.T @ F
    _, I5_classical = transverse(F, G, polyconvex=False)
    np.testing.assert_allclose(I5_classical, n @ C @ C @ n, rtol=1e-12)


def test_invariant_derivatives():
    F = jnp.asarray(F_GENERIC)
    a = jnp.array([0.3, -0.5, 0.8])
    G = km.structural_tensor(a)
    eye = jnp.eye(3)

    @jax.jit
    def derivatives(F):
        def grad(f):
            return jax.grad(f)(F)

        return (
            grad(lambda F: km.invariants(F)[0]),
            grad(lambda F: km.invariants(F)[1]),
            grad(lambda F: km.invariants(F)[3]),
            grad(lambda F: km.transverse_invariants(F, G)[0]),
            grad(lambda F: km.transverse_invariants(F, G)[1]),
        )

    C = F.T @ F
    d1, d2, dJ, d4, _ = derivatives(F)
    np.testing.assert_allclose(d1, 2 * F, atol=1e-12)
    np.testing.assert_allclose(d2, 2 * (jnp.trace(C) * F - F @ C), atol=1e-12)
    np.testing.assert_allclose(dJ, km.cofactor(F), atol=1e-12)
    np.testing.assert_allclose(d4, 2 * F @ G, atol=1e-12)
    d1, d2, dJ, d4, d5 = derivatives(eye)
    np.testing.assert_allclose(d1, 2 * eye, atol=1e-12)
    np.testing.assert_allclose(d2, 4 * eye, atol=1e-12)
    np.testing.assert_allclose(dJ, eye, atol=1e-12)
    np.testing.assert_allclose(d4, 2 * G, atol=1e-12)
    np.testing.assert_allclose(d5, 2 * jnp.trace(G) * eye - 2 * G, atol=1e-12)


def test_cofactor_is_defined_for_singular_F():
    F = jnp.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 1.0, 1.0]])
    cof = km.cofactor(F)
    assert jnp.all(jnp.isfinite(cof))
    np.testing.assert_allclose(F.T @ cof, jnp.zeros((3, 3)), atol=1e-12)


def test_jit_vmap_and_dtype():
    Fs = jnp.stack([jnp.eye(3), jnp.asarray(F_GENERIC), 2.0 * jnp.eye(3)])
    eager = jnp.stack([jnp.stack(km.invariants(F)) for F in Fs])
    batched = jnp.stack(jax.jit(jax.vmap(km.invariants))(Fs), axis=-1)
    np.testing.assert_array_equal(eager, batched)
    with jax.enable_x64(False):
        out = km.polyconvex_isochoric_invariants(jnp.eye(3, dtype=jnp.float32))
        assert out[0].dtype == jnp.float32


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"shape \(3, 3\); got shape \(2, 2\)"):
        km.invariants(jnp.eye(2))
    with pytest.raises(ValueError, match="Use jax.vmap"):
        km.cofactor(jnp.ones((4, 3, 3)))
    with pytest.raises(ValueError, match=r"direction of shape \(3,\)"):
        km.structural_tensor(jnp.ones(2))
    with pytest.raises(ValueError, match="structural tensor G of shape"):
        km.transverse_invariants(jnp.eye(3), jnp.ones(3))
    inverted = jnp.diag(jnp.array([1.0, 1.0, -1.0]))
    with pytest.raises(Exception, match="J = det F > 0"):
        km.isochoric_invariants(inverted)
    with pytest.raises(Exception, match="J = det F > 0"):
        jax.jit(km.polyconvex_isochoric_invariants)(inverted)
    with pytest.raises(Exception, match="a = 0"):
        km.structural_tensor(jnp.zeros(3))


# ---------------------------------------------------------------------------
# Stress measures and tangent (A.5)


def central_difference(f, F, h=1e-6):
    out = np.zeros((3, 3) + np.shape(f(F)))
    for i in range(3):
        for j in range(3):
            E = jnp.zeros((3, 3)).at[i, j].set(h)
            out[i, j] = (f(F + E) - f(F - E)) / (2 * h)
    return out


def test_first_piola_against_finite_differences():
    F = jnp.asarray(F_GENERIC)
    P = first_piola(F)
    fd = central_difference(jax.jit(neo_hooke_compressible), F)
    np.testing.assert_allclose(P, fd, rtol=1e-6, atol=1e-9)
    # Closed form of the test potential.
    J = jnp.linalg.det(F)
    expected = F - jnp.linalg.inv(F).T + 0.8 * (J - 1.0) * J * jnp.linalg.inv(F).T
    np.testing.assert_allclose(P, expected, atol=1e-12)


@given(deformations())
def test_stress_measures_relations_and_symmetry(F):
    F = jnp.asarray(F)
    P, S, tau, sigma = stresses(F)
    J = jnp.linalg.det(F)
    np.testing.assert_allclose(F @ S, P, atol=1e-11)
    np.testing.assert_allclose(tau, P @ F.T, atol=1e-12)
    np.testing.assert_allclose(sigma, tau / J, atol=1e-12)
    np.testing.assert_allclose(S, S.T, atol=1e-12)
    np.testing.assert_allclose(sigma, sigma.T, atol=1e-12)
    # S = 2 dW/dC for the same potential written in C.
    dWdC = dW_dC(F.T @ F)
    np.testing.assert_allclose(S, dWdC + dWdC.T, atol=1e-11)


def test_tangent_shapes_symmetry_and_fd():
    F = jnp.asarray(F_GENERIC)
    A, A9 = jax.jit(
        lambda F: (
            km.tangent(neo_hooke_compressible, F),
            km.tangent_9x9(neo_hooke_compressible, F),
        )
    )(F)
    assert A.shape == (3, 3, 3, 3)
    np.testing.assert_allclose(A, A.transpose(2, 3, 0, 1), atol=1e-12)
    fd = central_difference(first_piola, F)
    # fd[k, L, i, J] = dP_iJ / dF_kL
    np.testing.assert_allclose(A, fd.transpose(2, 3, 0, 1), rtol=1e-6, atol=1e-8)
    assert A9.shape == (9, 9)
    np.testing.assert_allclose(A9, A9.T, atol=1e-12)
    dF = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)))
    np.testing.assert_allclose(
        A9 @ dF.ravel(), jnp.einsum("iJkL,kL->iJ", A, dF).ravel(), atol=1e-12
    )


@given(deformations())
def test_voigt_tangent_of_st_venant_kirchhoff(F):
    """For W = λ/2 (tr E)² + μ E:E the tangent ∂S/∂E is constant: λ I⊗I + 2μ I."""
    D = voigt_svk(jnp.asarray(F))
    expected = np.zeros((6, 6))
    expected[:3, :3] = 1.2
    expected[np.arange(3), np.arange(3)] += 1.4
    expected[np.arange(3, 6), np.arange(3, 6)] = 0.7
    np.testing.assert_allclose(D, expected, atol=1e-11)


def test_voigt_tangent_convention():
    """dS_voigt = D dE_voigt with engineering shear strains."""
    F = jnp.asarray(F_GENERIC)
    W = neo_hooke_compressible
    D = jax.jit(lambda F: km.voigt_tangent(W, F))(F)
    np.testing.assert_allclose(D, D.T, atol=1e-11)
    dE = np.array([[0.3, 0.1, -0.2], [0.1, -0.4, 0.25], [-0.2, 0.25, 0.15]]) * 1e-6
    # F ± dF with dF = F^{-T} dE changes C by ± 2 dE to first order.
    dF = jnp.linalg.inv(F).T @ dE
    second_piola = jax.jit(lambda F: km.second_piola(W, F))
    dS = (second_piola(F + dF) - second_piola(F - dF)) / 2.0
    dS = 0.5 * (dS + dS.T)
    pairs = km._stress.VOIGT_PAIRS
    dE_v = np.array([dE[i, j] * (1 if i == j else 2) for i, j in pairs])
    dS_v = np.array([dS[i, j] for i, j in pairs])
    np.testing.assert_allclose(D @ dE_v, dS_v, rtol=1e-4, atol=1e-13)


def test_stress_jit_vmap_grad():
    Fs = jnp.stack([jnp.eye(3), jnp.asarray(F_GENERIC)])
    eager = jnp.stack([km.cauchy(neo_hooke_compressible, F) for F in Fs])
    batched = jax.jit(jax.vmap(lambda F: km.cauchy(neo_hooke_compressible, F)))(Fs)
    np.testing.assert_allclose(eager, batched, atol=1e-15)

    class Scaled(eqx.Module):
        mu: jax.Array

        def __call__(self, F):
            return self.mu * neo_hooke_compressible(F)

    grad = jax.grad(lambda m: km.first_piola(m, Fs[1])[0, 0])(Scaled(jnp.array(2.0)))
    np.testing.assert_allclose(
        grad.mu, km.first_piola(neo_hooke_compressible, Fs[1])[0, 0], rtol=1e-12
    )


def test_stress_bad_inputs():
    with pytest.raises(TypeError, match="potential W: callable"):
        km.first_piola("not a function", jnp.eye(3))  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="must return a scalar"):
        km.first_piola(lambda F: F, jnp.eye(3))
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        km.tangent(neo_hooke_compressible, jnp.eye(4))
    with pytest.raises(Exception, match="J = det F > 0"):
        km.cauchy(lambda F: jnp.sum(F * F), -jnp.eye(3))


# ---------------------------------------------------------------------------
# Sum of singular values from invariants (the `Σλ` inputs of the PANNs)


def _stretch_sum(A):
    from klax.mechanics._kinematics import _singular_value_sum

    e2 = jnp.sum(km.cofactor(A) ** 2)
    return _singular_value_sum(jnp.sum(A * A), e2, jnp.abs(km.jacobian(A)))


@pytest.mark.parametrize("x64", [True, False])
def test_singular_value_sum_matches_the_svd(x64):
    rng = np.random.default_rng(11)
    diagonal = [np.diag([lam, lam**-0.5, lam**-0.5]) for lam in (0.02, 1.0, 90.0)]
    cases = np.concatenate(
        [
            rng.normal(size=(64, 3, 3)),  # any sign of det
            np.eye(3) + 1e-6 * rng.normal(size=(16, 3, 3)),  # nearly repeated
            np.stack(diagonal),  # repeated singular values, extreme stretches
            np.stack([np.diag(np.exp(rng.uniform(-4, 4, 3))) for _ in range(16)]),
            np.stack([np.diag([a, b, 0.0]) for a, b in rng.uniform(0.1, 3, (8, 2))]),
        ]
    )
    expected = np.linalg.svd(cases, compute_uv=False).sum(-1)
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        got = jax.jit(jax.vmap(_stretch_sum))(jnp.asarray(cases, dtype))
        assert got.dtype == dtype
    rtol = 1e-14 if x64 else 4e-7
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=rtol)


def test_singular_value_sum_derivatives():
    rng = np.random.default_rng(12)
    A = rng.normal(size=(32, 3, 3))
    # d(Σσ)/dA = U Vᵀ (singular values distinct, almost surely).
    U, _, Vt = np.linalg.svd(A)
    grad = jax.jit(jax.vmap(jax.grad(_stretch_sum)))(jnp.asarray(A))
    np.testing.assert_allclose(grad, U @ Vt, atol=1e-12)
    # Smooth where singular values coincide: the Hessian at A = I is finite
    # and equals the second derivative of ‖F‖_* along a symmetric direction.
    hess = jax.jit(jax.hessian(_stretch_sum))
    H = hess(jnp.eye(3))
    assert bool(jnp.all(jnp.isfinite(H)))
    D = jnp.asarray(rng.normal(size=(3, 3)))
    along = jax.jit(
        jax.grad(jax.grad(lambda t: _stretch_sum(jnp.eye(3) + t * (D + D.T))))
    )
    # Σσ(I + tS) = 3 + t tr S for small symmetric S: no curvature.
    np.testing.assert_allclose(along(0.0), 0.0, atol=1e-12)
    # Third derivatives (the tangent of the stress of a PANN on Σλ) against
    # central differences of the Hessian.
    A0, dA, eps = jnp.asarray(A[0]), jnp.asarray(rng.normal(size=(3, 3))), 1e-5
    fd = (hess(A0 + eps * dA) - hess(A0 - eps * dA)) / (2 * eps)
    third = jax.jit(lambda a, d: jax.jvp(jax.hessian(_stretch_sum), (a,), (d,))[1])
    np.testing.assert_allclose(third(A0, dA), fd, atol=1e-7)
    # Convex in A (a norm): along random segments.
    B = jnp.asarray(rng.normal(size=(32, 3, 3)))
    t = jnp.asarray(rng.uniform(size=(32, 1, 1)))
    f = jax.jit(jax.vmap(_stretch_sum))
    mix = f(t * jnp.asarray(A) + (1 - t) * B)
    assert bool(
        jnp.all(t[:, 0, 0] * f(jnp.asarray(A)) + (1 - t[:, 0, 0]) * f(B) >= mix - 1e-12)
    )
