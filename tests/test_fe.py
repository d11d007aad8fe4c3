"""klax potentials in the finite-element code FElupe (`klax.mechanics.felupe_material`).

float64 throughout (module-wide x64; the material itself computes in float64
also with x64 off, which one test checks). The meshes are small: a 2×2×2 cube
and quarter plates with 8 to 128 elements. What is checked:

- the material protocol: `P` and `A` agree with klax's `first_piola` and
  `tangent` for every potential, shapes and dtypes, major symmetry, errors;
- FElupe's own neo-Hooke and klax's `NeoHooke` give the same reaction forces
  in the same FE cube (nearly incompressible and compressible);
- a PANN calibrated briefly on the shipped Treloar data: FE cube against the
  homogeneous incompressible load case (the penalty error, <= 1e-3 at a bulk
  to shear modulus ratio of 5000) and against the same penalty solved
  homogeneously (<= 1e-8); a `CompressiblePANN` against the compressible
  uniaxial load case (<= 1e-8);
- objectivity through the FE code: a transversely isotropic PANN on a
  rotated mesh with the rotated fibre gives the rotated reaction force;
- an inhomogeneous problem (plate with a hole stretched to 100 %): Newton
  converges quadratically in every load step, and the reaction force
  converges under mesh refinement.
"""

import functools
import subprocess
import sys

import felupe as fem
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from _geometry import random_F, rotation

import klax
import klax.mechanics as km


@pytest.fixture(autouse=True, scope="module")
def _x64():
    with jax.enable_x64(True):
        yield


TRAIN = ["uniaxial", "equibiaxial"]
FIBRE = np.array([1.0, 2.0, 0.5]) / np.linalg.norm([1.0, 2.0, 0.5])


# Stretches of `U` in [0.6, 1.8].
random_F = functools.partial(random_F, low=0.6, high=1.8)


@pytest.fixture(scope="module")
def calibrated_pann():
    """An IncompressiblePANN trained briefly on Treloar's UT + ET data."""
    curves = km.read_curves()
    config = dict(
        model="pann",
        width_sizes=[8],
        invariants="polyconvex",
        input_scale=list(km.invariant_scales(curves, TRAIN, "polyconvex")),
    )
    best, _ = km.calibrate_seeds(
        config,
        curves,
        train_cases=TRAIN,
        seeds=1,
        base_seed=0,
        steps=400,
        learning_rate=2e-2,
        batch_size=64,
        verbose=0,
        max_restarts=0,
        report=lambda message: None,
    )
    W = klax.finalize(best.model)
    # A fit, not a random network: the FE comparison below is not trivial.
    assert min(best.train_r2.values()) > 0.8
    return W


def potentials():
    keys = iter(jr.split(jr.key(7), 8))
    G = km.structural_tensor(jnp.asarray(FIBRE))

    def user_potential(F):  # a plain function of F: compressible Mooney-type
        J = jnp.linalg.det(F)
        C = F.T @ F
        return (
            0.3 * (jnp.trace(C) - 3.0 - 2.0 * jnp.log(J))
            + 0.1
            * (0.5 * (jnp.trace(C) ** 2 - jnp.trace(C @ C)) - 3.0 - 4.0 * jnp.log(J))
            + 2.0 * (J - 1.0) ** 2
        )

    return {
        "IncompressiblePANN": klax.finalize(
            km.IncompressiblePANN([8], input_scale=(55.0, 7660.0), key=next(keys))
        ),
        "CompressiblePANN": klax.finalize(km.CompressiblePANN([8], key=next(keys))),
        "TransverselyIsotropicPANN": klax.finalize(
            km.TransverselyIsotropicPANN(G, [8], key=next(keys))
        ),
        "NeoHooke": km.NeoHooke(0.4),
        "MooneyRivlin": km.MooneyRivlin(0.2, 0.05),
        "Ogden": km.Ogden([0.63, 0.0012, -0.01], [1.3, 5.0, -2.0]),
        "VolumetricPenalty": km.VolumetricPenalty(km.NeoHooke(0.4), 50.0),
        "user function": user_potential,
    }


