"""Speed of a klax PANN as a FElupe material against FElupe's built-in neo-Hooke.

Contenders, on the same mesh (a unit cube of 24³ hexahedra, 8 quadrature
points each: 110,592 points) and the same deformation (a smooth, inhomogeneous
displacement field), in float64:

(a) `felupe.NeoHooke(mu)`, FElupe's own isochoric neo-Hooke (NumPy, evaluated
    in chunks of cells), the baseline;
(b) `klax.mechanics.FElupeMaterial(IncompressiblePANN([8, 8]))`: the
    material that `felupe_material` wraps; for this isotropic potential the
    closed-form route (AD of the energy in its invariants, closed-form
    invariant derivatives), one jitted call over all points;
(c) the same material forced onto the AD route through `F` (stress by
    `jax.grad`, tangent by `jax.jacfwd` of it: what anisotropic potentials
    and user functions get), for comparison.

Timed: (1) the stress `gradient(x)` plus the tangent `hessian(x)` at every
quadrature point; (2) one full Newton iteration of the nearly-incompressible
solid (`felupe.SolidBodyNearlyIncompressible`, K = 5000 μ): assembly of the
residual vector and of the stiffness matrix, and the sparse solve. The first
klax call (compilation) is timed separately. Steady state: in each of R rounds
every contender runs in turn (interleaved, so drifts of a shared machine hit
all alike). Reported: min / median / max over rounds of each, and of the
per-round ratios (b)/(a) and (c)/(a). Target: median ratio (b)/(a) of (1) <= 3.

Run: `python benchmarks/fe.py [--quick] [--rounds R] [--skip-newton]` (needs
`pip install "klax[fe]"`).
"""

import argparse
import statistics
import time

import felupe as fem
import jax
import jax.random as jr
import numpy as np

import klax
import klax.mechanics as km


def stats(values):
    return f"{min(values):9.4f} {statistics.median(values):9.4f} {max(values):9.4f}"


def main(quick: bool, rounds: int | None, skip_newton: bool) -> None:
    cells = 8 if quick else 24
    rounds = rounds or (3 if quick else 7)
    newton_rounds = 2
    mesh = fem.Cube(n=cells + 1)
    region = fem.RegionHexahedron(mesh)
    field = fem.FieldContainer([fem.Field(region, dim=3)])
    X = mesh.points
    # A smooth, inhomogeneous deformation (stretch, shear and bending).
    field[0].values[:] = np.stack(
        [
            0.4 * X[:, 0] + 0.1 * np.sin(np.pi * X[:, 1]),
            -0.15 * X[:, 1] + 0.1 * X[:, 0] * X[:, 2],
            -0.15 * X[:, 2] + 0.05 * np.cos(np.pi * X[:, 0]),
        ],
        axis=1,
    )
    x = [*field.extract(), np.zeros((0, *region.dV.shape))]
    n_points = int(np.prod(x[0].shape[2:]))
    print(
        f"mesh: {mesh.ncells} hexahedra, {n_points} quadrature points; machine: "
        f"{jax.devices()[0].platform}, shared"
    )

    with jax.enable_x64(True):
        pann = klax.finalize(
            km.IncompressiblePANN([8, 8], input_scale=(55.0, 7660.0), key=jr.key(0))
        )
        mu = float(pann.initial_shear_modulus())
    ours = km.FElupeMaterial(pann)
    assert ours.closed_form
    ad_route = km.FElupeMaterial(pann)
    ad_route.closed_form = False
    theirs = fem.NeoHooke(mu=mu)

    start = time.perf_counter()
    ours.gradient(x)
    compile_gradient = time.perf_counter() - start
    start = time.perf_counter()
    ours.hessian(x)
    compile_hessian = time.perf_counter() - start
    start = time.perf_counter()
    ad_route.gradient(x)
    ad_route.hessian(x)
    compile_ad = time.perf_counter() - start
    print(
        f"klax compilation (first call): stress {compile_gradient:.2f} s, "
        f"tangent {compile_hessian:.2f} s; AD route, both: {compile_ad:.2f} s"
    )

    def material(umat):
        start = time.perf_counter()
        umat.gradient(x)
        umat.hessian(x)
        return time.perf_counter() - start

    contenders = {
        "(a) felupe NeoHooke": theirs,
        "(b) klax PANN [8, 8]": ours,
        "(c) klax, AD route": ad_route,
    }
    times = {name: [] for name in contenders}
    material(theirs)
    for _ in range(rounds):
        for name, umat in contenders.items():
            times[name].append(material(umat))
    print(
        "\n(1) stress + tangent at every quadrature point, seconds (min / median / max)"
    )
    for name, values in times.items():
        print(f"  {name:<22} {stats(values)}")
    base = times["(a) felupe NeoHooke"]
    for label, name in (
        ("(b)/(a)", "(b) klax PANN [8, 8]"),
        ("(c)/(a)", "(c) klax, AD route"),
    ):
        ratios = [t / b for t, b in zip(times[name], base, strict=True)]
        note = "   (target: median <= 3)" if label == "(b)/(a)" else ""
        print(f"  ratio {label}          {stats(ratios)}{note}")
    if skip_newton:
        return

    # (2) One Newton iteration of the nearly-incompressible solid.
    bulk = 5000.0 * mu
    boundaries = fem.dof.uniaxial(field, clamped=True, move=0.2, return_loadcase=False)
    dof0, dof1 = fem.dof.partition(field, boundaries)
    ext0 = fem.dof.apply(field, boundaries, dof0)
    solids = {
        "(a) felupe NeoHooke": fem.SolidBodyNearlyIncompressible(
            theirs, field, bulk=bulk
        ),
        "(b) klax PANN [8, 8]": fem.SolidBodyNearlyIncompressible(
            ours, field, bulk=bulk
        ),
    }

    def newton_iteration(solid):
        start = time.perf_counter()
        r = solid.assemble.vector(field)
        K = solid.assemble.matrix(field)
        assembled = time.perf_counter()
        system = fem.solve.partition(field, K, dof1, dof0, r)
        fem.solve.solve(*system, ext0)
        return assembled - start, time.perf_counter() - start

    newton = {name: ([], []) for name in solids}
    newton_ratios = []
    for solid in solids.values():
        newton_iteration(solid)  # warm-up (allocations)
    for _ in range(newton_rounds):
        totals = []
        for name, solid in solids.items():
            assembly, total = newton_iteration(solid)
            newton[name][0].append(assembly)
            newton[name][1].append(total)
            totals.append(total)
        newton_ratios.append(totals[1] / totals[0])
    print(
        f"\n(2) one Newton iteration ({len(dof1)} unknowns), seconds "
        "(min / median / max)"
    )
    for name, (assembly, total) in newton.items():
        print(
            f"  {name:<20} assembly {stats(assembly)}   assembly + solve {stats(total)}"
        )
    print(f"  ratio (b)/(a), assembly + solve {stats(newton_ratios)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small mesh")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of (1)")
    parser.add_argument(
        "--skip-newton", action="store_true", help="time only (1), not the iteration"
    )
    args = parser.parse_args()
    main(args.quick, args.rounds, args.skip_newton)
