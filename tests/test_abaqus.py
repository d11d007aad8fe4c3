"""Abaqus export: generated UHYPER/UMAT Fortran against JAX in float64.

gfortran compiles each generated routine together with a small driver
(`tests/fortran/`); the driver evaluates it at 1,000 random states and along
a uniaxial and a simple-shear path, and the results are compared with klax
evaluated by JAX in x64. Without gfortran these tests skip with the reason;
with `CI=true` a missing gfortran is an error (`scripts/test.sh` installs it
where it can).

Errors are normwise per state: for each state, max |Fortran - JAX| over the
entries of an array divided by max |JAX| over the same entries.
"""

import os
import pathlib
import shutil
import subprocess

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import klax
from klax.mechanics import (
    CANN,
    CompressibleCANN,
    CompressiblePANN,
    IncompressiblePANN,
    MooneyRivlin,
    NeoHooke,
    Ogden,
    TransverselyIsotropicPANN,
    VolumetricPenalty,
    cauchy,
    compressible_load_case,
    export_abaqus,
    export_uhyper,
    export_umat,
    isochoric_invariants,
    kirchhoff,
    structural_tensor,
)

FORTRAN = pathlib.Path(__file__).parent / "fortran"
GFORTRAN = shutil.which("gfortran")
NUM_STATES = 1000
VOIGT = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def _require_gfortran():
    if GFORTRAN is not None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(
            "gfortran is not installed, but CI=true: the Abaqus export checks must "
            "run in CI (scripts/test.sh installs gfortran with apt-get when it can)."
        )
    pytest.skip(
        "gfortran not found: install it (e.g. `apt-get install gfortran`) to run "
        "the compiled Abaqus export checks"
    )


# ---------------------------------------------------------------------------
# Models (float64, parameters perturbed away from the initialisation)


def _build(make, seed, x64=True):
    """A float64 model with random parameters, built without compiling anything.

    The skeleton comes from `eqx.filter_eval_shape`; every array is then drawn
    from NumPy (non-negative where the model wraps it in `klax.NonNegative`),
    so the networks are far from their initialisation.
    """
    rng = np.random.default_rng(seed)
    with jax.enable_x64(x64):
        skeleton = eqx.filter_eval_shape(make, jr.key(0))

    def draw(node):
        if isinstance(node, klax.NonNegative):
            shape = node.parameter.shape
            return klax.NonNegative(jnp.asarray(rng.uniform(0.05, 1.0, shape)))
        if isinstance(node, jax.ShapeDtypeStruct):
            return jnp.asarray(rng.normal(0.0, 0.7, node.shape))
        return node

    is_leaf = lambda x: isinstance(x, (klax.NonNegative, jax.ShapeDtypeStruct))  # noqa: E731
    with jax.enable_x64(x64):
        model = jax.tree.map(draw, skeleton, is_leaf=is_leaf)
        return klax.unwrap(model)  # values are already non-negative: no projection


def _cann(make, seed):
    """A float64 CANN with random weights: every 4th term off (as after sparse
    training), exp inner weights in [0.1, 1], log ones inside their domain."""
    model = _build(make, seed)
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.05, 1.0, len(model.terms))
    a[::4] = 0.0
    w = [
        0.0
        if t.activation == "identity"
        else rng.uniform(0.1, 1.0)
        / (model.log_limit**t.power if t.activation == "log" else 1.0)
        for t in model.terms
    ]
    with jax.enable_x64(True):
        pair = (jnp.asarray(a), jnp.asarray(w, dtype=jnp.float64))
        return eqx.tree_at(lambda m: (m.weights, m.inner), model, pair)