# ---------------------------------------------------------------------------
# The material protocol

CLOSED_FORM = {
    "IncompressiblePANN",
    "CompressiblePANN",
    "NeoHooke",
    "MooneyRivlin",
    "VolumetricPenalty",
}


@pytest.mark.parametrize("name", list(potentials()))
def test_stress_and_tangent_equal_klax_ad(name):
    W = potentials()[name]
    umat = km.FElupeMaterial(W)
    rng = np.random.default_rng(0)
    Fs = random_F(rng, 6)  # points: (q, c) = (2, 3)
    F = np.moveaxis(Fs.reshape(2, 3, 3, 3), (2, 3), (0, 1))
    P, statevars = umat.gradient([F, np.zeros((0, 2, 3))])
    (A,) = umat.hessian([F, np.zeros((0, 2, 3))])
    assert P.shape == (3, 3, 2, 3) and A.shape == (3, 3, 3, 3, 2, 3)
    assert P.dtype == A.dtype == np.float64
    assert P.flags.writeable and A.flags.writeable
    assert statevars.shape == (0, 2, 3)
    P_ref = np.asarray(jax.jit(jax.vmap(lambda F: km.first_piola(W, F)))(Fs))
    P_fe = np.moveaxis(P, (2, 3), (0, 1)).reshape(6, 3, 3)
    np.testing.assert_allclose(P_fe, P_ref, rtol=0, atol=1e-12 * np.max(np.abs(P_ref)))
    # Isotropic klax potentials use the closed-form invariant derivatives
    # (compared with AD's second derivative in the next test).
    assert umat.closed_form == (name in CLOSED_FORM)
    # The tangent against central differences of the stress, in random directions.
    dF = rng.normal(size=F.shape)
    h = 1e-6
    (P_plus, _), (P_minus, _) = (umat.gradient([F + s * h * dF, None]) for s in (1, -1))
    A_dF = np.einsum("iJkL...,kL...->iJ...", A, dF)
    scale = np.max(np.abs(A_dF))
    np.testing.assert_allclose(A_dF, (P_plus - P_minus) / (2 * h), atol=1e-7 * scale)
    # Major symmetry A[i, J, k, L] = A[k, L, i, J] (hyperelastic).
    np.testing.assert_allclose(
        A, np.transpose(A, (2, 3, 0, 1, 4, 5)), atol=1e-10 * scale
    )


def test_closed_form_equals_ad_second_derivative():
    # One potential per route of the closed form: an isochoric potential's
    # `isotropic_energy` (the klax-calibrate inputs, with a neo-Hookean floor)
    # under a penalty, a CompressiblePANN's lifted energy, a CANN on the
    # polyconvex input set.
    keys = iter(jr.split(jr.key(3), 3))
    pann = km.IncompressiblePANN(
        [4], "power-sums", input_scale=2.0, floor=0.05, key=next(keys)
    )
    cases = [
        km.VolumetricPenalty(klax.finalize(pann), 30.0),
        klax.finalize(km.CompressiblePANN([4], key=next(keys))),
        km.VolumetricPenalty(
            klax.finalize(km.CANN(invariants="polyconvex", key=next(keys))), 30.0
        ),
    ]
    # Stretches in the domain of the CANN's log and exp terms.
    Fs = random_F(np.random.default_rng(4), 8, low=0.8, high=1.25)
    F = np.moveaxis(Fs, 0, -1)[..., None]
    for W in cases:
        umat = km.FElupeMaterial(W)
        assert umat.closed_form
        P, _ = umat.gradient([F, None])
        (A,) = umat.hessian([F, None])
        P_ref = np.asarray(jax.jit(jax.vmap(jax.grad(W)))(jnp.asarray(Fs)))
        A_ref = np.asarray(jax.jit(jax.vmap(jax.hessian(W)))(jnp.asarray(Fs)))
        np.testing.assert_allclose(
            np.moveaxis(P[..., 0], -1, 0), P_ref, atol=1e-12 * np.max(np.abs(P_ref))
        )
        np.testing.assert_allclose(
            np.moveaxis(A[..., 0], -1, 0), A_ref, atol=1e-12 * np.max(np.abs(A_ref))
        )


