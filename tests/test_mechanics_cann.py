"""CANN potentials, sparse proximal training, the regularisation path and laws.

float64 (module-wide x64) except where float32 is tested explicitly. Physics
checks follow tests/test_mechanics_potentials.py: zero energy and stress at
F = I, convexity (Hessian in the invariants, midpoint convexity in the
lifted space (F, cof F, J)), monotonicity, objectivity and isotropy, closed
form against automatic differentiation. Training tests are small (few
strengths, few steps).
"""

import functools
import json

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from _geometry import random_F, rotation
from hypothesis import given

import klax
import klax.mechanics as km
from klax.mechanics._calibration import evaluate_cases


@pytest.fixture(autouse=True, scope="module")
def _x64():
    with jax.enable_x64(True):
        yield


SCALE = (55.0, 386.0)  # Treloar ranges of Ī1 − 3, Ī2 − 3
FIBRE = np.array([0.6, 0.0, 0.8])


random_F = functools.partial(random_F, low=0.6, high=1.6)


def randomise(model, key, inner_fraction=0.95):
    """Random positive outer weights and inner weights anywhere in their domain."""
    final = klax.finalize(model)
    n = len(final.terms)
    k1, k2 = jr.split(key)
    a = jr.uniform(k1, (n,), minval=0.05, maxval=2.0)
    upper = np.array(
        [
            0.0
            if t.activation == "identity"
            else (1.0 / final.log_limit**t.power if t.activation == "log" else 3.0)
            for t in final.terms
        ]
    )
    w = jr.uniform(k2, (n,)) * upper * inner_fraction
    return eqx.tree_at(lambda m: (m.weights, m.inner), final, (a, jnp.asarray(w)))


@pytest.fixture(scope="module")
def models():
    out = []
    for seed, invariants in ((0, "isochoric"), (1, "polyconvex")):
        scale = SCALE if invariants == "isochoric" else (55.0, 7660.0)
        base = km.CANN(invariants=invariants, input_scale=scale, key=jr.key(seed))  # pyright: ignore[reportArgumentType]
        out.append(randomise(base, jr.key(10 + seed)))
    return out


@pytest.fixture(scope="module")
def compressible():
    base = km.CompressibleCANN(
        structural_tensor=km.structural_tensor(FIBRE),
        bulk_modulus=50.0,
        input_scale=(20.0, 100.0, 5.0),
        key=jr.key(3),
    )
    model = randomise(base, jr.key(4))
    return eqx.tree_at(lambda m: m.bulk_modulus, model, jnp.asarray(30.0))


# ---------------------------------------------------------------------------
# The library


def test_library_default_and_configurable():
    terms = km.cann_terms()
    assert len(terms) == 12 and len(set(terms)) == 12
    assert {t.invariant for t in terms} == {"I1", "I2"}
    assert {t.power for t in terms} == {1, 2}
    assert {t.activation for t in terms} == {"identity", "exp", "log"}
    small = km.cann_terms(["I1"], [2], ["exp"])
    assert small == (km.CANNTerm("I1", 2, "exp"),)
    model = km.CANN(small, key=jr.key(0))
    assert model.terms == small and klax.finalize(model).weights.shape == (1,)
    aniso = km.CompressibleCANN(structural_tensor=np.eye(3) / 3, key=jr.key(0))
    assert len(aniso.terms) == 18


@pytest.mark.parametrize(
    "bad, error",
    [
        ([("I3", 1, "exp")], ValueError),
        ([("I1", 3, "exp")], ValueError),
        ([("I1", 1, "tanh")], ValueError),
        ([("I1", 1, "exp"), ("I1", 1, "exp")], ValueError),
        ([], ValueError),
        (5, TypeError),
    ],
)
def test_library_errors(bad, error):
    with pytest.raises(error):
        km.CANN(bad, key=jr.key(0))


