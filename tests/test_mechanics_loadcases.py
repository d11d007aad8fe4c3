"""Load cases, nominal stresses and the classical baselines (spec A.2–A.4).

float64 throughout (module-wide x64). "Exact" agreement means 1e-12 (a few
ulps of stresses of order one); the compressible root find is converged to
machine precision by Newton's last step.
"""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import klax.mechanics as km


@pytest.fixture(autouse=True, scope="module")
def _x64():
    with jax.enable_x64(True):
        yield


LAMBDAS = np.array([0.6, 0.8, 1.0, 1.3, 2.0, 3.5, 6.0])
OGDEN = ([0.63, 0.0012, -0.01], [1.3, 5.0, -2.0])


def ogden_closed_form(mu, alpha, case, lam):
    l1, _, l3 = (np.asarray(s) for s in km.load_case_stretches(case, lam))
    return sum(m * (l1 ** (a - 1) - l3**a / l1) for m, a in zip(mu, alpha, strict=True))


def invariant_closed_form(W1, W2, case, lam):
    lam = np.asarray(lam)
    return {
        "uniaxial": 2 * (lam - lam**-2) * (W1 + W2 / lam),
        "equibiaxial": 2 * (lam - lam**-5) * (W1 + lam**2 * W2),
        "pure_shear": 2 * (lam - lam**-3) * (W1 + W2),
    }[case]


@pytest.mark.parametrize("case", km.LOAD_CASES)
def test_load_case_stretches(case):
    l1, l2, l3 = km.load_case_stretches(case, LAMBDAS)
    np.testing.assert_allclose(l1 * l2 * l3, 1.0, rtol=1e-14)
    np.testing.assert_array_equal(l1, LAMBDAS)
    expected_l2 = {
        "uniaxial": LAMBDAS**-0.5,
        "equibiaxial": LAMBDAS,
        "pure_shear": np.ones_like(LAMBDAS),
    }[case]
    np.testing.assert_allclose(l2, expected_l2, rtol=1e-14)
    F = km.stretches_to_F(*(s[3] for s in (l1, l2, l3)))
    np.testing.assert_allclose(jnp.diagonal(F), [x[3] for x in (l1, l2, l3)])
    assert F.dtype == jnp.float64


@pytest.mark.parametrize("case", km.LOAD_CASES)
def test_baselines_reproduce_closed_forms(case):
    nh, mr, og = km.NeoHooke(0.4), km.MooneyRivlin(0.3, 0.05), km.Ogden(*OGDEN)
    stress = jax.jit(
        lambda lam: (
            km.nominal_stress_11(nh, case, lam),
            km.nominal_stress_11(mr, case, lam),
            km.nominal_stress_11(og, case, lam),
            km.isotropic_nominal_stress_11(mr.isotropic_energy, case, lam),
        )
    )
    p_nh, p_mr, p_og, p_mr_closed = stress(jnp.asarray(LAMBDAS))
    np.testing.assert_allclose(
        p_nh, invariant_closed_form(0.2, 0.0, case, LAMBDAS), atol=1e-12
    )
    np.testing.assert_allclose(
        p_mr, invariant_closed_form(0.3, 0.05, case, LAMBDAS), atol=1e-12
    )
    np.testing.assert_allclose(p_mr_closed, p_mr, atol=1e-12)
    np.testing.assert_allclose(
        p_og, ogden_closed_form(*OGDEN, case, LAMBDAS), atol=1e-12
    )


def test_lateral_stresses():
    mr = km.MooneyRivlin(0.3, 0.05)
    lam = jnp.asarray(LAMBDAS)
    stresses = jax.jit(
        lambda lam: [km.nominal_stress(mr, case, lam) for case in km.LOAD_CASES]
    )
    (_, P22_ut), (P11_et, P22_et), (_, P22_ps) = stresses(lam)
    np.testing.assert_allclose(P22_ut, 0.0, atol=1e-13)
    np.testing.assert_allclose(P22_et, P11_et, atol=1e-13)
    assert jnp.all(P22_ps[3:] > 0)  # a lateral stress holds λ2 = 1


BASELINES = {
    "neo-hooke": lambda: km.NeoHooke(0.4),
    "mooney-rivlin": lambda: km.MooneyRivlin(0.3, 0.05),
    "ogden": lambda: km.Ogden(*OGDEN),
}