class _NotIsochoric(km.NeoHooke):
    """An isotropic subclass whose energy is not its invariant form off J = 1."""

    def __call__(self, F):
        return super().__call__(F) + 3.0 * (jnp.linalg.det(F) - 1.0) ** 2


def test_closed_form_is_checked_and_falls_back_to_ad():
    W = _NotIsochoric(0.4)
    umat = km.FElupeMaterial(W)
    assert not umat.closed_form  # the check at J != 1 caught it
    Fs = random_F(np.random.default_rng(5), 4)
    P, _ = umat.gradient([np.moveaxis(Fs, 0, -1)[..., None], None])
    P_ref = np.asarray(jax.vmap(jax.grad(W))(jnp.asarray(Fs)))
    np.testing.assert_allclose(np.moveaxis(P[..., 0], -1, 0), P_ref, atol=1e-12)
    assert km.FElupeMaterial(km.NeoHooke(0.4)).closed_form


def test_closed_form_rejects_an_inverted_element():
    umat = km.FElupeMaterial(km.VolumetricPenalty(km.NeoHooke(0.4), 50.0))
    F = np.eye(3)[..., None, None] * np.array([1.0, -1.0])[None, None, :, None]
    with pytest.raises(Exception, match="J = det F > 0"):
        umat.hessian([F, None])


def test_padded_sizes_are_few_and_whole_chunks():
    from klax.mechanics._felupe import CHUNK, padded_size

    sizes = set()
    for n in [*range(1, 5000, 7), 16383, 16385, 110592, 10**6 + 1]:
        size = padded_size(n)
        assert size >= n and size - n <= max(CHUNK - 1, n // 8)
        assert size <= CHUNK or size % CHUNK == 0  # no remainder chunk to compile
        sizes.add(size)
    assert padded_size(6) == 1024 and padded_size(1025) == padded_size(2048) == CHUNK
    assert len(sizes) <= 12


def test_float64_with_x64_off():
    with jax.enable_x64(False):
        W = km.NeoHooke(0.4)  # a float32 parameter
        assert W.mu.dtype == jnp.float32
        umat = km.FElupeMaterial(W)
        F = np.diag([1.0 + 1e-9, 1.0, 1.0])[:, :, None, None]
        P, _ = umat.gradient([F, None])
        (A,) = umat.hessian([F, None])
    assert P.dtype == A.dtype == np.float64
    # A strain of 1e-9 is lost in float32; in float64, P11 = mu * 4/3 * 1e-9.
    mu = float(np.float32(0.4))
    np.testing.assert_allclose(P[0, 0, 0, 0], mu * 4.0 / 3.0 * 1e-9, rtol=1e-6)
    np.testing.assert_allclose(A[0, 0, 0, 0, 0, 0], mu * 4.0 / 3.0, rtol=1e-8)


def test_energy():
    W = km.VolumetricPenalty(km.NeoHooke(0.4), 50.0)
    Fs = random_F(np.random.default_rng(1), 4)
    (energy,) = km.FElupeMaterial(W).function([np.moveaxis(Fs, 0, -1)[..., None], None])
    assert energy.shape == (4, 1) and energy.dtype == np.float64
    np.testing.assert_allclose(energy[:, 0], [float(W(F)) for F in Fs], rtol=1e-12)


def test_zero_stress_in_the_reference_state():
    for name in ("CompressiblePANN", "TransverselyIsotropicPANN", "user function"):
        P, _ = km.FElupeMaterial(potentials()[name]).gradient(
            [np.broadcast_to(np.eye(3)[..., None, None], (3, 3, 4, 5)), None]
        )
        np.testing.assert_allclose(P, 0.0, atol=1e-12)


def test_nearly_incompressible_formulation_and_errors():
    umat = km.felupe_material(km.NeoHooke(0.4), bulk_modulus=2000.0)
    assert isinstance(umat, fem.NearlyIncompressible)
    assert umat.bulk == 2000.0 and isinstance(umat.material, km.FElupeMaterial)
    with pytest.raises(ValueError, match="bulk_modulus"):
        km.felupe_material(km.NeoHooke(0.4))
    with pytest.raises(ValueError, match="bulk_modulus"):
        km.felupe_material(km.Ogden([0.5], [2.0]))
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="positive"):
            km.felupe_material(km.NeoHooke(0.4), bulk_modulus=bad)
    with pytest.raises(TypeError, match="bulk_modulus"):
        km.felupe_material(km.NeoHooke(0.4), bulk_modulus="big")  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="callable"):
        km.felupe_material(3.0)  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="scalar"):
        km.felupe_material(lambda F: F)
    with pytest.raises(TypeError, match="float32"):
        km.felupe_material(lambda F: jnp.sum(F * F).astype(jnp.float32))
    with pytest.raises(ValueError, match="shape"):
        km.FElupeMaterial(km.NeoHooke(0.4)).gradient([np.ones((2, 2, 1, 1)), None])