def test_construction_errors():
    with pytest.raises(ValueError, match="invariants"):
        km.CANN(invariants="spectral", key=jr.key(0))  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="input_scale"):
        km.CANN(input_scale=(1.0, -1.0), key=jr.key(0))
    with pytest.raises(ValueError, match="input_scale"):
        km.CANN(input_scale=(1.0, 2.0, 3.0), key=jr.key(0))
    with pytest.raises(ValueError, match="energy_scale"):
        km.CANN(energy_scale=0.0, key=jr.key(0))
    with pytest.raises(ValueError, match="I4"):
        km.CompressibleCANN([("I4", 2, "exp")], key=jr.key(0))
    with pytest.raises(ValueError, match="bulk_modulus"):
        km.CompressibleCANN(bulk_modulus=-1.0, key=jr.key(0))
    with pytest.raises(klax.ContainsUnwrappablesError):
        km.CANN(key=jr.key(0))(jnp.eye(3))


# ---------------------------------------------------------------------------
# Physics


def test_zero_energy_and_stress_at_reference(models, compressible):
    eye = jnp.eye(3)
    for W in models:
        energy, P11 = eqx.filter_jit(
            lambda W: (W(eye), km.nominal_stress_11(W, "uniaxial", jnp.ones(1)))
        )(W)
        assert abs(float(energy)) < 1e-14 and abs(float(P11[0])) < 1e-12
    assert abs(float(compressible(eye))) < 1e-14
    P, A = eqx.filter_jit(lambda W: (km.first_piola(W, eye), km.tangent_9x9(W, eye)))(
        compressible
    )
    np.testing.assert_allclose(P, 0.0, atol=1e-12)
    # The reference tangent is positive definite on symmetric perturbations.
    A = np.asarray(A)
    sym = np.array([(E + E.T).ravel() for E in np.eye(9).reshape(9, 3, 3)])
    assert np.linalg.eigvalsh(sym @ A @ sym.T).min() > -1e-10


def test_convex_and_non_decreasing_in_the_invariants(models):
    rng = np.random.default_rng(0)
    for W in models:
        s1, s2 = W.input_scale
        ref2 = 3.0 if W.invariants == "isochoric" else 3.0**1.5

        def energy(x, W=W, s1=s1, s2=s2, ref2=ref2):
            return W._energy(3.0 + s1 * x[0], ref2 + s2 * x[1])

        points = jnp.asarray(rng.uniform(0.0, 1.2, size=(40, 2)))
        values, gradients, hessians = jax.jit(
            jax.vmap(lambda x, f=energy: (f(x), jax.grad(f)(x), jax.hessian(f)(x)))
        )(points)
        assert np.linalg.eigvalsh(np.asarray(hessians)).min() > -1e-10
        assert np.asarray(gradients).min() >= 0.0
        # Non-negative everywhere on the admissible set.
        assert np.asarray(values).min() >= 0.0


def test_log_terms_lock_beyond_their_domain():
    model = klax.finalize(km.CANN([("I1", 1, "log")], key=jr.key(0)))
    model = eqx.tree_at(lambda m: m.inner, model, jnp.array([0.8]))  # 1/1.25
    assert np.isfinite(float(model.isotropic_energy(3.0 + 1.24, 3.0)))
    assert not np.isfinite(float(model.isotropic_energy(3.0 + 1.3, 3.0)))
    # Training clamps the inner weight into the domain.
    wrapped = km.CANN([("I1", 1, "log")], key=jr.key(0))
    wrapped = eqx.tree_at(lambda m: m.inner.parameter, wrapped, jnp.array([5.0]))
    assert float(klax.finalize(wrapped).inner[0]) == pytest.approx(0.8)


def _lifted(W, F):
    return W.lifted_energy(F, km.cofactor(F), km.jacobian(F))


