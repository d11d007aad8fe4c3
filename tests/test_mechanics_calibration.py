"""Data handling, metrics, calibration helpers and model files of `klax.mechanics`.

float64 throughout (module-wide x64).
"""

import equinox as eqx
import jax
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


def test_calibrate_seeds_restarts_collapsed_seeds():
    curves = km.read_curves()
    messages = []
    train = ["uniaxial", "equibiaxial"]
    # The configuration of the quick run in test_calibrate.py: the compiled
    # training loop is shared.
    config = dict(
        model="pann",
        width_sizes=[4],
        invariants="polyconvex",
        input_scale=list(km.invariant_scales(curves, train, "polyconvex")),
        positivity="clamp",
        floor=0.0,
    )
    best, results = km.calibrate_seeds(
        config,
        curves,
        train_cases=train,
        seeds=2,
        base_seed=0,
        steps=5,
        learning_rate=2e-3,
        batch_size=32,
        verbose=0,
        collapse_r2=1.01,  # nothing reaches it: every seed counts as collapsed
        max_restarts=1,
        report=messages.append,
    )
    assert [r.seed for r in results] == [0, 1, 2, 3]
    assert len(messages) == 2 and "restarting as seed 2" in messages[0]
    assert best.loss == min(r.loss for r in results)
    assert best.history is not None and best.history["loss"][0][0] == 0
    assert set(best.train_r2) == {"uniaxial", "equibiaxial"}