def test_missing_felupe_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "felupe", None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "klax\[fe\]"'):
        km.felupe_material(km.VolumetricPenalty(km.NeoHooke(0.4), 50.0))
    with pytest.raises(ModuleNotFoundError, match=r"klax\[fe\]"):
        km.fe_uniaxial_check(km.NeoHooke(0.4), [1.5], bulk_modulus=100.0)


def test_felupe_is_imported_only_when_used():
    code = (
        "import sys\n"
        "import klax.mechanics as km\n"
        "assert 'felupe' not in sys.modules\n"
        "km.felupe_material(km.VolumetricPenalty(km.NeoHooke(0.4), 50.0))\n"
        "assert 'felupe' in sys.modules\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------------------
# FE cube in uniaxial tension (homogeneous)


def cube_forces(umat, stretch, mixed):
    """Reaction force per undeformed area on the loaded face of a 2×2×2 unit cube."""
    region = fem.RegionHexahedron(fem.Cube(n=3))
    if mixed:
        field = fem.FieldsMixed(region, n=3)
    else:
        field = fem.FieldContainer([fem.Field(region, dim=3)])
    solid = fem.SolidBody(umat, field)
    bounds = fem.dof.uniaxial(field, clamped=False, move=0.0, return_loadcase=False)
    forces = []
    for lam in stretch:
        bounds["move"].update(lam - 1.0)
        dof0, dof1 = fem.dof.partition(field, bounds)
        ext0 = fem.dof.apply(field, bounds, dof0)
        res = fem.newtonraphson(
            items=[solid], dof0=dof0, dof1=dof1, ext0=ext0, tol=1e-10, verbose=0
        )
        field.link(res.x)
        forces.append(fem.tools.force(field, res.fun, bounds["move"])[0])
    return np.array(forces)


STRETCH = np.linspace(1.25, 3.0, 8)


def test_neo_hooke_equals_felupe_builtin():
    mu, bulk = 0.4, 2000.0
    ours = cube_forces(
        km.felupe_material(km.NeoHooke(mu), bulk_modulus=bulk), STRETCH, True
    )
    theirs = cube_forces(
        fem.NearlyIncompressible(fem.NeoHooke(mu=mu), bulk=bulk), STRETCH, True
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)
    assert np.all(np.diff(ours) > 0) and ours[0] > 0.1
    # Compressible: NeoHooke + K/2 (J - 1)^2 in the displacement formulation.
    bulk = 20.0
    ours = cube_forces(
        km.felupe_material(km.VolumetricPenalty(km.NeoHooke(mu), bulk)), STRETCH, False
    )
    theirs = cube_forces(fem.NeoHooke(mu=mu, bulk=bulk), STRETCH, False)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)