def test_polyconvexity_in_lifted_space(models, compressible):
    rng = np.random.default_rng(1)
    n = 60
    Fa = random_F(rng, n, unimodular=True, low=0.8, high=1.25)
    Fb = random_F(rng, n, unimodular=True, low=0.8, high=1.25)
    for W in [models[1], compressible]:  # the jointly convex (polyconvex) ones

        def midpoint_gap(Fa, Fb, W=W):
            ca, cb = km.cofactor(Fa), km.cofactor(Fb)
            Ja, Jb = km.jacobian(Fa), km.jacobian(Fb)
            mid = W.lifted_energy((Fa + Fb) / 2, (ca + cb) / 2, (Ja + Jb) / 2)
            return 0.5 * (_lifted(W, Fa) + _lifted(W, Fb)) - mid

        gaps = jax.vmap(midpoint_gap)(jnp.asarray(Fa), jnp.asarray(Fb))
        assert np.asarray(gaps).min() > -1e-10


@eqx.filter_jit
def _rotated(W, F, R):
    return W(F), W(R @ F), W(F @ R), km.first_piola(W, F)


@given(
    st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3),
    st.lists(st.floats(0.7, 1.4), min_size=3, max_size=3),
    st.floats(-3.0, 3.0),
)
def test_objectivity_isotropy_and_fibre_symmetry(models, compressible, v, ev, angle):
    R = jnp.asarray(rotation(v))
    F = jnp.asarray(rotation([0.3, -0.2, 0.5]) @ np.diag(ev))
    for W in models:
        w0, w_left, w_right, P = _rotated(W, F, R)
        assert float(w_left) == pytest.approx(float(w0), rel=1e-10, abs=1e-12)
        assert float(w_right) == pytest.approx(float(w0), rel=1e-10, abs=1e-12)
        tau = P @ F.T
        np.testing.assert_allclose(tau, tau.T, atol=1e-9)
    # Compressible, transversely isotropic: rotations about the fibre only.
    Q = jnp.asarray(rotation(FIBRE * angle))
    w0, w_left, _, _ = _rotated(compressible, F, R)
    _, _, w_fibre, _ = _rotated(compressible, F, Q)
    assert float(w_left) == pytest.approx(float(w0), rel=1e-10, abs=1e-12)
    assert float(w_fibre) == pytest.approx(float(w0), rel=1e-10, abs=1e-12)


def test_fibres_only_carry_tension(compressible):
    # Compressing along the fibre leaves the fibre terms at zero.
    iso = eqx.tree_at(
        lambda m: m.weights,
        compressible,
        jnp.where(
            jnp.array([t.invariant == "I4" for t in compressible.terms]),
            0.0,
            compressible.weights,
        ),
    )
    G = km.structural_tensor(FIBRE)
    F_compress = jnp.eye(3) - 0.2 * G
    F_stretch = jnp.eye(3) + 0.2 * G
    assert float(compressible(F_compress)) == pytest.approx(float(iso(F_compress)))
    assert float(compressible(F_stretch)) > float(iso(F_stretch)) + 1e-6


@eqx.filter_jit
def _both(W, lam):
    fast = [
        km.predict_nominal_stress_11(W, jnp.full(lam.shape, i, jnp.int32), lam)
        for i in range(3)
    ]
    ad = [km.nominal_stress_11(W, case, lam) for case in km.LOAD_CASES]
    return jnp.stack(fast), jnp.stack(ad)


def test_closed_form_matches_automatic_differentiation(models):
    lam = jnp.linspace(0.8, 3.0, 7)
    for W in models:
        fast, ad = _both(W, lam)
        np.testing.assert_allclose(fast, ad, rtol=1e-10, atol=1e-12)