@pytest.mark.parametrize("name", BASELINES)
def test_initial_slopes_3_6_4(name):
    model = BASELINES[name]()  # built under x64
    assert model.initial_shear_modulus().dtype == jnp.float64
    slopes = jax.jit(
        lambda: jnp.stack(
            [
                jax.grad(lambda l, c=c: km.nominal_stress_11(model, c, l))(1.0)
                for c in km.LOAD_CASES
            ]
        )
    )()
    mu0 = float(model.initial_shear_modulus())
    np.testing.assert_allclose(slopes, [3 * mu0, 6 * mu0, 4 * mu0], rtol=1e-10)


def test_ogden_tangent_at_repeated_stretches():
    """The spectral derivative rules stay finite and exact where λ2 = λ3."""
    og = km.Ogden(*OGDEN)
    F = km.stretches_to_F(*km.uniaxial(jnp.array(2.0)))
    piola = jax.jit(lambda F: km.first_piola(og, F))
    A, D = jax.jit(lambda F: (km.tangent(og, F), km.voigt_tangent(og, jnp.eye(3))))(F)
    assert jnp.all(jnp.isfinite(A))
    np.testing.assert_allclose(A, A.transpose(2, 3, 0, 1), atol=1e-12)
    h = 1e-6
    for k, l in [(0, 0), (1, 2), (2, 1), (1, 1)]:
        E = jnp.zeros((3, 3)).at[k, l].set(h)
        fd = (piola(F + E) - piola(F - E)) / (2 * h)
        np.testing.assert_allclose(A[:, :, k, l], fd, atol=1e-8)
    # At F = I (all stretches equal) the shear entries of ∂S/∂E equal μ0.
    np.testing.assert_allclose(
        jnp.diagonal(D)[3:], og.initial_shear_modulus(), rtol=1e-10
    )


_parameter_gradient = jax.jit(
    jax.grad(lambda m, l: km.nominal_stress_11(m, "uniaxial", l))
)


@given(st.floats(0.6, 5.0))
def test_parameter_gradients_of_stress(lam):
    """Parameter gradients through the AD path match the closed form."""
    og = km.Ogden(*OGDEN)
    grad = _parameter_gradient(og, lam)

    def closed(mu, alpha):
        return sum(
            m * (lam ** (a - 1) - lam ** (-a / 2) / lam)
            for m, a in zip(mu, alpha, strict=True)
        )

    g_mu, g_alpha = jax.grad(closed, (0, 1))(og.mu, og.alpha)
    np.testing.assert_allclose(grad.mu, g_mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad.alpha, g_alpha, rtol=1e-10, atol=1e-12)


@jax.jit
def _lateral_stress(W, stretches):
    def one(s1, s2, s3):
        return jnp.diagonal(km.first_piola(W, km.stretches_to_F(s1, s2, s3)))

    return jax.vmap(one)(*stretches)


def test_compressible_converges_to_incompressible():
    """Uniaxial tension (equibiaxial and pure shear share the code path; pure
    shear is solved in `test_compressible_implicit_gradient`)."""
    case = "uniaxial"
    lam = jnp.array([0.8, 1.5, 3.0])
    incompressible = km.nominal_stress_11(km.MooneyRivlin(0.3, 0.05), case, lam)
    errors = []
    for kappa in (1e2, 1e4):
        W = km.VolumetricPenalty(km.MooneyRivlin(0.3, 0.05), kappa)
        result = km.compressible_load_case(W, case, lam)
        assert bool(jnp.all(result.converged))
        diagonal = _lateral_stress(W, result.stretches)
        lateral = 1 if case == "uniaxial" else 2
        np.testing.assert_allclose(diagonal[:, lateral], 0.0, atol=1e-9)
        np.testing.assert_allclose(diagonal[:, 0], result.P11, rtol=1e-12)
        errors.append(float(jnp.max(jnp.abs(result.P11 - incompressible))))
        np.testing.assert_allclose(result.J, 1.0, atol=10.0 / kappa)
    # The error decays like 1/κ.
    assert errors[1] < errors[0] / 50
    assert errors[1] < 1e-2


def test_compressible_implicit_gradient():
    """d P11 / d κ through the root find (pure shear) equals a finite difference."""

    def p11(kappa):
        W = km.VolumetricPenalty(km.NeoHooke(0.4), kappa)
        result = km.compressible_load_case(W, "pure_shear", jnp.array(2.0))
        return result.P11, result.converged

    value_and_grad = jax.jit(jax.value_and_grad(p11, has_aux=True))
    (_, converged), grad = value_and_grad(jnp.array(5.0))
    assert bool(converged)
    h = 1e-5
    plus, minus = (value_and_grad(jnp.array(5.0 + d))[0][0] for d in (h, -h))
    np.testing.assert_allclose(grad, (plus - minus) / (2 * h), rtol=1e-6)