def test_calibrated_pann_cube_equals_homogeneous(calibrated_pann):
    W = calibrated_pann
    mu = float(W.initial_shear_modulus())
    bulk = 5000.0 * mu
    result = km.fe_uniaxial_check(W, STRETCH, bulk_modulus=bulk)
    assert result.fe_stress.dtype == np.float64 and result.fe_stress.shape == (8,)
    reference = np.asarray(km.nominal_stress_11(W, "uniaxial", STRETCH))
    np.testing.assert_allclose(result.homogeneous_stress, reference, rtol=1e-12)
    relative = np.abs(result.fe_stress - reference) / np.abs(reference)
    assert np.max(relative) <= 1e-3
    assert result.relative_deviation <= 1e-3
    # The difference is the penalty alone: the same penalty solved homogeneously.
    penalty = km.compressible_load_case(
        km.VolumetricPenalty(W, bulk), "uniaxial", STRETCH
    )
    assert bool(np.all(penalty.converged))
    np.testing.assert_allclose(result.fe_stress, penalty.P11, rtol=1e-8)
    # ... and it shrinks like 1/K (at the largest stretch; half the load steps).
    stiffer = km.fe_uniaxial_check(W, STRETCH[1::2], bulk_modulus=10 * bulk)
    error = abs(stiffer.fe_stress[-1] - reference[-1]) / abs(reference[-1])
    assert error < 0.2 * relative[-1]


def test_compressible_pann_cube_equals_compressible_load_case():
    W = potentials()["CompressiblePANN"]
    result = km.fe_uniaxial_check(W, STRETCH)
    reference = km.compressible_load_case(W, "uniaxial", STRETCH)
    assert bool(np.all(reference.converged))
    np.testing.assert_allclose(result.homogeneous_stress, reference.P11, rtol=1e-12)
    np.testing.assert_allclose(result.fe_stress, reference.P11, rtol=1e-8)
    assert result.relative_deviation <= 1e-8
    assert np.all(np.abs(reference.P11) > 1e-3)


# ---------------------------------------------------------------------------
# Objectivity through the FE code: rotate the mesh together with the fibre


def fixed_faces_force(W, R, displacement):
    mesh = fem.Cube(n=3)
    X = mesh.points.copy()
    mesh = fem.Mesh(X @ R.T, mesh.cells, mesh.cell_type)
    region = fem.RegionHexahedron(mesh)
    field = fem.FieldContainer([fem.Field(region, dim=3)])
    solid = fem.SolidBody(km.felupe_material(W), field)
    bounds = {
        "fixed": fem.Boundary(field[0], mask=np.isclose(X[:, 0], 0.0)),
        "move": fem.Boundary(field[0], mask=np.isclose(X[:, 0], 1.0)),
    }
    for t in (0.25, 0.5, 0.75, 1.0):
        bounds["move"].update(R @ (t * displacement))
        dof0, dof1 = fem.dof.partition(field, bounds)
        ext0 = fem.dof.apply(field, bounds, dof0)
        res = fem.newtonraphson(
            items=[solid], dof0=dof0, dof1=dof1, ext0=ext0, tol=1e-11, verbose=0
        )
        field.link(res.x)
    return fem.tools.force(field, res.fun, bounds["move"]), field[0].values


def test_transversely_isotropic_pann_is_objective_in_fe():
    key = jr.key(11)
    make = lambda a: klax.finalize(  # noqa: E731
        km.TransverselyIsotropicPANN(km.structural_tensor(jnp.asarray(a)), [8], key=key)
    )
    displacement = np.array([0.6, 0.15, -0.1])
    R = rotation([0.4, -0.9, 0.7])
    force, u = fixed_faces_force(make(FIBRE), np.eye(3), displacement)
    force_rot, u_rot = fixed_faces_force(make(R @ FIBRE), R, displacement)
    assert np.linalg.norm(force) > 0.1
    np.testing.assert_allclose(force_rot, R @ force, atol=1e-8 * np.linalg.norm(force))
    np.testing.assert_allclose(u_rot, u @ R.T, atol=1e-8)
    # Control: rotating the mesh but not the fibre changes the response.
    force_wrong, _ = fixed_faces_force(make(FIBRE), R, displacement)
    assert np.linalg.norm(force_wrong - R @ force) > 1e-3 * np.linalg.norm(force)


