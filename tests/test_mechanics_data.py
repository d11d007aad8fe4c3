"""The data layer of `klax.mechanics` for every kind of homogeneous test.

Long-format CSV files (uniaxial, equibiaxial, pure shear, general biaxial,
simple shear; units from the column suffix), their validation, the training
observations built from them, the residual vector and the unit invariance of
the loss. float64 throughout (module-wide x64).
"""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import klax
import klax.mechanics as km


@pytest.fixture(autouse=True, scope="module")
def _x64():
    with jax.enable_x64(True):
        yield


C10, C01 = 0.2, 0.02  # MPa


def mooney_rivlin_rows(unit_factor=1.0, unit="MPa"):
    """A mixed long-format file from exact Mooney–Rivlin stresses (closed forms)."""

    def fmt(x):
        return repr(float(x) / unit_factor)

    lines = [
        "load_case,stretch,stretch_1,stretch_2,shear,"
        f"nominal_stress_{unit},nominal_stress_1_{unit},nominal_stress_2_{unit},"
        f"shear_stress_{unit}"
    ]
    for lam in (0.8, 0.9, 1.0, 1.5, 2.0, 3.0):
        p = 2 * (lam - lam**-2) * (C10 + C01 / lam)
        lines.append(f"uniaxial,{lam},,,,{fmt(p)},,,")
    for lam in (1.0, 1.3, 1.8):
        p = 2 * (lam - lam**-5) * (C10 + lam**2 * C01)
        lines.append(f"equibiaxial,{lam},,,,{fmt(p)},,,")
    for l1 in (1.5, 1.2):
        for l2 in (0.9, 1.0, 1.2, 1.6):
            l3 = 1 / (l1 * l2)
            p11 = 2 * (l1 - l3**2 / l1) * (C10 + l2**2 * C01)
            p22 = 2 * (l2 - l3**2 / l2) * (C10 + l1**2 * C01)
            # P22 not measured at the smallest λ2
            p22_cell = "" if l2 == 0.9 else fmt(p22)
            lines.append(f"biaxial,,{l1},{l2},,,{fmt(p11)},{p22_cell},")
    for g in (0.3, 0.0, 0.1, 0.2):
        p12 = 2 * g * (C10 + C01)
        p22 = -2 * g**2 * C01
        lines.append(f"simple_shear,,,,{g},,,{fmt(p22)},{fmt(p12)}")
    return "\n".join(lines) + "\n"