def test_jit_vmap_grad_float32():
    with jax.enable_x64(False):
        model = km.CANN(input_scale=SCALE, key=jr.key(0))
        assert klax.finalize(model).weights.dtype == jnp.float32
        Fs = jnp.asarray(random_F(np.random.default_rng(2), 4), jnp.float32)
        energies = jax.jit(jax.vmap(klax.finalize(model)))(Fs)
        assert energies.dtype == jnp.float32 and energies.shape == (4,)

        @jax.jit
        @jax.grad
        def gradient(m):
            return jnp.sum(jax.vmap(klax.unwrap(m))(Fs))

        g = gradient(model)
        assert g.weights.parameter.dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(g.weights.parameter)))
        assert np.any(np.asarray(g.weights.parameter) != 0)


# ---------------------------------------------------------------------------
# Proximal operators and sparse_adam


_prox = jax.jit(km.prox_lp, static_argnums=2)


def test_prox_l1_and_lp():
    z = jnp.array([-1.0, 0.05, 0.3, 2.0])
    np.testing.assert_allclose(km.prox_lp(z, 0.1), [0.0, 0.0, 0.2, 1.9])
    np.testing.assert_allclose(km.prox_lp(z, 0.0, 0.5), [0.0, 0.05, 0.3, 2.0])
    grid = np.linspace(0.0, 3.0, 300001)
    for p in (0.5, 0.3):
        for t in (0.05, 0.4):
            for zi in (0.1, 0.4, 0.8, 1.5, 2.5):
                objective = 0.5 * (grid - zi) ** 2 + t * grid**p
                expected = grid[np.argmin(objective)]
                got = float(_prox(jnp.array(zi), t, p))
                assert got == pytest.approx(expected, abs=2e-5)
    assert float(km.prox_lp(jnp.array(0.1), 0.2, 0.5)) == 0.0  # an exact zero
    with pytest.raises(ValueError, match="p"):
        km.prox_lp(z, 0.1, 1.5)


class _Quadratic(eqx.Module):
    a: km.SparseWeights


@klax.loss
def _quadratic_loss(model, batch, run_state):
    del run_state
    return 0.5 * jnp.sum((model.a - batch[0][0]) ** 2)


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_sparse_adam_solves_the_penalised_problem(p, getkey):
    # min ½‖a − c‖² + λ Σ a^p over a ≥ 0 is separable: its solution is prox_lp(c).
    c = jnp.array([0.05, 0.4, 1.0, -0.3, 0.15])
    strength = 0.2
    model = _Quadratic(km.SparseWeights(jnp.full(5, 0.5), jnp.asarray(strength)))
    data = (c[None, :],)
    model, _ = klax.fit(
        model,
        data,
        batch_size=1,
        steps=4000,
        loss=_quadratic_loss,
        optimizer=km.sparse_adam(optax.exponential_decay(0.02, 4000, 0.01), p),
        make_logger=False,
        verbose=0,
        key=getkey(),
    )
    a = np.asarray(klax.finalize(model).a)
    expected = np.asarray(km.prox_lp(c, strength, p))
    assert np.all(a[expected == 0] == 0.0)  # exact zeros
    np.testing.assert_allclose(a, expected, atol=2e-3)
    assert float(model.a.strength) == strength  # never trained
    # Pruned terms stay exactly zero under further training.
    model, _ = klax.fit(
        model,
        data,
        batch_size=1,
        steps=300,
        loss=_quadratic_loss,
        optimizer=km.sparse_adam(1e-3, p),
        make_logger=False,
        verbose=0,
        key=getkey(),
    )
    assert np.all(np.asarray(klax.finalize(model).a)[expected == 0] == 0.0)


def test_sparse_adam_needs_params_and_with_strength_errors():
    opt = km.sparse_adam(1e-2)
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="params"):
        opt.update(params, opt.init(params))
    with pytest.raises(ValueError, match="SparseWeights"):
        km.with_strength({"w": jnp.ones(2)}, 0.1)
    with pytest.raises(ValueError, match="p"):
        km.sparse_adam(1e-2, p=0.0)


# ---------------------------------------------------------------------------
# The regularisation path on a known law