def test_load_case_errors():
    nh = km.NeoHooke(0.4)
    with pytest.raises(ValueError, match="must be one of uniaxial, equibiaxial"):
        km.nominal_stress_11(nh, "biaxial", 1.2)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="must be one of"):
        km.compressible_load_case(nh, "shear", 1.2)  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="expects a potential W"):
        km.nominal_stress_11(3.0, "uniaxial", 1.2)  # pyright: ignore[reportArgumentType]
    with pytest.raises(Exception, match="positive stretches"):
        km.uniaxial(jnp.array([1.0, -0.5]))
    with pytest.raises(ValueError, match="three scalar stretches"):
        km.stretches_to_F(jnp.ones(2), 1.0, 1.0)
    with pytest.raises(ValueError, match="equal length"):
        km.Ogden([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-zero"):
        km.Ogden([1.0], [0.0])
    with pytest.raises(ValueError, match="must be a scalar"):
        km.NeoHooke(jnp.ones(2))
    with pytest.raises(TypeError, match="callable"):
        km.VolumetricPenalty(1.0, 2.0)  # pyright: ignore[reportArgumentType]


def test_vectorised_shapes_and_jit_equals_eager():
    nh = km.MooneyRivlin(0.3, 0.05)
    lam = jnp.linspace(0.8, 3.0, 6).reshape(2, 3)
    eager = km.nominal_stress_11(nh, "equibiaxial", lam)
    assert eager.shape == (2, 3)
    jitted = jax.jit(lambda l: km.nominal_stress_11(nh, "equibiaxial", l))(lam)
    np.testing.assert_allclose(eager, jitted, atol=1e-15)
    scalar = km.isotropic_nominal_stress_11(nh.isotropic_energy, "pure_shear", 2.0)
    assert scalar.shape == ()


# ------------------------------------------------------- biaxial and simple shear

L1 = np.array([0.7, 0.9, 1.0, 1.5, 2.5, 1.2])
L2 = np.array([1.3, 0.8, 1.0, 1.1, 0.6, 1.2])
GAMMAS = np.array([-0.4, 0.0, 0.1, 0.5, 2.0])


def _pann():
    import jax.random as jr

    import klax

    return klax.finalize(
        km.IncompressiblePANN([4, 3], input_scale=(5.0, 50.0), key=jr.key(1))
    )


def test_biaxial_closed_forms_and_ad():
    l3 = 1 / (L1 * L2)
    mr, og, pann = km.MooneyRivlin(0.3, 0.05), km.Ogden(*OGDEN), _pann()
    stresses = jax.jit(
        lambda a, b: (
            km.biaxial_nominal_stress(mr, a, b),
            km.isotropic_biaxial_nominal_stress(mr.isotropic_energy, a, b),
            km.biaxial_nominal_stress(og, a, b),
            km.biaxial_nominal_stress(pann, a, b),
            km.isotropic_biaxial_nominal_stress(pann.isotropic_energy, a, b),
        )
    )
    mr_ad, mr_closed, og_ad, pann_ad, pann_closed = stresses(L1, L2)
    # Spec (f): P11 = 2(λ1 − λ3²/λ1)(W1 + λ2² W2), P22 likewise.
    expected = (
        2 * (L1 - l3**2 / L1) * (0.3 + L2**2 * 0.05),
        2 * (L2 - l3**2 / L2) * (0.3 + L1**2 * 0.05),
    )
    for got in (mr_ad, mr_closed):
        np.testing.assert_allclose(got, expected, atol=1e-12)
    # Ogden: P_i = Σ μ (λ_i^(α-1) - λ3^α / λ_i).
    mu, alpha = OGDEN
    for i, lam in enumerate((L1, L2)):
        ogden = sum(
            m * (lam ** (a - 1) - l3**a / lam) for m, a in zip(mu, alpha, strict=True)
        )
        np.testing.assert_allclose(og_ad[i], ogden, atol=1e-12)
    np.testing.assert_allclose(pann_ad, pann_closed, rtol=1e-10, atol=1e-12)
    # Compression (both stretches < 1) gives compressive stresses.
    assert mr_ad[0][1] < 0 and mr_ad[1][1] < 0


@pytest.mark.parametrize("name", BASELINES)
def test_biaxial_reduces_to_the_one_stretch_cases(name):
    model = BASELINES[name]()
    lam = jnp.asarray(LAMBDAS)

    @jax.jit
    def both(lam):
        return (
            km.biaxial_nominal_stress(model, lam, lam**-0.5),
            km.biaxial_nominal_stress(model, lam, lam),
            km.biaxial_nominal_stress(model, lam, jnp.ones_like(lam)),
            [km.nominal_stress(model, c, lam) for c in km.LOAD_CASES],
        )

    ut, et, ps, classic = both(lam)
    for got, want in zip((ut, et, ps), classic, strict=True):
        np.testing.assert_allclose(got[0], want[0], atol=1e-12)
        np.testing.assert_allclose(got[1], want[1], atol=1e-12)
    np.testing.assert_allclose(ut[1], 0.0, atol=1e-12)  # λ2 = λ1^(-1/2): P22 = 0


def test_simple_shear_closed_form_and_ad():
    mr, pann, og = km.MooneyRivlin(0.3, 0.05), _pann(), km.Ogden(*OGDEN)
    g = jnp.asarray(GAMMAS)
    mr_ad, mr_closed, pann_ad, pann_closed, og_ad = jax.jit(
        lambda g: (
            km.simple_shear_nominal_stress(mr, g),
            km.isotropic_simple_shear_nominal_stress(mr.isotropic_energy, g),
            km.simple_shear_nominal_stress(pann, g),
            km.isotropic_simple_shear_nominal_stress(pann.isotropic_energy, g),
            km.simple_shear_nominal_stress(og, g),
        )
    )(g)
    # P12 = 2γ(W1 + W2), P11 = P22 = -2γ² W2 (σ33 = 0).
    expected = (-2 * GAMMAS**2 * 0.05, -2 * GAMMAS**2 * 0.05, 2 * GAMMAS * 0.35)
    for got in (mr_ad, mr_closed):
        np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(pann_ad, pann_closed, rtol=1e-10, atol=1e-12)
    # Ogden (no invariant form): P12 against the principal-stretch formula.
    # In simple shear the principal stretches are λ± = sqrt(1 + γ²/4) ± γ/2 and
    # the shear stress is σ12 = (τ1 − τ2) sin 2θ / 2 with tan 2θ = 2/γ.
    lp = np.sqrt(1 + GAMMAS**2 / 4) + GAMMAS / 2
    lm = 1 / lp
    mu, alpha = OGDEN
    tau = [sum(m * x**a for m, a in zip(mu, alpha, strict=True)) for x in (lp, lm)]
    sin2 = 2 / np.sqrt(4 + GAMMAS**2)
    np.testing.assert_allclose(og_ad[2], (tau[0] - tau[1]) * sin2 / 2, atol=1e-10)
    F = km.simple_shear(g)
    assert F.shape == (5, 3, 3)
    np.testing.assert_allclose(jnp.linalg.det(F), 1.0, atol=1e-14)


def test_simple_shear_stress_is_pressure_independent():
    """P = ∂W/∂F − p F⁻ᵀ: P12 is the same for every pressure p."""
    pann = _pann()
    for gamma in (0.3, -1.2):
        F = km.simple_shear(gamma)
        G = km.first_piola(pann, F)
        F_inv_T = jnp.linalg.inv(F).T
        P12 = [float((G - p * F_inv_T)[0, 1]) for p in (-3.0, 0.0, 0.7, 40.0)]
        np.testing.assert_allclose(P12, P12[0], atol=1e-14)
        _, _, shear = km.simple_shear_nominal_stress(pann, gamma)
        np.testing.assert_allclose(shear, P12[0], atol=1e-13)
        # With the pressure of σ33 = 0 the Cauchy stress has σ33 = 0.
        P11, P22, _ = km.simple_shear_nominal_stress(pann, gamma)
        p = G[2, 2]
        sigma = (G - p * F_inv_T) @ F.T
        np.testing.assert_allclose(sigma[2, 2], 0.0, atol=1e-13)
        np.testing.assert_allclose(sigma, sigma.T, atol=1e-13)
        np.testing.assert_allclose(
            [P11, P22], [sigma[0, 0] - gamma * sigma[0, 1], sigma[1, 1]], atol=1e-12
        )


def test_small_strain_slopes_of_biaxial_and_shear():
    """dP11/dλ1 = 4μ0, dP11/dλ2 = 2μ0 (biaxial) and dP12/dγ = μ0 at the reference."""
    model = km.Ogden(*OGDEN)
    mu0 = float(model.initial_shear_modulus())
    slopes = jax.jit(
        lambda: (
            jax.grad(lambda a: km.biaxial_nominal_stress(model, a, 1.0)[0])(1.0),
            jax.grad(lambda b: km.biaxial_nominal_stress(model, 1.0, b)[0])(1.0),
            jax.grad(lambda g: km.simple_shear_nominal_stress(model, g)[2])(0.0),
        )
    )()
    np.testing.assert_allclose(slopes, [4 * mu0, 2 * mu0, mu0], rtol=1e-9)


def test_compression_of_the_one_stretch_cases():
    lam = jnp.array([0.5, 0.7, 0.95])
    pann = _pann()
    for case in km.LOAD_CASES:
        p11 = jax.jit(lambda l, c=case: km.nominal_stress_11(pann, c, l))(lam)
        assert bool(jnp.all(p11 < 0)), case


def test_compressible_biaxial_and_shear_converge_to_incompressible():
    mr = km.MooneyRivlin(0.3, 0.05)
    a, b, g = (
        jnp.array([0.8, 1.5, 2.0]),
        jnp.array([1.1, 0.9, 1.5]),
        jnp.array([-0.3, 0.2, 1.0]),
    )
    incompressible = (
        km.biaxial_nominal_stress(mr, a, b),
        km.simple_shear_nominal_stress(mr, g),
    )
    errors = []
    for kappa in (1e2, 1e4):
        W = km.VolumetricPenalty(mr, kappa)
        biax, shear = (
            km.compressible_biaxial(W, a, b),
            km.compressible_simple_shear(W, g),
        )
        assert bool(jnp.all(biax.converged)) and bool(jnp.all(shear.converged))
        assert shear.P12 is not None and biax.P12 is not None
        # The thickness direction is traction-free.
        F = jax.vmap(km.stretches_to_F)(*biax.stretches)
        np.testing.assert_allclose(
            jax.vmap(lambda F: km.first_piola(W, F))(F)[:, 2, 2], 0.0, atol=1e-9
        )
        Fs = km.simple_shear(g).at[:, 2, 2].set(shear.stretches[2])
        Ps = jax.vmap(lambda F: km.first_piola(W, F))(Fs)
        np.testing.assert_allclose(Ps[:, 2, 2], 0.0, atol=1e-9)
        np.testing.assert_allclose(Ps[:, 0, 1], shear.P12, rtol=1e-12)
        np.testing.assert_allclose(biax.P12, 0.0)
        errors.append(
            max(
                float(jnp.max(jnp.abs(biax.P11 - incompressible[0][0]))),
                float(jnp.max(jnp.abs(biax.P22 - incompressible[0][1]))),
                float(jnp.max(jnp.abs(shear.P12 - incompressible[1][2]))),
                float(jnp.max(jnp.abs(shear.P22 - incompressible[1][1]))),
            )
        )
    assert errors[1] < errors[0] / 50 and errors[1] < 1e-2


def test_compressible_shear_gradient_through_the_root_find():
    def p12(kappa):
        W = km.VolumetricPenalty(km.MooneyRivlin(0.3, 0.05), kappa)
        return km.compressible_simple_shear(W, jnp.array(0.8)).P22

    value_and_grad = jax.jit(jax.value_and_grad(p12))
    _, grad = value_and_grad(jnp.array(5.0))
    h = 1e-5
    plus, minus = (value_and_grad(jnp.array(5.0 + d))[0] for d in (h, -h))
    np.testing.assert_allclose(grad, (plus - minus) / (2 * h), rtol=1e-6)
    assert abs(float(grad)) > 1e-6  # the normal stress does depend on κ


def test_general_load_case_errors():
    nh = km.NeoHooke(0.4)
    with pytest.raises(Exception, match="positive stretches"):
        km.biaxial(1.0, jnp.array([1.0, 0.0]))
    with pytest.raises(TypeError, match="expects a potential W"):
        km.simple_shear_nominal_stress(3.0, 0.1)  # pyright: ignore[reportArgumentType]
    assert km.ALL_LOAD_CASES[:3] == km.LOAD_CASES
    assert km.biaxial_nominal_stress(nh, jnp.ones((2, 1)), jnp.ones(3))[0].shape == (
        2,
        3,
    )