def test_mixed_file_curves_and_units():
    data = km.parse_measurements(mooney_rivlin_rows(1e-3, "kPa").encode())
    labels = [(c.label, c.component, len(c.index)) for c in data.curves()]
    assert labels == [
        ("uniaxial", "P11", 6),
        ("equibiaxial", "P11", 3),
        ("biaxial@1.5", "P11", 4),
        ("biaxial@1.5", "P22", 3),
        ("biaxial@1.2", "P11", 4),
        ("biaxial@1.2", "P22", 3),
        ("simple_shear", "P22", 4),
        ("simple_shear", "P12", 4),
    ]
    assert data.size == 31
    assert set(data.unit.tolist()) == {"kPa"}
    assert data.stress.dtype == np.float64 and data.case_index.dtype == np.int32
    # Sorted by the swept deformation within each curve (shear was 0.3, 0, ...).
    shear = data.take(data.curves()[-1].index)
    np.testing.assert_array_equal(shear.stretch, [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(shear.stress, 2 * shear.stretch * (C10 + C01))
    biax = data.take(data.curves()[3].index)
    np.testing.assert_array_equal(biax.stretch_2, [1.0, 1.2, 1.6])
    assert np.all(biax.stretch == 1.5)
    # The row numbers point into the file (header = line 1).
    assert data.row[0] == 2 and data.row.max() == 22
    # MPa reading of the same numbers.
    mpa = km.parse_measurements(mooney_rivlin_rows().encode())
    np.testing.assert_allclose(data.stress, mpa.stress, rtol=1e-14)


def test_read_several_files_and_legacy_curves(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("load_case,stretch,nominal_stress_MPa\nuniaxial,2.0,0.5\n")
    b.write_text("load_case,stretch,nominal_stress_kPa\nuniaxial,1.5,300\n")
    data = km.read_measurements([a, b])
    np.testing.assert_array_equal(data.stretch, [1.5, 2.0])
    np.testing.assert_allclose(data.stress, [0.3, 0.5])
    assert data.unit.tolist() == ["kPa", "MPa"]
    assert data.source.tolist() == [str(b), str(a)]
    curves = km.parse_curves(b.read_bytes())
    np.testing.assert_allclose(curves["uniaxial"].stress, [0.3])
    b.write_text("load_case,stretch,nominal_stress_kPa\nuniaxial,x,300\n")
    with pytest.raises(km.DataError, match=re.escape(f"{b}: row 2: stretch must")):
        km.read_measurements([a, b])
    with pytest.raises(km.DataError, match="row 2: biaxial rows are not one-stretch"):
        km.parse_curves(
            b"load_case,stretch_1,stretch_2,nominal_stress_1_MPa\nbiaxial,1,1,0\n"
        )
    treloar = km.read_measurements()
    assert treloar.load_curves().keys() == km.read_curves().keys()


BIAX = "load_case,stretch_1,stretch_2,nominal_stress_1_MPa,nominal_stress_2_MPa\n"
SHEAR = "load_case,shear,shear_stress_kPa\n"
MALFORMED = {
    "unknown load case": (
        SHEAR + "simple_shear,0.1,3\ntorsion,0.1,3\n",
        "row 3: unknown load case 'torsion'",
    ),
    "missing stress column": (
        "load_case,shear,nominal_stress_MPa\nsimple_shear,0.1,3\n",
        "row 2: missing column.*shear_stress_MPa",
    ),
    "missing deformation column": (
        "load_case,stretch_1,nominal_stress_1_MPa\nbiaxial,1.2,0.3\n",
        "row 2: missing column.*stretch_2",
    ),
    "shear row without shear": (
        SHEAR + "simple_shear,0.1,3\nsimple_shear,,4\n",
        "row 3: shear is empty",
    ),
    "mixed units": (
        "load_case,stretch,nominal_stress_MPa,nominal_stress_kPa\nuniaxial,1,0,\n",
        "columns 'nominal_stress_MPa' and 'nominal_stress_kPa': mixed units",
    ),
    "unknown unit": (
        "load_case,stretch,nominal_stress_psi\nuniaxial,1,0\n",
        "column 'nominal_stress_psi': unknown stress unit 'psi'",
    ),
    "non-numeric stress": (
        BIAX + "biaxial,1.2,1.0,0.3,0.1\nbiaxial,1.2,1.1,0.3,abc\n",
        "row 3: nominal_stress_2_MPa must be a number, got 'abc'",
    ),
    "non-numeric stretch": (
        BIAX + "biaxial,1.2,one,0.3,0.1\n",
        "row 2: stretch_2 must be a number",
    ),
    "stretch zero": (
        BIAX + "biaxial,0,1.0,0.3,0.1\n",
        "row 2: stretch_1 must be positive",
    ),
    "stretch negative": (
        "load_case,stretch,nominal_stress_Pa\nuniaxial,-0.5,3\n",
        "row 2: stretch must be positive",
    ),
    "no measured stress": (
        BIAX + "biaxial,1.2,1.0,,\n",
        "row 2: no measured stress; fill nominal_stress_1_MPa or nominal_stress_2_MPa",
    ),
    "cell that does not apply": (
        "load_case,stretch,shear,nominal_stress_MPa,shear_stress_MPa\n"
        "uniaxial,1.2,0.1,0.3,\n",
        "row 2: column shear does not apply to uniaxial rows",
    ),
    "no rows": (SHEAR, "no data rows"),
    "no load_case column": ("stretch,nominal_stress_MPa\n1,0\n", "load_case"),
    "infinite": (SHEAR + "simple_shear,inf,3\n", "row 2: shear must be finite"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_files_raise_one_line(name):
    text, match = MALFORMED[name]
    with pytest.raises(km.DataError, match=match) as info:
        km.parse_measurements(text.encode())
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_selection():
    data = km.parse_measurements(mooney_rivlin_rows().encode())
    assert km.parse_selection("uniaxial, biaxial@1.5") == ["uniaxial", "biaxial@1.5"]
    held = data.select(["biaxial@1.5"])
    assert held.size == 7 and np.all(held.stretch == 1.5)
    assert data.select(["biaxial"]).size == 14
    assert data.select(None).size == data.size
    for text, match in [
        ("uniaxal", "unknown load case 'uniaxal'"),
        ("uniaxial@2", "only biaxial curves"),
        ("biaxial@x", "must be a number"),
        ("biaxial@-1", "must be positive"),
        ("uniaxial,uniaxial", "listed twice"),
        ("uniaxial,", "empty load case name"),
    ]:
        with pytest.raises(km.DataError, match=match):
            km.parse_selection(text, "--train")


@eqx.filter_jit
def _helper_stresses(model, stretch, stretch_2, shear):
    """Every curve kind through the public load-case helpers, one compilation."""
    return (
        km.nominal_stress(model, "uniaxial", stretch),
        km.nominal_stress(model, "equibiaxial", stretch),
        km.biaxial_nominal_stress(model, stretch, stretch_2),
        km.simple_shear_nominal_stress(model, shear),
    )


def test_predict_stress_matches_load_case_helpers():
    pann = klax.finalize(
        km.IncompressiblePANN([4], input_scale=(5.0, 50.0), key=jr.key(0))
    )
    ogden = km.Ogden([0.63, 0.0012, -0.01], [1.3, 5.0, -2.0])
    data = km.parse_measurements(mooney_rivlin_rows().encode())
    kinds = {"uniaxial": 0, "equibiaxial": 1, "biaxial": 2, "simple_shear": 3}
    for model in (pann, ogden):
        predicted = np.asarray(
            eqx.filter_jit(km.predict_stress)(
                model, data.case_index, data.stretch, data.stretch_2, data.component
            )
        )
        lam = np.where(data.case_index == 4, 1.0, data.stretch)
        helpers = _helper_stresses(model, lam, data.stretch_2, data.stretch)
        for curve in data.curves():
            comp = km.STRESS_COMPONENTS.index(curve.component)
            want = np.asarray(helpers[kinds[curve.load_case]][comp])[curve.index]
            np.testing.assert_allclose(
                predicted[curve.index], want, rtol=1e-11, atol=1e-13
            )


def test_residuals_loss_and_gradient():
    data = km.stress_data(km.parse_measurements(mooney_rivlin_rows().encode()))
    assert data.stretch.shape == (31,) and data.component.dtype == np.int32
    exact = km.MooneyRivlin(C10, C01)
    np.testing.assert_allclose(km.residuals(exact, data), 0.0, atol=1e-14)
    model = km.MooneyRivlin(0.25, 0.01)
    batch = km.StressData(*(jnp.asarray(a) for a in data))
    r = jax.jit(km.residuals)(model, batch)
    assert r.shape == (31,) and r.dtype == jnp.float64
    loss, grad = jax.jit(km.stress_loss.value_and_grad)(model, batch, None)
    np.testing.assert_allclose(loss, jnp.mean(r**2), rtol=1e-13)
    # The loss is linear in (c10, c01) inside the residual: check one derivative.
    h = 1e-6
    loss_of = jax.jit(
        lambda c10: km.stress_loss(km.MooneyRivlin(c10, 0.01), batch, None)
    )
    up, down = loss_of(0.25 + h), loss_of(0.25 - h)
    np.testing.assert_allclose(grad.c10, (up - down) / (2 * h), rtol=1e-7)
    # The Jacobian of the residuals (what a least-squares solver uses).
    jac = jax.jit(
        jax.jacfwd(lambda c: km.residuals(km.MooneyRivlin(c[0], c[1]), batch))
    )(jnp.array([0.25, 0.01]))
    assert jac.shape == (31, 2) and bool(jnp.all(jnp.isfinite(jac)))


ADAM = optax.adam(1e-2)


@pytest.mark.parametrize("loss", ["mse", "mse-per-case", "relative"])
def test_unit_invariance(loss):
    """The same data in Pa, kPa and MPa: the same observations, loss and fit."""
    datasets = [
        km.stress_data(
            km.parse_measurements(mooney_rivlin_rows(f, u).encode()), None, loss
        )
        for f, u in [(1.0, "MPa"), (1e-3, "kPa"), (1e-6, "Pa")]
    ]
    for other in datasets[1:]:
        for a, b in zip(datasets[0], other, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)
    start = km.MooneyRivlin(0.3, 0.05)
    fits = []
    for data in datasets:
        model, _ = klax.fit(
            start,
            tuple(jnp.asarray(a) for a in data),
            batch_size=len(data.stretch),
            steps=100,
            loss=km.stress_loss,
            optimizer=ADAM,
            verbose=0,
            key=jr.key(0),
        )
        fits.append(np.array([model.c10, model.c01]))
    np.testing.assert_allclose(fits[1], fits[0], rtol=1e-6)
    np.testing.assert_allclose(fits[2], fits[0], rtol=1e-6)


def test_loss_is_scale_free():
    """Scaling a material's stresses by s leaves the loss of the scaled model alone."""
    data = km.parse_measurements(mooney_rivlin_rows().encode())
    soft = data._replace(stress=data.stress * 1e-3)  # a 1000× softer material
    model = km.MooneyRivlin(0.25, 0.01)
    residuals = jax.jit(km.residuals)
    r_stiff = residuals(model, km.StressData(*map(jnp.asarray, km.stress_data(data))))
    r_soft = residuals(
        km.MooneyRivlin(0.25e-3, 0.01e-3),
        km.StressData(*map(jnp.asarray, km.stress_data(soft))),
    )
    np.testing.assert_allclose(r_soft, r_stiff, rtol=1e-12)
    assert km.stress_scale(soft) == pytest.approx(1e-3 * km.stress_scale(data))


def test_invariant_scales_of_every_kind():
    data = km.parse_measurements(mooney_rivlin_rows().encode())
    s1, s2 = km.invariant_scales(data, ["biaxial"], "isochoric")
    l1, l2 = 1.5, 1.6  # the largest I1 and I2 of the biaxial points
    l3 = 1 / (l1 * l2)
    assert s1 == pytest.approx(l1**2 + l2**2 + l3**2 - 3)
    assert s2 == pytest.approx((l1 * l2) ** 2 + (l2 * l3) ** 2 + (l1 * l3) ** 2 - 3)
    s1, s2 = km.invariant_scales(data, ["simple_shear"], "polyconvex")
    assert s1 == pytest.approx(0.3**2)
    assert s2 == pytest.approx((3 + 0.3**2) ** 1.5 - 3**1.5)
    # Compression counts: uniaxial λ = 0.8 gives I1 - 3 > 0.
    s1, _ = km.invariant_scales(
        km.parse_measurements(
            b"load_case,stretch,nominal_stress_MPa\nuniaxial,0.8,-0.1\n"
        ),
        None,
        "polyconvex",
    )
    assert s1 == pytest.approx(0.8**2 + 2 / 0.8 - 3)


def test_curve_r2_names():
    data = km.parse_measurements(mooney_rivlin_rows().encode())
    r2 = km.curve_r2(km.MooneyRivlin(C10, C01), data, ["uniaxial", "biaxial@1.2"])
    assert list(r2) == ["uniaxial", "biaxial@1.2 P11", "biaxial@1.2 P22"]
    assert all(v == pytest.approx(1.0, abs=1e-12) for v in r2.values())


def test_sanity_warnings_name_the_rows():
    from klax.mechanics._data import sanity_warnings

    clean = km.parse_measurements(mooney_rivlin_rows().encode())
    assert sanity_warnings(clean) == []
    text = (
        "load_case,stretch,stretch_1,stretch_2,shear,nominal_stress_MPa,"
        "nominal_stress_1_MPa,nominal_stress_2_MPa,shear_stress_MPa\n"
        "uniaxial,1.0,,,,0.2,,,\n"  # row 2: offset at λ = 1
        "uniaxial,2.0,,,,1.0,,,\n"
        "uniaxial,0.7,,,,0.3,,,\n"  # row 4: compression with positive stress
        "biaxial,,2.0,0.6,,,0.9,-0.2,\n"  # row 5: λ2²λ1 = 0.72 < 1, P22 < 0 is fine
        "biaxial,,2.0,1.0,,,1.2,-0.4,\n"  # row 6: λ2²λ1 = 2 > 1 but P22 < 0
        "simple_shear,,,,-0.2,,,,0.3\n"  # row 7: γ < 0 with P12 > 0
        "simple_shear,,,,0.2,,,,0.3\n"
    )
    messages = sanity_warnings(km.parse_measurements(text.encode(), "lab.csv"))
    assert len(messages) == 4
    assert any(
        m.startswith("lab.csv: row 4: nominal_stress_MPa = 0.3") for m in messages
    )
    assert any(
        m.startswith("lab.csv: row 6: nominal_stress_2_MPa = -0.4") for m in messages
    )
    assert any(m.startswith("lab.csv: row 7: shear_stress_MPa = 0.3") for m in messages)
    assert any("row 2" in m and "undeformed" in m for m in messages)
    assert not any("row 5" in m for m in messages)