@functools.lru_cache(maxsize=1)
def _synthetic():
    """Data of a two-term law inside the library, at Treloar's stretches."""
    treloar = km.read_curves()
    truth = klax.finalize(km.CANN(input_scale=SCALE, key=jr.key(0)))
    terms = truth.terms
    i_exp = terms.index(km.CANNTerm("I1", 1, "exp"))
    i_lin = terms.index(km.CANNTerm("I2", 1, "identity"))
    a = np.zeros(12)
    w = np.zeros(12)
    a[i_exp], w[i_exp], a[i_lin] = 2.0, 1.5, 0.5
    truth = eqx.tree_at(
        lambda m: (m.weights, m.inner), truth, (jnp.asarray(a), jnp.asarray(w))
    )
    cases = list(km.LOAD_CASES)
    stress = evaluate_cases(truth, cases, [treloar[c].stretch for c in cases])
    curves = {
        c: km.LoadCurve(treloar[c].stretch, np.asarray(y))
        for c, y in zip(cases, stress, strict=True)
    }
    return truth, curves


@pytest.fixture(scope="module")
def synthetic_path():
    truth, curves = _synthetic()
    train = ["uniaxial", "equibiaxial"]
    data = km.stress_data(curves, train)
    model = km.CANN(
        input_scale=SCALE,
        energy_scale=km.data_energy_scale(curves, train),
        key=jr.key(0),
    )
    strengths = km.path_strengths(model, data, 6, ratio=1e-4)
    path = km.regularisation_path(
        model, data, strengths, steps=1500, learning_rate=1e-2, key=jr.key(1)
    )
    return truth, curves, data, path


def test_path_shapes_and_sparsity(synthetic_path):
    _, _, data, path = synthetic_path
    assert path.strengths.shape == (6,) and path.active.shape == (6, 12)
    assert path.loss.shape == (6,) and np.all(np.isfinite(path.loss))
    n_active = path.active.sum(axis=1)
    assert n_active[0] <= 1 and n_active.max() < 12  # exact zeros appear
    weights = np.asarray(klax.unwrap(path.ensemble.weights))
    assert np.all(weights[~path.active] == 0.0)
    np.testing.assert_allclose(
        np.asarray(klax.unwrap(path.ensemble.weights).shape), (6, 12)
    )
    # Each member carries its own strength.
    np.testing.assert_allclose(
        np.asarray(path.ensemble.weights.strength), path.strengths
    )


def test_largest_strength_is_the_optimality_threshold():
    # From zero weights, one proximal step at strength λ revives a term iff
    # λ < largest_strength (the first Adam step has size lr in every weight).
    _, curves = _synthetic()
    data = km.stress_data(curves, ["uniaxial"])
    model = km.CANN([("I1", 1, "identity"), ("I2", 1, "identity")], key=jr.key(0))
    model = eqx.tree_at(lambda m: m.weights.parameter, model, jnp.zeros(2))
    top = km.largest_strength(model, data)

    def revived(strength):
        m = km.with_strength(model, strength)
        params = eqx.filter(m, eqx.is_inexact_array)
        grads = km.stress_loss.value_and_grad(m, tuple(map(jnp.asarray, data)), None)[1]
        opt = km.sparse_adam(1e-3)
        updates, _ = opt.update(grads, opt.init(params), params)
        return np.asarray(updates.weights.parameter).max() > 0  # pyright: ignore

    assert revived(0.99 * top) and not revived(1.01 * top)


