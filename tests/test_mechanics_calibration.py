"""Data handling, metrics, calibration helpers and model files of `klax.mechanics`.

float64 throughout (module-wide x64).
"""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import klax
import klax.mechanics as km
from klax.mechanics._calibration import evaluate_cases, output_weights_dead


@pytest.fixture(autouse=True, scope="module")
def _x64():
    with jax.enable_x64(True):
        yield


HEADER = "load_case,stretch,nominal_stress_MPa\n"


def test_packaged_treloar_data():
    curves = km.read_curves()
    assert list(curves) == ["uniaxial", "equibiaxial", "pure_shear"]
    assert [len(c.stretch) for c in curves.values()] == [25, 17, 14]
    for curve in curves.values():
        assert curve.stretch.dtype == np.float64
        assert np.all(np.diff(curve.stretch) >= 0)
        assert curve.stretch[0] == 1.0 and curve.stress[0] == 0.0
    assert curves["uniaxial"].stress[-1] == pytest.approx(6.30)


def test_parse_sorts_ignores_extra_columns_and_blank_lines():
    raw = (
        b"note,load_case,nominal_stress_MPa,stretch\n"
        b"a,uniaxial,0.5,2.0\n\n"
        b"b,uniaxial,0.0,1.0\n"
        b"c,pure_shear,0.2,1.5\n"
    )
    curves = km.parse_curves(raw)
    np.testing.assert_array_equal(curves["uniaxial"].stretch, [1.0, 2.0])
    np.testing.assert_array_equal(curves["uniaxial"].stress, [0.0, 0.5])
    assert list(curves) == ["uniaxial", "pure_shear"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("load_case,stretch\nuniaxial,1.0\n", "missing column.*nominal_stress_MPa"),
        (
            HEADER + "uniaxial,1.0,0.0\ntorsion,1.2,0.1\n",
            "row 3: unknown load case 'torsion'",
        ),
        (
            HEADER + "uniaxial,1.0,0.0\nuniaxial,-1.2,0.1\n",
            "row 3: stretch must be positive",
        ),
        (HEADER + "uniaxial,0,0.0\n", "row 2: stretch must be positive"),
        (HEADER + "uniaxial,abc,0.0\n", "row 2: stretch must be a number, got 'abc'"),
        (HEADER + "uniaxial,1.0,nan\n", "row 2: nominal_stress_MPa must be finite"),
        (HEADER + "uniaxial,1.0\n", "row 2: nominal_stress_MPa must be a number"),
        (HEADER, "no data rows"),
        ("", "missing column"),
    ],
    ids=[
        "columns",
        "case",
        "negative",
        "zero",
        "text",
        "nan",
        "short",
        "empty",
        "blank",
    ],
)
def test_parse_errors_name_the_row(text, match):
    with pytest.raises(km.DataError, match=match) as info:
        km.parse_curves(text.encode())
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_read_missing_file(tmp_path):
    with pytest.raises(km.DataError, match="file not found"):
        km.read_curves(tmp_path / "nope.csv")


def test_fit_metrics():
    m = km.fit_metrics([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 4.0])
    assert m.r2 == pytest.approx(1 - 1 / 5)
    assert m.rel_l2 == pytest.approx(1 / np.sqrt(14))
    assert m.mae == pytest.approx(0.25) and m.max_abs == pytest.approx(1.0)
    assert km.fit_metrics([1.0, 2.0], [1.0, 2.0]).r2 == 1.0
    with pytest.raises(ValueError, match="equal, non-zero length"):
        km.fit_metrics([1.0, 2.0], [1.0])