# ---------------------------------------------------------------------------
# An inhomogeneous problem: plate with a hole stretched to 100 %


def assert_quadratic(residual_norms):
    """Every step converged; asymptotically the norm drops like r -> r^p, p >= 1.7."""
    checked = 0
    for norms in residual_norms:
        assert norms[-1] < 1e-10 and len(norms) <= 8
        for a, b in zip(norms, norms[1:], strict=False):
            if a < 1e-2 and b > 1e-12:  # asymptotic range, above round-off
                assert np.log(b) <= 1.7 * np.log(a), norms
                checked += 1
    assert checked >= len(residual_norms)


def test_plate_with_hole_newton_quadratic_and_mesh_convergence(calibrated_pann):
    W = calibrated_pann
    bulk = 5000.0 * float(W.initial_shear_modulus())
    stretch = np.linspace(1.1, 2.0, 10)
    results = [
        km.fe_plate_with_hole(W, stretch, bulk_modulus=bulk, cells=c) for c in (2, 4, 8)
    ]
    for r in results:
        assert_quadratic(r.residual_norms)
        assert np.all(np.diff(r.force) > 0)
        # Inhomogeneous: the stress concentrates at the hole.
        sigma_yy = r.cauchy[:, 1, 1]
        assert sigma_yy.max() > 1.5 * np.median(sigma_yy)
        assert r.points.shape[1] == 2 and r.cells.shape[1] == 4
    coarse, medium, fine = (r.force[-1] for r in results)
    assert abs(medium - fine) < 0.5 * abs(coarse - medium)
    assert abs(medium - fine) < 1e-2 * abs(fine)


# ---------------------------------------------------------------------------
# klax-calibrate --fe-check


def test_calibrate_fe_check(tmp_path, capsys):
    import json

    from klax.mechanics.calibrate import main

    out = tmp_path / "fit"
    args = ["--model", "neo-hooke", "--steps", "200", "--lr", "0.05", "--seeds", "1"]
    args += ["--no-plot", "--quiet", "--fe-check", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "FE check (FElupe cube in uniaxial tension, nearly incompressible" in printed
    report = json.loads((out / "model.json").read_text())["fe_check"]
    mu0 = json.loads((out / "model.json").read_text())["initial_shear_modulus_MPa"]
    assert report["bulk_modulus_MPa"] == pytest.approx(5000 * mu0, rel=1e-12)
    assert report["max_stretch"] == pytest.approx(7.61)
    # The penalty error at Treloar's largest stretch, and no FE error beyond it.
    assert 1e-4 < report["relative_deviation"] < 3e-2
    assert report["penalty_deviation"] < 1e-8


def test_calibrate_fe_check_without_felupe_exits_2(tmp_path, capsys, monkeypatch):
    from klax.mechanics.calibrate import main

    monkeypatch.setitem(sys.modules, "felupe", None)
    out = tmp_path / "fit"
    assert main(["--fe-check", "--out", str(out)]) == 2
    assert 'pip install "klax[fe]"' in capsys.readouterr().err
    assert not out.exists()


def test_fe_check_of_a_compressible_potential():
    W = km.VolumetricPenalty(km.NeoHooke(0.4), 20.0)
    check = km.fe_check(W, 2.0)
    assert check.bulk_modulus is None
    assert check.relative_deviation < 1e-8 and check.penalty_deviation < 1e-8
    assert check.uniaxial.stretch[-1] == 2.0 and "compressible" in str(check)
    with pytest.raises(ValueError, match="max_stretch"):
        km.fe_check(W, 1.0)