def test_path_recovers_the_known_law(synthetic_path):
    truth, curves, data, path = synthetic_path
    polished = [km.polish(path.member(i), data) for i in range(len(path.strengths))]
    rows = km.path_table(
        path, curves, ["uniaxial", "equibiaxial"], ["pure_shear"], models=polished
    )
    assert set(rows[0]["r2"]) == set(km.LOAD_CASES)
    assert rows[0]["split"]["pure_shear"] == "test"
    chosen = polished[km.select_member(rows)]
    expected = km.discovered_law(truth)
    found = km.discovered_law(chosen)
    assert [t[:3] for t in found.terms] == [t[:3] for t in expected.terms]
    assert np.all(np.asarray(chosen.weights)[~km.active_terms(truth)] == 0.0)
    for f, e in zip(found.terms, expected.terms, strict=True):
        assert f.coefficient == pytest.approx(e.coefficient, rel=1e-3)
        if e.inner is not None:
            assert f.inner == pytest.approx(e.inner, rel=1e-3)
    text = km.format_path_table(rows)
    assert "pure_shear (test)" in text and len(text.splitlines()) == 7


def test_selection_rule():
    def row(active, r2):
        return {"active": active, "r2": {"a": r2[0], "b": r2[1]}}

    rows = [
        row(1, (0.90, 0.80)),
        row(2, (0.995, 0.990)),
        row(3, (0.9985, 0.9915)),
        row(5, (0.999, 0.992)),
        row(4, (0.9991, float("nan"))),
    ]
    assert km.select_member(rows, tolerance=0.002) == 2
    assert km.select_member(rows, tolerance=0.01) == 1
    assert km.select_member(rows, tolerance=0.0) == 3
    with pytest.raises(ValueError):
        km.select_member([])


def test_path_argument_errors():
    data = km.stress_data(km.read_curves(), ["uniaxial"])
    model = km.CANN(input_scale=SCALE, key=jr.key(0))
    with pytest.raises(ValueError, match="strengths"):
        km.regularisation_path(model, data, [-1.0], steps=1, key=jr.key(0))
    with pytest.raises(ValueError, match="SparseWeights"):
        km.regularisation_path(
            km.CANN(sparse=False, key=jr.key(0)), data, 2, steps=1, key=jr.key(0)
        )
    with pytest.raises(ValueError, match="p"):
        km.regularisation_path(model, data, 2, p=2.0, steps=1, key=jr.key(0))


# ---------------------------------------------------------------------------
# Laws: formula, parser, JSON


@eqx.filter_jit
def _all_cases(W, lam):
    return jnp.stack([km.nominal_stress_11(W, case, lam) for case in km.LOAD_CASES])


def test_formula_round_trip_reproduces_the_stresses(models):
    lam = jnp.linspace(1.01, 2.5, 9)
    for W in models:
        law = km.discovered_law(W)
        assert len(law.terms) == 12
        text = law.formula()
        assert text.startswith("W = ") and "MPa·" in text
        parsed = km.parse_formula(text)
        assert parsed.terms == tuple(
            km.LawTerm(t.invariant, t.power, t.activation, t.coefficient, t.inner)
            for t in parsed.terms
        )
        from_json = km.law_from_json(json.dumps(law.to_json()))
        assert from_json == law  # JSON keeps the exact coefficients
        reference = _all_cases(W, lam)
        np.testing.assert_allclose(_all_cases(parsed, lam), reference, rtol=1e-6)
        F = jnp.asarray(random_F(np.random.default_rng(5), 1, unimodular=True)[0])
        assert float(parsed(F)) == pytest.approx(float(W(F)), rel=1e-8)


def test_formula_of_compressible_anisotropic_law(compressible):
    law = km.discovered_law(compressible)
    text = law.formula()
    assert "⟨I4 − 1⟩" in text and "(J − 1)²" in text and "Ĩ2 − 3^(3/2)" in text
    G = km.structural_tensor(FIBRE)
    parsed = km.parse_formula(text, structural_tensor=G)
    Fs = jnp.asarray(random_F(np.random.default_rng(6), 5, low=0.85, high=1.2))
    np.testing.assert_allclose(
        jax.vmap(parsed)(Fs), jax.vmap(compressible)(Fs), rtol=1e-8
    )
    np.testing.assert_allclose(
        jax.vmap(lambda F: km.first_piola(parsed, F))(Fs),
        jax.vmap(lambda F: km.first_piola(compressible, F))(Fs),
        rtol=1e-6,
        atol=1e-9,
    )
    with pytest.raises(ValueError, match="structural_tensor"):
        km.parse_formula(text)