def test_stress_data_weights():
    curves = km.read_curves()
    cases = ["uniaxial", "equibiaxial"]
    mse = km.stress_data(curves, cases, "mse")
    # Weights 1/s² with s the RMS stress: a dimensionless loss.
    scale = np.sqrt(np.mean(mse.stress**2))
    assert km.stress_scale(mse) == pytest.approx(scale, rel=1e-15)
    assert mse.stretch.shape == (42,)
    np.testing.assert_allclose(mse.weight, scale**-2.0, rtol=1e-14)
    np.testing.assert_array_equal(mse.component, 0)
    np.testing.assert_array_equal(mse.stretch_2, 1.0)
    np.testing.assert_array_equal(mse.case_index[:25], 0)
    np.testing.assert_array_equal(mse.case_index[25:], 1)
    per_case = km.stress_data(curves, cases, "mse-per-case")
    np.testing.assert_allclose(per_case.weight[:25].sum(), per_case.weight[25:].sum())
    np.testing.assert_allclose(per_case.weight.mean(), scale**-2.0)
    relative = km.stress_data(curves, cases, "relative")
    assert np.all(np.isfinite(relative.weight)) and np.all(relative.weight > 0)
    big = relative.stress[:25] > 1.0
    np.testing.assert_allclose(
        relative.weight[:25][big], relative.stress[:25][big] ** -2.0
    )
    with pytest.raises(ValueError, match="loss must be one of"):
        km.stress_data(curves, cases, "l1")


def test_invariant_scales():
    curves = km.read_curves()
    s1, s2 = km.invariant_scales(curves, ["uniaxial", "equibiaxial"], "polyconvex")
    lam = 7.61  # largest uniaxial stretch: I1 - 3 = λ² + 2/λ - 3
    assert s1 == pytest.approx(lam**2 + 2 / lam - 3)
    lam = 4.44  # largest equibiaxial stretch: I2 = λ⁴ + 2/λ²
    assert s2 == pytest.approx((lam**4 + 2 / lam**2) ** 1.5 - 3**1.5)
    _, s2_iso = km.invariant_scales(curves, ["equibiaxial"], "isochoric")
    assert s2_iso == pytest.approx(lam**4 + 2 / lam**2 - 3)


def test_mixed_case_prediction_matches_load_case_helpers():
    pann = klax.finalize(
        km.IncompressiblePANN([4], input_scale=(50.0, 5e3), key=jr.key(0))
    )
    ogden = km.Ogden([0.63, 0.0012, -0.01], [1.3, 5.0, -2.0])
    lam = np.array([0.9, 1.0, 1.7, 3.0])
    for model in (pann, ogden):
        predicted = evaluate_cases(model, km.LOAD_CASES, [lam] * 3)
        for case, values in zip(km.LOAD_CASES, predicted, strict=True):
            expected = eqx.filter_jit(km.nominal_stress_11)(model, case, lam)
            np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-14)


def test_stress_loss_value_and_gradient():
    curves = km.read_curves()
    data = km.stress_data(curves, ["uniaxial"], "mse")
    model = km.NeoHooke(0.4)
    batch = tuple(jnp.asarray(a) for a in data[:4])  # the legacy 4-array batch
    value, grad = jax.jit(km.stress_loss.value_and_grad)(model, batch, None)
    lam, stress = data.stretch, data.stress
    predicted = 0.4 * (lam - lam**-2)
    w = data.weight[0]
    np.testing.assert_allclose(w, km.stress_scale(data) ** -2.0, rtol=1e-14)
    np.testing.assert_allclose(
        value, w * np.mean((predicted - stress) ** 2), rtol=1e-12
    )
    expected = w * np.mean(2 * (predicted - stress) * (lam - lam**-2))
    np.testing.assert_allclose(grad.mu, expected, rtol=1e-12)


def test_output_weights_dead():
    final = klax.finalize(km.IncompressiblePANN([4], key=jr.key(0)))
    assert not output_weights_dead(final)
    weight = final.network.layers[-1].linear_y.weights[0]
    dead = eqx.tree_at(
        lambda m: m.network.layers[-1].linear_y.weights[0],
        final,
        jnp.zeros_like(weight),
    )
    assert output_weights_dead(dead)
    assert not output_weights_dead(km.NeoHooke(0.3))