def _models():
    G = np.asarray(structural_tensor(np.array([1.0, 2.0, 0.5])), dtype=np.float64)
    e3 = np.diag([0.0, 0.0, 1.0])

    def with_G(model, G):
        return eqx.tree_at(lambda m: m.structural_tensor, model, jnp.asarray(G))

    ipann = _build(
        lambda k: IncompressiblePANN(
            [4, 3], input_scale=(2.0, 30.0), floor=0.01, key=k
        ),
        1,
    )
    ipann_iso = _build(
        lambda k: IncompressiblePANN([3], "isochoric", input_scale=(1.5, 2.5), key=k), 2
    )
    # The former klax-calibrate default: (√Ĩ1, Ĩ1, √Ī2, Ī2), with an energy scale.
    ipann_inc = _build(
        lambda k: IncompressiblePANN(
            [4, 3],
            "incompressible",
            input_scale=(0.4, 2.0, 0.5, 3.0),
            floor=0.01,
            energy_scale=2.5,
            key=k,
        ),
        6,
    )
    # The klax-calibrate default: power sums of the isochoric stretches.
    ipann_ps = _build(
        lambda k: IncompressiblePANN(
            [4, 3],
            "power-sums",
            input_scale=(0.4, 0.5, 2.0, 3.0, 8.0, 9.0, 30.0, 40.0),
            floor=0.01,
            energy_scale=2.5,
            key=k,
        ),
        9,
    )
    # Scales keep the scaled inputs of the random states below log_limit.
    cann = _cann(lambda k: CANN(input_scale=(9.0, 20.0), energy_scale=1.7, key=k), 7)
    ccann = _cann(
        lambda k: CompressibleCANN(
            bulk_modulus=8.0, input_scale=(9.0, 90.0), energy_scale=0.6, key=k
        ),
        8,
    )
    cpann = _build(
        lambda k: CompressiblePANN(
            [4, 3], input_scale=(2.0, 3.0, 0.5), growth=0.3, key=k
        ),
        3,
    )
    ti = _build(
        lambda k: TransverselyIsotropicPANN(
            jnp.eye(3) / 3,
            [4],
            input_scale=(2.0, 3.0, 0.5, 1.5, 2.5),
            growth=0.5,
            key=k,
        ),
        4,
    )
    ti_reduced = _build(
        lambda k: TransverselyIsotropicPANN(
            jnp.eye(3) / 3, [3], reduced=True, polyconvex_i5=False, key=k
        ),
        5,
    )
    with jax.enable_x64(True):
        uhyper = {
            "ipann": ipann,
            "ipann_iso": ipann_iso,
            "ipann_inc": ipann_inc,
            "ipann_ps": ipann_ps,
            "cann": cann,
            "ccann": ccann,
            "cpann": cpann,
            "neo": NeoHooke(0.4),
            "mr": MooneyRivlin(0.2, 0.05),
            "mr_vol": VolumetricPenalty(MooneyRivlin(0.2, 0.05), 50.0),
        }
        umat = {
            "cpann": cpann,
            "ti": with_G(ti, G),
            "ti_reduced": with_G(ti_reduced, e3),
            "ipann_vol": VolumetricPenalty(ipann, 20.0),
            "ipann_inc_vol": VolumetricPenalty(ipann_inc, 20.0),
            "ipann_ps_vol": VolumetricPenalty(ipann_ps, 20.0),
            "ccann": ccann,
        }
    return uhyper, umat


def _random_F(key, n):
    F = jnp.eye(3)[None] + 0.3 * jr.normal(key, (4 * n, 3, 3), jnp.float64)
    F = F[jnp.linalg.det(F) > 0.3][:n]
    assert F.shape == (n, 3, 3)
    return np.array(F)


# ---------------------------------------------------------------------------
# Compilation (once per module) and the drivers