def test_formula_example_and_parser_errors():
    text = "W = 0.134 MPa·(Ī1 - 3) + 0.0021 MPa·[exp(0.24 (Ī2 − 3)²) − 1]"
    law = km.parse_formula(text)
    assert law.invariants == "isochoric" and law.units == "MPa"
    assert law.terms == (
        km.LawTerm("I1", 1, "identity", 0.134, None),
        km.LawTerm("I2", 2, "exp", 0.0021, 0.24),
    )
    assert km.parse_formula(law.formula(3)) == law
    assert km.parse_formula("W = 0").terms == ()
    for bad in (
        "0.1 MPa·(Ī1 − 3)",
        "W = 0.1 MPa·(Ī3 − 3)",
        "W = 0.1 MPa·(Ĩ2 − 3)",
        "W = 0.1 MPa·(Ī1 − 3) + 0.2 kPa·(Ī2 − 3)",
        "W = 0.1 MPa·(Ī1 − 3) + 0.2 MPa·(Ĩ1 − 3)",
        "W = 0.1 MPa·[sin(0.2 (Ī1 − 3))]",
    ):
        with pytest.raises(ValueError):
            km.parse_formula(bad)
    with pytest.raises(ValueError, match="format"):
        km.law_from_json({"format": "other"})


def test_data_energy_scale():
    curves = {"uniaxial": km.LoadCurve(np.array([1.0, 2.0]), np.array([0.0, 2.0]))}
    assert km.data_energy_scale(curves, ["uniaxial"]) == pytest.approx(1.0)
    curves = {"equibiaxial": km.LoadCurve(np.array([1.0, 2.0]), np.array([0.0, 2.0]))}
    assert km.data_energy_scale(curves, ["equibiaxial"]) == pytest.approx(2.0)


def test_save_and_load_like_the_other_models(models, tmp_path):
    W = models[0]
    config = km.cann_config(W)
    assert km.build_model(config, key=jr.key(5)).terms == W.terms  # pyright: ignore
    km.save_model(tmp_path, W, config)
    loaded = km.load_model(tmp_path)
    assert isinstance(loaded, km.CANN) and loaded.input_scale == W.input_scale
    lam = jnp.linspace(1.0, 2.0, 5)
    np.testing.assert_allclose(_all_cases(loaded, lam), _all_cases(W, lam), rtol=1e-12)


def test_cli_model_cann(tmp_path, capsys):
    from klax.mechanics import calibrate

    out = tmp_path / "run"
    bad = calibrate.main(["--model", "cann", "--penalty-p", "2", "--out", str(out)])
    assert bad == 2 and not out.exists()
    assert "--penalty-p" in capsys.readouterr().err
    code = calibrate.main(
        [
            "--model", "cann", "--steps", "200", "--strengths", "3",
            "--no-plot", "--quiet", "--export-abaqus", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    names = {p.name for p in out.iterdir()}
    assert {"model.eqx", "model.json", "metrics.csv", "history.csv"} <= names
    assert "TYPE=INCOMPRESSIBLE" in (out / "uhyper.f").read_text()
    assert {"path.csv", "law.txt", "law.json"} <= names
    assert len((out / "path.csv").read_text().splitlines()) == 1 + 4  # 3 + λ = 0
    law = km.parse_formula((out / "law.txt").read_text())
    loaded = km.load_model(out)
    lam = jnp.linspace(1.0, 3.0, 4)
    np.testing.assert_allclose(_all_cases(law, lam), _all_cases(loaded, lam), rtol=1e-6)
    assert "discovered law" in capsys.readouterr().out