@pytest.mark.parametrize("name", ["pann", "ogden3"])
def test_save_and_load_are_bit_identical(tmp_path, name):
    config = {"model": name}
    if name == "pann":
        config.update(
            width_sizes=[4],
            invariants="polyconvex",
            input_scale=[50.0, 5e3],
            floor=0.0,
            positivity="softplus",
        )
    model = km.build_model(config, key=jr.key(3))
    km.save_model(tmp_path, model, config)
    loaded = km.load_model(tmp_path)
    final = klax.finalize(model)
    F = jnp.array([[1.2, 0.1, 0.0], [0.0, 0.9, 0.2], [0.1, 0.0, 1.0]])
    stress = eqx.filter_jit(km.first_piola)
    assert jnp.array_equal(stress(final, F), stress(loaded, F))
    assert jnp.array_equal(
        km.nominal_stress_11(final, "pure_shear", 2.0),
        km.nominal_stress_11(loaded, "pure_shear", 2.0),
    )
    with pytest.raises(FileNotFoundError, match="no model.json"):
        km.load_model(tmp_path / "missing")


TREL_TRAIN = ["uniaxial", "equibiaxial"]


def quick_pann_config(curves, invariants="incompressible", width=4):
    return dict(
        model="pann",
        width_sizes=[width],
        invariants=invariants,
        input_scale=list(km.invariant_scales(curves, TREL_TRAIN, invariants)),
        positivity="clamp",
        floor=0.0,
    )


def synthetic_curves(model, top):
    """Exact `P11` of `model` on 12 stretches from 1 to `top[case]` per case."""
    cases = list(top)
    lams = [np.linspace(1.0, top[c], 12) for c in cases]
    stresses = evaluate_cases(model, cases, lams)
    return {
        c: km.LoadCurve(l, p) for c, l, p in zip(cases, lams, stresses, strict=True)
    }


def test_calibrate_seeds_restarts_only_dead_seeds(monkeypatch):
    import klax.mechanics._calibration as calibration

    curves = km.read_curves()
    # Pretend that the first two seeds' output layers died: they are retrained
    # from the next unused seeds, once; nothing else is restarted.
    calls = []

    def dead(model):
        calls.append(model)
        return len(calls) <= 2

    monkeypatch.setattr(calibration, "output_weights_dead", dead)
    messages = []
    best, results = km.calibrate_seeds(
        quick_pann_config(curves),
        curves,
        train_cases=TREL_TRAIN,
        seeds=3,
        base_seed=0,
        steps=0,
        learning_rate=2e-3,
        batch_size=32,
        verbose=0,
        max_restarts=2,
        refine_steps=3,
        report=messages.append,
    )
    assert [r.seed for r in results] == [0, 1, 2, 3, 4]
    assert [r.collapsed for r in results] == [True, True, False, False, False]
    restarts = [m for m in messages if "collapsed" in m]
    assert restarts[0].startswith("seed 0 collapsed") and "as seed 3" in restarts[0]
    assert len(restarts) == 2
    assert best.seed in (2, 3, 4)
    assert best.loss == min(r.loss for r in results if not r.collapsed)
    steps, values = best.history["loss"]
    assert steps == [0, 3]  # the initial loss, then after the refinement
    assert values[-1] <= values[-2]  # the refinement never makes it worse
    assert set(best.train_r2) == set(TREL_TRAIN)