def _compile(folder: pathlib.Path, name: str, source: pathlib.Path, driver: str):
    assert GFORTRAN is not None
    obj = folder / f"{name}.o"
    flags = ["-O1", "-fimplicit-none", "-Werror=line-truncation"]
    # The generated file alone: fixed form, standard Fortran 2008, no warnings.
    result = subprocess.run(
        [GFORTRAN, "-c", "-ffixed-form", "-std=f2008", "-Wall", *flags]
        + ["-Wno-unused-dummy-argument"]
        + [str(source), "-o", str(obj)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    exe = folder / name
    result = subprocess.run(
        [GFORTRAN, *flags, str(FORTRAN / driver), str(obj), "-o", str(exe)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return exe


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    _require_gfortran()
    folder = tmp_path_factory.mktemp("abaqus")
    with jax.enable_x64(True):
        uhyper, umat = _models()
        programs = {}
        for name, model in uhyper.items():
            source = export_uhyper(model, folder / f"uhyper_{name}.f")
            programs["uhyper", name] = (
                model,
                _compile(folder, f"uhyper_{name}", source, "uhyper_driver.f90"),
            )
        for name, model in umat.items():
            source = export_umat(model, folder / f"umat_{name}.f")
            programs["umat", name] = (
                model,
                _compile(folder, f"umat_{name}", source, "umat_driver.f90"),
            )
    return folder, programs


def _run(exe, rows, *mode):
    folder = exe.parent
    inp, out = folder / "in.txt", folder / "out.txt"
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    with inp.open("w") as f:
        f.write(f"{rows.shape[0]}\n")
        for row in rows:
            f.write(" ".join(repr(float(v)) for v in row) + "\n")
    result = subprocess.run(
        [str(exe), *mode, str(inp), str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return np.loadtxt(out, ndmin=2)


def _normwise(a, b):
    """Per-state normwise relative error of arrays of shape (states, ...)."""
    a = np.asarray(a).reshape(len(a), -1)
    b = np.asarray(b).reshape(len(b), -1)
    scale = np.max(np.abs(b), axis=1)
    diff = np.max(np.abs(a - b), axis=1)
    return np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), diff)


# ---------------------------------------------------------------------------
# UHYPER


def _invariant_energy(model):
    """JAX reference U(Ī1, Ī2, J), built from the model's own code."""
    if isinstance(model, VolumetricPenalty):
        inner = _invariant_energy(model.potential)
        return lambda b1, b2, j: (
            inner(b1, b2, j) + 0.5 * model.bulk_modulus * (j - 1.0) ** 2
        )
    if isinstance(model, (NeoHooke, MooneyRivlin, IncompressiblePANN, CANN)):
        # Isochoric: the energy at J = 1 in the principal invariants is U(Ī1, Ī2).
        return lambda b1, b2, j: model.isotropic_energy(b1, b2)

    # lifted_energy sees F, cof F only through their norms: stand-ins with the
    # right norms give the energy as a function of (Ī1, Ī2, J).
    def energy(b1, b2, j):
        eye = jnp.eye(3, dtype=b1.dtype)
        F = jnp.sqrt(b1 * j ** (2.0 / 3.0) / 3.0) * eye
        cof = jnp.sqrt(b2 * j ** (4.0 / 3.0) / 3.0) * eye
        return model.lifted_energy(F, cof, j)

    return energy


@jax.jit
def _invariant_states(F):
    b1, b2 = jax.vmap(isochoric_invariants)(F)
    return jnp.stack([b1, b2, jnp.linalg.det(F)], axis=1)


@eqx.filter_jit
def _energies(model, F):
    return jax.vmap(model)(F)


def _uhyper_reference(model, states):
    U = _invariant_energy(model)

    def point(s):
        x = s  # (Ī1, Ī2, J)

        def f(v):
            return U(v[0], v[1], v[2])

        g = jax.grad(f)(x)
        H = jax.hessian(f)(x)
        T = jax.jacfwd(jax.hessian(f))(x)
        ui2 = jnp.stack([H[0, 0], H[1, 1], H[2, 2], H[0, 1], H[0, 2], H[1, 2]])
        ui3 = jnp.stack(
            [T[0, 0, 2], T[1, 1, 2], T[0, 1, 2], T[0, 2, 2], T[1, 2, 2], T[2, 2, 2]]
        )
        return f(x), g, ui2, ui3

    return [np.asarray(a) for a in jax.jit(jax.vmap(point))(jnp.asarray(states))]


UHYPER_NAMES = [
    "ipann",
    "ipann_iso",
    "ipann_inc",
    "ipann_ps",
    "cann",
    "ccann",
    "cpann",
    "neo",
    "mr",
    "mr_vol",
]


@pytest.mark.parametrize("name", UHYPER_NAMES)
def test_uhyper_matches_jax(built, name):
    _, programs = built
    model, exe = programs["uhyper", name]
    with jax.enable_x64(True):
        F = _random_F(jr.key(1), NUM_STATES)
        states = _invariant_states(F)
        out = _run(exe, states)
        energy = _energies(model, F)
        U, ui1, ui2, ui3 = _uhyper_reference(model, states)
    assert out.shape == (NUM_STATES, 17)
    assert np.all(np.isfinite(out)) and np.all(np.abs(out) < 1e300)
    # The energy against the model called on F itself, and against the
    # reference in the invariants.
    assert np.max(_normwise(out[:, 0], energy)) < 1e-12
    assert np.max(_normwise(out[:, 0], U)) < 1e-12
    assert np.max(_normwise(out[:, 2:5], ui1)) < 1e-12
    assert np.max(_normwise(out[:, 5:11], ui2)) < 1e-10
    if name == "ccann":
        # Isochoric terms + kappa/2 (J - 1)^2: UI3 is exactly zero (JAX's
        # reference, through the J-powers of the stand-ins, is rounding noise).
        assert np.all(out[:, 11:17] == 0.0)
        assert np.max(np.abs(ui3)) < 1e-10 * np.max(np.abs(ui2))
    else:
        assert np.max(_normwise(out[:, 11:17], ui3)) < 1e-10
    compressible = name in ("cpann", "mr_vol", "ccann")
    if compressible:
        assert np.min(np.abs(out[:, 7])) > 0  # d2U/dJ2 is not trivially zero
        if name == "cpann":
            assert np.min(np.abs(out[:, 11:17])) > 0
        if name == "ccann":  # U(2): the isochoric terms, without kappa/2 (J-1)^2
            with jax.enable_x64(True):
                zero = jnp.zeros((), jnp.float64)
                iso = eqx.tree_at(lambda m: m.bulk_modulus, model, zero)
                inner = _energies(iso, jnp.asarray(F))
            assert np.max(_normwise(out[:, 1], inner)) < 1e-12
        if name == "mr_vol":  # the deviatoric part is the Mooney-Rivlin energy
            with jax.enable_x64(True):
                inner = _energies(model.potential, jnp.asarray(F))
            assert np.max(_normwise(out[:, 1], inner)) < 1e-12
    else:
        # No J-dependence: the J-derivatives are exactly zero, U(2) = U(1).
        assert np.all(out[:, [4, 7, 9, 10, 11, 12, 13, 14, 15, 16]] == 0.0)
        assert np.array_equal(out[:, 0], out[:, 1])


def test_uhyper_header_and_type(built):
    folder, _ = built
    text = (folder / "uhyper_ipann.f").read_text()
    assert "*HYPERELASTIC, USER, TYPE=INCOMPRESSIBLE" in text
    assert f"klax {klax.__version__}" in text
    assert "UHYPER: User subroutine to define a hyperelastic material" in text
    text = (folder / "uhyper_ipann_inc.f").read_text()
    assert "invariants = 'incompressible'" in text
    assert "energy_scale = 2.5" in text
    notes = ["v1 = I1bar**0.5", "v2 = I1bar", "v3 = I2bar**0.5", "v4 = I2bar"]
    assert all(note in text for note in notes)
    text = (folder / "uhyper_ipann_ps.f").read_text()
    assert "invariants = 'power-sums'" in text
    assert "v1 = s(I1bar, I2bar)" in text
    assert "v8 = I2bar**3 - 3 I1bar I2bar + 3" in text
    text = (folder / "uhyper_cpann.f").read_text()
    assert "TYPE=COMPRESSIBLE" in text


# ---------------------------------------------------------------------------
# UMAT


def _ddsdde_reference(W, F):
    """Abaqus's tangent from its definition, by forward-mode AD in JAX.

    For a rate of deformation D without spin, the Jaumann rate of the
    Kirchhoff stress is the derivative of tau((I + e D) F) at e = 0. With D
    the sum of e_b D_b over the engineering-strain unit vectors D_b,
    DDSDDE[a, b] is the derivative of tau_a with respect to e_b, divided by J.
    """
    basis = np.zeros((6, 3, 3))
    for b, (i, j) in enumerate(VOIGT):
        basis[b, i, j] = basis[b, j, i] = 1.0 if i == j else 0.5
    basis = jnp.asarray(basis, F.dtype)

    def tau(e):
        D = jnp.tensordot(e, basis, axes=1)
        t = kirchhoff(W, (jnp.eye(3, dtype=F.dtype) + D) @ F)
        return jnp.stack([t[i, j] for i, j in VOIGT])

    return jax.jacfwd(tau)(jnp.zeros(6, F.dtype)) / jnp.linalg.det(F)


@eqx.filter_jit
def _umat_reference(model, F):
    def point(F):
        sigma = cauchy(model, F)
        stress = jnp.stack([sigma[i, j] for i, j in VOIGT])
        return stress, _ddsdde_reference(model, F), model(F)

    return jax.vmap(point)(F)


UMAT_NAMES = [
    "cpann",
    "ti",
    "ti_reduced",
    "ipann_vol",
    "ipann_inc_vol",
    "ipann_ps_vol",
    "ccann",
]


@pytest.mark.parametrize("name", UMAT_NAMES)
def test_umat_matches_jax(built, name):
    _, programs = built
    model, exe = programs["umat", name]
    with jax.enable_x64(True):
        F = _random_F(jr.key(2), NUM_STATES)
        out = _run(exe, F.reshape(NUM_STATES, 9), "eval")
        stress, ddsdde, energy = _umat_reference(model, F)
    assert out.shape == (NUM_STATES, 44)
    fortran_stress = out[:, :6]
    fortran_ddsdde = out[:, 6:42].reshape(NUM_STATES, 6, 6)
    assert np.max(_normwise(fortran_stress, stress)) < 1e-12
    assert np.max(_normwise(out[:, 42], energy)) < 1e-12
    assert np.max(_normwise(fortran_ddsdde, ddsdde)) < 1e-10
    # A hyperelastic material has a symmetric Jaumann tangent.
    sym = np.max(np.abs(fortran_ddsdde - np.swapaxes(fortran_ddsdde, 1, 2)))
    assert sym <= 1e-12 * np.max(np.abs(fortran_ddsdde))
    assert np.all(out[:, 43] == 1.0)  # PNEWDT untouched


def test_umat_plane_strain_and_inverted_element(built):
    _, programs = built
    model, exe = programs["umat", "ti"]
    with jax.enable_x64(True):
        F = _random_F(jr.key(3), 20)
        F[:, 2, :2] = 0.0
        F[:, :2, 2] = 0.0
        full = _run(exe, F.reshape(20, 9), "eval")
        plane = _run(exe, F.reshape(20, 9), "plane")
    ddsdde_full = full[:, 6:42].reshape(20, 6, 6)[:, :4, :4]
    np.testing.assert_array_equal(plane[:, :4], full[:, :4])
    np.testing.assert_array_equal(plane[:, 4:20].reshape(20, 4, 4), ddsdde_full)
    inverted = np.diag([1.0, 1.0, -1.0]).reshape(1, 9)
    out = _run(exe, inverted, "eval")
    assert out[0, 43] == 0.25  # PNEWDT: Abaqus is asked for a smaller increment


@pytest.mark.parametrize("name", ["cpann"])
def test_umat_uniaxial_path(built, name):
    """Traction-free uniaxial tension solved with the UMAT's own tangent."""
    _, programs = built
    model, exe = programs["umat", name]
    stretch = np.linspace(0.7, 2.0, 14)
    out = _run(exe, stretch[:, None], "uniaxial")
    with jax.enable_x64(True):
        ref = compressible_load_case(model, "uniaxial", jnp.asarray(stretch))
        lateral = np.asarray(ref.stretches[1])
        P11 = np.asarray(ref.P11)
    assert bool(np.all(ref.converged))
    t = out[:, 1]
    J = stretch * t * t
    fortran_P11 = out[:, 2] * J / stretch
    np.testing.assert_allclose(t, lateral, rtol=1e-10, atol=0)
    np.testing.assert_allclose(fortran_P11, P11, rtol=1e-10, atol=1e-12)
    # Newton with DDSDDE converges quadratically: few steps, zero lateral stress.
    assert np.all(out[:, 8] <= 8)
    assert np.max(np.abs(out[:, 3:5])) <= 1e-12 * np.max(np.abs(out[:, 2]))
    assert np.all(np.abs(out[:, 5:8]) <= 1e-12 * np.max(np.abs(out[:, 2])))


@pytest.mark.parametrize("name", ["ti"])
def test_umat_simple_shear_path(built, name):
    _, programs = built
    model, exe = programs["umat", name]
    gamma = np.linspace(-1.0, 1.5, 11)
    out = _run(exe, gamma[:, None], "shear")
    with jax.enable_x64(True):
        F = np.tile(np.eye(3), (NUM_STATES, 1, 1))  # padded: no recompilation
        F[: len(gamma), 0, 1] = gamma
        stress = np.asarray(_umat_reference(model, F)[0])[: len(gamma)]
    # Relative to the largest stress on the path (the path passes F = I).
    error = np.max(np.abs(out[:, 1:] - stress)) / np.max(np.abs(stress))
    assert error < 1e-10
    zero = np.argmin(np.abs(gamma - 0.0))
    assert gamma[zero] == 0.0 and np.max(np.abs(out[zero, 1:])) < 1e-14


# ---------------------------------------------------------------------------
# The generated source, and bad input (no compiler needed)


def _pann(**kwargs):
    return _build(lambda k: IncompressiblePANN([3], key=k, **kwargs), 0, x64=False)


def test_source_is_fixed_form_thread_safe_and_deterministic(tmp_path):
    model = _pann()
    a = export_uhyper(model, tmp_path / "a.f").read_text()
    b = export_uhyper(model, tmp_path / "b.f").read_text()
    assert a == b
    cpann = _build(lambda k: CompressiblePANN([3], key=k), 1)
    c = export_umat(cpann, tmp_path / "c.f").read_text()
    for text in (a, c):
        assert text.isascii()
        code = [line for line in text.splitlines() if not line.startswith("!")]
        assert all(len(line) <= 72 for line in text.splitlines())
        assert all(line[:5].strip() == "" for line in code)
        upper = "\n".join(code).upper()
        for word in (" SAVE", " DATA ", "COMMON", "ALLOCAT", "MODULE", "INCLUDE"):
            assert word not in upper
        subroutines = [line for line in code if "SUBROUTINE " in line.upper()]
        assert subroutines and all("RECURSIVE" in line for line in subroutines)
    # Float32 parameters are written exactly, as 17-digit doubles.
    weight = float(np.asarray(model.network.layers[0].linear_y.weight)[0, 0])
    assert f"{weight:.16E}".split("E")[0] in a


def test_unfinalised_model_is_rejected(tmp_path):
    raw = eqx.filter_eval_shape(lambda k: IncompressiblePANN([3], key=k), jr.key(0))
    with pytest.raises(ValueError, match="klax.finalize"):
        export_uhyper(raw, tmp_path / "u.f")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "make, export, match",
    [
        (lambda: Ogden([0.5], [2.0]), export_uhyper, "Ogden"),
        (lambda: Ogden([0.5], [2.0]), export_umat, "Ogden"),
        (
            lambda: _build(
                lambda k: TransverselyIsotropicPANN(jnp.eye(3) / 3, [2], key=k), 0
            ),
            export_uhyper,
            "not isotropic",
        ),
        (lambda: _pann(), export_umat, "incompressible"),
        (lambda: _cann(lambda k: CANN(key=k), 0), export_umat, "incompressible"),
        (
            lambda: _cann(
                lambda k: CompressibleCANN(structural_tensor=jnp.eye(3) / 3, key=k), 0
            ),
            export_uhyper,
            "structural tensor",
        ),
        (lambda: NeoHooke(0.4), export_umat, "VolumetricPenalty"),
        (lambda: _pann(activation=jax.nn.relu), export_uhyper, "activation"),
        (lambda: VolumetricPenalty(lambda F: jnp.sum(F), 1.0), export_umat, "wraps"),
        (lambda: lambda F: jnp.sum(F * F), export_umat, "cannot export"),
        (lambda: "model", export_uhyper, "expects a potential"),
    ],
)
def test_unsupported_models_are_rejected(tmp_path, make, export, match):
    target = tmp_path / "routine.f"
    target.write_text("previous\n")
    with pytest.raises((ValueError, TypeError), match=match):
        export(make(), target)
    assert target.read_text() == "previous\n"  # nothing replaced, nothing partial
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routine.f"]


def test_unwritable_paths(tmp_path):
    model = NeoHooke(0.4)
    with pytest.raises(ValueError, match="does not exist"):
        export_uhyper(model, tmp_path / "missing" / "u.f")
    with pytest.raises(ValueError, match="is a directory"):
        export_uhyper(model, tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="does not exist"):
        export_uhyper(model, blocker / "u.f")
    with pytest.raises(TypeError, match="file path"):
        export_uhyper(model, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_export_under_jit_is_rejected(tmp_path):
    @eqx.filter_jit
    def inside(model):
        export_uhyper(model, tmp_path / "u.f")
        return 0

    with pytest.raises(TypeError, match="concrete"):
        inside(NeoHooke(0.4))
    assert not (tmp_path / "u.f").exists()


def test_export_abaqus_writes_what_the_model_supports(tmp_path):
    cpann = _build(lambda k: CompressiblePANN([2], key=k), 0)
    both = export_abaqus(cpann, tmp_path, description="test model")
    assert [p.name for p in both] == ["uhyper.f", "umat.f"]
    assert "test model" in both[0].read_text()
    only = tmp_path / "only"
    only.mkdir()
    assert [p.name for p in export_abaqus(NeoHooke(0.4), only)] == ["uhyper.f"]
    none = tmp_path / "none"
    none.mkdir()
    with pytest.raises(ValueError, match="Ogden"):
        export_abaqus(Ogden([0.5], [2.0]), none)
    with pytest.raises(ValueError, match="not an existing directory"):
        export_abaqus(NeoHooke(0.4), tmp_path / "missing")
    assert list(none.iterdir()) == []


def test_calibrate_cli_exports_next_to_the_model(tmp_path, capsys):
    from klax.mechanics import calibrate, load_model

    out = tmp_path / "run"
    args = ["--steps", "20", "--seeds", "1", "--width", "3", "--no-plot"]
    args += ["--quiet", "--log-every", "10", "--export-abaqus", "--out", str(out)]
    assert calibrate.main(args) == 0
    assert "uhyper.f" in capsys.readouterr().out
    text = (out / "uhyper.f").read_text()
    assert "TYPE=INCOMPRESSIBLE" in text and "model.json" in text
    assert not (out / "umat.f").exists()
    _require_gfortran()
    exe = _compile(tmp_path, "cli", out / "uhyper.f", "uhyper_driver.f90")
    with jax.enable_x64(True):
        model = load_model(out)
        F = _random_F(jr.key(4), 50)
        result = _run(exe, _invariant_states(F))
        energy = _energies(model, F)
        # W = E (N(x) - N(0)): both codes round N(x) and N(0), which a trained
        # network may hold far above W (large hidden biases in the linear part
        # of softplus), so the tolerance is relative to E |N(0)| too.
        zero = model.energy_scale * abs(float(model.network(jnp.zeros(8))))
    error = np.abs(result[:, 0] - energy)
    assert np.max(error) < 1e-13 * (np.max(np.abs(energy)) + zero)


def test_calibrate_cli_rejects_export_of_ogden(tmp_path, capsys):
    from klax.mechanics import calibrate

    out = tmp_path / "run"
    code = calibrate.main(["--model", "ogden3", "--export-abaqus", "--out", str(out)])
    assert code == 2
    assert "--export-abaqus" in capsys.readouterr().err
    assert not out.exists()