def test_poor_fit_warns_instead_of_restarting():
    # A sign-flipped point in the data: every seed fits worse, none collapsed.
    # The job warns once and does not retrain (restarts would hide the data
    # problem).
    curves = dict(km.read_curves())
    stress = curves["uniaxial"].stress.copy()
    stress[-1] = -stress[-1]
    curves["uniaxial"] = km.LoadCurve(curves["uniaxial"].stretch, stress)
    messages = []
    best, results = km.calibrate_seeds(
        quick_pann_config(curves),
        curves,
        train_cases=TREL_TRAIN,
        seeds=2,
        base_seed=0,
        steps=0,
        learning_rate=2e-3,
        batch_size=32,
        verbose=0,
        collapse_r2=0.99,
        refine_steps=3,
        report=messages.append,
    )
    assert [r.seed for r in results] == [0, 1]
    assert not any(r.collapsed for r in results)
    assert len(messages) == 1 and "with training R²" in messages[0]
    assert "check the data" in messages[0] and "collapsed" not in messages[0]


def _max_rel_error(fitted, truth):
    """Largest relative error of the constants; Ogden terms in any order."""

    def terms(constants):
        n = sum(k.startswith("alpha_") for k in constants)
        if not n:
            return [sorted(constants.items())]
        pairs = [
            (constants[f"alpha_{p}"], constants[f"mu_{p}"]) for p in range(1, n + 1)
        ]
        return sorted(pairs)

    return max(
        abs(a - b) / abs(b)
        for fit, true in zip(terms(fitted), terms(truth), strict=True)
        for a, b in zip(
            fit if isinstance(fit, tuple) else [v for _, v in fit],
            true if isinstance(true, tuple) else [v for _, v in true],
            strict=True,
        )
    )


@pytest.mark.parametrize(
    "name, make_truth",
    [
        ("neo-hooke", lambda: km.NeoHooke(0.35)),
        ("mooney-rivlin", lambda: km.MooneyRivlin(0.2, 0.02)),
        ("ogden3", lambda: km.Ogden([0.63, 0.0012, -0.01], [1.3, 5.0, -2.0])),
    ],
    ids=["neo-hooke", "mooney-rivlin", "ogden3"],
)
def test_least_squares_baselines_recover_parameters(name, make_truth):
    truth = make_truth()  # float64 parameters (built under x64)
    assert jax.tree.leaves(truth)[0].dtype == jnp.float64
    curves = synthetic_curves(
        truth, {"uniaxial": 6.0, "equibiaxial": 3.5, "pure_shear": 4.0}
    )
    data = km.stress_data(curves, list(curves))
    fits = km.fit_baseline(
        {"model": name}, data, [0, 1], base_key=jr.key(1), max_steps=200
    )
    # Different starting points (not only batch orders).
    starts = [
        km.build_model({"model": name}, key=jr.fold_in(jr.key(1), s)) for s in (0, 1)
    ]
    assert not jnp.array_equal(
        jax.flatten_util.ravel_pytree(starts[0])[0],
        jax.flatten_util.ravel_pytree(starts[1])[0],
    )
    model, history, loss = min(fits, key=lambda f: f[2])
    assert loss < 1e-20 and history["loss"][1][-1] == loss
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(model))
    assert (
        _max_rel_error(km.baseline_constants(model), km.baseline_constants(truth))
        < 1e-6
    )


def test_baseline_constants():
    assert km.baseline_constants(km.NeoHooke(0.5)) == {"mu": 0.5}
    ogden = km.baseline_constants(km.Ogden([1.0, 2.0], [3.0, -4.0]))
    assert ogden == {"mu_1": 1.0, "mu_2": 2.0, "alpha_1": 3.0, "alpha_2": -4.0}
    with pytest.raises(TypeError, match="NeoHooke, MooneyRivlin or Ogden"):
        km.baseline_constants(km.IncompressiblePANN([2], key=jr.key(0)))


def _is_convex_nondecreasing_network(model):
    """All constrained weights of the FICNN are non-negative (finalised model)."""
    final = klax.finalize(model)
    weights = []
    for layer in final.network.layers:
        linear = layer.linear_y
        parts = linear.weights if hasattr(linear, "weights") else [linear.weight]
        weights += [np.asarray(w) for w in parts]
    return all(np.all(w >= 0) for w in weights)


def test_refinement_keeps_constraints_and_never_increases_the_loss():
    curves = km.read_curves()
    data = km.stress_data(curves, TREL_TRAIN)
    batch = tuple(jnp.asarray(a) for a in data)
    config = quick_pann_config(curves)
    models = [km.build_model(config, key=jr.key(k)) for k in range(2)]
    # One model with a negative stored weight (as after an unprojected update)
    # and one with a dead output layer: both must come back feasible.
    w = models[0].network.layers[-1].linear_y.weights[0]
    models[0] = eqx.tree_at(
        lambda m: m.network.layers[-1].linear_y.weights[0].parameter,
        models[0],
        w.parameter.at[0].set(-0.3),
    )
    ensemble = klax.stack_ensemble(models)
    refine = eqx.filter_jit(
        eqx.filter_vmap(
            lambda m: km.refine_least_squares(m, km.residuals, batch, max_steps=50)
        )
    )
    out = refine(ensemble)
    n = len(data.stretch)
    for i, model in enumerate(models):
        refined = klax.ensemble_member(out.model, i)
        before = float(km.stress_loss(klax.finalize(model), batch, None))
        after = float(km.stress_loss(klax.finalize(refined), batch, None))
        assert after <= before
        assert after == pytest.approx(float(out.loss[i]) / n, rel=1e-10)
        assert float(out.initial_loss[i]) / n == pytest.approx(before, rel=1e-10)
        assert after < 0.5 * before  # and it does improve a fresh network
        assert _is_convex_nondecreasing_network(refined)
        # Stored parameters satisfy the constraints (projection is a no-op).
        assert jax.tree.all(
            jax.tree.map(
                jnp.array_equal,
                eqx.filter(refined, eqx.is_array),
                eqx.filter(klax.apply(refined), eqx.is_array),
            )
        )
        W = klax.finalize(refined)
        assert float(W(jnp.eye(3))) == 0.0
        assert abs(float(km.nominal_stress_11(W, "uniaxial", 1.0))) < 1e-12


def test_refinement_returns_the_input_when_the_solve_fails():
    model = km.NeoHooke(0.3)

    def residuals(m, args):
        return m.mu * jnp.array([1.0, jnp.nan])

    out = km.refine_least_squares(model, residuals, None, max_steps=5)
    assert float(out.model.mu) == pytest.approx(0.3)


def test_default_inputs_contain_mooney_rivlin():
    # Exact Mooney–Rivlin data (the case of issue 11): the default input set
    # fits it, the strictly polyconvex (Ĩ1, Ĩ2) cannot.
    truth = km.MooneyRivlin(0.2, 0.02)
    curves = synthetic_curves(
        truth, {"uniaxial": 6.0, "equibiaxial": 3.5, "pure_shear": 4.0}
    )
    train = ["uniaxial", "equibiaxial"]
    r2 = {}
    for invariants in ("incompressible", "polyconvex"):
        config = dict(
            model="pann",
            width_sizes=[4],
            invariants=invariants,
            input_scale=list(km.invariant_scales(curves, train, invariants)),
            positivity="clamp",
            floor=0.0,
        )
        best, _ = km.calibrate_seeds(
            config,
            curves,
            train_cases=train,
            seeds=1,
            base_seed=0,
            steps=0,
            learning_rate=1e-2,
            batch_size=32,
            verbose=0,
            refine_steps=100,
            report=lambda message: None,
        )
        model = klax.finalize(best.model)
        predicted = evaluate_cases(
            model, list(curves), [c.stretch for c in curves.values()]
        )
        r2[invariants] = min(
            km.fit_metrics(c.stress, p).r2
            for c, p in zip(curves.values(), predicted, strict=True)
        )
    assert r2["incompressible"] > 0.9999
    assert r2["polyconvex"] < 0.999
